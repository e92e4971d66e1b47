"""The comparative study: a study file, every (input, method settings, seed) cell, one report.

Public API::

    from eval.study import load_study, Study, StudyFileError            # parse + validate, lines at fault
    from eval.study import Cell, cell_key                               # what a cell is and its key
    from eval.study import run_study, StudyRun, StudyInterrupted        # resumable runs, one writer
    from eval.study import InProcessExecutor, LocalExecutor, RayExecutor, make_executor
    from eval.study import build_report, bootstrap_ci, Report           # the report folder
    from eval.study import read_prompts, provenance                     # prompt sets from files
    from eval.study import build_chapter, Chapter                       # the thesis chapter (LaTeX + Markdown)

Command line: ``python -m eval study check|run|report STUDY.yaml`` (:mod:`eval.study.cli`);
``python -m eval study report STUDY.yaml [...] --chapter DIR`` writes the chapter (:mod:`eval.study.chapter`).
Runs are recorded in the run store like app runs, tagged with ``study`` and ``cell_key``.
"""

from eval.study.cells import Cell, cell_key
from eval.study.chapter import Chapter, build_chapter
from eval.study.executors import InProcessExecutor, LocalExecutor, RayExecutor, make_executor
from eval.study.prompts import provenance, read_prompts
from eval.study.report import build_report
from eval.study.run import StudyInterrupted, StudyRun, finished_cells, open_store, run_study
from eval.study.spec import Study, StudyFileError, load_study
from eval.study.tables import Report, bootstrap_ci

__all__ = [
    "Cell",
    "Chapter",
    "InProcessExecutor",
    "LocalExecutor",
    "RayExecutor",
    "Report",
    "Study",
    "StudyFileError",
    "StudyInterrupted",
    "StudyRun",
    "bootstrap_ci",
    "build_chapter",
    "build_report",
    "cell_key",
    "finished_cells",
    "load_study",
    "make_executor",
    "open_store",
    "provenance",
    "read_prompts",
    "run_study",
]
