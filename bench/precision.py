"""Benchmark: float32 against bfloat16 per stage, on real-size random weights, in the same run (not a test).

Each stage builds its network at the released size with random weights (the configs the other benches
use), keeps a float32 and a bfloat16 copy of the same weights, and runs them alternately ``--repeats``
times on the same input. Per stage it prints the median seconds of each, the ratio, the peak resident
memory the call added on top of the weights (and the weights' size), and how far the bfloat16 output is
from the float32 one: ``|bf16 - fp32| / |fp32|`` (Frobenius) of the network output, and for TripoSR's
meshes the Chamfer-L1 (mean of both directions, in the model's units and as a fraction of the float32
mesh's bounding-box diagonal) and the volume IoU between the float32 and bfloat16 meshes of one image.

Stages (``--stages``, default all):

    triposr_encode    TripoSR ViT-B/16 at 512 px + 16-layer backbone + upsampler (one image)
    triposr_mesh      TripoSR image -> mesh at ``--resolution`` (preprocess, encode, density grid, marching
                      cubes, vertex colours); the decoder and grid float32 in both
    triposr_decoder   the density grid alone with the decoder MLP in bfloat16 too, on the same float32 planes
    shap_e_prior      Shap-E's 24-layer prior, one denoiser pass at batch 2 (classifier-free guidance)
    point_e_base      Point-E base40M-textvec, one denoiser pass at batch 2
    point_e_upsample  Point-E upsampler (3,072 points conditioned on 1,024), one pass at batch 2
    sd_unet           Stable Diffusion 1.5's UNet, one pass at batch 2 on 64 x 64 latents (DreamFusion, TripoSR text)
    clip_b32          CLIP ViT-B/32 image encoder (the protocol's scorer), 8 views at 224 px
    clip_l14          CLIP ViT-L/14 image encoder (Point-E / Shap-E conditioning), 2 images at 224 px

Training stages: two fitters with the same seed and data, one plain (float32) and one stepping under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (float32 parameters and optimiser, bfloat16 matmuls), run in
alternating blocks of steps for the same step count; seconds are the training time, the quality is the
test PSNR of each after the same steps (lego, 100 x 100, ``--train-steps``, ``--test-views``):

    nerf_train        the nerf engine (planes encoding, 256 rays a step)
    splats_train      gaussian-splatting (measured only: methods/splats is being rewritten in issue 25)
    field_train       Dream Fields' / DreamFusion's field (density grid + colour MLP) at 64 px, with a
                      free guidance (the renders' distance to grey): the field's own cost, loss after the steps

Random weights exaggerate drift compared with trained ones (no learnt scale structure). The machine is
shared: read the ratios, measured in the same run, not the absolute seconds; ``uptime`` is printed.

Usage::

    python bench/precision.py                           # every stage, 2 threads, 3 repeats
    python bench/precision.py --stages triposr_mesh --resolution 128 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import gc
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = (
    "triposr_encode",
    "triposr_mesh",
    "triposr_decoder",
    "shap_e_prior",
    "point_e_base",
    "point_e_upsample",
    "sd_unet",
    "clip_b32",
    "clip_l14",
    "nerf_train",
    "splats_train",
    "field_train",
)
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nerf_synthetic_lego_100"
CLIP_B32_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 224,
    "patch_size": 32,
    "hidden_act": "quick_gelu",
}


def relative(a: Any, b: Any) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def weights_mb(module: Any) -> float:
    return sum(p.numel() * p.element_size() for p in module.parameters()) / 2**20


def measure(calls: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Run the calls alternately ``repeats`` times: median seconds, peak added RSS (MB), the last output."""
    from methods import runtime

    out: dict[str, dict[str, Any]] = {name: {"seconds": [], "cpu": [], "peak_mb": []} for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            gc.collect()
            with runtime.PeakMemory(interval=0.01) as peak:
                before = peak.peak_rss_mb
                start, cpu = time.perf_counter(), time.process_time()
                result = call()
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            out[name]["seconds"].append(seconds)
            out[name]["cpu"].append(cpu)
            out[name]["peak_mb"].append(peak.peak_rss_mb - before)
            out[name]["output"] = result
    for entry in out.values():
        entry["median"] = statistics.median(entry["seconds"])
        entry["cpu_median"] = statistics.median(entry["cpu"])
        entry["peak"] = max(entry["peak_mb"])
    return out


def pair(module: Any, dtype: Any, float32_io: bool = False) -> tuple[Any, Any]:
    """The float32 module and a bfloat16 copy of the same weights (behind float32 inputs/outputs if asked)."""
    from methods import runtime

    low = copy.deepcopy(module)
    if float32_io:
        runtime.run_in(low, dtype)
    else:
        low.to(dtype)
    return module, low


def row(stage: str, timed: dict[str, dict[str, Any]], w32: float, w16: float, drift: dict[str, float]) -> dict:
    fp32, bf16 = timed["float32"], timed["bfloat16"]
    return {
        "stage": stage,
        "fp32_s": fp32["median"],
        "bf16_s": bf16["median"],
        "speedup": fp32["median"] / bf16["median"],
        "fp32_cpu_s": fp32["cpu_median"],
        "bf16_cpu_s": bf16["cpu_median"],
        "cpu_speedup": fp32["cpu_median"] / bf16["cpu_median"],
        "fp32_mb": f"{w32:.0f}+{fp32['peak']:.0f}",
        "bf16_mb": f"{w16:.0f}+{bf16['peak']:.0f}",
        **drift,
    }


# ----------------------------------------------------------------------------- TripoSR


_TRIPOSR: dict[str, Any] = {}


def triposr_models() -> tuple[Any, Any, Any]:
    import torch

    if not _TRIPOSR:
        from bench.triposr import BENCH_IMAGE, build_model
        from methods.triposr import preprocess
        from tests.tiny_triposr import reference_image

        model = build_model("cpu", torch.float32)
        low = copy.deepcopy(model).to(torch.bfloat16)
        low.decoder.float()
        _TRIPOSR.update(fp32=model, bf16=low, image=reference_image(BENCH_IMAGE))
        _TRIPOSR["prepared"] = preprocess.prepare(_TRIPOSR["image"])[0]
    return _TRIPOSR["fp32"], _TRIPOSR["bf16"], _TRIPOSR


def triposr_encode(args) -> list[dict]:
    import torch

    from methods.triposr.pipeline import scene_codes

    fp32, bf16, data = triposr_models()
    image = data["prepared"]
    timed = measure(
        {
            "float32": lambda: scene_codes(fp32, image, "cpu", torch.float32),
            "bfloat16": lambda: scene_codes(bf16, image, "cpu", torch.bfloat16),
        },
        args.repeats,
    )
    drift = {"rel_err": relative(timed["bfloat16"]["output"], timed["float32"]["output"])}
    return [row("triposr_encode", timed, weights_mb(fp32), weights_mb(bf16), drift)]


def mesh_distance(a: tuple, b: tuple) -> dict[str, float]:
    """Chamfer-L1 (absolute and / bbox diagonal of ``b``) and volume IoU between two (verts, faces) meshes."""
    from eval.judging.metrics import geometry
    from methods.base import Mesh

    mesh_a, mesh_b = Mesh(*a), Mesh(*b)
    pa, _ = geometry.sample_surface(mesh_a, 100_000, seed=0)
    pb, _ = geometry.sample_surface(mesh_b, 100_000, seed=0)
    chamfer = geometry.chamfer_distance(pa, pb)["chamfer_l1"]
    return {
        "chamfer_l1": chamfer,
        "chamfer/diag": chamfer / geometry.bbox_diagonal(pb),
        "vol_iou": geometry.volume_iou(mesh_a, mesh_b, n=200_000),
    }


def triposr_image_to_mesh(model: Any, image: Any, dtype: Any, resolution: int) -> dict[str, Any]:
    import torch

    from methods.triposr import mesh, preprocess
    from methods.triposr.pipeline import scene_codes

    prepared, _ = preprocess.prepare(image)
    planes = scene_codes(model, prepared, "cpu", dtype)[0]
    grid = mesh.density_grid(model, planes, resolution, 65536)
    verts, faces = mesh.marching_cubes(grid, model.config.radius)
    with torch.inference_mode():
        colors = model.query(planes, torch.from_numpy(verts), 65536)["color"].numpy()
    return {"verts": verts, "faces": faces, "colors": colors}


def triposr_mesh(args) -> list[dict]:
    import torch

    fp32, bf16, data = triposr_models()
    res = args.resolution
    timed = measure(
        {
            "float32": lambda: triposr_image_to_mesh(fp32, data["image"], torch.float32, res),
            "bfloat16": lambda: triposr_image_to_mesh(bf16, data["image"], torch.bfloat16, res),
        },
        args.repeats,
    )
    a, b = timed["bfloat16"]["output"], timed["float32"]["output"]
    drift = mesh_distance((a["verts"], a["faces"]), (b["verts"], b["faces"]))
    drift["colors_rel"] = float(
        abs(a["colors"].mean(0) - b["colors"].mean(0)).max()
    )  # different vertices: compare mean colour
    return [row(f"triposr_mesh@{res}", timed, weights_mb(fp32), weights_mb(bf16), drift)]


def triposr_decoder(args) -> list[dict]:
    import numpy as np
    import torch

    from methods.triposr import mesh
    from methods.triposr.pipeline import scene_codes

    fp32, _, data = triposr_models()
    planes = scene_codes(fp32, data["prepared"], "cpu", torch.float32)[0]
    low = copy.deepcopy(fp32)
    low.decoder.to(torch.bfloat16)
    res = args.resolution
    timed = measure(
        {
            "float32": lambda: mesh.density_grid(fp32, planes, res, 65536),
            "bfloat16": lambda: mesh.density_grid(low, planes, res, 65536),
        },
        args.repeats,
    )
    a, b = timed["bfloat16"]["output"], timed["float32"]["output"]
    log_a, log_b = np.log(a.astype(np.float64)), np.log(b.astype(np.float64))
    drift = {"rel_err(log density)": float(np.linalg.norm(log_a - log_b) / np.linalg.norm(log_b))}
    meshes = [mesh.marching_cubes(g, fp32.config.radius) for g in (a, b)]
    drift.update(mesh_distance(*meshes))
    w = weights_mb(fp32.decoder)
    return [row(f"triposr_decoder@{res}", timed, w, w / 2, drift)]


# ----------------------------------------------------------------------------- Shap-E, Point-E, SD, CLIP


def shap_e_prior(args) -> list[dict]:
    import torch
    from diffusers import PriorTransformer

    from bench.shap_e import PRIOR

    torch.manual_seed(0)
    prior = PriorTransformer(**PRIOR).eval()
    fp32, bf16 = pair(prior, torch.bfloat16, float32_io=True)
    hidden = torch.randn(2, PRIOR["num_embeddings"], PRIOR["embedding_dim"])
    proj = torch.randn(2, PRIOR["embedding_proj_dim"])
    t = torch.tensor(512.0)

    def call(net):
        with torch.inference_mode():
            return net(hidden, timestep=t, proj_embedding=proj).predicted_image_embedding

    timed = measure({"float32": lambda: call(fp32), "bfloat16": lambda: call(bf16)}, args.repeats)
    drift = {"rel_err": relative(timed["bfloat16"]["output"], timed["float32"]["output"])}
    return [row("shap_e_prior", timed, weights_mb(fp32), weights_mb(bf16), drift)]


def _point_e(name: str, args) -> list[dict]:
    import torch

    from methods.point_e import configs
    from methods.point_e.models import build_model
    from methods.point_e.pipeline import model_fn

    config = configs.MODEL_CONFIGS[name]
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():  # the output projection is zero-initialised officially: give the output a signal
        torch.nn.init.normal_(model.output_proj.weight, std=0.02)
    fp32, bf16 = pair(model, torch.bfloat16)
    x = torch.randn(2, 6, config["n_ctx"])
    t = torch.tensor([500, 500])
    if name == "upsample":
        kwargs = {"low_res": torch.rand(2, 6, config["cond_ctx"]) * 255.0, "embeddings": torch.randn(2, 1024, 256)}
    else:
        kwargs = {"embeddings": torch.nn.functional.normalize(torch.randn(2, 768), dim=-1)}
    calls = {
        label: (lambda net=net, dt=dt: _no_grad(model_fn(net, dt), x, t, **kwargs))
        for label, net, dt in (("float32", fp32, torch.float32), ("bfloat16", bf16, torch.bfloat16))
    }
    timed = measure(calls, args.repeats)
    drift = {"rel_err": relative(timed["bfloat16"]["output"], timed["float32"]["output"])}
    stage = "point_e_base" if name != "upsample" else "point_e_upsample"
    return [row(stage, timed, weights_mb(fp32), weights_mb(bf16), drift)]


def _no_grad(fn, *args, **kwargs):
    import torch

    with torch.inference_mode():
        return fn(*args, **kwargs)


def point_e_base(args) -> list[dict]:
    return _point_e("base40M-textvec", args)


def point_e_upsample(args) -> list[dict]:
    return _point_e("upsample", args)


def sd_unet(args) -> list[dict]:
    import torch
    from diffusers import UNet2DConditionModel

    from tests.tiny_sd import SD15_UNET

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    fp32, bf16 = pair(unet, torch.bfloat16)
    latents = torch.randn(2, 4, 64, 64)
    context = torch.randn(2, 77, 768)
    t = torch.tensor([500, 500])

    def call(net, dtype):
        with torch.inference_mode():
            return net(latents.to(dtype), t, encoder_hidden_states=context.to(dtype)).sample.float()

    timed = measure(
        {"float32": lambda: call(fp32, torch.float32), "bfloat16": lambda: call(bf16, torch.bfloat16)}, args.repeats
    )
    drift = {"rel_err": relative(timed["bfloat16"]["output"], timed["float32"]["output"])}
    return [row("sd_unet", timed, weights_mb(fp32), weights_mb(bf16), drift)]


def _clip(stage: str, vision: dict, batch: int, projection: int, args) -> list[dict]:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision, projection_dim=projection)).eval()
    fp32, bf16 = pair(model, torch.bfloat16)
    pixels = torch.randn(batch, 3, vision["image_size"], vision["image_size"])

    def call(net, dtype):
        with torch.inference_mode():
            emb = net(pixel_values=pixels.to(dtype)).image_embeds.float()
        return emb / emb.norm(dim=-1, keepdim=True)

    timed = measure(
        {"float32": lambda: call(fp32, torch.float32), "bfloat16": lambda: call(bf16, torch.bfloat16)}, args.repeats
    )
    a, b = timed["bfloat16"]["output"], timed["float32"]["output"]
    drift = {"rel_err": relative(a, b), "min_cos": float((a * b).sum(-1).min())}
    return [row(stage, timed, weights_mb(fp32), weights_mb(bf16), drift)]


def clip_b32(args) -> list[dict]:
    return _clip("clip_b32 x8", CLIP_B32_VISION, 8, 512, args)


def clip_l14(args) -> list[dict]:
    from bench.point_e import CLIP_VISION

    return _clip("clip_l14 x2", CLIP_VISION, 2, 768, args)


# ----------------------------------------------------------------------------- training under autocast


def train_pair(fitters: dict[str, Any], steps: int, block: int = 10) -> dict[str, dict[str, Any]]:
    """Step both fitters ``steps`` times in alternating blocks; the "bfloat16" one under CPU autocast."""
    import torch

    seconds = {name: 0.0 for name in fitters}
    cpu = {name: 0.0 for name in fitters}
    stats: dict[str, Any] = {}
    for first in range(0, steps, block):
        for name, fitter in fitters.items():
            start, started_cpu = time.perf_counter(), time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bfloat16"):
                for step in range(first, min(first + block, steps)):
                    stats[name] = fitter.step(step, step / steps)
            seconds[name] += time.perf_counter() - start
            cpu[name] += time.process_time() - started_cpu
    return {
        name: {"median": seconds[name], "cpu_median": cpu[name], "peak": 0.0, "output": stats[name]} for name in fitters
    }


def _test_psnr(fitter: Any, scene: Any, views: int) -> float:
    import numpy as np

    from methods.nerf.train import psnr

    picks = scene.test[np.unique(np.linspace(0, len(scene.test) - 1, views).round().astype(int))]
    return float(np.mean([psnr(fitter.render(int(i)), fitter.ground_truth(int(i))) for i in picks]))


def nerf_train(args) -> list[dict]:
    from methods.nerf.io import load_transforms
    from methods.nerf.train import FitConfig, SceneFitter

    scene = load_transforms(str(DEFAULT_DATA))
    config = FitConfig(budget_seconds=1e9, steps=args.train_steps, batch_rays=256, background="random", seed=0)
    fitters = {name: SceneFitter(scene, config, "cpu") for name in ("float32", "bfloat16")}
    timed = train_pair(fitters, args.train_steps)
    for fitter in fitters.values():
        fitter.field.eval()
    drift = {f"psnr_{k}": _test_psnr(f, scene, args.test_views) for k, f in fitters.items()}
    return [row(f"nerf_train x{args.train_steps}", timed, 0.0, 0.0, drift)]


def splats_train(args) -> list[dict]:
    from methods.nerf.io import load_transforms
    from methods.splats.train import SplatConfig, SplatFitter

    scene = load_transforms(str(DEFAULT_DATA))
    config = SplatConfig(budget_seconds=1e9, steps=args.train_steps, lr_preset="short", seed=0)
    fitters = {name: SplatFitter(scene, config, "cpu") for name in ("float32", "bfloat16")}
    timed = train_pair(fitters, args.train_steps)
    drift = {f"psnr_{k}": _test_psnr(f, scene, args.test_views) for k, f in fitters.items()}
    drift["gaussians"] = f"{len(fitters['float32'])}/{len(fitters['bfloat16'])}"
    return [row(f"splats_train x{args.train_steps}", timed, 0.0, 0.0, drift)]


class _GreyGuidance:
    """A free guidance (the renders' distance to grey): what is left of a step is the field's own cost."""

    name = "grey"

    def loss(self, batch, step):
        return ((batch.composite() - 0.5) ** 2).mean(), {}

    def close(self) -> None:
        pass


def field_train(args) -> list[dict]:
    from methods.text_opt.loop import FieldOptimizer, LoopConfig

    steps = max(1, args.train_steps // 4)
    config = LoopConfig(render_size=64, grid_resolution=64, albedo_fraction=0.0, seed=0)
    fitters = {name: FieldOptimizer(config, _GreyGuidance(), "cpu") for name in ("float32", "bfloat16")}
    timed = train_pair(fitters, steps, block=5)
    drift = {f"loss_{k}": float(timed[k]["output"]["loss"]) for k in fitters}
    return [row(f"field_train x{steps}", timed, 0.0, 0.0, drift)]


# ----------------------------------------------------------------------------- output


def print_table(rows: list[dict]) -> None:
    base = ["stage", "fp32_s", "bf16_s", "speedup", "fp32_mb", "bf16_mb"]
    extra = [k for r in rows for k in r if k not in base]
    extra = list(dict.fromkeys(extra))
    cols = base + extra
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
    print(
        "*_s: wall seconds, *_cpu_s: CPU seconds of this process (the work, whatever the machine's load); "
        "medians over the repeats, fp32 and bf16 alternating; *_mb: weights + peak RSS the call added",
        flush=True,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=128, help="TripoSR marching-cubes grid")
    parser.add_argument("--train-steps", type=int, default=200, help="steps of each training stage")
    parser.add_argument("--test-views", type=int, default=10, help="lego test views for the training PSNR")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from methods import runtime

    torch.set_num_threads(args.threads)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(
        f"torch {torch.__version__}, {args.threads} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bfloat16: {runtime.cpu_bfloat16()}, auto precision here: {runtime.precision_record()['dtype']}"
    )
    rows = []
    for stage in args.stages:
        started = time.perf_counter()
        rows.extend(globals()[stage](args))
        load = os.getloadavg()[0]
        print(f"  {stage}: {time.perf_counter() - started:.0f} s with building, load {load:.1f}", flush=True)
        print_table(rows[-1:])  # as it comes: a long run on a shared machine may be cut short
        if not any(s.startswith("triposr") for s in args.stages[args.stages.index(stage) + 1 :]):
            _TRIPOSR.clear()
        gc.collect()
    print("\nall stages:")
    print_table(rows)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    return 0 if all(math.isfinite(r["speedup"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
