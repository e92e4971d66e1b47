"""Benchmark: TripoSR per stage on real-size random weights (not a test).

Builds the released configuration (``tests/tiny_triposr.REAL_CONFIG_YAML``: DINO ViT-B/16 at 512 px, 16-layer
1024-wide backbone, 64 x 64 x 40 triplanes; 419,275,628 parameters) with random weights in memory, shifts the
density output so that a surface exists (as the tiny test checkpoints do), and times one image through our
stages at each marching-cubes resolution:

    preprocess (cut-out, foreground ratio, grey) | encode (ViT + backbone + upsampler, one forward pass)
    decode_grid (density on res^3 points, chunked) | marching_cubes (scikit-image) | vertex_colors | export (.glb)

and the peak resident memory (and peak CUDA memory on a GPU). With ``--official DIR`` (a checkout of
VAST-AI-Research/TripoSR kept outside this repository; it needs ``omegaconf`` and ``einops``) the official
code is timed in the same run, on the same image and the same weights (ViT included), with the
torchmcubes -> scikit-image stand-in of the parity fixtures (``--official-shims``): the two codes alternate
``--repeats`` times per stage and the medians are compared. Its ``extract_mesh`` runs on our scene codes so
that both meshes are the same surface.

Usage::

    python bench/triposr.py                       # CPU, float32, resolutions 128 and 256
    python bench/triposr.py --device cuda         # float16 network, float32 decoder
    python bench/triposr.py --resolutions 128 --threads 2
    python bench/triposr.py --resolutions 128 --official /tmp/TripoSR --repeats 5  # and the official code
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_IMAGE = 768  # px, the side of the RGBA test image (cut out and padded, then resized to 512)
STAGES = ("preprocess", "encode", "decode_grid", "marching_cubes", "vertex_colors", "export")


def build_model(device: str, dtype, seed: int = 0):
    import numpy as np
    import torch

    from methods.triposr import mesh, preprocess
    from methods.triposr.config import DINO_VITB16_CONFIG, parse_config
    from methods.triposr.model import TripoSR
    from tests.tiny_triposr import REAL_CONFIG_YAML, reference_image

    config = parse_config(REAL_CONFIG_YAML, DINO_VITB16_CONFIG)
    torch.manual_seed(seed)
    model = TripoSR(config).eval()
    with torch.no_grad():
        # PyTorch's default Linear init flattens the 10-layer SiLU decoder to a constant density (std ~1e-6);
        # draw it as the parity fixtures do (N / sqrt(fan_in), biases 0.1 N) so the density varies in space
        for layer in model.decoder.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, 1.5 / math.sqrt(layer.in_features))
                layer.bias.normal_(0.0, 0.1)
        prepared, _ = preprocess.prepare(reference_image(BENCH_IMAGE))
        pixels = torch.from_numpy(np.asarray(prepared, dtype=np.float32) / 255.0)[None]
        planes = model(pixels)[0]
        last = model.decoder.layers[-1]
        raw = torch.log(torch.from_numpy(mesh.density_grid(model, planes, 32)).flatten()) - config.density_bias
        last.weight[0] *= 2.0 / max(float(raw.std()), 1e-6)
        raw = torch.log(torch.from_numpy(mesh.density_grid(model, planes, 32)).flatten()) - config.density_bias
        last.bias[0] += math.log(25.0) - config.density_bias - float(raw.quantile(0.8))
    model.to(device=device, dtype=dtype)
    model.decoder.float()
    return model


def time_one(model, resolution: int, chunk_size: int, device: str, dtype) -> dict:
    import torch

    from methods import export, runtime
    from methods.base import Asset, Mesh, normalize
    from methods.triposr import mesh, preprocess
    from methods.triposr.pipeline import scene_codes
    from tests.tiny_triposr import reference_image

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    seconds: dict[str, float] = {}
    image = reference_image(BENCH_IMAGE)
    with runtime.PeakMemory() as peak:
        start = time.perf_counter()
        prepared, _ = preprocess.prepare(image)
        seconds["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        planes = scene_codes(model, prepared, device, dtype)[0]
        sync()
        seconds["encode"] = time.perf_counter() - start
        start = time.perf_counter()
        grid = mesh.density_grid(model, planes, resolution, chunk_size)
        sync()
        seconds["decode_grid"] = time.perf_counter() - start
        start = time.perf_counter()
        verts, faces = mesh.marching_cubes(grid, model.config.radius)
        seconds["marching_cubes"] = time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            colors = model.query(planes, torch.from_numpy(verts).to(device), chunk_size)["color"].cpu().numpy()
        sync()
        seconds["vertex_colors"] = time.perf_counter() - start
        start = time.perf_counter()
        asset = Asset(mesh=Mesh(mesh.official_to_canonical(verts), faces, vertex_colors=colors), up="+Y")
        with tempfile.TemporaryDirectory() as out:
            export.export_asset(normalize(asset), Path(out), {"method": "triposr"})
        seconds["export"] = time.perf_counter() - start
    return {
        "seconds": seconds,
        "total": sum(seconds.values()),
        "vertices": len(verts),
        "faces": len(faces),
        "peak_rss_mb": peak.peak_rss_mb,
        "peak_gpu_mb": peak.peak_gpu_mb,
    }


def serve_vit_config() -> None:
    """The official tokenizer fetches facebook/dino-vitb16's config.json: serve it from a throw-away local
    cache, offline. Before anything imports huggingface_hub (it reads these variables once)."""
    import json
    import os

    from methods.triposr.config import DINO_VITB16_CONFIG  # light: no torch

    hub = Path(tempfile.mkdtemp(prefix="tsr_hf_")) / "hub"
    repo = hub / "models--facebook--dino-vitb16"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text(json.dumps(DINO_VITB16_CONFIG))
    os.environ["HF_HUB_CACHE"] = str(hub)
    os.environ["HF_HUB_OFFLINE"] = "1"


def official_model(src: Path, shims: Path, ours):
    """The official TSR built from the released config (its ViT config served by :func:`serve_vit_config`),
    holding the same weights as ``ours``: the triplane tokens, backbone, upsampler and decoder by state_dict
    name, the ViT parameter by parameter (the same transformers ViTModel class on both sides)."""
    import torch

    from tests.tiny_triposr import REAL_CONFIG_YAML

    sys.path.insert(0, str(shims))
    sys.path.insert(1, str(src))
    from omegaconf import OmegaConf
    from tsr.system import TSR

    config = OmegaConf.create(REAL_CONFIG_YAML)
    OmegaConf.resolve(config)
    model = TSR(config).eval()
    theirs = model.state_dict()
    shared = {k: v for k, v in ours.state_dict().items() if k in theirs and theirs[k].shape == v.shape}
    shared = {k: v for k, v in shared.items() if not k.startswith("image_tokenizer.")}
    model.load_state_dict(shared, strict=False)
    vit_ours = dict(ours.image_tokenizer.model.named_parameters())
    with torch.no_grad():
        for name, param in model.image_tokenizer.model.named_parameters():
            param.copy_(vit_ours[name])
    return model.float()


def compare_official(official, ours, resolution: int, chunk_size: int, repeats: int) -> list[tuple[str, float, float]]:
    """Each stage of both codes on the same image and weights, alternating, ``repeats`` times: medians.

    encode: image -> scene codes. decode_grid: density on the res^3 grid. marching_cubes: the official
    isosurface helper (torchmcubes' classic table, here scikit-image's) and ours (scikit-image, Lewiner) on
    the same grid; ours also drops zero-area triangles, which the protocol counts against a mesh.
    mc_classic_table: ours with the official case table, the same work as the official helper.
    extract_mesh: the official extract_mesh (grid, marching cubes, vertex colours, trimesh) on OUR scene
    codes, against our grid + marching cubes + vertex colours on the same codes, so both meshes are the same
    surface. export: trimesh's .glb of the official run.py against ours (frame turned, normalised, asset.glb).
    """
    import statistics

    import torch
    from tsr.utils import scale_tensor

    from methods import export
    from methods.base import Asset, Mesh, normalize
    from methods.triposr import mesh, preprocess
    from methods.triposr.pipeline import scene_codes
    from tests.tiny_triposr import reference_image

    prepared, _ = preprocess.prepare(reference_image(BENCH_IMAGE))
    official.renderer.set_chunk_size(chunk_size)
    official.set_marching_cubes_resolution(resolution)
    radius = official.renderer.cfg.radius
    points = scale_tensor(official.isosurface_helper.grid_vertices, (0, 1), (-radius, radius))
    planes = scene_codes(ours, prepared, "cpu", torch.float32)[0]

    def clock(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def ours_mesh():
        grid = mesh.density_grid(ours, planes, resolution, chunk_size)
        verts, _ = mesh.marching_cubes(grid, ours.config.radius)
        with torch.inference_mode():
            ours.query(planes, torch.from_numpy(verts), chunk_size)

    grid = mesh.density_grid(ours, planes, resolution, chunk_size)

    def official_mc():  # the lines of the official extract_mesh around its isosurface helper
        v_pos, _ = official.isosurface_helper(-(torch.from_numpy(grid) - mesh.THRESHOLD))
        scale_tensor(v_pos, official.isosurface_helper.points_range, (-radius, radius))

    verts, faces = mesh.marching_cubes(grid, ours.config.radius)
    with torch.inference_mode():
        colors = ours.query(planes, torch.from_numpy(verts), chunk_size)["color"].numpy()
    out = Path(tempfile.mkdtemp(prefix="tsr_bench_"))

    def official_export():
        import trimesh

        trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=colors).export(out / "official.glb")

    def ours_export():
        asset = Asset(mesh=Mesh(mesh.official_to_canonical(verts), faces, vertex_colors=colors), up="+Y")
        export.export_asset(normalize(asset), out / "ours", {"method": "triposr"})

    stages = {
        "encode": (
            lambda: official([prepared], "cpu"),
            lambda: scene_codes(ours, prepared, "cpu", torch.float32),
        ),
        "decode_grid": (
            lambda: official.renderer.query_triplane(official.decoder, points, planes),
            lambda: mesh.density_grid(ours, planes, resolution, chunk_size),
        ),
        "marching_cubes": (
            official_mc,
            lambda: mesh.marching_cubes(grid, ours.config.radius),
        ),
        "mc_classic_table": (
            official_mc,
            lambda: mesh.marching_cubes(grid, ours.config.radius, method="lorensen"),
        ),
        "extract_mesh": (lambda: official.extract_mesh(planes[None], True, resolution=resolution), ours_mesh),
        "export": (official_export, ours_export),
    }
    times: dict[str, tuple[list, list]] = {name: ([], []) for name in stages}
    with torch.no_grad():
        for _ in range(repeats):
            for name, (theirs, mine) in stages.items():
                times[name][0].append(clock(theirs))
                times[name][1].append(clock(mine))
    return [(name, statistics.median(t), statistics.median(o)) for name, (t, o) in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--chunk-size", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--warmup", action="store_true", help="run once untimed first (GPU kernels, allocator)")
    parser.add_argument("--official", type=Path, help="a checkout of the official code to time in the same run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs per stage against the official")
    parser.add_argument(
        "--official-shims", type=Path, default=ROOT.parent / "shared" / "fixtures" / "triposr" / "shims"
    )
    args = parser.parse_args()
    if args.official is not None:
        serve_vit_config()

    import torch

    from methods import runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = runtime.dtype(args.device)
    start = time.perf_counter()
    model = build_model(args.device, dtype)
    build = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    print(f"TripoSR real size: {params:,} parameters, built in {build:.1f} s on {args.device} ({dtype})")
    print(f"torch threads {torch.get_num_threads()}, hardware {runtime.hardware().get('gpu', 'cpu')}")
    if args.warmup:
        time_one(model, min(args.resolutions), args.chunk_size, args.device, dtype)
    header = f"{'res':>5} " + " ".join(f"{s:>15}" for s in STAGES) + f" {'total':>8} {'V':>8} {'peak RSS MB':>12}"
    print(header)
    results: dict[int, dict] = {}
    for res in args.resolutions:
        r = time_one(model, res, args.chunk_size, args.device, dtype)
        cells = " ".join(f"{r['seconds'][s]:>15.3f}" for s in STAGES)
        gpu = f"  peak GPU {r['peak_gpu_mb']:.0f} MB" if r["peak_gpu_mb"] is not None else ""
        print(f"{res:>5} {cells} {r['total']:>8.2f} {r['vertices']:>8} {r['peak_rss_mb']:>12.0f}{gpu}")
        results[res] = r
    if args.official is None:
        return
    official = official_model(args.official, args.official_shims, model)
    print(
        f"\nofficial code, same run, same weights and image (CPU, float32): median of {args.repeats} alternating runs;"
        " ratio = ours / official (<= 1.0: ours is as fast or faster)"
    )
    print(f"{'res':>5} {'stage':>16} {'official s':>11} {'ours s':>9} {'ratio':>7}")
    for res in args.resolutions:
        for name, theirs, ours in compare_official(official, model, res, args.chunk_size, args.repeats):
            print(f"{res:>5} {name:>16} {theirs:>11.2f} {ours:>9.2f} {ours / theirs:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
