"""``python -m eval ratings export|leaderboard``: the qualitative study from scripts.

The database is TRILEMMA_DB (default ``data/trilemma.db``) unless ``--db`` names one.

    python -m eval ratings export --out study/ --format parquet
    python -m eval ratings leaderboard [--criterion overall] [--modality text] [--prompt-set NAME] [--json]

Exit codes: 0 done, 2 bad arguments or no database.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eval.ratings import CRITERIA, CRITERION_LABELS, EXPORT_FORMATS
from eval.runs.store import StoreError, default_db_path

COMMAND = "ratings"  # python -m eval ratings (export, leaderboard)
HELP = "the qualitative study: export votes, print the leaderboard"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ratings_command", required=True)
    export = sub.add_parser("export", help="write votes, ratings and served pairs as CSV or Parquet")
    export.add_argument("--out", default="study", help="output folder (default: study)")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    board = sub.add_parser("leaderboard", help="Bradley-Terry strengths with bootstrap intervals, and agreement")
    board.add_argument("--criterion", choices=[*CRITERIA, "all"], default="all")
    board.add_argument("--modality", choices=["text", "image", "video"])
    board.add_argument("--prompt-set", help="a prompt set name (assets/prompts/NAME.txt or runs tagged with it)")
    board.add_argument("--include-flagged", action="store_true", help="count votes of raters flagged as noise")
    board.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    board.add_argument("--seed", type=int, default=0)
    for p in (export, board):
        p.add_argument("--db", help="the run store (default: $TRILEMMA_DB or data/trilemma.db)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from eval import ratings
    from eval.runs.store import Store

    path = Path(args.db) if args.db else default_db_path()
    if not path.is_file():
        print(f"error: no run store at {path} (set TRILEMMA_DB or pass --db)", file=sys.stderr)
        return 2
    try:
        store = Store(path)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.ratings_command == "export":
        try:
            paths = ratings.export(store, args.out, args.format)
        except (RuntimeError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        counts = {name: _rows(p) for name, p in paths.items()}
        if args.json:
            print(json.dumps({"files": {k: str(v) for k, v in paths.items()}, "rows": counts}, indent=2))
        else:
            for name, p in paths.items():
                print(f"{p}  ({counts[name]} rows)")
        return 0
    if args.bootstrap < 1:
        print("error: --bootstrap must be at least 1", file=sys.stderr)
        return 2
    criteria = CRITERIA if args.criterion == "all" else (args.criterion,)
    board = ratings.leaderboard(
        store,
        modality=args.modality,
        prompt_set=args.prompt_set,
        include_flagged=args.include_flagged,
        criteria=criteria,
        n_boot=args.bootstrap,
        seed=args.seed,
    )
    print(json.dumps(board, indent=2) if args.json else format_leaderboard(board))
    return 0


def _rows(path: Path) -> int:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


NO_MLE = "the votes cannot rank {} yet: their gaps to the others come from the prior; collect more votes"


def format_leaderboard(board: dict[str, Any]) -> str:
    """The leaderboard as plain text tables."""
    lines = [
        f"{board['votes_used']} votes from {board['raters']} raters ({board['votes']} match the filters); "
        f"{board['settings']['model']}; {board['settings']['scale']}; "
        f"prior: {board['settings']['prior']}; {int(board['settings']['level'] * 100)}% intervals:"
        f" {board['settings']['intervals']}, {board['settings']['n_boot']} resamples"
    ]
    if board["flagged_raters"]:
        state = "included" if board["filters"]["include_flagged"] else "left out"
        lines.append(f"raters flagged as noise ({state}):")
        lines += [f"  {r}: {why}" for r, why in board["flagged_raters"].items()]
    methods = board["methods"]
    width = max([len(m) for m in methods] + [6])
    for criterion, data in board["criteria"].items():
        lines += ["", f"{CRITERION_LABELS[criterion]} ({data['votes']} votes)"]
        if data.get("unranked"):
            who = ", ".join(f"{m} ({why})" for m, why in data["unranked"].items())
            lines.append(f"  note: {NO_MLE.format(who)}")
        lines.append(f"  {'#':>2}  {'method':<{width}}  {'Elo':>7}  {'95% interval':>17}  {'votes':>5}  W/L/T/BB")
        for r in data["table"]:
            lines.append(
                f"  {r['rank']:>2}  {r['method']:<{width}}  {r['elo']:>7.1f}  [{r['lower']:>7.1f}, {r['upper']:>7.1f}]"
                f"  {r['votes']:>5}  {r['wins']}/{r['losses']}/{r['tie']}/{r['both_bad']}"
            )
        if len(methods) > 1:
            lines.append("  win rate (row vs column):")
            lines.append("  " + " " * width + "".join(f"  {m[:8]:>8}" for m in methods))
            for i, m in enumerate(methods):
                cells = ["-" if i == j or x is None else f"{x:.2f}" for j, x in enumerate(data["win_rate"][i])]
                lines.append(f"  {m:<{width}}" + "".join(f"  {c:>8}" for c in cells))
    agreement = board["agreement"]
    lines += ["", "Agreement (Krippendorff's alpha; items seen by 2+ raters)"]
    for criterion in board["criteria"]:
        v, r = agreement["votes_alpha"][criterion], agreement["ratings_alpha"][criterion]
        lines.append(
            f"  {CRITERION_LABELS[criterion]:<26} votes: {_num(v['alpha'])} ({v['items']} pairs)"
            f"   ratings: {_num(r['alpha'])} ({r['items']} assets)"
        )
    if agreement["metric_tau"]:
        lines += ["", "Kendall's tau: human overall ranking vs each metric's ranking"]
        for t in agreement["metric_tau"]:
            lines.append(
                f"  {t['metric']:<24} {t['group']:<10} tau {_num(t['tau'])}  p {_num(t['p'])}  ({t['methods']} methods)"
            )
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval ratings", description=__doc__.split("\n\n")[0])
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
