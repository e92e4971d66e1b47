"""``python -m eval study check|run|report STUDY.yaml``: the comparative study from the command line.

    python -m eval study check STUDY.yaml                      # validate, count cells, say what is done
    python -m eval study run STUDY.yaml [--executor inprocess|local|ray] [--gpus 0,1]
                                        [--address auto] [--num-cpus N] [--gpus-per-cell 1]
                                        [--retry-failed] [--db PATH] [--quiet]
    python -m eval study report STUDY.yaml [--out DIR] [--no-renders] [--db PATH]
    python -m eval study report STUDY.yaml [STUDY.yaml ...] --chapter DIR   # the thesis chapter (LaTeX + Markdown)

The store is ``--db``, else the study's ``store:``, else TRILEMMA_DB (default data/trilemma.db).
Exit codes: 0 done (failed cells are results, listed in the report), 2 a bad study file or
arguments, 1 the store or an executor failed, 130 interrupted (run again to resume).
"""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


COMMAND = "study"  # python -m eval study (check, run, report)
HELP = "run a comparative study and write its report"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", required=True)
    check = sub.add_parser("check", help="validate a study file and count its cells (runs nothing)")
    run = sub.add_parser("run", help="run every cell not yet in the store (resumable)")
    run.add_argument(
        "--executor",
        choices=("inprocess", "local", "ray"),
        default="inprocess",
        help="inprocess: one device; local: a worker per local GPU; ray: a Ray cluster",
    )
    run.add_argument("--gpus", help="local: comma-separated GPU indices (default: every visible GPU)")
    run.add_argument("--address", help="ray: the cluster address (auto, ray://head:10001); default: start one")
    run.add_argument("--num-cpus", type=int, help="ray: CPUs of a Ray instance started here")
    run.add_argument("--gpus-per-cell", type=float, help="ray: GPUs each cell asks for (default 0)")
    run.add_argument("--retry-failed", action="store_true", help="run failed cells (and timeouts) again")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    report = sub.add_parser("report", help="write the report folder: tables, plots, renders, Markdown, HTML, LaTeX")
    report.add_argument("--out", help="report folder (default: <study output>/report)")
    report.add_argument("--no-renders", action="store_true", help="leave out the grids of turntable renders")
    report.add_argument(
        "--chapter",
        metavar="DIR",
        help="write the thesis chapter (chapter4.tex, .bib, .md, figures/, tables/) for one or several studies",
    )
    for p in (check, run):
        p.add_argument("study", help="the study file (YAML)")
    report.add_argument("study", nargs="+", help="the study file(s) (YAML); several only with --chapter")
    for p in (check, run, report):
        p.add_argument("--db", help="the run store (default: the study's store:, else $TRILEMMA_DB)")
    parser.set_defaults(handler=main_args)


def main_args(args: argparse.Namespace) -> int:
    from eval.runs.store import StoreError
    from eval.study.spec import StudyFileError, load_study
    from methods.base import MethodError

    try:
        if args.study_command == "report":
            paths = args.study
            if len(paths) > 1 and not args.chapter:
                print("error: several studies make one report only with --chapter DIR", file=sys.stderr)
                return EXIT_BAD_INPUT
            studies = [load_study(p) for p in paths]
            return _chapter(studies, args) if args.chapter else _report(studies[0], args)
        study = load_study(args.study)
        if args.study_command == "check":
            return _check(study, args)
        if args.study_command == "run":
            return _run(study, args)
    except StudyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (MethodError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _check(study, args: argparse.Namespace) -> int:
    from eval.study.run import finished_cells, open_store
    from methods import registry

    store = open_store(study, args.db)
    finished = finished_cells(store, study.name)
    done = sum(1 for c in study.cells if finished.get(c.key, {}).get("status") == "done")
    failed = sum(1 for c in study.cells if finished.get(c.key, {}).get("status") == "failed")
    print(
        f"{study.path}: study {study.name}, {len(study.cells)} cells "
        f"({len(study.inputs)} input sets, {len(study.methods)} method variants, {len(study.seeds)} seeds); "
        f"{done} done, {failed} failed, {len(study.cells) - done - failed} to run"
    )
    for variant in study.methods:
        cells = [c for c in study.cells if c.variant == variant.label]
        method = registry.get(variant.method)
        settings = type(method.default_settings(cells[0].modality)).from_dict(cells[0].settings)
        status = registry.availability(method, cells[0].modality, settings)
        state = "can run here" if status.ok else f"cannot run here: {status.reason}"
        print(f"  {variant.label}: {len(cells)} cells; {state}")
    print(f"  output: {study.output}; store: {store.path}")
    return 0


def _run(study, args: argparse.Namespace) -> int:
    from eval.study.executors import make_executor
    from eval.study.run import StudyInterrupted, open_store, run_study

    devices = [d.strip() for d in args.gpus.split(",")] if args.gpus else None
    executor = make_executor(
        args.executor, devices=devices, address=args.address, num_cpus=args.num_cpus, gpus_per_cell=args.gpus_per_cell
    )
    try:
        summary = run_study(
            study,
            executor=executor,
            store=open_store(study, args.db),
            retry_failed=args.retry_failed,
            progress=not args.quiet,
        )
    except StudyInterrupted as exc:
        print(f"\n{exc.summary.line()}; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary.line(), file=sys.stderr)
    print(study.output)
    return 0


def _report(study, args: argparse.Namespace) -> int:
    from eval.study.report import build_report
    from eval.study.run import open_store

    report = build_report(study, open_store(study, args.db), args.out, renders=not args.no_renders)
    counts = report.cells["status"].value_counts().to_dict()
    print(
        f"{len(report.cells)} cells ({', '.join(f'{n} {s}' for s, n in counts.items())}), "
        f"{len(report.results)} result rows",
        file=sys.stderr,
    )
    print(report.out_dir)
    return 0


def _chapter(studies, args: argparse.Namespace) -> int:
    from eval.study.chapter import build_chapter

    chapter = build_chapter(studies, args.chapter, renders=not args.no_renders, db=args.db)
    print(
        f"chapter: {len(chapter.tables)} tables, {len(chapter.figures)} figures, {len(chapter.cited)} references",
        file=sys.stderr,
    )
    print(chapter.out_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval study", description=__doc__.split("\n\n")[0])
    configure(parser)
    return main_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
