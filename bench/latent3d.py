"""Benchmark: the 3D-latent flow models per stage on real-size random weights (not a test).

For each model (``--model``; TripoSG here, others register a builder in ``MODELS``) it builds the released
configuration with random weights directly in the chosen dtype (``--dtype float32|bfloat16``; meta device, then
filled in place, so float32 TripoSG needs ~8 GB and bfloat16 ~4 GB), shapes the VAE's output so a surface
exists (as the tiny test checkpoints do), and times one image through the stages:

    preprocess | encode (DINOv2) | denoise (per step, CFG batch of 2; ``--steps`` of them, median)
    vae_decode (latents -> kv set) | grid (field on ``--grid`` cells per side, dense or coarse-to-fine)
    marching_cubes

with the points decoded per second and the peak resident memory. The full-run estimate multiplies the
per-step median by the released step count and the grid throughput by the points of a 128 / 256 grid.

With ``--official DIR`` (a checkout of VAST-AI-Research/TripoSG outside this repository; it needs ``einops``,
``jaxtyping``, ``omegaconf`` and ``typeguard``, and the ``diso`` stand-in of the parity fixtures,
``--official-shims``) the official modules are built from the same configs and given the SAME tensors
(``load_state_dict(assign=True)``: no second copy), and encode, one denoising step and the VAE decode of the
same points are timed alternately with ours, ``--repeats`` times each; the table gives medians and ratios.

Usage::

    python bench/latent3d.py --dtype bfloat16
    python bench/latent3d.py --dtype float32 --steps 1 --grid 32
    python bench/latent3d.py --dtype bfloat16 --official /tmp/TripoSG --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BENCH_IMAGE = 768  # px, the side of the RGBA test image


# ----------------------------------------------------------------------------- real-size random weights


def fill_random_(module, seed: int) -> None:
    """Random values in place, in each tensor's dtype: N / sqrt(fan_in) for matrices, norms ~1, biases small."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            x = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("lambda1"):
                x = 0.1 + 0.02 * x
            elif name.endswith(("cls_token", "mask_token", "position_embeddings")):
                x = 0.5 * x
            elif p.ndim == 1 and name.endswith("weight"):
                x = 1.0 + 0.2 * x
            elif p.ndim == 1:
                x = 0.1 * x
            else:
                x = x / math.sqrt(max(1, math.prod(p.shape[1:])))
            p.copy_(x.to(p.dtype))
            del x


def build_triposg(dtype, seed: int = 0):
    import torch

    from methods.latent3d import DinoConditioner
    from methods.triposg import checkpoints
    from methods.triposg.checkpoints import TripoSG
    from methods.triposg.model import TripoSGDiT, TripoSGVAE
    from tests.tiny_triposg import REAL_DINO, REAL_DIT, REAL_PROCESSOR, REAL_VAE, write_configs

    folder = Path(tempfile.mkdtemp(prefix="triposg-real-"))
    write_configs(folder, REAL_DINO, REAL_PROCESSOR, REAL_DIT, REAL_VAE)
    config = checkpoints.load_config(folder)
    with torch.device("meta"):
        nets = DinoConditioner(config.dino), TripoSGDiT(config.dit), TripoSGVAE(config.vae)
    built = []
    for i, net in enumerate(nets):
        net = net.to_empty(device="cpu").to(dtype)
        fill_random_(net, seed + i)
        built.append(net.eval())
    dino, dit, vae = built
    vae.reset_buffers()
    dino.model.embeddings.position_embeddings.data = dino.model.embeddings.position_embeddings.data.to(dtype)
    model = TripoSG(config, dino, dit, vae, "cpu", dtype)
    shape_field_(model)
    return model


def shape_field_(model, inside: float = 0.2) -> None:
    """Make the random field smooth and put ~``inside`` of the box inside (as tests/tiny_triposg.py does)."""
    import torch

    from methods.triposg import pipeline

    vae = model.vae
    with torch.no_grad():
        decay = torch.tensor([0.5**k for k in range(vae.config.embed_frequency)] * 6, dtype=torch.float32)
        w = vae.decoder.proj_query.weight
        w[:, 3:] = (w[:, 3:].float() * decay).to(w.dtype)
        latents = torch.randn(1, 256, model.config.dit.in_channels, generator=torch.Generator().manual_seed(0))
        query = pipeline.field_query(model, latents.to(model.dtype))
        grid = pipeline.field_grid(query, 12, 0)
        head = vae.decoder.proj_out
        scale = 4.0 / max(float(grid.std()), 1e-6)
        head.weight.mul_(scale)
        head.bias.mul_(scale)
        grid = pipeline.field_grid(pipeline.field_query(model, latents.to(model.dtype)), 12, 0)
        head.bias.add_(float(torch.quantile(grid.flatten(), 1.0 - inside)))


# ----------------------------------------------------------------------------- our stages


def bench_image():
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:BENCH_IMAGE, :BENCH_IMAGE]
    rgba = np.zeros((BENCH_IMAGE, BENCH_IMAGE, 4), np.uint8)
    disc = (yy - 380) ** 2 + (xx - 400) ** 2 < 250**2
    rgba[disc] = (200, 120, 60, 255)
    rgba[300:420, 330:470] = (40, 60, 160, 255)
    return Image.fromarray(rgba, "RGBA")


def time_triposg(model, args) -> dict:
    from methods import runtime
    from methods.triposg import pipeline, preprocess

    out: dict = {"steps": []}
    with runtime.PeakMemory() as peak:
        start = time.perf_counter()
        prepared, _ = preprocess.prepare(bench_image())
        out["preprocess"] = time.perf_counter() - start
        start = time.perf_counter()
        cond, uncond = pipeline.encode(model, prepared)
        out["encode"] = time.perf_counter() - start
        latents = pipeline.initial_latents(model, 0, args.tokens)
        start = time.perf_counter()
        for step in pipeline.denoise(model, cond, uncond, latents, args.steps, args.guidance):
            out["steps"].append(time.perf_counter() - start)
            latents = step.latents
            start = time.perf_counter()
        start = time.perf_counter()
        query = pipeline.field_query(model, latents)
        out["vae_decode"] = time.perf_counter() - start
        calls: list[int] = []

        def counted(points):
            calls.append(len(points))
            return query(points)

        start = time.perf_counter()
        grid = pipeline.field_grid(counted, args.grid, args.chunk_size, args.hierarchical)
        out["grid"] = time.perf_counter() - start
        out["grid_points"] = sum(calls)
        # random weights: shift the field so a fifth of the box is inside, and time marching cubes at 128 too
        import torch

        grid = grid - torch.quantile(grid.flatten()[:: max(1, grid.numel() // 2**20)], 0.8)
        for res in sorted({args.grid, 128}):
            sized = grid
            if res != args.grid:
                sized = torch.nn.functional.interpolate(grid[None, None], size=(res + 1,) * 3, mode="trilinear")[0, 0]
            start = time.perf_counter()
            vertices, _ = pipeline.extract_mesh(sized)
            out[f"marching_cubes_{res}"] = time.perf_counter() - start
            out[f"vertices_{res}"] = len(vertices)
        out["marching_cubes"] = out[f"marching_cubes_{args.grid}"]
    out["peak_rss_mb"] = peak.peak_rss_mb
    return out


# ----------------------------------------------------------------------------- the official code, same tensors


def official_triposg(src: Path, shims: Path, ours):
    import torch

    sys.path[:0] = [str(shims), str(src)]
    from triposg.models.autoencoders import TripoSGVAEModel
    from triposg.models.transformers import TripoSGDiTModel

    from tests.tiny_triposg import REAL_DIT, REAL_VAE

    def strip(cfg):
        return {k: v for k, v in cfg.items() if not k.startswith("_")}

    with torch.device("meta"):
        dit = TripoSGDiTModel(**strip(REAL_DIT))
        vae = TripoSGVAEModel(**strip(REAL_VAE))
    dit.load_state_dict(ours.dit.state_dict(), strict=True, assign=True)
    vae.load_state_dict(ours.vae.state_dict(), strict=True, assign=True)
    vae.embedder.frequencies = ours.vae.embedder.frequencies.to(ours.dtype)  # as pipe.to(dtype) casts buffers
    return dit.eval(), vae.eval()


def compare_official(official, ours, args) -> list[tuple[str, float, float]]:
    import torch
    from transformers import BitImageProcessor

    from methods.latent3d import guided
    from methods.triposg import pipeline, preprocess

    dit_o, vae_o = official
    prepared, _ = preprocess.prepare(bench_image())
    cfg = ours.config.image
    processor = BitImageProcessor(size={"shortest_edge": cfg.shortest_edge},
                                  crop_size={"height": cfg.crop[0], "width": cfg.crop[1]})  # fmt: skip
    cond, uncond = pipeline.encode(ours, prepared)
    latents = pipeline.initial_latents(ours, 0, args.tokens)
    t = torch.tensor([1000.0])
    points = torch.rand(args.points, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1

    @torch.no_grad()
    def official_encode():
        pixels = processor(prepared, return_tensors="pt").pixel_values.to(ours.dtype)
        return ours.dino.model(pixels).last_hidden_state  # the official pipeline calls the same Dinov2Model

    def ours_encode():
        return pipeline.encode(ours, prepared)

    @torch.no_grad()
    def official_step():
        x = torch.cat([latents, latents])
        v = dit_o(x, t.expand(2), encoder_hidden_states=torch.cat([uncond, cond]), return_dict=False)[0]
        return latents + (1.0 - 0.98) * guided(v, args.guidance, "uncond_first")

    def ours_step():
        return next(iter(pipeline.denoise(ours, cond, uncond, latents, 50, args.guidance)))

    @torch.no_grad()
    def official_vae():
        return vae_o.decode(latents, sampled_points=points[None], num_chunks=args.chunk_size).sample

    def ours_vae():
        from methods.latent3d import decode_points

        return decode_points(pipeline.field_query(ours, latents), points, args.chunk_size)

    rows = []
    stages = {"encode": ("encode", official_encode, ours_encode), "step": ("denoise step", official_step, ours_step),
              "vae": (f"vae decode {args.points} pts", official_vae, ours_vae)}  # fmt: skip
    for key in args.official_stages.split(","):
        name, off, mine = stages[key]
        t_off, t_ours = [], []
        for _ in range(args.repeats):
            for fn, store in ((off, t_off), (mine, t_ours)):
                start = time.perf_counter()
                fn()
                store.append(time.perf_counter() - start)
        rows.append((name, statistics.median(t_off), statistics.median(t_ours)))
        print(f"  {name}: official {rows[-1][1]:.2f} s, ours {rows[-1][2]:.2f} s", flush=True)
    return rows


def matmul_gflops(dtype, size: int = 2048, repeats: int = 3) -> float:
    """The machine's 2048^2 matmul throughput in ``dtype`` right now (the reference for this run's numbers)."""
    import torch

    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def triposg_flops(model, tokens: int) -> dict[str, float]:
    """Multiply-adds x 2 of one guided denoising step (batch 2) and of one grid point (the VAE's query path)."""
    dit, vae = model.config.dit, model.config.vae
    w, layers, ctx = dit.width, dit.num_layers, 257
    n = tokens + 1
    params = sum(p.numel() for p in model.dit.parameters())
    step = 2 * 2 * params * n + 2 * layers * (4 * n * n * w + 4 * n * ctx * w)
    wd = vae.width_decoder
    point = 2 * (51 * wd + 2 * wd * wd + 2 * tokens * wd + 8 * wd * wd + wd)
    return {"step": float(step), "point": float(point)}


MODELS: dict[str, Callable] = {"triposg": build_triposg}
TIMERS: dict[str, Callable] = {"triposg": time_triposg}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="triposg", choices=sorted(MODELS))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps timed (the per-step median is used)")
    parser.add_argument("--guidance", type=float, default=7.0)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--grid", type=int, default=32, help="cells per side of the timed grid")
    parser.add_argument("--hierarchical", action="store_true", help="coarse-to-fine grid (needs grid >= 128)")
    parser.add_argument("--chunk-size", type=int, default=32768)
    parser.add_argument("--official", type=Path, help="a checkout of VAST-AI-Research/TripoSG (outside the repo)")
    parser.add_argument(
        "--official-shims", type=Path, default=ROOT.parent / "shared" / "fixtures" / "triposg" / "shims"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--official-stages", default="encode,step,vae", help="which stages to compare")
    parser.add_argument("--points", type=int, default=32768, help="query points of the official VAE comparison")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    model = MODELS[args.model](dtype)
    build_s = time.perf_counter() - start
    load = os.getloadavg()
    print(f"{args.model} {args.dtype}, {torch.get_num_threads()} threads, built in {build_s:.1f} s; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")  # fmt: skip
    reference = matmul_gflops(dtype)
    print(f"reference: 2048^2 matmul in {args.dtype} runs at {reference:,.0f} GFLOP/s now")
    r = TIMERS[args.model](model, args)
    r["matmul_gflops"] = reference
    flops = triposg_flops(model, args.tokens)
    step = statistics.median(r["steps"])
    per_point = r["grid"] / max(1, r["grid_points"])
    print(f"{'stage':<16} {'seconds':>10}")
    for stage in ("preprocess", "encode"):
        print(f"{stage:<16} {r[stage]:>10.2f}")
    achieved = flops["step"] / step / 1e9
    print(f"{'denoise / step':<16} {step:>10.2f}   (steps: {', '.join(f'{s:.2f}' for s in r['steps'])}; "
          f"{achieved:,.0f} GFLOP/s = {achieved / reference:.2f} x the matmul)")  # fmt: skip
    print(f"{'vae_decode':<16} {r['vae_decode']:>10.2f}")
    how = "coarse-to-fine" if args.hierarchical else "dense"
    print(f"{'grid':<16} {r['grid']:>10.2f}   ({args.grid}^3 {how}, {r['grid_points']} points, "
          f"{1 / per_point:,.0f} points/s; {flops['point'] / per_point / 1e9:,.0f} GFLOP/s)")  # fmt: skip
    print(f"{'marching_cubes':<16} {r['marching_cubes']:>10.2f}   ({r[f'vertices_{args.grid}']} vertices; at 128: "
          f"{r['marching_cubes_128']:.2f} s, {r['vertices_128']} vertices)")  # fmt: skip
    print(f"peak RSS {r['peak_rss_mb']:.0f} MB")
    quiet = {"float32": 170.0, "bfloat16": 2000.0}[args.dtype]  # this project's 2-core CPU when idle (COMMON)
    real = triposg_flops(model, 2048)  # the released size / the timed one (--tokens)
    quiet_step = step * real["step"] / flops["step"] * reference / quiet
    quiet_point = per_point * real["point"] / flops["point"] * reference / quiet
    print(f"scaled to a quiet machine (matmul {quiet:,.0f} GFLOP/s, the efficiencies above) at the released size "
          f"(2048 tokens): a step {quiet_step:,.1f} s, a grid point {quiet_point * 1e6:,.1f} us")  # fmt: skip
    for res in (128, 256):
        grid_s = (res + 1) ** 3 * quiet_point
        print(f"  50 steps {50 * quiet_step:,.0f} s + dense grid {res}: {grid_s:,.0f} s "
              "(coarse-to-fine decodes a fraction of its points)")  # fmt: skip
    r["quiet_step_s"], r["quiet_point_us"] = quiet_step, quiet_point * 1e6
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "ours": r, "load": load}
    if args.official:
        print("\nofficial vs ours (alternating):", flush=True)
        rows = compare_official(official_triposg(args.official, args.official_shims, model), model, args)
        print(f"\nofficial vs ours, same tensors, medians of {args.repeats} alternating runs")
        print(f"{'stage':<28} {'official s':>11} {'ours s':>8} {'ours/official':>14}")
        for name, off, mine in rows:
            print(f"{name:<28} {off:>11.2f} {mine:>8.2f} {mine / off:>14.2f}")
        result["official"] = rows
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
