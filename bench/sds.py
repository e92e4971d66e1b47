"""Benchmark: DreamFusion's optimisation step (SDS through full-size Stable Diffusion 1.5) at 64 and 128 px renders.

No weights are downloaded: the UNet, VAE and text encoder are built with random weights from the
configs of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (UNet2DConditionModel and AutoencoderKL
config values; the CLIP ViT-L/14 text tower), prepared exactly as ``methods.text_opt.sds`` loads
them (UNet and text encoder in float16 on CUDA, float32 VAE encoder, no decoder, frozen). Random
weights cost what real ones do: every step runs the same layers on the same shapes.

For each render size it times full steps of :class:`methods.text_opt.loop.FieldOptimizer` (render
64^3 field -> upsample to 512 px -> VAE encode -> UNet x2 (classifier-free guidance) -> SDS
backward through the VAE encoder into the field -> Adam) and, for the split, the same steps with a
trivial guidance (the field's share). Prints a table: iterations per second, seconds per
iteration, and peak GPU memory (CUDA) or peak resident memory (CPU).

Usage::

    python bench/sds.py                                # CUDA: 64 and 128 px, 3 warm-up + 20 timed steps
    python bench/sds.py --device cpu --sizes 64 --iters 1 --warmup 0
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: methods/ and tests/ are importable


class FieldOnly:
    """A guidance that costs nothing: the step's remaining time is the field's (render, backward, Adam)."""

    name = "field-only"

    def loss(self, batch, step):
        return ((batch.composite() - 0.5) ** 2).mean(), {}

    def close(self) -> None:
        pass


def build_parts(device: str):
    import torch

    from methods import runtime
    from methods.text_opt.sds import prepare_parts
    from tests.tiny_sd import SD15_TEXT_ENCODER, SD15_UNET, SD15_VAE, stable_diffusion_components

    started = time.perf_counter()
    parts = stable_diffusion_components(SD15_UNET, SD15_VAE, SD15_TEXT_ENCODER)
    prepared = prepare_parts(**parts, device=device, dtype=runtime.dtype(device), source="random SD 1.5")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return prepared, time.perf_counter() - started


def measure(optimiser, iters: int, warmup: int, device: str) -> dict[str, float]:
    """Seconds per step over ``iters`` steps after ``warmup``, and the peak memory over the timed steps."""
    import torch

    from methods import runtime

    for i in range(warmup):
        optimiser.step(i, 0.5)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with runtime.PeakMemory() as peak:
        started = time.perf_counter()
        for i in range(iters):
            stats = optimiser.step(warmup + i, 0.5)
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / max(iters, 1)
    memory = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak.peak_rss_mb
    return {"s_per_it": seconds, "it_per_s": 1.0 / seconds, "memory_mb": memory, "loss": stats["loss"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="render sizes in pixels")
    parser.add_argument("--iters", type=int, default=None, help="timed steps per size (default 20 on CUDA, 1 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3 on CUDA, 0 on CPU)")
    parser.add_argument("--grid", type=int, default=64, help="density grid resolution (the methods' default)")
    parser.add_argument("--no-split", action="store_true", help="skip the field-only steps")
    args = parser.parse_args(argv)

    import torch

    from methods import runtime
    from methods.text_opt.loop import FieldOptimizer, LoopConfig
    from methods.text_opt.sds import StableDiffusionGuidance

    device = args.device or runtime.device()
    cuda = device.startswith("cuda")
    iters = args.iters if args.iters is not None else (20 if cuda else 1)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 0)
    print(
        f"device {device} ({torch.cuda.get_device_name(0) if cuda else f'{torch.get_num_threads()} CPU thread(s)'}), "
        f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
        f"grid {args.grid}^3, {warmup} warm-up + {iters} timed step(s)"
    )
    parts, build_seconds = build_parts(device)
    params = sum(p.numel() for m in (parts.unet, parts.vae, parts.text_encoder) for p in m.parameters())
    print(
        f"built random SD 1.5 components ({params / 1e6:.0f} M parameters, UNet {parts.unet_dtype}, "
        f"VAE encoder {parts.vae_dtype}, VAE input {parts.image_size} px) in {build_seconds:.1f} s"
    )
    rows = []
    for size in args.sizes:
        config = LoopConfig(render_size=size, grid_resolution=args.grid, albedo_fraction=0.0, seed=0)
        guidance = StableDiffusionGuidance(parts, "a DSLR photo of a hamburger", seed=0)
        optimiser = FieldOptimizer(config, guidance, device)
        full = measure(optimiser, iters, warmup, device)
        optimiser.close()
        field = None
        if not args.no_split:
            optimiser = FieldOptimizer(config, FieldOnly(), device)
            field = measure(optimiser, iters, warmup, device)
            optimiser.close()
        rows.append((size, full, field))
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    memory = "peak GPU MB" if cuda else "peak RSS MB"
    print()
    print(f"| render | it/s | s/it | {memory} | field-only s/it | SDS share | loss |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size, full, field in rows:
        field_s = f"{field['s_per_it']:.3f}" if field else "-"
        share = f"{1 - field['s_per_it'] / full['s_per_it']:.0%}" if field else "-"
        print(
            f"| {size} px | {full['it_per_s']:.3f} | {full['s_per_it']:.3f} | {full['memory_mb']:.0f} | "
            f"{field_s} | {share} | {full['loss']:.4g} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
