"""The thesis chapter from a study: sections, metric definitions, citations, analysis sentences that
follow the numbers, LaTeX escaping, empty and all-failed studies, and that it compiles with pdflatex.

The main study is the fast chapter-2 families (vae, gan with the weights shipped in assets/weights/)
on two held-out captions with their reference meshes, two seeds: 8 cells, run once in process.
The compile checks need pdflatex, bibtex, pdftotext and pdfimages (texlive-latex-recommended and
poppler-utils; .ci/run installs them) and are skipped, with that reason, only where pdflatex is absent.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eval.runs.store import Store
from eval.study import build_report, load_study, run_study
from eval.study.analysis import fmt, paired_difference, significance_sentence
from eval.study.chapter import SECTIONS, build_chapter
from eval.study.cli import main as study_main
from eval.study.document import tex
from eval.study.tables import pick_quality
from tests import procedural

HAVE_TEX = shutil.which("pdflatex") is not None
needs_tex = pytest.mark.skipif(not HAVE_TEX, reason="pdflatex is not installed (apt: texlive-latex-recommended)")
SPECIAL = r"100% & co_op #1 $5 {x} ~y ^z \w"


def families_study(folder: Path, name: str = "fam") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    path.write_text(
        f"""\
name: {name}
output: {folder / "out"}
store: {folder / "study.db"}
seeds: [0, 1]
budget_s: 120
inputs:
  - captions: heldout
    limit: 2
methods:
  - id: vae
  - id: gan
protocol:
  views: 2
  resolution: 64
  options: {{samples: 2000}}
report:
  renders: 1
  views: 2
  bootstrap: 300
"""
    )
    return path


@pytest.fixture(scope="module")
def chapter(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("fam")
    study = load_study(families_study(folder))
    summary = run_study(study, progress=False)
    assert summary.done == 8, summary.failures
    out = folder / "chapter"
    assert study_main(["report", str(study.path), "--chapter", str(out)]) == 0
    built = build_chapter([study], out)  # the same folder again: same files
    return study, built


def _section(text: str, start: str, end: str | None) -> str:
    body = text.split(start, 1)[1]
    return body.split(end, 1)[0] if end else body


def test_chapter_has_its_three_sections_tables_figures_and_the_same_content_in_markdown(chapter):
    study, built = chapter
    tex_text, md_text = built.tex.read_text(), built.markdown.read_text()
    for title in SECTIONS:
        assert f"\\subsection{{{title}}}" in tex_text
        assert f"## {title}" in md_text
    assert tex_text.count("\\begin{table}") == md_text.count("**Table ") == len(built.tables) >= 5
    assert tex_text.count("\\begin{figure}") == md_text.count("**Figure ") == len(built.figures) >= 2
    assert all(p.is_file() for p in built.figures + built.tables)
    # the setup: inputs with their count and provenance, the methods with their versions, seeds, hardware
    setup = _section(md_text, "## Experimental Setup", "## Performance Metrics")
    assert "Inputs: 2 in 1 set; seeds 0, 1; 2 method variants; 8 cells." in setup
    assert "procedural shape set" in setup and "`vae v1`" in setup and "`gan v1`" in setup
    assert "Executor: in process" in setup and "| torch |" in setup
    # quality is a quality measure, from the references: never a mesh property
    assert built.data[0].quality == "f_score@0.02"


def test_every_metric_in_the_tables_is_defined_once_in_the_metrics_section(chapter):
    _, built = chapter
    md_text = built.markdown.read_text()
    metrics = _section(md_text, "## Performance Metrics", "## Results and Analysis")
    results = _section(md_text, "## Results and Analysis", "## References")
    headers = [line for line in results.splitlines() if line.startswith("| Variant |")]
    in_tables = {m for line in headers for m in re.findall(r"`([^`]+)` [↑↓]", line)}
    assert {"chamfer_l1", "f_score@0.02", "seconds_total", "watertight"} <= in_tables
    assert in_tables <= set(built.metrics)
    for metric in built.metrics:
        assert metrics.count(f"(`{metric}`)") == 1, metric
    assert "`clip` (8 cells): " in metrics  # skipped here (no CLIP weights offline), with the reason
    assert "f_score_thresholds" not in metrics  # per-row settings said once, not repeated


def test_every_cited_key_is_in_the_bib_and_the_bib_holds_nothing_else(chapter):
    _, built = chapter
    cited = {k for group in re.findall(r"\\cite\{([^}]*)\}", built.tex.read_text()) for k in group.split(",")}
    entries = set(re.findall(r"^@\w+\{([^,]+),", built.bib.read_text(), flags=re.M))
    assert cited == entries == set(built.cited)
    assert {"kingma2014vae", "wu2016gan3d", "tatarchenko2019single", "efron1993bootstrap"} <= cited
    bib = built.bib.read_text()
    assert "author = {Diederik P. Kingma and Max Welling}" in bib and "year = {2014}" in bib


def test_significance_sentences_match_the_paired_table(chapter):
    study, built = chapter
    d = built.data[0]
    md_text = built.markdown.read_text()
    diff = paired_difference(d.results, "f_score@0.02", "vae", "gan", study.report.bootstrap, study.report.confidence)
    assert diff is not None and diff.pairs == 4
    sentence = significance_sentence(diff)
    assert sentence.replace("_", "\\_").replace("[", "\\[").replace("]", "\\]") in md_text
    row = f"| `f_score@0.02` | vae - gan | {fmt(diff.mean)} | \\[{fmt(diff.low)}, {fmt(diff.high)}\\] | 4 | "
    assert row + ("yes |" if diff.significant else "no |") in md_text


def test_votes_give_a_human_vs_automatic_figure_and_sentence(chapter, tmp_path: Path):
    from eval import ratings
    from tests.ratings_support import OPEN, answers

    study, built = chapter
    with sqlite3.connect(study.store) as src, sqlite3.connect(tmp_path / "votes.db") as dst:
        src.backup(dst)  # votes go into a copy (WAL included): the module's chapter stays as it is
    store = Store(tmp_path / "votes.db")
    cells = built.data[0].cells
    run = {(r.variant, r.input_id, r.seed): r.run_id for r in cells.itertuples()}
    for i, (input_id, seed) in enumerate(sorted({(r.input_id, r.seed) for r in cells.itertuples()})):
        pair = (run[("vae", input_id, seed)], run[("gan", input_id, seed)])
        served = ratings.serve_pair(store, f"anon-r{i}", runs=pair, policy=OPEN)
        winner = "left" if served.left["id"] == pair[0] else "right"  # vae wins every vote
        ratings.vote(store, served.id, f"anon-r{i}", answers(winner), policy=OPEN)
    again = build_chapter([study], tmp_path / "chapter", stores=[store], renders=False)
    md_text = again.markdown.read_text()
    assert "Human judgement (arena win rate; 4 votes, 0 ratings): vae 1, gan 0" in md_text
    assert "Kendall's tau with f_score@0.02 needs three or more variants" in md_text.replace("\\_", "_")
    assert any(p.name.endswith("-human.png") for p in again.figures) and "Human against automatic" in md_text


def _results(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    rows = []
    for variant, values in (("A", a), ("B", b)):
        for i, v in enumerate(values):
            rows.append(
                {"variant": variant, "input_id": f"p/{i // 2:03d}", "seed": i % 2, "metric": "q", "value": float(v)}
                | {"higher_is_better": "higher"}
            )
    return pd.DataFrame(rows)


def test_the_significance_claim_flips_when_the_intervals_overlap():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.1, 12)
    clear = paired_difference(_results(base + 0.2 + rng.normal(0, 0.01, 12), base), "q", "A", "B")
    assert clear.significant and clear.better == "A" and clear.low > 0
    text = significance_sentence(clear)
    assert text.startswith("On q, A scores better than B") and "so the difference is significant." in text
    assert f"[{fmt(clear.low)}, {fmt(clear.high)}]" in text and "over 12 shared input-seed pairs" in text
    # the same scores with a difference that changes sign from pair to pair: intervals overlap 0
    noise = np.array([0.2, -0.2] * 6) + rng.normal(0, 0.01, 12)
    overlap = paired_difference(_results(base + noise, base), "q", "A", "B")
    assert overlap.low < 0 < overlap.high and not overlap.significant
    assert significance_sentence(overlap).endswith("the interval contains 0, so the difference is not significant.")
    # only pairs both variants have count: drop B's last two cells
    partial = _results(base + 0.2, base).iloc[:-2]
    assert paired_difference(partial, "q", "A", "B").pairs == 10


def test_the_quality_axis_is_never_a_mesh_property():
    summary = pd.DataFrame(
        [
            {"metric": "watertight", "group": "geometry", "higher_is_better": "higher", "mean": 1.0},
            {"metric": "components", "group": "geometry", "higher_is_better": "", "mean": 1.0},
        ]
    )
    assert pick_quality(summary) is None and pick_quality(summary, "watertight") is None
    more = pd.concat(
        [
            summary,
            pd.DataFrame([{"metric": "chamfer_l1", "group": "geometry", "higher_is_better": "lower", "mean": 0.1}]),
        ]
    )
    assert pick_quality(more) == "chamfer_l1"


# ----------------------------------------------------------------------------- compiling


def _compile(folder: Path, main: str) -> Path:
    stem = Path(main).stem
    for cmd in (["pdflatex"], ["bibtex"], ["pdflatex"], ["pdflatex"]):
        arg = stem if cmd == ["bibtex"] else main
        run = subprocess.run(
            [*cmd, *([] if cmd == ["bibtex"] else ["-interaction=nonstopmode", "-halt-on-error"]), arg],
            cwd=folder,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, f"{cmd[0]} failed:\n{run.stdout[-3000:]}"
    return folder / f"{stem}.pdf"


def _pdf_text(pdf: Path) -> str:
    """The PDF's text with runs of white space as one space."""
    out = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def _pdf_images(pdf: Path) -> int:
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    return sum(1 for line in listing.splitlines()[2:] if line.split()[2] == "image")


def _pages(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, flags=re.M).group(1))


@needs_tex
def test_the_chapter_compiles_standalone_with_every_table_and_figure(chapter):
    _, built = chapter
    pdf = _compile(built.out_dir, "chapter4-standalone.tex")
    text = _pdf_text(pdf)
    assert _pages(pdf) >= 3
    for title in SECTIONS:
        assert title in text
    assert "Experimental Evaluation" in text and "Bibliography" in text and "Auto-Encoding Variational" in text
    md_text = built.markdown.read_text()
    n_tables, n_figures = md_text.count("**Table "), md_text.count("**Figure ")
    for i in range(1, n_tables + 1):
        assert f"Table 4.{i}:" in text
    for i in range(1, n_figures + 1):
        assert f"Figure 4.{i}:" in text
    assert _pdf_images(pdf) == n_figures
    assert "??" not in text  # every \ref and \cite resolved


@needs_tex
def test_the_chapter_compiles_when_input_into_a_report_class_thesis(chapter, tmp_path: Path):
    _, built = chapter
    shutil.copytree(built.out_dir, tmp_path / "chap4")
    (tmp_path / "thesis.tex").write_text(
        r"""\documentclass{report}
\usepackage{graphicx,booktabs,amsmath}
\begin{document}
\chapter{Introduction}
Text.
\chapter{Results}
\def\trilemmanochapter{}
\def\trilemmachapterdir{chap4/}
\input{chap4/chapter4}
\bibliographystyle{plain}
\bibliography{chap4/chapter4}
\end{document}
"""
    )
    pdf = _compile(tmp_path, "thesis.tex")
    text = _pdf_text(pdf)
    assert "2.0.1 Experimental Setup" in text and "2.0.3 Results and Analysis" in text
    assert "Experimental Evaluation" not in text  # the thesis' own chapter heading is kept
    assert _pdf_images(pdf) == len(built.figures) and "??" not in text


def test_latex_special_characters_are_escaped():
    assert tex(SPECIAL) == (r"100\% \& co\_op \#1 \$5 \{x\} \textasciitilde{}y \textasciicircum{}z \textbackslash{}w")
    assert tex("naïve – Ω") == "naive -- ?"


def _special_study(folder: Path, run: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts.txt").write_text(f"{SPECIAL}\na ball\n")
    path = folder / "study.yaml"
    path.write_text(
        f"""\
name: special
output: {folder / "out"}
store: {folder / "study.db"}
seeds: [0, 1]
inputs:
  - prompts: prompts.txt
methods:
  - id: test-sphere
    label: "odd & 50% {{label}} #1"
    settings: {{subdivisions: 1}}
  - id: test-sphere
    label: "plain_label ~^ $x$"
    settings: {{subdivisions: 2}}
report:
  renders: 2
  views: 2
  bootstrap: 100
"""
    )
    if run:
        run_study(load_study(path), progress=False)
    return path


@pytest.fixture
def tiny_sphere():
    procedural.install()
    yield
    procedural.uninstall()


@needs_tex
def test_prompts_and_labels_with_latex_special_characters_compile(tmp_path: Path, tiny_sphere):
    study = load_study(_special_study(tmp_path))
    built = build_chapter([study], tmp_path / "chapter")
    md_text = built.markdown.read_text()
    assert "100% & co\\_op \\#1 \\$5 {x} \\~y ^z \\\\w" in md_text
    text = _pdf_text(_compile(built.out_dir, "chapter4-standalone.tex"))
    # Computer Modern (OT1) draws \_ as a rule and ~ ^ as accents, which pdftotext gives as " ", "˜", "ˆ"
    assert "100% & co op #1 $5 {x} ˜y ˆz \\w" in text
    assert "odd & 50% {label} #1" in text and "plain label ˜ˆ $x$" in text
    # no quality measure here (no references, no CLIP weights): the chapter says so, no quality plot
    assert built.data[0].quality is None
    assert "measured no quality measure" in md_text and not list(built.out_dir.glob("figures/*quality*"))


@needs_tex
def test_an_all_failed_study_gives_a_chapter_that_says_so(tmp_path: Path, tiny_sphere):
    path = tmp_path / "study.yaml"
    path.write_text(
        f"""\
name: broken
output: {tmp_path / "out"}
store: {tmp_path / "study.db"}
seeds: [0]
inputs:
  - prompts: ["a ball", "a box"]
methods:
  - id: test-sphere
    settings: {{fail: true}}
"""
    )
    study = load_study(path)
    run_study(study, progress=False)
    built = build_chapter([study], tmp_path / "chapter")
    md_text = built.markdown.read_text()
    assert "No cell of study broken finished, so there are no results to compare" in md_text
    assert "test-sphere: 2 failed (of 2 cells)" in md_text and "asked to fail" in md_text
    assert not built.figures and built.metrics == []
    text = _pdf_text(_compile(built.out_dir, "chapter4-standalone.tex"))
    assert "No cell of study broken finished" in text


def test_a_study_that_never_ran_gives_a_chapter_that_says_so_and_what_it_needs(tmp_path: Path, tiny_sphere, capsys):
    path = _special_study(tmp_path / "a", run=False)
    out = tmp_path / "chapter"
    assert study_main(["report", str(path), "--chapter", str(out)]) == 0
    md_text = (out / "chapter4.md").read_text()
    assert "No study in this chapter has run a cell yet, so it has no results to report." in md_text
    assert (
        "### Studies prepared but not run here" in md_text and "`study.yaml`: 8 cells, about 0 GPU minutes" in md_text
    )
    assert "Study special has not been run here" in md_text
    assert (out / "chapter4.bib").is_file() and (out / "chapter4.tex").is_file()
    # several studies without --chapter: a typed error, exit 2
    assert study_main(["report", str(path), str(path)]) == 2
    assert "only with --chapter" in capsys.readouterr().err


def test_the_report_on_a_study_without_quality_measures_has_no_quality_plot(tmp_path: Path, tiny_sphere):
    study = load_study(_special_study(tmp_path))
    report = build_report(study, Store(study.store), tmp_path / "report", renders=False)
    assert report.quality is None
    assert not (tmp_path / "report" / "plots" / "quality_vs_time.png").exists()
    assert "measured no quality measure" in (tmp_path / "report" / "report.md").read_text()


@needs_tex
def test_several_studies_make_one_chapter_with_a_part_each(chapter, tmp_path: Path, tiny_sphere):
    fam, _ = chapter
    special = load_study(_special_study(tmp_path / "special"))
    built = build_chapter([fam, special], tmp_path / "chapter", renders=False)
    md_text = built.markdown.read_text()
    for part in ("## Experimental Setup", "## Results and Analysis"):
        section = _section(md_text, part, None)
        assert section.index("### Study fam") < section.index("### Study special")
    assert "comparative studies fam, special" in md_text and ": 16 cells (one input" in md_text
    assert [d.quality for d in built.data] == ["f_score@0.02", None]
    assert "Study special measured no quality measure" in md_text and "Study fam measured" not in md_text
    pdf = _compile(built.out_dir, "chapter4-standalone.tex")
    log = (built.out_dir / "chapter4-standalone.log").read_text(errors="replace")
    assert "multiply defined" not in log and "??" not in _pdf_text(pdf)


def test_a_method_without_paper_metadata_is_cited_from_its_own_attributes_and_paths_are_not_shown():
    from types import SimpleNamespace

    from eval.study.bibliography import bibtex, method_keys
    from eval.study.chapter import public

    method = SimpleNamespace(id="My_Method", paper="Someone 2024, A & B_c: 50% better", paper_url="https://x.org/a")
    assert method_keys(method) == ("method-my-method",)
    bib = bibtex(["method-my-method", "ho2020ddpm"], {"method-my-method": method})
    assert "@misc{method-my-method,\n  title = {{Someone 2024, A \\& B\\_c: 50\\% better}}" in bib
    assert "url = {https://x.org/a}" in bib and "@inproceedings{ho2020ddpm," in bib
    with pytest.raises(KeyError, match="no paper metadata"):
        bibtex(["nobody2020"])
    assert method_keys(SimpleNamespace(id="plain", paper="", paper_url="")) == ()
    text = "cannot read /srv/data/private/scene.ply (see https://host.org/a/b/c.pt)"
    assert public(text) == "cannot read scene.ply (see https://host.org/a/b/c.pt)"
