"""Headless use: ``python -m methods list [--json]`` and ``python -m methods run ID ...``.

``list`` imports no torch. ``run`` writes DIR/asset.glb and DIR/run.json and prints the
asset's path; long runs (nerf, gaussian-splatting, ...) print a line on stderr as each stage starts
(every progress line on a terminal or with ``--progress``; none with ``--quiet``). On failure it
prints one line (after the stage lines of a long run) and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 1
LONG_RUN_SECONDS = 30.0  # runs expected to take this long print a progress line per stage on stderr


def _list(args: argparse.Namespace) -> int:
    from methods.registry import listing

    rows = listing(args.modality)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["id"]) for r in rows), default=2)
    for r in rows:
        state = "available" if r["available"] else "unavailable"
        print(f"{r['id']:<{width}}  {'/'.join(r['modalities']):<16} {r['family']:<46} {state}: {r['reason']}")
    return 0


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value
    return out


def _inputs(args: argparse.Namespace):
    from methods.base import Inputs, InvalidInput, load_image

    given = [x for x in (args.prompt, args.image, args.video) if x is not None]
    if len(given) != 1:
        raise InvalidInput("give exactly one of --prompt, --image or --video")
    if args.prompt is not None:
        return Inputs.text(args.prompt)
    if args.image is not None:
        return Inputs(modality="image", image=load_image(args.image), name=Path(args.image).name).validated()
    path = Path(args.video)
    if not path.exists():
        raise InvalidInput(f"no such file or folder: {path}")
    # a video file, a folder or .zip of images, or a transforms.json scene: the method reads it
    return Inputs(modality="video", video_path=str(path), name=path.name).validated()


def _long_run(method_id: str) -> bool:
    """The method takes long enough on this machine (its estimate) for stage lines to help."""
    import methods
    from methods import runtime

    try:
        method = methods.get(method_id)
    except KeyError:  # an unknown id: execute says so in one line
        return False
    return method.estimate_seconds(method.Settings(), runtime.device().startswith("cuda")) >= LONG_RUN_SECONDS


def _run(args: argparse.Namespace) -> int:
    from eval.runs.runner import execute
    from eval.runs.store import Store, StoreError
    from methods.base import MethodError, MethodUnavailable

    try:
        inputs = _inputs(args)
        settings = _parse_sets(args.set)
        settings["seed"] = str(args.seed)
        out = Path(args.out)
        # every progress line on a terminal (or with --progress); elsewhere a line per stage for long runs
        # (nerf, splats, ...), none for quick ones, so that a quick failure's stderr stays one line for scripts
        every_line = args.progress or sys.stderr.isatty()
        stage_lines = not args.quiet and (every_line or _long_run(args.method))
        done = None
        stage = None
        for event in execute(args.method, inputs, settings, store=Store(args.db) if args.db else None, out_dir=out):
            if event.kind == "progress" and stage_lines:
                p = event.progress
                if every_line or p.stage != stage:
                    frac = f" {p.fraction:4.0%}" if p.fraction is not None else ""
                    print(f"[{p.stage}{frac}] {p.message}", file=sys.stderr, flush=True)
                stage = p.stage
            elif event.kind == "done":
                done = event
    except MethodUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (MethodError, ValueError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if not isinstance(exc, StoreError) else EXIT_FAILED
    except Exception as exc:  # a failure inside the method: recorded in the store and run.json
        print(f"error: {args.method} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(done.files["glb"])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m methods", description="List and run Trilemma3D methods.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the registered methods and whether they can run here")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_list.add_argument("--modality", choices=("text", "image", "video"))
    p_run = sub.add_parser("run", help="run one method and write DIR/asset.glb and DIR/run.json")
    p_run.add_argument("method", help="method id, see `python -m methods list`")
    p_run.add_argument("--prompt", help="text prompt")
    p_run.add_argument("--image", help="image file")
    p_run.add_argument("--video", help="video file or folder of images")
    p_run.add_argument("--seed", type=int, default=0)
    p_run.add_argument("--out", required=True, help="output folder")
    p_run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a method setting")
    p_run.add_argument("--db", help="run store (default: $TRILEMMA_DB or data/trilemma.db)")
    p_run.add_argument("--quiet", action="store_true", help="no progress lines")
    p_run.add_argument("--progress", action="store_true", help="progress lines even when stderr is not a terminal")
    args = parser.parse_args(argv)
    return _list(args) if args.command == "list" else _run(args)


if __name__ == "__main__":
    sys.exit(main())
