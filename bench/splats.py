"""Benchmark: ``gaussian-splatting`` beside ``nerf`` on the scenes of issue 25, held-out PSNR against training time.

Scenes (each method gets the same frames, poses and held-out split, built as the app builds them):

- ``turntable-sfm``: the bundled example's 24 views as the Video tab sends them (no poses: pycolmap
  SfM; the splats start from the SfM points), 60 s;
- ``turntable-transforms``: the same folder through its transforms.json (known poses; the splats start
  from points triangulated with pycolmap from those poses), 60 s;
- ``apple``: ../shared/data/video_apple_cotracker (a real hand-held video, SfM), 120 s;
- ``lego``: ../shared/data/nerf_synthetic_lego_100 (known poses, alpha masks: visual-hull start, the
  official test views on white), checkpoints 60 and 300 s.

Both methods run with the settings the app uses by default (``default_settings("video")``, only the
budget changed) and the fitters the pipelines build (:class:`methods.splats.pipeline.SplatRun`,
:class:`methods.nerf.pipeline.NeRFRun`). At each checkpoint the clock stops and the held-out views are
scored (PSNR over all of them); the splats also report steps/s over their first and last 100 steps.
Training time is wall time on a CPU shared with other jobs: the load average is printed with every row
and the methods alternate within a scene, so the ratio between them is the figure to read.
Not a test: run it by hand.

Usage::

    python bench/splats.py                                   # every scene, both methods
    python bench/splats.py --scenes lego --budget-scale 0.2  # quicker, shorter budgets
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
SHARED = ROOT.parent / "shared" / "data"
SCENES = {  # name: (checkpoints in seconds, the goal in words)
    "turntable-sfm": ((15, 60), "splats within 1 dB of nerf at 60 s"),
    "turntable-transforms": ((15, 60), "splats within 1 dB of nerf at 60 s"),
    "apple": ((60, 120), "splats >= nerf at 120 s"),
    "lego": ((60, 300), ">= 31 dB at 300 s; within 1 dB of nerf at 60 s"),
}


def load(name: str, settings):
    """The scene as the pipelines read it (poses from SfM where none are given)."""
    from PIL import Image

    from methods.base import Inputs
    from methods.nerf.scene_run import read_scene

    folder = ROOT / "assets" / "examples" / "turntable"
    if name == "turntable-sfm":
        frames = [Image.open(p).convert("RGB") for p in sorted(folder.glob("view_*.jpg"))]
        inputs = Inputs(modality="video", frames=frames, name="turntable")
    elif name == "turntable-transforms":
        inputs = Inputs(modality="video", video_path=str(folder), name="turntable")
    elif name == "apple":
        inputs = Inputs(modality="video", video_path=str(SHARED / "video_apple_cotracker" / "apple.mp4"), name="apple")
    else:
        inputs = Inputs(modality="video", video_path=str(SHARED / "nerf_synthetic_lego_100"), name="lego")
    gen = read_scene(inputs, settings, {})
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def fitter_for(method_id: str, scene, settings, device: str):
    from methods.nerf.pipeline import NeRFRun
    from methods.splats.pipeline import SplatRun

    run = SplatRun() if method_id == "gaussian-splatting" else NeRFRun()
    gen = run.prepare(scene, settings, device, {})
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def bench(method_id: str, scene, budget: float, checkpoints: list[float], device: str) -> dict:
    import methods
    from methods.nerf.train import psnr

    settings = methods.get(method_id).default_settings("video")
    settings.budget_seconds = budget
    fitter = fitter_for(method_id, scene, settings, device)
    field = getattr(fitter, "field", None)
    rows = []
    step, train_wall = 0, 0.0
    for checkpoint in checkpoints:
        wall0 = time.perf_counter()
        while train_wall + (time.perf_counter() - wall0) < checkpoint:
            fitter.step(step, min(1.0, (train_wall + time.perf_counter() - wall0) / budget))
            step += 1
        train_wall += time.perf_counter() - wall0
        if field is not None:  # nerf renders in eval mode with a fresh occupancy grid
            fitter.update_occupancy()
            field.eval()
        held = fitter.scene.test
        value = sum(psnr(fitter.render(int(i)), fitter.ground_truth(int(i))) for i in held) / len(held)
        if field is not None:
            field.train()
        row = {"at_s": checkpoint, "steps": step, "psnr": round(value, 2), "load": round(os.getloadavg()[0], 1)}
        if hasattr(fitter, "steps_per_second"):
            row.update(
                splats=len(fitter),
                steps_per_s_first_100=round(fitter.steps_per_second(first=True), 2),
                steps_per_s_last_100=round(fitter.steps_per_second(first=False), 2),
                init=fitter.init_source,
            )
        rows.append(row)
        print(f"  {method_id}: {row}", flush=True)
    fitter.close()
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", default=",".join(SCENES), help="comma-separated: " + ", ".join(SCENES))
    parser.add_argument("--methods", default="gaussian-splatting,nerf")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every checkpoint (quick runs)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads collapse on a shared CPU
    import torch

    import methods
    import methods.nerf.method  # noqa: F401  (registers the methods)
    import methods.splats.method  # noqa: F401
    from methods import runtime

    torch.set_num_threads(args.threads)
    device = runtime.device()
    print(f"device {device}, {args.threads} thread(s), {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    results: dict = {}
    for name in [s.strip() for s in args.scenes.split(",") if s.strip()]:
        marks, goal = SCENES[name]
        checkpoints = [m * args.budget_scale for m in marks]
        started = time.perf_counter()
        scene = load(name, methods.get("nerf").default_settings("video"))
        print(
            f"{name}: {len(scene.train)} train / {len(scene.test)} held-out views at {scene.width}x{scene.height} "
            f"({scene.source}, read and posed in {time.perf_counter() - started:.0f} s); goal: {goal}",
            flush=True,
        )
        results[name] = {m: bench(m, scene, checkpoints[-1], checkpoints, device) for m in args.methods.split(",") if m}
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"hardware": runtime.hardware(), "results": results}, indent=2))
    return 0


def table(results: dict) -> str:
    lines = [
        "| scene | method | PSNR (dB) at checkpoints | steps | splats | steps/s first / last 100 | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for scene, per_method in results.items():
        for method_id, r in per_method.items():
            rows = r["rows"]
            psnrs = ", ".join(f"{row['psnr']:.2f} @{row['at_s']:g} s" for row in rows)
            last = rows[-1]
            rate = (
                f"{last['steps_per_s_first_100']:.1f} / {last['steps_per_s_last_100']:.1f}"
                if "steps_per_s_first_100" in last
                else "-"
            )
            lines.append(
                f"| {scene} | {method_id} | {psnrs} | {last['steps']} | {last.get('splats', '-')} | {rate} | "
                f"{', '.join(str(row['load']) for row in rows)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
