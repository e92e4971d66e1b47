"""Benchmark: ``gaussian-splatting`` beside ``nerf`` on the NeRF Blender lego scene, test PSNR against training time.

Trains both methods on ``transforms_train.json`` (100 views, 100x100 in ../shared) with the same
budget and, at each checkpoint, renders the official test split (white background) with the clock
stopped: the times are training time only. Per method: steps, test PSNR at each checkpoint, the
splat count, peak resident memory, and the render time of the trained result at 100x100 and 400x400.
The CPUs may be shared: the load average is printed with every row (numbers are then pessimistic).

Issue 18's targets (2-core CPU, 100x100): >= 29.5 dB at 300 s (floor), ahead of nerf at 300 s and
within 1 dB of it at 60 s (goal). Not a test: run it by hand.

Usage::

    python bench/splats.py                                  # both methods, checkpoints 15,60,120,300 s, all test views
    python bench/splats.py --methods splats --budget 60 --final-views 50
    python bench/splats.py --device cuda --backend gsplat --data /path/to/nerf_synthetic/lego   # a GPU, 800x800
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nerf_synthetic_lego_100"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a Blender scene folder or transforms.json")
    parser.add_argument("--methods", default="splats,nerf", help="comma-separated: splats, nerf")
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds (wall clock) per method")
    parser.add_argument("--checkpoints", default="15,60,120,300", help="seconds at which to evaluate")
    parser.add_argument("--checkpoint-views", type=int, default=50, help="test views at intermediate checkpoints")
    parser.add_argument("--final-views", type=int, default=0, help="test views at the end (0: all)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: the runtime's choice)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "gsplat"))
    parser.add_argument("--sh-degree", type=int, default=3)
    parser.add_argument("--init-points", type=int, default=3000)
    parser.add_argument("--lr", default="auto", choices=("auto", "paper", "short"), help="auto: short on a CPU")
    parser.add_argument("--views-per-step", type=int, default=1)
    parser.add_argument("--max-gaussians", type=int, default=200000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse on a shared CPU
    import torch

    from methods import runtime
    from methods.nerf.io import load_transforms

    torch.set_num_threads(args.threads)
    device = args.device or runtime.device()
    checkpoints = sorted({float(c) for c in args.checkpoints.split(",") if float(c) <= args.budget} | {args.budget})
    scene = load_transforms(args.data)
    print(
        f"scene {Path(args.data).name}: {len(scene.train)} train / {len(scene.test)} test views at "
        f"{scene.width}x{scene.height}; device {device}, {args.threads} thread(s); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    results = {}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if name not in ("splats", "nerf"):
            raise SystemExit(f"unknown method {name!r}: splats or nerf")
        print(f"{name}:", flush=True)
        results[name] = bench_method(name, scene, checkpoints, device, args)
    summary = {
        "scene": str(args.data),
        "device": device,
        "hardware": runtime.hardware(),
        "threads": args.threads,
        "budget_s": args.budget,
        "methods": results,
    }
    print(table(results, checkpoints))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def bench_method(name: str, scene, checkpoints: list[float], device: str, args) -> dict:
    import numpy as np

    from methods import runtime
    from methods.nerf.train import psnr

    rows = []
    with runtime.PeakMemory() as peak:
        fitter, step_fn, finish, render_at = make(name, scene, device, args)

        def evaluate(n_views: int) -> tuple[float, int]:
            views = scene.test
            if n_views and n_views < len(views):
                views = views[np.unique(np.linspace(0, len(views) - 1, n_views).round().astype(int))]
            field = getattr(fitter, "field", None)  # nerf: its field renders in eval mode, trains in train mode
            if field is not None:
                fitter.update_occupancy()
                field.eval()
            value = float(np.mean([psnr(fitter.render(int(i)), fitter.ground_truth(int(i))) for i in views]))
            if field is not None:
                field.train()
            return value, len(views)

        train_wall = train_cpu = 0.0
        step = 0
        stats: dict = {}
        for checkpoint in checkpoints:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            while train_wall + (time.perf_counter() - wall0) < checkpoint:
                progress = min(1.0, (train_wall + time.perf_counter() - wall0) / args.budget)
                stats = step_fn(step, progress)
                step += 1
            train_wall += time.perf_counter() - wall0
            train_cpu += time.process_time() - cpu0
            final = checkpoint == checkpoints[-1]
            if final:
                finish()
            started = time.perf_counter()
            value, n = evaluate(args.final_views if final else args.checkpoint_views)
            row = {
                "checkpoint_s": checkpoint,
                "train_wall_s": round(train_wall, 1),
                "train_cpu_s": round(train_cpu, 1),
                "steps": step,
                "test_psnr": round(value, 2),
                "test_views": n,
                "gaussians": int(stats.get("gaussians", 0)) or None,
                "eval_s": round(time.perf_counter() - started, 1),
                "load": round(os.getloadavg()[0], 1),
            }
            rows.append(row)
            print(f"  {row}", flush=True)
        render_ms = {side: render_at(side) for side in (100, 400)}
    out = {
        "rows": rows,
        "peak_rss_mb": round(peak.peak_rss_mb, 1),
        "peak_gpu_mb": None if peak.peak_gpu_mb is None else round(peak.peak_gpu_mb, 1),
        "render_ms": render_ms,
    }
    print(f"  render ms {render_ms}, peak {out['peak_rss_mb']} MB", flush=True)
    return out


def make(name: str, scene, device: str, args):
    """(fitter, step(step, progress), finish(), render_ms(side)) for one method."""
    import numpy as np
    import torch

    if name == "splats":
        from methods.splats.raster import rasterize
        from methods.splats.train import SplatConfig, SplatFitter

        config = SplatConfig(
            budget_seconds=args.budget,
            steps=10**9,
            sh_degree=args.sh_degree,
            init_points=args.init_points,
            views_per_step=args.views_per_step,
            max_gaussians=args.max_gaussians,
            backend=args.backend,
            seed=args.seed,
            lr_preset=args.lr if args.lr != "auto" else ("paper" if device.startswith("cuda") else "short"),
        )
        fitter = SplatFitter(scene, config, device)

        @torch.no_grad()
        def render_ms(side: int) -> float:
            p = fitter.params
            sh = torch.cat([p["sh0"], p["shrest"][:, : (fitter.active_degree + 1) ** 2 - 1]], 1)
            factor = side / scene.width
            K = fitter.Ks[:1].clone()
            K[:, :2] *= factor
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                rasterize(p["means"], p["log_scales"], p["quats"], p["opacity_logits"], sh, fitter.viewmats[:1], K,
                          side, side, fitter.eval_background(), fitter.active_degree)  # fmt: skip
                times.append(time.perf_counter() - t0)
            return round(1000 * min(times), 1)

        return fitter, fitter.step, fitter.final_prune, render_ms

    from methods.nerf.cameras import RayTable
    from methods.nerf.render import render_view
    from methods.nerf.train import FitConfig, SceneFitter

    batch = 4096 if device.startswith("cuda") else 256
    config = FitConfig(budget_seconds=args.budget, steps=10**9, batch_rays=batch, background="random", seed=args.seed)
    fitter = SceneFitter(scene, config, device)

    def finish() -> None:
        fitter.update_occupancy()
        fitter.field.eval()

    def render_ms(side: int) -> float:
        cams = fitter.cameras.subset(np.array([int(scene.test[0])])).scaled(side / scene.width, side, side)
        rays = RayTable(cams, device)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            render_view(fitter.field, fitter.occupancy, rays, 0, fitter.eval_background(), fitter.render_options())
            times.append(time.perf_counter() - t0)
        return round(1000 * min(times), 1)

    return fitter, fitter.step, finish, render_ms


def table(results: dict, checkpoints: list[float]) -> str:
    head = (
        "| method | "
        + " | ".join(f"PSNR @{c:g} s" for c in checkpoints)
        + " | steps | splats | peak MB | render 100 / 400 px (ms) |"
    )
    lines = [head, "|" + "---|" * (len(checkpoints) + 5)]
    for name, r in results.items():
        psnrs = " | ".join(f"{row['test_psnr']:.2f}" for row in r["rows"])
        last = r["rows"][-1]
        lines.append(
            f"| {name} | {psnrs} | {last['steps']} | {last['gaussians'] or '-'} | {r['peak_rss_mb']:.0f} | "
            f"{r['render_ms'][100]:.0f} / {r['render_ms'][400]:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
