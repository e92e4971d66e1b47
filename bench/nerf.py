"""Benchmark: the ``nerf`` engine on the NeRF Blender lego scene, test-split PSNR against training time.

Trains on ``transforms_train.json`` (100 views, 100x100 here) and at each checkpoint renders the
test split (``transforms_test.json``, white background, the NeRF protocol) with the clock stopped:
the times in the table are training time only. Prints wall and CPU seconds (the CPUs may be
shared: CPU seconds say how much work was done, wall seconds what a person waited), steps, PSNR,
and the peak memory; optionally extracts the mesh at the end.

Targets (issue 5): >= 25 dB within 300 s on a 2-core CPU; >= 30 dB within 60 s on a GPU.

Usage::

    python bench/nerf.py                               # CPU, 300 s, checkpoints 15..300 s, all 200 test views
    python bench/nerf.py --device cuda --budget 60 --batch 4096
    python bench/nerf.py --budget 60 --checkpoint-views 25 --mesh
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
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds (wall clock)")
    parser.add_argument("--checkpoints", default="15,30,60,120,180,240,300", help="seconds at which to evaluate")
    parser.add_argument("--checkpoint-views", type=int, default=25, help="test views at intermediate checkpoints")
    parser.add_argument("--final-views", type=int, default=0, help="test views at the end (0: all)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: the runtime's choice)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=0, help="rays per step (0: 256 on a CPU, 4096 on a GPU)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--encoding", default="planes", choices=("planes", "hash"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mesh", action="store_true", help="extract the mesh at the end (timed, with stats)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    # OpenMP threads that spin while waiting collapse throughput ~40x when another process holds a core
    # (measured here: 9 vs 402 steps in 10 s with 2 threads); passive waiting keeps 2 threads useful.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch

    from methods import runtime
    from methods.nerf.io import load_transforms
    from methods.nerf.train import FitConfig, SceneFitter, psnr

    torch.set_num_threads(args.threads)
    device = args.device or runtime.device()
    batch = args.batch or (4096 if device.startswith("cuda") else 256)
    checkpoints = sorted({float(c) for c in args.checkpoints.split(",") if float(c) <= args.budget} | {args.budget})
    scene = load_transforms(args.data)
    print(
        f"scene {Path(args.data).name}: {len(scene.train)} train / {len(scene.test)} test views at "
        f"{scene.width}x{scene.height}; device {device}, {args.threads} thread(s), batch {batch}, "
        f"encoding {args.encoding}, grid {args.resolution}; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    config = FitConfig(
        budget_seconds=args.budget,
        steps=10**9,
        batch_rays=batch,
        resolution=args.resolution,
        encoding=args.encoding,
        background="random",
        seed=args.seed,
    )
    rows = []
    with runtime.PeakMemory() as peak:
        fitter = SceneFitter(scene, config, device)

        def evaluate(n_views: int) -> tuple[float, int, float]:
            views = scene.test
            if n_views and n_views < len(views):
                views = views[np.unique(np.linspace(0, len(views) - 1, n_views).round().astype(int))]
            started = time.perf_counter()
            fitter.field.eval()
            values = [psnr(fitter.render(int(i)), fitter.ground_truth(int(i))) for i in views]
            fitter.field.train()
            return float(np.mean(values)), len(views), time.perf_counter() - started

        train_wall = train_cpu = 0.0
        step = 0
        for checkpoint in checkpoints:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            while train_wall + (time.perf_counter() - wall0) < checkpoint:
                progress = min(1.0, (train_wall + time.perf_counter() - wall0) / args.budget)
                stats = fitter.step(step, progress)
                step += 1
            train_wall += time.perf_counter() - wall0
            train_cpu += time.process_time() - cpu0
            fitter.update_occupancy()
            final = checkpoint == checkpoints[-1]
            value, n, eval_seconds = evaluate(args.final_views if final else args.checkpoint_views)
            row = {
                "train_wall_s": round(train_wall, 1),
                "train_cpu_s": round(train_cpu, 1),
                "steps": step,
                "test_psnr": round(value, 2),
                "test_views": n,
                "train_psnr": round(stats["psnr"], 2),
                "eval_s": round(eval_seconds, 1),
            }
            rows.append(row)
            print(
                f"  {row['train_wall_s']:7.1f} s wall  {row['train_cpu_s']:7.1f} s cpu  {step:6d} steps  "
                f"test PSNR {value:6.2f} dB ({n} views)  train PSNR {stats['psnr']:5.2f}  "
                f"[eval {eval_seconds:.1f} s, load {os.getloadavg()[0]:.1f}]",
                flush=True,
            )
        mesh_info = None
        if args.mesh:
            from methods.nerf.mesh import MeshOptions, extract_mesh

            started = time.perf_counter()
            cams = fitter.cameras.subset(scene.train)
            mesh = extract_mesh(
                fitter.field,
                fitter.occupancy.bbox.cpu().numpy().astype(float),
                MeshOptions(resolution=192),
                device,
                cameras=(cams.c2w, cams.K, cams.width, cams.height),
            )
            mesh_info = {
                "seconds": round(time.perf_counter() - started, 1),
                "vertices": len(mesh["vertices"]),
                "faces": len(mesh["faces"]),
                "components_removed": mesh["components_removed"],
                "hidden_faces_removed": mesh["hidden_faces_removed"],
            }
            print(f"  mesh: {mesh_info}")
    print(
        f"peak memory: {peak.peak_rss_mb:.0f} MB resident"
        + (f", {peak.peak_gpu_mb:.0f} MB on the GPU" if peak.peak_gpu_mb is not None else "")
    )
    result = {
        "scene": str(args.data),
        "device": device,
        "hardware": runtime.hardware(),
        "threads": args.threads,
        "batch": batch,
        "encoding": args.encoding,
        "resolution": args.resolution,
        "rows": rows,
        "peak_rss_mb": round(peak.peak_rss_mb, 1),
        "peak_gpu_mb": None if peak.peak_gpu_mb is None else round(peak.peak_gpu_mb, 1),
        "mesh": mesh_info,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
