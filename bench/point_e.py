"""Benchmark: Point-E per stage (load, clip, base, upsample, mesh) on real-size random-weight models.

No real weights are downloaded: the script builds the official configurations (base40M-textvec or
base40M/300M/1B, upsample, sdf) and a CLIP ViT-L/14-sized ``CLIPModel`` with random weights, saves them
once in the official file layout, then times

* ours:     the method's run (``methods.point_e``), cold (loading) and warm (models cached);
* official: with ``--official PATH`` (a checkout of github.com/openai/point-e kept outside this repo; its
  code is imported from there, never copied), the official ``model_from_config`` + ``load_state_dict``,
  ``PointCloudSampler`` and ``marching_cubes_mesh`` on the same weights and the same conditioning
  (CLIP is stubbed for the official side: it cannot load a transformers checkpoint).

Random weights give random clouds, so the mesh stage is an upper bound (noisy surfaces); the sampling
stages cost what the real models cost for the same settings.

Usage::

    python bench/point_e.py                                   # CPU, text, 2 Karras steps, grid 32
    python bench/point_e.py --device cuda --steps 64          # the official settings on a GPU
    python bench/point_e.py --modality image --size 300M --official /tmp/point-e
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# CLIP ViT-L/14 (openai/clip-vit-large-patch14): text 768 wide, vision 1024 wide, 16 x 16 patches of 14 px.
CLIP_TEXT = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
}
CLIP_VISION = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
}
STAGES = ("load", "clip", "base", "upsample", "mesh")
PROMPT = "a red motorcycle"


def prepare(folder: Path, names: list[str]) -> tuple[Path, Path, float]:
    """Random-weight checkpoints (official file names) and a random CLIP directory; kept between runs."""
    import json

    import torch
    from transformers import CLIPConfig, CLIPModel

    from methods.point_e import configs
    from methods.point_e.models import build_model

    start = time.perf_counter()
    ckpt, clip_dir = folder / "point_e", folder / "clip"
    ckpt.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        path = ckpt / configs.CHECKPOINT_FILES[name]
        if not path.is_file():
            torch.manual_seed(i)
            model = build_model(configs.MODEL_CONFIGS[name])
            if hasattr(model, "clip_embed"):  # officially zero-initialised; random like a trained model
                torch.nn.init.normal_(model.output_proj.weight, std=model.width**-0.5)
            torch.save(model.state_dict(), path)
            del model
    if not (clip_dir / "config.json").is_file():
        from tests.tiny_shap_e import byte_vocab

        vocab = byte_vocab()
        clip_dir.mkdir(parents=True, exist_ok=True)
        (clip_dir / "vocab.json").write_text(json.dumps(vocab))
        (clip_dir / "merges.txt").write_text("#version: 0.2\n")
        eos = vocab["<|endoftext|>"]
        text = CLIP_TEXT | {"vocab_size": 49408, "bos_token_id": eos - 1, "eos_token_id": eos, "pad_token_id": eos}
        torch.manual_seed(0)
        CLIPModel(CLIPConfig(text_config=text, vision_config=CLIP_VISION, projection_dim=768)).save_pretrained(clip_dir)
    return ckpt, clip_dir, time.perf_counter() - start


def object_image():
    """A shaded disc on white: an image with a foreground."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 < 80**2
    rgb = np.full((256, 256, 3), 255, np.uint8)
    rgb[disc] = (np.stack([200 - yy[disc] // 3, 60 + xx[disc] // 4, 40 + 0 * xx[disc]], -1)).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def run_ours(args, ckpt: Path, clip_dir: Path) -> tuple[dict[str, float], Any]:
    from methods.base import Inputs
    from methods.point_e import PointE

    method = PointE()
    inputs = Inputs.text(PROMPT) if args.modality == "text" else Inputs.from_image(object_image())
    settings = method.default_settings(args.modality).replace(
        checkpoint=str(ckpt),
        clip_checkpoint=str(clip_dir),
        model_size=args.size,
        steps=args.steps,
        grid_size=args.grid,
        seed=0,
    )
    gen = method.run(inputs, settings)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            asset = done.value
            break
    print(f"  ours: {len(asset.points.points)} points, mesh {len(asset.mesh.vertices)} vertices", file=sys.stderr)
    return dict(asset.stage_seconds), asset.points


def _stub_openai_clip() -> None:
    """The official models build OpenAI's CLIP in their constructors (not part of their state dicts)."""
    import torch

    class StubCLIP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.logit_scale = torch.nn.Parameter(torch.zeros(()))

    module = types.ModuleType("clip")
    module.load = lambda *args, **kwargs: (StubCLIP(), None)
    module.tokenize = lambda *args, **kwargs: torch.zeros(1, 77, dtype=torch.long)
    sys.modules["clip"] = module


def run_official(args, ckpt: Path, clip_dir: Path) -> tuple[dict[str, float], Any]:
    import torch

    from methods.point_e import configs, pipeline
    from methods.point_e.clip import CLIPConditioner

    sys.path.insert(0, str(Path(args.official).resolve()))
    _stub_openai_clip()
    from point_e.diffusion.configs import DIFFUSION_CONFIGS, diffusion_from_config
    from point_e.diffusion.sampler import PointCloudSampler
    from point_e.models.configs import MODEL_CONFIGS, model_from_config
    from point_e.util.pc_to_mesh import marching_cubes_mesh

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seconds: dict[str, float] = {}
    base_name = configs.TEXT_BASE if args.modality == "text" else configs.IMAGE_BASES[args.size]

    start = time.perf_counter()
    models = {}
    for name in (base_name, "upsample", "sdf"):
        model = model_from_config(MODEL_CONFIGS[name], device)
        model.eval()
        model.load_state_dict(torch.load(ckpt / configs.CHECKPOINT_FILES[name], map_location=device))
        models[name] = model
    sync()
    seconds["load"] = time.perf_counter() - start

    # the same conditioning as ours (CLIP through transformers, float32 as the official CLIP would give)
    clip = CLIPConditioner.from_pretrained(str(clip_dir), device, torch.float16 if device.type == "cuda" else None)
    start = time.perf_counter()
    if args.modality == "text":
        kwargs: dict[str, Any] = {"embeddings": [clip.embed_text([PROMPT]).embeddings[0]]}
        key_filter, guidance = ("embeddings", ""), (3.0, 0.0)
    else:
        grid = clip.embed_images_grid([pipeline.prepare_image(types.SimpleNamespace(image=object_image()))])
        for name in (base_name, "upsample"):
            models[name].clip.embed_images_grid = lambda xs, grid=grid: grid
        kwargs, key_filter, guidance = {"images": [None]}, ("*",), (3.0, 3.0)
    sync()
    seconds["clip"] = time.perf_counter() - start
    del clip

    sampler = PointCloudSampler(
        device=device,
        models=[models[base_name], models["upsample"]],
        diffusions=[
            diffusion_from_config(DIFFUSION_CONFIGS[base_name]),
            diffusion_from_config(DIFFUSION_CONFIGS["upsample"]),
        ],
        num_points=[configs.BASE_POINTS, configs.UPSAMPLED_POINTS - configs.BASE_POINTS],
        aux_channels=["R", "G", "B"],
        guidance_scale=guidance,
        model_kwargs_key_filter=key_filter,
        karras_steps=(args.steps, args.steps),
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    samples = None
    for i, step in enumerate(sampler.sample_batch_progressive(batch_size=1, model_kwargs=kwargs)):
        samples = step
        if i == args.steps:  # the last yield of the base stage
            sync()
            seconds["base"] = time.perf_counter() - start
            start = time.perf_counter()
    sync()
    seconds["upsample"] = time.perf_counter() - start

    start = time.perf_counter()
    pc = sampler.output_to_point_clouds(samples)[0]
    mesh = marching_cubes_mesh(pc=pc, model=models["sdf"], batch_size=4096, grid_size=args.grid, progress=False)
    sync()
    seconds["mesh"] = time.perf_counter() - start
    print(f"  official: {len(pc.coords)} points, mesh {len(mesh.verts)} vertices", file=sys.stderr)
    return seconds, pc


def fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    """Per stage, the least seconds over repeated runs (a shared machine adds noise, never removes it)."""
    return {stage: min(run[stage] for run in runs) for stage in runs[0]}


def table(columns: dict[str, dict[str, float]]) -> str:
    names = list(columns)
    lines = [
        f"| stage    | {' | '.join(f'{n:>14}' for n in names)} |"
        + (" ours/official |" if "official" in columns else "")
    ]
    lines.append("|" + "---|" * (len(names) + 1 + ("official" in columns)))
    for stage in (*STAGES, "total"):
        values = {
            n: (sum(c.get(s, 0.0) for s in STAGES) if stage == "total" else c.get(stage)) for n, c in columns.items()
        }
        cells = " | ".join(f"{v:14.3f}" if v is not None else f"{'-':>14}" for v in values.values())
        ratio = ""
        if "official" in columns:
            ours = values.get("ours (warm)") if stage != "load" else values.get("ours (cold)")
            off = values["official"]
            ratio = f" {ours / off:13.2f} |" if ours and off else f" {'-':>13} |"
        lines.append(f"| {stage:8s} | {cells} |{ratio}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--modality", choices=("text", "image"), default="text")
    parser.add_argument("--size", choices=("40M", "300M", "1B"), default="40M", help="image base model size")
    parser.add_argument("--steps", type=int, default=None, help="Karras steps per stage (default 64 on cuda, 2 on cpu)")
    parser.add_argument("--grid", type=int, default=32, help="marching-cubes grid size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--dir", type=Path, default=None, help="where the random-weight checkpoints are kept")
    parser.add_argument("--official", default=None, help="path of an openai/point-e checkout to compare with")
    parser.add_argument("--repeat", type=int, default=1, help="warm runs per side; the table shows the fastest")
    args = parser.parse_args(argv)
    args.steps = args.steps or (64 if args.device.startswith("cuda") else 2)
    if args.modality == "text" and args.size != "40M":
        parser.error("text input has only the 40M model")

    os.environ["TRILEMMA_DEVICE"] = args.device
    import torch

    torch.set_num_threads(args.threads)
    from methods import runtime
    from methods.point_e import configs

    base_name = configs.TEXT_BASE if args.modality == "text" else configs.IMAGE_BASES[args.size]
    folder = args.dir or Path(tempfile.gettempdir()) / "trilemma_point_e_bench"
    ckpt, clip_dir, built = prepare(folder, [base_name, "upsample", "sdf"])
    print(f"random-weight checkpoints ready in {built:.1f} s at {folder}", file=sys.stderr)

    cold, _ = run_ours(args, ckpt, clip_dir)
    warm_runs = [run_ours(args, ckpt, clip_dir) for _ in range(args.repeat)]
    points = warm_runs[-1][1]
    columns = {"ours (cold)": cold, "ours (warm)": fastest([seconds for seconds, _ in warm_runs])}
    runtime.release_models()
    agreement = ""
    if args.official:
        official_runs = [run_official(args, ckpt, clip_dir) for _ in range(args.repeat)]
        columns["official"], pc = fastest([seconds for seconds, _ in official_runs]), official_runs[-1][1]
        import numpy as np

        official_rgb = np.stack([pc.channels[c] for c in "RGB"], axis=1)
        agreement = (
            f"same seed, same weights: max |ours - official| xyz {np.abs(points.points - pc.coords).max():.2e}, "
            f"RGB {np.abs(points.colors - official_rgb).max() * 255:.2f} / 255"
        )
    dtype = "float16" if args.device.startswith("cuda") else "float32"
    gpu = f", {torch.cuda.get_device_name(0)}" if args.device.startswith("cuda") else ""
    print(
        f"Point-E {base_name} + upsample + sdf, {args.modality}, {args.steps} Karras steps per stage, "
        f"grid {args.grid}, {args.device}{gpu} ({dtype} ours, float32 official), "
        f"torch {torch.__version__}, {args.threads} thread(s)"
    )
    print(table(columns))
    print("seconds; 'load' of ours (warm) is the cached models; the ratio uses ours (cold) for load, (warm) otherwise")
    if agreement:
        print(agreement)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
