"""Benchmark: the evaluation protocol's cost on a 50k-face mesh, and Chamfer / F-score against Open3D.

Times, in one process, with the same inputs:

* the non-CLIP panel (``eval.judging.protocol.score`` without CLIP weights: mesh quality, every row);
* the renders the CLIP metrics need (8 colour + 8 geometry views at 224 px, 2x supersampling);
* CLIP ViT-B/32 on those 8 views plus the prompt, with a random-weight model of the real size built
  from ``CLIPConfig()`` (the default config is ViT-B/32) and one token per word standing in for
  CLIP's BPE tokenizer, and the one-off embedding of the 153 Dream Fields captions;
* the reference-geometry panel (100k surface samples each side: Chamfer, F-scores, normal
  consistency, volume IoU);
* Chamfer + F-score on 100k x 100k points: ours (scipy cKDTree) vs Open3D's
  ``compute_point_cloud_distance`` (both directions), interleaved repeats, medians, the ratio;
* with ``--crosscheck``: the silhouette IoU of our renders against Open3D's OffscreenRenderer
  (headless, Filament on Mesa's llvmpipe Vulkan driver) for the same cameras.

Goals on a 2-core CPU: non-CLIP panel <= 3 s, CLIP on 8 views <= 5 s, Chamfer <= 1.0x Open3D.

Usage::

    python bench/metrics.py [--repeats 5] [--faces 50000] [--crosscheck]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def blob_mesh(target_faces: int):
    """A bumpy closed surface from marching cubes with about ``target_faces`` faces (deterministic)."""
    from skimage.measure import marching_cubes

    from methods.base import Asset, Mesh, normalize

    n = int(round(np.sqrt(target_faces / 5.1)))  # faces grow with the square of the grid size
    for _ in range(6):
        g = np.linspace(-1.2, 1.2, n)
        x, y, z = np.meshgrid(g, g, g, indexing="ij")
        r = np.sqrt(x**2 + y**2 + z**2)
        field = r - 0.8 - 0.12 * np.sin(5 * x) * np.sin(4 * y) * np.sin(6 * z)
        verts, faces, _, _ = marching_cubes(field, 0.0, spacing=(g[1] - g[0],) * 3)
        if abs(len(faces) - target_faces) / target_faces < 0.03:
            break
        n = int(round(n * np.sqrt(target_faces / len(faces))))
    colors = (verts - verts.min(0)) / (verts.max(0) - verts.min(0))
    return normalize(Asset(mesh=Mesh(verts, faces[:, ::-1], colors)))


class WordTokenizer:
    """Stands in for CLIP's BPE tokenizer in timings: start, one id per word, end, padded (as the real one)."""

    def __call__(self, texts, padding=True, truncation=True, max_length=77, return_tensors="pt"):
        import torch

        rows = [[49406, *(hash(w) % 49000 for w in t.split()), 49407][:max_length] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [49407] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        return {"input_ids": ids, "attention_mask": mask}


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def chamfer_ours(a: np.ndarray, b: np.ndarray, tau: float) -> tuple[float, float]:
    from eval.judging.metrics import geometry

    d = geometry.pair_distances(a, b)
    return geometry.chamfer_from(d)["chamfer_l1"], geometry.f_score_from(d, tau)["f_score"]


def chamfer_open3d(a: np.ndarray, b: np.ndarray, tau: float) -> tuple[float, float]:
    import open3d as o3d

    pa = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(a))
    pb = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(b))
    d_ab = np.asarray(pa.compute_point_cloud_distance(pb))
    d_ba = np.asarray(pb.compute_point_cloud_distance(pa))
    p, r = (d_ab < tau).mean(), (d_ba < tau).mean()
    return 0.5 * (d_ab.mean() + d_ba.mean()), 2 * p * r / (p + r) if p + r else 0.0


def crosscheck_open3d(asset_path: Path, resolution: int = 224) -> str:
    """Silhouette IoU of our renders against Open3D's OffscreenRenderer, in a child process (Filament)."""
    code = f"""
import sys, numpy as np
sys.path.insert(0, {str(ROOT)!r})
import open3d as o3d
from eval.judging.render import camera_ring, render, render_modes
from methods.base import normalize
from methods.export import load_asset
asset = normalize(load_asset({str(asset_path)!r}))
cams = camera_ring(8)
ours = render(asset, cams, resolution={resolution}, supersample=1).alpha > 0.5
r = o3d.visualization.rendering.OffscreenRenderer({resolution}, {resolution})
r.scene.view.set_post_processing(False)
m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(asset.mesh.vertices.astype(np.float64)),
                              o3d.utility.Vector3iVector(asset.mesh.faces.astype(np.int32)))
mat = o3d.visualization.rendering.MaterialRecord(); mat.shader = "defaultUnlit"; mat.base_color = [0, 0, 0, 1]
r.scene.add_geometry("m", m, mat); r.scene.set_background([1, 1, 1, 1])
ious = []
for cam, mask in zip(cams, ours):
    r.setup_camera(cam.fov, [0, 0, 0], cam.position.tolist(), [0, 1, 0])
    theirs = np.asarray(r.render_to_image())[..., 0] < 128
    ious.append((mask & theirs).sum() / (mask | theirs).sum())
print(f"{{min(ious):.4f}} {{np.mean(ious):.4f}}")
"""
    env = dict(os.environ, EGL_PLATFORM="surfaceless")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    if proc.returncode != 0:
        return f"unavailable ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})"
    low, mean = proc.stdout.strip().splitlines()[-1].split()
    return f"silhouette IoU min {low}, mean {mean} over 8 views"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, default=50_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--crosscheck", action="store_true", help="compare silhouettes with Open3D's renderer")
    args = parser.parse_args()

    import torch
    from transformers import CLIPConfig, CLIPModel

    from eval.judging.metrics import geometry
    from eval.judging.metrics.clip import CLIPScorer, clip_score, r_precision
    from eval.judging.protocol import score
    from eval.judging.render import camera_ring, render, render_modes
    from methods.base import Inputs
    from methods.export import export_glb

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, load average {load}")
    asset = blob_mesh(args.faces)
    faces = len(asset.mesh.faces)
    rows: list[tuple[str, float, str, str]] = []

    no_clip = {"clip_models": ["/nonexistent/clip"]}  # the non-CLIP panel: what runs without CLIP weights
    inputs = Inputs.text("a bumpy ball")
    t_panel, panel = timed(lambda: list(score(asset, inputs, no_clip)), args.repeats)
    rows.append(
        (f"non-CLIP panel, {faces} faces ({len(panel)} rows)", t_panel, "<= 3 s", "ok" if t_panel <= 3 else "MISS")
    )

    cams = camera_ring(8)
    t_render, _ = timed(lambda: render_modes(asset, cams), max(1, args.repeats // 2))
    rows.append(("renders: 8 views x (colour, geometry), 224 px, 2x SSAA", t_render, "(info)", ""))
    shots = render(asset, cams)

    # CLIP ViT-B/32 at real size with random weights, and one token per word (about what CLIP's BPE gives)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).eval()
    name = "ViT-B/32 (random weights, config of openai/clip-vit-base-patch32)"
    scorer = CLIPScorer(model, WordTokenizer(), name)
    captions_file = ROOT.parent / "shared" / "data" / "prompts" / "dreamfields_object_centric_coco_val_153.txt"
    captions = (
        captions_file.read_text().splitlines() if captions_file.exists() else [f"caption {i}" for i in range(153)]
    )
    t_captions, _ = timed(lambda: CLIPScorer(model, WordTokenizer(), name).embed_texts(captions), 1)

    def clip_views():
        text = scorer.embed_texts([inputs.prompt])[0]
        emb = scorer.embed_images(shots.rgb)
        return clip_score(emb, text), r_precision(emb, scorer.embed_texts([inputs.prompt, *captions]), 0)

    scorer.embed_texts(captions)  # the caption set is embedded once per process and model
    t_clip, _ = timed(clip_views, args.repeats)
    rows.append(
        ("CLIP ViT-B/32: 8 views + prompt, score and R-precision", t_clip, "<= 5 s", "ok" if t_clip <= 5 else "MISS")
    )
    rows.append((f"CLIP ViT-B/32: caption set ({len(captions)}), once per process", t_captions, "(info)", ""))

    ref_path = Path(os.environ.get("TMPDIR", "/tmp")) / "trilemma-bench-reference.glb"
    export_glb(blob_mesh(args.faces // 2), ref_path)
    with_ref = no_clip | {"reference_mesh": str(ref_path)}
    t_ref, ref_rows = timed(lambda: list(score(asset, inputs, with_ref)), max(1, args.repeats // 2))
    label = f"panel + reference geometry (100k samples, {len(ref_rows) - len(panel)} more rows)"
    rows.append((label, t_ref, "(info)", ""))

    rng = np.random.default_rng(0)
    a, _ = geometry.sample_surface(asset.mesh, args.points, seed=1)
    b = a + rng.normal(scale=0.01, size=a.shape)
    tau = 0.02
    ours_t, them_t = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        start = time.perf_counter()
        ours = chamfer_ours(a, b, tau)
        ours_t.append(time.perf_counter() - start)
        try:
            start = time.perf_counter()
            theirs = chamfer_open3d(a, b, tau)
            them_t.append(time.perf_counter() - start)
        except ImportError as exc:
            theirs = None
            print(f"open3d unavailable: {exc}")
    t_ours = statistics.median(ours_t)
    if them_t:
        t_them = statistics.median(them_t)
        assert abs(ours[0] - theirs[0]) < 1e-9 and abs(ours[1] - theirs[1]) < 1e-9, (ours, theirs)
        ratio = t_ours / t_them
        label = f"Chamfer+F {args.points // 1000}k x {args.points // 1000}k: ours {t_ours:.3f} s, Open3D {t_them:.3f} s"
        rows.append((label, ratio, "<= 1.0x", "ok" if ratio <= 1.0 else "MISS"))
    else:
        rows.append((f"Chamfer+F {args.points // 1000}k x {args.points // 1000}k (ours)", t_ours, "(info)", ""))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'measurement':<{width}}  {'value':>9}  goal      ")
    for name, value, goal, verdict in rows:
        unit = "x" if goal.endswith("x") else "s"
        print(f"{name:<{width}}  {value:>8.3f}{unit}  {goal:<8}  {verdict}")
    if args.crosscheck:
        print("\nrenderer cross-check vs Open3D OffscreenRenderer:", crosscheck_open3d(ref_path))


if __name__ == "__main__":
    main()
