"""Benchmark: Shap-E through methods.run vs the bare diffusers pipeline call, per stage, on full-size weights.

No real weights are downloaded: the script builds a random-weight pipeline with the architecture of
``openai/shap-e`` (or ``openai/shap-e-img2img``), saves it once, then times, in the same process,

* ours:      methods.run("shap-e", ...) -> its stage_seconds (load, sample, decode)
* diffusers: Pipeline.from_pretrained + pipe(..., output_type="mesh") (decode timed by wrapping decode_to_mesh)

and for both the GLB export (methods.export via trimesh) and the panel's mesh stats (eval.judging.protocol), then prints
a table with the ratio ours / diffusers. Random weights give a noisy surface with far more faces than a real
sample, so decode, export and stats are upper bounds; load and sample match the real model's cost.

Usage::

    python bench/shap_e.py                       # text, 64 steps on a GPU, 2 on a CPU
    python bench/shap_e.py --steps 1 --device cpu --modality image
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: methods/, eval/ and tests/ are importable

# Component configs of the hub checkpoints. Prior and renderer: diffusers' scripts/convert_shap_e_to_diffusers.py,
# which wrote openai/shap-e(-img2img); CLIP: ViT-L/14 (text 768 wide, vision 1024 wide with 256 patch tokens),
# which is what the priors' embedding_proj_dim (768 text, 1024 image) consumes.
PRIOR: dict[str, Any] = {
    "num_attention_heads": 16,
    "attention_head_dim": 64,
    "num_layers": 24,
    "embedding_dim": 1024,
    "num_embeddings": 1024,
    "additional_embeddings": 0,
    "time_embed_act_fn": "gelu",
    "norm_in_type": "layer",
    "encoder_hid_proj_type": None,
    "added_emb_type": None,
    "time_embed_dim": 4096,
    "embedding_proj_dim": 768,
    "clip_embed_dim": 2048,
}
IMAGE_PRIOR: dict[str, Any] = {
    **PRIOR,
    "num_attention_heads": 8,
    "attention_head_dim": 128,
    "embedding_proj_norm_type": "layer",
    "embedding_proj_dim": 1024,
}
TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
IMAGE_ENCODER: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "projection_dim": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
RENDERER: dict[str, Any] = {  # ShapERenderer's defaults, which are the transmitter's
    "param_names": ("nerstf.mlp.0.weight", "nerstf.mlp.1.weight", "nerstf.mlp.2.weight", "nerstf.mlp.3.weight"),
    "param_shapes": ((256, 93), (256, 256), (256, 256), (256, 256)),
    "d_latent": 1024,
    "d_hidden": 256,
    "n_output": 12,
    "n_hidden_layers": 6,
    "act_fn": "swish",
    "insert_direction_at": 4,
    "background": (255.0, 255.0, 255.0),
}
GRID_SIZE = 128  # output_type="mesh" always decodes on diffusers' default 128^3 grid; ours is set to match
PROMPT = "a red office chair"


def build_checkpoint(folder: Path, modality: str, rebuild: bool) -> tuple[Path, float]:
    """The full-size random-weight checkpoint in ``folder`` (built unless already there) and build seconds."""
    from tests.tiny_shap_e import build_shap_e

    if (folder / "model_index.json").is_file() and not rebuild:
        return folder, 0.0
    start = time.perf_counter()
    image = modality == "image"
    build_shap_e(
        folder,
        image=image,
        prior=IMAGE_PRIOR if image else PRIOR,
        encoder=IMAGE_ENCODER if image else TEXT_ENCODER,
        renderer=RENDERER,
        image_size=224,
    )
    gc.collect()
    return folder, time.perf_counter() - start


def condition(modality: str) -> Any:
    if modality == "text":
        return PROMPT
    from PIL import Image

    return Image.open(ROOT.parent / "shared" / "data" / "images" / "threestudio" / "cactus_rgba.png")


def after(asset: Any, out_dir: Path, name: str) -> dict[str, float]:
    """Seconds to export the GLB and to compute the panel's mesh stats, the same code for both runs."""
    from eval.judging.protocol import mesh_stat_rows
    from methods.export import export_glb

    seconds = {}
    start = time.perf_counter()
    export_glb(asset, out_dir / f"{name}.glb")
    seconds["export"] = time.perf_counter() - start
    start = time.perf_counter()
    mesh_stat_rows(asset)
    seconds["stats"] = time.perf_counter() - start
    return seconds


def run_ours(checkpoint: Path, modality: str, steps: int, out_dir: Path) -> tuple[dict[str, float], Any, float]:
    import methods
    from methods import Inputs, runtime

    runtime.release_models()
    inputs = Inputs.text(PROMPT) if modality == "text" else Inputs.from_image(condition("image"), name="cactus")
    settings = {"checkpoint": str(checkpoint), "num_inference_steps": steps, "frame_size": GRID_SIZE, "seed": 0}
    with runtime.PeakMemory() as peak:
        gen = methods.run("shap-e", inputs, settings)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                asset = stop.value
                break
    seconds = {k: v for k, v in asset.stage_seconds.items() if k in ("load", "sample", "decode")}
    seconds["prepare"] = asset.stage_seconds.get("prepare", 0.0)
    seconds.update(after(asset, out_dir, "ours"))
    runtime.release_models()
    return seconds, asset, peak.peak_rss_mb


def run_diffusers(checkpoint: Path, modality: str, steps: int, out_dir: Path) -> tuple[dict[str, float], Any, float]:
    import diffusers
    import numpy as np
    import torch

    from methods import Asset, Mesh, runtime
    from methods.shap_e import prepare_image

    dev = runtime.device()
    seconds: dict[str, float] = {}
    with runtime.PeakMemory() as peak:
        start = time.perf_counter()
        cls = diffusers.ShapEPipeline if modality == "text" else diffusers.ShapEImg2ImgPipeline
        pipe = cls.from_pretrained(str(checkpoint), dtype=runtime.dtype(dev)).to(dev)
        pipe.set_progress_bar_config(disable=True)
        seconds["load"] = time.perf_counter() - start
        # the same conditioning image as ours: the comparison is of the pipeline call, not of the cut-out
        cond = condition(modality) if modality == "text" else prepare_image(condition(modality))
        decode = pipe.shap_e_renderer.decode_to_mesh

        def timed_decode(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return decode(*args, **kwargs)
            finally:
                seconds["decode"] = time.perf_counter() - begin

        pipe.shap_e_renderer.decode_to_mesh = timed_decode
        guidance = 15.0 if modality == "text" else 3.0
        start = time.perf_counter()
        raw = pipe(
            cond,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=runtime.generator(0, dev),
            output_type="mesh",
        ).images[0]
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        seconds["sample"] = time.perf_counter() - start - seconds["decode"]
        colours = torch.stack([raw.vertex_channels[c] for c in "RGB"], dim=-1).float().cpu().numpy()
        mesh = Mesh(raw.verts.float().cpu().numpy(), raw.faces.cpu().numpy(), np.asarray(colours))
    asset = Asset(mesh=mesh, up="+Z")
    seconds.update(after(asset, out_dir, "diffusers"))
    del pipe
    gc.collect()
    return seconds, asset, peak.peak_rss_mb


def table(ours: dict[str, float], bare: dict[str, float]) -> str:
    rows = ["load", "sample", "decode", "export", "stats"]
    lines = [f"{'stage':<8} {'ours s':>10} {'diffusers s':>12} {'ratio':>7}", "-" * 40]
    for name in [*rows, "total"]:
        mine = sum(ours[r] for r in rows) if name == "total" else ours[name]
        theirs = sum(bare[r] for r in rows) if name == "total" else bare[name]
        ratio = mine / theirs if theirs > 0 else float("nan")
        lines.append(f"{name:<8} {mine:>10.3f} {theirs:>12.3f} {ratio:>7.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=None, help="Heun steps (default 64 on a GPU, 2 on a CPU)")
    parser.add_argument("--modality", choices=("text", "image"), default="text")
    parser.add_argument("--dir", type=Path, default=None, help="where the random-weight checkpoint is kept")
    parser.add_argument("--rebuild", action="store_true", help="build the checkpoint even if --dir has one")
    args = parser.parse_args(argv)

    if args.device:
        os.environ["TRILEMMA_DEVICE"] = args.device  # runtime.device() reads it: ours and diffusers agree
    from methods import runtime

    dev = runtime.device()
    steps = args.steps or (64 if dev.startswith("cuda") else 2)
    folder = args.dir or Path(tempfile.gettempdir()) / f"trilemma-bench-shap-e-{args.modality}"
    checkpoint, build_seconds = build_checkpoint(folder, args.modality, args.rebuild)

    import torch

    out_dir = Path(tempfile.mkdtemp(prefix="trilemma-bench-out-"))
    # process CPU seconds too: on a shared machine wall time swings with the neighbours' load
    cpu_start = time.process_time()
    bare, bare_asset, bare_rss = run_diffusers(checkpoint, args.modality, steps, out_dir)
    bare_cpu = time.process_time() - cpu_start
    cpu_start = time.process_time()
    ours, our_asset, our_rss = run_ours(checkpoint, args.modality, steps, out_dir)
    ours_cpu = time.process_time() - cpu_start
    same = bool(
        our_asset.mesh.vertices.shape == bare_asset.mesh.vertices.shape
        and (our_asset.mesh.vertices == bare_asset.mesh.vertices).all()
    )

    info = runtime.hardware()
    print(
        f"Shap-E {args.modality}, full-size random weights, {steps} steps, {GRID_SIZE}^3 grid, "
        f"device {dev} ({info.get('gpu', info['machine'])}), dtype {runtime.dtype(dev)}, "
        f"torch threads {torch.get_num_threads()}"
    )
    if build_seconds:
        print(f"checkpoint built in {build_seconds:.1f} s at {checkpoint}")
    print(table(ours, bare))
    print(f"{'cpu s':<8} {ours_cpu:>10.3f} {bare_cpu:>12.3f} {ours_cpu / bare_cpu:>7.3f}   (process time, all stages)")
    if args.modality == "image":
        print(f"ours also spent {ours['prepare']:.3f} s cutting out the image (diffusers got the same cut-out)")
    print(f"peak RSS MB: ours {our_rss:.0f}, diffusers {bare_rss:.0f}")
    print(f"mesh: {len(our_asset.mesh.vertices)} vertices, {len(our_asset.mesh.faces)} faces; identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
