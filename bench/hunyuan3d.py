"""Benchmark: Hunyuan3D-2mini per stage on real-size random weights (not a test).

Builds the released configuration of a variant (default ``turbo``: DiT 0.56 B with the guidance embedding,
VAE 0.21 B, DINOv2-giant 1.14 B) with random weights directly in the chosen dtype (meta device, then filled in
place: ~7.6 GB in float32, ~3.8 GB in bfloat16), shapes the VAE's output so a surface exists (as the tiny test
checkpoints do), and times one image (768 px RGBA) through the stages: preprocess | encode (518 px, 1370 DINOv2
tokens) | ``--timed-steps`` denoising steps (each costs the same; the run's ``--steps`` are extrapolated from
their median) | vae_decode (latents -> key/value set) | ``--grid-points`` random query points through the VAE's
geometry decoder | marching cubes on the grid.

The grid's cost is (points the decode evaluates) x (CPU time per point). Random weights give a noise-like field
whose coarse-to-fine decode says nothing about a real shape's, so the point count comes from the same
coarse-to-fine decode (``--grid`` cells, from 64^3) of an analytic shape (a body and a handle), and the time per
point from the real-size network.

The machine this was written on is shared by several jobs: wall seconds there measure the load, not the code.
Every stage therefore reports CPU seconds too (``--threads 1`` makes them the single-core work, free of
thread-pool spin-waiting; the total divided by the core count estimates an idle machine when matmuls dominate),
and a reference measured in the same run (a 2048^2 matmul in float32 and bfloat16, GFLOP/s by CPU time, before
and after) and ``uptime``'s load are printed. The official code (hy3dgen, Tencent's licence) is not run here: it
is no dependency of this project.

Usage::

    python bench/hunyuan3d.py --dtype bfloat16 --threads 1       # turbo, 5 steps, grid 256, coarse-to-fine
    python bench/hunyuan3d.py --dtype float32 --threads 1 --timed-steps 1
    python bench/hunyuan3d.py --dtype bfloat16 --variant mini --steps 30 --grid 128
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
    """GFLOP/s of an n^2 matmul by CPU time (so a loaded machine still gives the machine's speed)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.process_time()
        a @ b
        times.append(time.process_time() - start)
    return 2 * n**3 / statistics.median(times) / 1e9 * torch.get_num_threads()


class Stage:
    """Wall seconds and CPU seconds (all threads) of a block."""

    def __init__(self, table: dict, name: str):
        self.table, self.name = table, name

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.table[self.name] = (time.perf_counter() - self.wall, time.process_time() - self.cpu)


def analytic_query(points, slope: float = 8.0):
    """A smooth occupancy-like field (a body and a handle, logits ``slope`` per unit of distance): counts what a
    real shape refines (the refinement band is |logit| < 0.95, so a steeper field refines a thinner shell)."""
    import torch

    body = 0.55 - torch.linalg.norm((points - torch.tensor([0.0, -0.1, 0.0])) / torch.tensor([1.0, 1.3, 1.0]), dim=-1)
    ring = 0.12 - torch.sqrt((torch.linalg.norm(points[:, :2] - torch.tensor([0.6, 0.0]), dim=-1) - 0.3) ** 2
                             + points[:, 2] ** 2)  # fmt: skip
    return slope * torch.maximum(body, ring)


def time_stages(model, args) -> dict:
    """Each stage once (wall, CPU); the grid's network cost from ``--grid-points`` query points, its point count
    from the coarse-to-fine decode of an analytic shape on the same grid."""
    import torch

    from methods import runtime
    from methods.hunyuan3d import pipeline, preprocess
    from methods.latent3d import decode_points

    out: dict = {}
    with runtime.PeakMemory() as peak:
        with Stage(out, "preprocess"):
            pixels, _, _ = preprocess.prepare(bench_image(), model.config.image_size, model.config.border_ratio)
        with Stage(out, "encode"):
            cond, uncond = pipeline.encode(model, pixels)
        out["tokens"] = cond.shape[1]
        latents = pipeline.initial_latents(model, 0)
        flow = pipeline.denoise(model, cond, uncond, latents, args.steps, args.guidance)
        for i in range(min(args.timed_steps, args.steps)):
            with Stage(out, f"denoise step {i + 1}"):
                latents = next(flow).latents
        with Stage(out, "vae_decode"):
            query = pipeline.field_query(model, latents)
        points = torch.rand(args.grid_points, 3, generator=torch.Generator().manual_seed(0)) * 2.02 - 1.01
        with Stage(out, f"grid query ({args.grid_points:,} points)"):
            decode_points(query, points, args.chunk_size)
        out["grid_points_by_slope"] = {}
        for slope in args.slopes:
            calls: list[int] = []

            def counted(p, slope=slope, calls=calls):
                calls.append(len(p))
                return analytic_query(p, slope)

            grid = pipeline.field_grid(counted, args.grid, args.chunk_size, not args.dense)
            out["grid_points_by_slope"][slope] = sum(calls)
        out["grid_points"] = out["grid_points_by_slope"][args.slopes[0]]
        with Stage(out, "marching_cubes"):
            vertices, _ = pipeline.extract_mesh(grid)
        out["vertices"] = len(vertices)
    out["peak_rss_mb"] = peak.peak_rss_mb
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="turbo", choices=("mini", "fast", "turbo"))
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--steps", type=int, default=5, help="denoising steps of the run (turbo's released 5)")
    parser.add_argument("--timed-steps", type=int, default=2, help="steps actually run and timed (all cost the same)")
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--grid", type=int, default=256, help="cells per side")
    parser.add_argument("--dense", action="store_true", help="every grid point (the official vanilla decoder)")
    parser.add_argument("--grid-points", type=int, default=65536, help="query points timed through the VAE")
    parser.add_argument("--chunk-size", type=int, default=16384)
    parser.add_argument(
        "--slopes",
        type=lambda t: [float(x) for x in t.split(",")],
        default=[8.0, 32.0, 128.0],
        help="logit slopes of the analytic shape whose decode gives the grid's point count",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
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

    stages = {k: v for k, v in out.items() if isinstance(v, tuple)}
    step_cpu = [v[1] for k, v in stages.items() if k.startswith("denoise")]
    query_key = next(k for k in stages if k.startswith("grid query"))
    per_point_cpu = stages[query_key][1] / args.grid_points
    grid_cpu = per_point_cpu * out["grid_points"]
    estimate_cpu = (
        sum(v[1] for k, v in stages.items() if k in ("preprocess", "encode", "vae_decode", "marching_cubes"))
        + statistics.median(step_cpu) * args.steps
        + grid_cpu
    )
    print(f"Hunyuan3D-2mini-{args.variant}, {args.dtype}, {threads} threads, real-size random weights")
    print(f"load average before {load_before[0]:.1f} / after {load_after[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    for d in ("float32", "bfloat16"):
        print(f"reference 2048^2 matmul {d}: {ref_before[d]:.0f} GFLOP/s before, {ref_after[d]:.0f} after (CPU time)")
    print(f"build (random weights): {build_s:.1f} s wall\n")
    print("| stage | wall s | CPU s (all threads) |\n|---|---|---|")
    for name, (wall, cpu) in stages.items():
        label = f"{name} ({out['tokens']} tokens)" if name == "encode" else name
        label = f"{name} ({out['vertices']:,} vertices)" if name == "marching_cubes" else label
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
    how = "dense" if args.dense else "coarse-to-fine"
    for slope, count in out["grid_points_by_slope"].items():
        print(f"| grid {args.grid} ({how}, analytic shape, slope {slope:g}): {count:,} points x "
              f"{per_point_cpu * 1e6:.1f} us | | {count * per_point_cpu:.1f} (estimate) |")  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"| **image -> mesh, {args.steps} steps, slope {args.slopes[0]:g}** | | **{estimate_cpu:.1f}** CPU s "
          f"(~{estimate_cpu / cores:.1f} s on {cores} idle cores at this run's matmul speed) |")  # fmt: skip
    print(f"\npeak resident memory: {out['peak_rss_mb']:.0f} MB (weights included)")
    if args.json:
        data = {"args": {k: str(v) for k, v in vars(args).items()}, "stages": out, "estimate_cpu_s": estimate_cpu}
        data |= {"load": [load_before, load_after], "matmul_gflops": [ref_before, ref_after], "build_s": build_s}
        args.json.write_text(json.dumps(data, indent=1, default=str))


if __name__ == "__main__":
    main()
