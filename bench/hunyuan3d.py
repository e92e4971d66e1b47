"""Benchmark: Hunyuan3D-2mini per stage on real-size random weights (not a test).

Builds the released configuration of a variant (default ``turbo``: DiT 0.56 B with the guidance embedding,
VAE 0.21 B, DINOv2-giant 1.14 B) with random weights directly in the chosen dtype (meta device, then filled in
place: ~7.6 GB in float32, ~3.8 GB in bfloat16), shapes the VAE's output so a surface exists (as the tiny test
checkpoints do), and times one image (768 px RGBA) through the stages:

    preprocess | encode (518 px, 1370 DINOv2 tokens) | denoise (each step; CFG batch of 2 for ``mini``)
    vae_decode (latents -> key/value set) | grid (``--grid`` cells per side, coarse-to-fine or ``--dense``)
    marching_cubes

with the grid points decoded and the peak resident memory. A machine-speed reference is measured in the same
run, before and after (a 2048^2 matmul in float32 and bfloat16, GFLOP/s), so numbers from a shared, loaded
machine can be compared as ratios; ``uptime``'s load is printed too. The official code (hy3dgen, Tencent's
licence) is not run here: it is no dependency of this project, and its CPU path is the same float32 torch ops.

Usage::

    python bench/hunyuan3d.py --dtype bfloat16                   # turbo, 5 steps, grid 256, coarse-to-fine
    python bench/hunyuan3d.py --dtype float32 --steps 2
    python bench/hunyuan3d.py --dtype bfloat16 --variant mini --steps 2 --grid 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latent3d import bench_image, fill_random_  # noqa: E402 - after the path insert


def build(variant: str, dtype, seed: int = 0):
    import torch

    from methods.hunyuan3d.config import parse_config
    from methods.hunyuan3d.model import Hunyuan3D
    from tests.tiny_hunyuan3d import config_yaml

    config = parse_config(config_yaml(variant, real=True))
    with torch.device("meta"):
        model = Hunyuan3D(config)
    model = model.to_empty(device="cpu").to(dtype)
    fill_random_(model, seed)
    model.reset_buffers()
    shape_field_(model)
    return model.eval()


def shape_field_(model, inside: float = 0.2) -> None:
    """A smooth random field with ~``inside`` of the box inside (as tests/tiny_hunyuan3d.py does)."""
    import torch

    from methods.hunyuan3d import pipeline

    geo = model.vae.geo_decoder
    freqs = model.config.vae.num_freqs
    with torch.no_grad():
        decay = torch.tensor([0.5**k for k in range(freqs)] * 3 * 2, dtype=torch.float32)
        w = geo.query_proj.weight
        w[:, 3:] = (w[:, 3:].float() * decay).to(w.dtype)
        latents = torch.randn(1, model.config.vae.num_latents, model.config.vae.embed_dim)
        grid = pipeline.field_grid(pipeline.field_query(model, latents), 12, 0)
        head = geo.output_proj
        scale = 4.0 / max(float(grid.std()), 1e-6)
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        grid = pipeline.field_grid(pipeline.field_query(model, latents), 12, 0)
        head.bias.sub_(float(torch.quantile(grid.flatten(), 1.0 - inside)))


def matmul_gflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def time_stages(model, args) -> dict:
    import torch

    from methods import runtime
    from methods.hunyuan3d import pipeline, preprocess

    out: dict = {"steps": []}
    with runtime.PeakMemory() as peak:
        start = time.perf_counter()
        pixels, _, _ = preprocess.prepare(bench_image(), model.config.image_size, model.config.border_ratio)
        out["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        cond, uncond = pipeline.encode(model, pixels)
        out["encode"] = time.perf_counter() - start
        out["tokens"] = cond.shape[1]
        latents = pipeline.initial_latents(model, 0)
        start = time.perf_counter()
        for step in pipeline.denoise(model, cond, uncond, latents, args.steps, args.guidance):
            out["steps"].append(time.perf_counter() - start)
            latents = step.latents
            start = time.perf_counter()
        start = time.perf_counter()
        query = pipeline.field_query(model, latents)
        out["vae_decode"] = time.perf_counter() - start
        calls: list[int] = []

        def counted(points: torch.Tensor) -> torch.Tensor:
            calls.append(len(points))
            return query(points)

        start = time.perf_counter()
        grid = pipeline.field_grid(counted, args.grid, args.chunk_size, not args.dense)
        out["grid"] = time.perf_counter() - start
        out["grid_points"] = sum(calls)
        start = time.perf_counter()
        try:
            vertices, _ = pipeline.extract_mesh(grid)
            out["vertices"] = len(vertices)
        except Exception as err:  # noqa: BLE001 - a random field may have no surface
            out["vertices"] = f"none ({type(err).__name__})"
        out["marching_cubes"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak.peak_rss_mb
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="turbo", choices=("mini", "fast", "turbo"))
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps (turbo's released 5)")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--grid", type=int, default=256, help="cells per side")
    parser.add_argument("--dense", action="store_true", help="every grid point (the official vanilla decoder)")
    parser.add_argument("--chunk-size", type=int, default=16384)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    load_before = os.getloadavg()
    ref_before = {d: matmul_gflops(getattr(torch, d)) for d in ("float32", "bfloat16")}
    start = time.perf_counter()
    model = build(args.variant, dtype)
    build_s = time.perf_counter() - start
    with torch.inference_mode():
        out = time_stages(model, args)
    ref_after = {d: matmul_gflops(getattr(torch, d)) for d in ("float32", "bfloat16")}
    load_after = os.getloadavg()

    steps = out.pop("steps")
    total = sum(v for k, v in out.items() if k in ("preprocess", "encode", "vae_decode", "grid", "marching_cubes"))
    total += sum(steps)
    print(f"Hunyuan3D-2mini-{args.variant}, {args.dtype}, {torch.get_num_threads()} threads, random weights")
    print(f"load average before {load_before[0]:.1f} / after {load_after[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    for d in ("float32", "bfloat16"):
        print(f"reference 2048^2 matmul {d}: {ref_before[d]:.0f} GFLOP/s before, {ref_after[d]:.0f} after")
    print(f"build (random weights): {build_s:.1f} s\n")
    print("| stage | seconds |\n|---|---|")
    print(f"| preprocess | {out['preprocess']:.2f} |")
    print(f"| encode ({out['tokens']} tokens) | {out['encode']:.2f} |")
    for i, s in enumerate(steps):
        print(f"| denoise step {i + 1} | {s:.2f} |")
    print(f"| vae_decode | {out['vae_decode']:.2f} |")
    how = "dense" if args.dense else "coarse-to-fine"
    print(f"| grid {args.grid} ({how}, {out['grid_points']:,} points) | {out['grid']:.2f} |")
    print(f"| marching_cubes ({out['vertices']} vertices) | {out['marching_cubes']:.2f} |")
    print(f"| **image -> mesh** | **{total:.1f}** |")
    print(f"\npeak resident memory: {out['peak_rss_mb']:.0f} MB (weights included)")
    if args.json:
        data = {"args": vars(args) | {"json": str(args.json)}, "stages": out, "steps": steps, "total_s": total}
        data |= {"load": [load_before, load_after], "matmul_gflops": [ref_before, ref_after], "build_s": build_s}
        args.json.write_text(json.dumps(data, indent=1, default=str))


if __name__ == "__main__":
    main()
