"""``python -m eval score ASSET.glb [--prompt TEXT] [--image FILE] [--reference MESH] [--json]``.

Scores one asset file with the evaluation protocol and prints every applicable metric. Other
subcommands (``ratings``, ``study``) are modules that name themselves (``COMMAND``, ``HELP``) and
``configure`` their parser, setting ``handler`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
SUBCOMMAND_MODULES = ("eval.ratings.cli", "eval.study.cli")


def add_score_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "score",
        help="score an asset file with the evaluation protocol",
        description="Print every metric of the protocol that applies to the asset and the given inputs.",
    )
    parser.add_argument("asset", help="the asset: .glb / .gltf / .obj / .stl / .ply")
    parser.add_argument("--prompt", help="the text prompt (CLIP score, R-precision)")
    parser.add_argument("--image", help="the input image (PSNR / SSIM / LPIPS and CLIP similarity at the front view)")
    parser.add_argument("--reference", help="a reference mesh (Chamfer, F-score, normal consistency, volume IoU)")
    parser.add_argument("--icp", action="store_true", help="align rigidly to the reference first (ICP)")
    parser.add_argument("--samples", type=int, default=100_000, help="surface samples for the reference metrics")
    parser.add_argument(
        "--clip-model",
        action="append",
        dest="clip_models",
        help="scoring CLIP checkpoint (repeat for several; default openai/clip-vit-base-patch32)",
    )
    parser.add_argument("--captions", help="R-precision caption file, one a line (default: assets/prompts.txt)")
    parser.add_argument("--views", type=int, default=8, help="ring views for CLIP (default 8)")
    parser.add_argument("--resolution", type=int, default=224, help="render resolution (default 224)")
    parser.add_argument("--lpips-weights", action="append", help="LPIPS state-dict file (trunk and linear layers)")
    parser.add_argument("--lpips-net", choices=("vgg", "alex"), default="vgg")
    parser.add_argument("--download", action="store_true", help="allow downloading the CLIP weights")
    parser.add_argument("--turntable", help="also write a turntable of the asset (.gif or .mp4)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(handler=score_command)
    return parser


def score_command(args: argparse.Namespace) -> int:
    from eval.judging.protocol import score
    from methods.base import Inputs, InvalidInput, load_image, normalize
    from methods.export import load_asset, read_metadata

    path = Path(args.asset)
    try:
        if not path.is_file():
            raise InvalidInput(f"no such file: {path}")
        asset = normalize(load_asset(path))
        if args.prompt is not None:
            inputs = Inputs.text(args.prompt)
        elif args.image is not None:
            inputs = Inputs(modality="image", image=load_image(args.image), name=Path(args.image).name).validated()
        else:
            inputs = Inputs(modality="text")  # no input: only the metrics of the asset itself apply
        for option in ("reference", "captions"):
            value = getattr(args, option)
            if value is not None and not Path(value).is_file():
                raise InvalidInput(f"no such file: {value}")
    except (InvalidInput, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    context: dict[str, Any] = {
        "views": args.views,
        "resolution": args.resolution,
        "samples": args.samples,
        "icp": args.icp,
        "clip_download": args.download,
        "lpips_net": args.lpips_net,
    }
    if path.suffix.lower() == ".glb":
        context["method_settings"] = read_metadata(path).get("settings") or {}
    for key, value in (
        ("clip_models", args.clip_models),
        ("reference_mesh", args.reference),
        ("captions", args.captions),
        ("lpips_weights", args.lpips_weights),
    ):
        if value:
            context[key] = value
    rows = []
    for row in score(asset, inputs, context):
        rows.append(row)
        if not args.json:
            print(_line(row), flush=True)
    if args.turntable:
        from eval.judging.render import render_turntable

        written = render_turntable(asset, args.turntable)
        if not args.json:
            print(f"turntable: {written}")
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2, default=str))
    return 0


def _line(row: Any) -> str:
    value = row.value
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = "–" if value is None else str(value)
    return f"{row.group:<10} {row.name:<34} {text} {row.unit} {row.arrow}".rstrip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description="Trilemma3D evaluation")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_score_parser(subparsers)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):  # it exists but something it needs does not
                raise
            continue
        module.configure(subparsers.add_parser(module.COMMAND, help=module.HELP))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
