"""The study as a thesis chapter: ``python -m eval study report STUDY... --chapter OUT/``.

``build_chapter(studies, out)`` writes, for one or several studies::

    chapter4.tex          the chapter body, to \\input into a report-class thesis (needs graphicx,
                          booktabs and amsmath); \\def\\trilemmanochapter{} before it leaves out the
                          \\chapter line, \\def\\trilemmachapterdir{path/} says where its folder is
    chapter4.bib          BibTeX entries of every cited key, written from the project's paper metadata
    chapter4-standalone.tex  a wrapper document that compiles it alone (pdflatex, bibtex, pdflatex x2)
    chapter4.md           the same content in Markdown (figures linked, references listed at the end)
    figures/*.png         render grids (colour and geometry), quality vs time, the trilemma plot,
                          PSNR vs training time (video methods), human vs automatic ranking
    tables/*.tex          each table of the chapter on its own

Three sections: Experimental Setup, Performance Metrics, Results and Analysis. Every analysis
sentence is made from the tables' numbers (:mod:`eval.study.analysis`); the quality axis is a quality
measure only (:data:`eval.study.metric_defs.QUALITY_ORDER`), and a study that measured none says so.
The text carries no dates and no server paths, so the same store gives the same files.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import shorten
from typing import Any

import numpy as np
import pandas as pd

from eval.runs.store import Store
from eval.study import analysis
from eval.study.analysis import fmt
from eval.study.bibliography import PAPERS, bibtex, method_keys, reference_text, short_cite
from eval.study.metric_defs import definition, direction_text, is_quality
from eval.study.spec import Study
from eval.study.tables import (
    DIVERSITY_METRIC,
    DIVERSITY_POINTS,
    TIME_METRIC,
    best_variant,
    cell_table,
    diversity_rows,
    human_scores,
    pick_quality,
    ranking_agreement,
    result_table,
    slug,
    summarize,
)

__all__ = ["Chapter", "build_chapter"]

CHAPTER_TITLE = "Experimental Evaluation"
SECTIONS = ("Experimental Setup", "Performance Metrics", "Results and Analysis")
TABLE_COLUMNS = 4  # metrics per table
MAX_GRIDS = 4  # render grids per study
GRID_VIEWS = 4  # views per mode in a render grid
MAX_ROWS = 25  # rows of a failure or input list before "and N more"
HIDDEN_SETTINGS = (  # per-cell values or said once elsewhere (the frame, the protocol version)
    "frame",
    "reference",
    "protocol",
    "convention",
    "f_score_thresholds",
    "iou_points",
    "iou_region",
    "prompt",
    "cell",
)
REFERENCE_METRICS = ("normal_consistency", "volume_iou", "icp_rmse")
DESCRIPTIVE_GROUPS = ("alignment", "image", "geometry", "diversity")

# ----------------------------------------------------------------------------- content model


@dataclass(frozen=True)
class Cite:
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Bold:
    text: str


@dataclass(frozen=True)
class Math:
    tex: str
    md: str


@dataclass(frozen=True)
class Ref:
    label: str  # tab:... or fig:...


Seg = str | Cite | Code | Bold | Math | Ref
Text = list[Seg]


@dataclass
class Table:
    label: str
    caption: Text
    header: list[Text]
    rows: list[list[Text]]
    align: str


@dataclass
class Figure:
    label: str
    path: str  # relative to the chapter folder
    caption: Text
    width: float = 0.9


@dataclass
class Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    methods: dict[str, object] = field(default_factory=dict)  # citation key -> method without paper metadata

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, *segs: Seg) -> None:
        self.blocks.append(("p", list(segs)))

    def items(self, entries: list[Text]) -> None:
        if entries:
            self.blocks.append(("ul", entries))

    def table(self, table: Table) -> None:
        self.blocks.append(("table", table))

    def figure(self, figure: Figure) -> None:
        self.blocks.append(("fig", figure))

    def cited(self) -> list[str]:
        keys: list[str] = []

        def walk(segs: Text) -> None:
            keys.extend(k for s in segs if isinstance(s, Cite) for k in s.keys)

        for kind, data in self.blocks:
            if kind == "p":
                walk(data)
            elif kind == "ul":
                for e in data:
                    walk(e)
            elif kind == "table":
                walk(data.caption)
                for row in [data.header, *data.rows]:
                    for cell in row:
                        walk(cell)
            elif kind == "fig":
                walk(data.caption)
        return list(dict.fromkeys(keys))

    def numbers(self) -> dict[str, int]:
        out, counts = {}, {"table": 0, "fig": 0}
        for kind, data in self.blocks:
            if kind in counts:
                counts[kind] += 1
                out[data.label] = counts[kind]
        return out


# ----------------------------------------------------------------------------- LaTeX

_TEX_CHARS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "²": r"$^2$",
    "³": r"$^3$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "±": r"$\pm$",
    "°": r"$^\circ$",
    "τ": r"$\tau$",
    "·": r"$\cdot$",
    "…": r"\ldots{}",
    "\n": " ",
}


def tex(text: Any) -> str:
    """Plain text as LaTeX: special characters escaped; other non-ASCII reduced to ASCII (or '?')."""
    out = []
    for ch in str(text):
        if ch in _TEX_CHARS:
            out.append(_TEX_CHARS[ch])
        elif ord(ch) < 128:
            out.append(ch if ch.isprintable() else " ")
        else:
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append("".join(_TEX_CHARS.get(c, c) for c in ascii_) or "?")
    return "".join(out)


def _tex_segs(segs: Text) -> str:
    out = []
    for s in segs:
        if isinstance(s, str):
            out.append(tex(s))
        elif isinstance(s, Cite):
            out.append(f"~\\cite{{{','.join(s.keys)}}}")
        elif isinstance(s, Code):
            out.append(f"\\texttt{{{tex(s.text)}}}")
        elif isinstance(s, Bold):
            out.append(f"\\textbf{{{tex(s.text)}}}")
        elif isinstance(s, Math):
            out.append(f"${s.tex}$")
        elif isinstance(s, Ref):
            kind = "Table" if s.label.startswith("tab:") else "Figure"
            out.append(f"{kind}~\\ref{{{s.label}}}")
    return "".join(out)


def _tex_table(t: Table) -> str:
    lines = [
        "\\begin{table}[htbp]",
        "\\centering",
        "\\small",
        f"\\caption{{{_tex_segs(t.caption)}}}",
        f"\\label{{{t.label}}}",
        "\\trilemmafit{%",
        f"\\begin{{tabular}}{{{t.align}}}",
        "\\toprule",
        " & ".join(_tex_segs(h) for h in t.header) + " \\\\",
        "\\midrule",
        *(" & ".join(_tex_segs(c) for c in row) + " \\\\" for row in t.rows),
        "\\bottomrule",
        "\\end{tabular}}",
        "\\end{table}",
    ]
    return "\n".join(lines)


TEX_PREAMBLE = r"""% Generated by `python -m eval study report ... --chapter`; do not edit by hand (regenerate instead).
% Needs \usepackage{graphicx,booktabs,amsmath}. Before \input: \def\trilemmanochapter{} to leave out
% the \chapter line; \def\trilemmachapterdir{path/to/this/folder/} when it is not the current folder.
\providecommand{\trilemmachapterdir}{}
\providecommand{\trilemmafit}[1]{\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{#1}}
"""


def render_tex(doc: Doc) -> str:
    out = [TEX_PREAMBLE]
    commands = {0: "chapter", 1: "subsection", 2: "subsubsection", 3: "paragraph"}
    for kind, data in doc.blocks:
        if kind == "h":
            level, text = data
            if level == 0:
                out.append(f"\\ifdefined\\trilemmanochapter\\else\\chapter{{{tex(text)}}}\\label{{chap:trilemma}}\\fi")
            else:
                out.append(f"\\{commands[level]}{{{tex(text)}}}")
        elif kind == "p":
            out.append(_tex_segs(data))
        elif kind == "ul":
            out.append("\\begin{itemize}\n" + "\n".join(f"\\item {_tex_segs(e)}" for e in data) + "\n\\end{itemize}")
        elif kind == "table":
            out.append(_tex_table(data))
        elif kind == "fig":
            out.append(
                "\n".join(
                    [
                        "\\begin{figure}[htbp]",
                        "\\centering",
                        f"\\includegraphics[width={data.width:g}\\linewidth]{{\\trilemmachapterdir {data.path}}}",
                        f"\\caption{{{_tex_segs(data.caption)}}}",
                        f"\\label{{{data.label}}}",
                        "\\end{figure}",
                    ]
                )
            )
    return "\n\n".join(out) + "\n"


STANDALONE = r"""\documentclass[11pt,a4paper]{report}
\input{glyphtounicode}\pdfgentounicode=1
\usepackage{graphicx,booktabs,amsmath}
\usepackage[margin=2.5cm]{geometry}
\begin{document}
\setcounter{chapter}{3}
\input{chapter4}
\bibliographystyle{plain}
\bibliography{chapter4}
\end{document}
"""

# ----------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~$])")


def md(text: Any) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(text).replace("\n", " "))


def _md_segs(segs: Text, numbers: dict[str, int], methods: dict[str, object]) -> str:
    out = []
    for s in segs:
        if isinstance(s, str):
            out.append(md(s))
        elif isinstance(s, Cite):
            out.append(" (" + "; ".join(f"[{md(short_cite(k, methods))}](#ref-{k})" for k in s.keys) + ")")
        elif isinstance(s, Code):
            out.append(f"`{s.text.replace('`', '')}`")
        elif isinstance(s, Bold):
            out.append(f"**{md(s.text)}**")
        elif isinstance(s, Math):
            out.append(f"`{s.md}`")
        elif isinstance(s, Ref):
            kind = "Table" if s.label.startswith("tab:") else "Figure"
            out.append(f"{kind} {numbers.get(s.label, '?')}")
    return "".join(out)


def render_md(doc: Doc) -> str:
    numbers = doc.numbers()
    out = []
    for kind, data in doc.blocks:
        if kind == "h":
            level, text = data
            out.append("#" * (level + 1) + " " + (f"Chapter 4: {text}" if level == 0 else text))
        elif kind == "p":
            out.append(_md_segs(data, numbers, doc.methods))
        elif kind == "ul":
            out.append("\n".join(f"- {_md_segs(e, numbers, doc.methods)}" for e in data))
        elif kind == "table":
            caption = f"**Table {numbers[data.label]}.** {_md_segs(data.caption, numbers, doc.methods)}"
            head = "| " + " | ".join(_md_segs(h, numbers, doc.methods) for h in data.header) + " |"
            rule = "|" + "---|" * len(data.header)
            rows = ["| " + " | ".join(_md_segs(c, numbers, doc.methods) for c in row) + " |" for row in data.rows]
            out.append("\n".join([caption, "", head, rule, *rows]))
        elif kind == "fig":
            caption = f"**Figure {numbers[data.label]}.** {_md_segs(data.caption, numbers, doc.methods)}"
            out.append(f"![Figure {numbers[data.label]}]({data.path})\n\n{caption}")
    keys = doc.cited()
    if keys:
        out.append("## References")
        out.append("\n".join(f'- <a id="ref-{k}"></a>{md(reference_text(k, doc.methods))}' for k in keys))
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- data


@dataclass
class StudyData:
    study: Study
    store: Store
    cells: pd.DataFrame
    results: pd.DataFrame
    summary: pd.DataFrame
    quality: str | None
    human: pd.DataFrame

    @property
    def name(self) -> str:
        return self.study.name

    @property
    def variants(self) -> list[str]:
        return [v.label for v in self.study.methods]

    @property
    def ran(self) -> bool:
        return bool((self.cells["status"] != "not run").any())

    @property
    def done(self) -> pd.DataFrame:
        return self.cells[self.cells["status"] == "done"]


def load_data(study: Study, store: Store) -> StudyData:
    opts = study.report
    cells = cell_table(study, store)
    results = result_table(cells, store)
    summary = summarize(results, opts.bootstrap, opts.confidence)
    diversity = diversity_rows(cells)
    if len(diversity):
        extra = diversity.assign(group="diversity", metric=DIVERSITY_METRIC, unit="", higher_is_better="higher")
        summary = pd.concat([summary, summarize(extra, opts.bootstrap, opts.confidence)], ignore_index=True)
    human = human_scores(store, cells)
    return StudyData(study, store, cells, results, summary, pick_quality(summary, study.protocol.quality), human)


_ABS_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.@+-]+){2,}/?")  # not inside a URL


def public(text: Any) -> str:
    """Text without server paths: an absolute path becomes its last part."""
    return _ABS_PATH.sub(lambda m: m.group(0).rstrip("/").rsplit("/", 1)[-1], str(text))


# ----------------------------------------------------------------------------- the chapter


@dataclass
class Chapter:
    out_dir: Path
    tex: Path
    bib: Path
    markdown: Path
    standalone: Path
    figures: list[Path]
    tables: list[Path]
    cited: list[str]
    metrics: list[str]  # every metric in the chapter's tables
    data: list[StudyData]


def build_chapter(
    studies: list[Study],
    out_dir: str | Path,
    stores: list[Store] | None = None,
    *,
    renders: bool = True,
    db: str | Path | None = None,
) -> Chapter:
    """Write the chapter folder for ``studies`` (each read from its store) and return what it wrote."""
    import methods
    from eval.study.run import open_store

    out = Path(out_dir)
    for sub, pattern in (("figures", "*.png"), ("tables", "*.tex")):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for stale in (out / sub).glob(pattern):
            stale.unlink()
    stores = stores or [open_store(s, db) for s in studies]
    data = [load_data(s, st) for s, st in zip(studies, stores, strict=True)]
    cite_methods: dict[str, object] = {}
    for d in data:
        for v in d.study.methods:
            m = methods.get(v.method)
            for key in method_keys(m):
                if key not in PAPERS:
                    cite_methods[key] = m
    builder = _Builder(data, out, renders)
    doc = builder.build()
    doc.methods = cite_methods
    (out / "chapter4.tex").write_text(render_tex(doc), encoding="utf-8")
    (out / "chapter4.md").write_text(render_md(doc), encoding="utf-8")
    (out / "chapter4-standalone.tex").write_text(STANDALONE, encoding="utf-8")
    cited = doc.cited()
    (out / "chapter4.bib").write_text(bibtex(cited, cite_methods), encoding="utf-8")
    tables = []
    for kind, t in doc.blocks:
        if kind == "table":
            path = out / "tables" / f"{slug(t.label.split(':', 1)[1])}.tex"
            path.write_text(TEX_PREAMBLE + "\n" + _tex_table(t) + "\n", encoding="utf-8")
            tables.append(path)
    return Chapter(
        out,
        out / "chapter4.tex",
        out / "chapter4.bib",
        out / "chapter4.md",
        out / "chapter4-standalone.tex",
        builder.figures,
        tables,
        cited,
        builder.table_metrics,
        data,
    )


class _Builder:
    def __init__(self, data: list[StudyData], out: Path, renders: bool):
        self.data = data
        self.out = out
        self.renders = renders
        self.doc = Doc()
        self.figures: list[Path] = []
        self.table_metrics: list[str] = []
        self.several = len(data) > 1

    # -- helpers

    def label(self, kind: str, d: StudyData, name: str) -> str:
        return f"{kind}:{slug(d.name)}-{slug(name)}".replace("_", "-").replace(".", "-")

    def study_heading(self, level: int, d: StudyData) -> None:
        if self.several:
            self.doc.h(level, f"Study {d.name}")

    def shown(self) -> list[StudyData]:
        return [d for d in self.data if d.ran]

    def build(self) -> Doc:
        doc = self.doc
        doc.h(0, CHAPTER_TITLE)
        ran = self.shown()
        names = ", ".join(d.name for d in self.data)
        doc.p(
            f"This chapter reports the comparative stud{'ies' if len(self.data) > 1 else 'y'} {names}, "
            f"run with the Trilemma3D workbench: {sum(len(d.cells) for d in ran)} cells (one input, one method "
            "variant, one seed each), every asset scored by the same metric protocol. Every number and sentence "
            "below is generated from the run store by ",
            Code("python -m eval study report --chapter"),
            ".",
        )
        if not self.data or not ran:
            doc.p("No study in this chapter has run a cell yet, so it has no results to report.")
        self.setup()
        self.metrics()
        self.results()
        return doc

    # -- 4.0.1

    def setup(self) -> None:
        import methods
        from eval.judging import render
        from eval.judging.protocol import FRAME, PROTOCOL_VERSION

        doc = self.doc
        doc.h(1, SECTIONS[0])
        for d in self.data:
            if not d.ran:
                continue
            s = d.study
            self.study_heading(2, d)
            if s.description:
                doc.p(s.description.strip())
            items = s.items()
            doc.p(
                f"Inputs: {len(items)} in {len(s.inputs)} set{'s' if len(s.inputs) != 1 else ''}; seeds "
                f"{', '.join(map(str, s.seeds))}; {len(s.methods)} method variant{'s' if len(s.methods) != 1 else ''}"
                f"; {len(d.cells)} cells.",
            )
            rows = [
                [[x.name], [x.modality], [str(len(x.items))], [public(x.source)], [public(x.provenance or "not given")]]
                for x in s.inputs
            ]
            doc.table(
                Table(
                    self.label("tab", d, "inputs"),
                    [f"Inputs of study {s.name}: each set with its provenance and item count."],
                    [["Set"], ["Modality"], ["Items"], ["Source"], ["Provenance"]],
                    rows,
                    "llrp{0.25\\linewidth}p{0.35\\linewidth}",
                )
            )
            listed = [[Code(i.id), ": ", i.label] for i in items[:MAX_ROWS]]
            if len(items) > MAX_ROWS:
                listed.append([f"and {len(items) - MAX_ROWS} more (cells.csv of the study report)"])
            doc.items(listed)
            rows = []
            for v in s.methods:
                m = methods.get(v.method)
                keys = method_keys(m)
                settings = ", ".join(f"{k}={val}" for k, val in v.overrides.items()) or "defaults"
                name: Text = [f"{m.label} ", Code(f"{m.id} v{m.version}")]
                if keys:
                    name.append(Cite(keys))
                budget = f"{v.budget_s:g}" if v.budget_s else "none"
                rows.append([[v.label], name, [m.family], [settings], [budget]])
            doc.table(
                Table(
                    self.label("tab", d, "methods"),
                    [f"Methods of study {s.name}: variant, method and version, family, settings, budget per cell."],
                    [["Variant"], ["Method (version)"], ["Family"], ["Settings"], ["Budget (s)"]],
                    rows,
                    "p{0.16\\linewidth}p{0.26\\linewidth}p{0.16\\linewidth}p{0.24\\linewidth}r",
                )
            )
            p = s.protocol
            views = p.views or 8
            resolution = p.resolution or 224
            doc.p(
                f"Renderer and camera ring: every asset is normalised ({FRAME}) and rendered by the workbench's "
                f"rasteriser (eval.judging.render, PyTorch on the CPU in float64) from {views} cameras on a ring at "
                f"{render.RING_ELEVATION:g} degrees elevation, azimuths evenly spaced from the front, at "
                f"{resolution} x {resolution} pixels on white (lengths below are in units r of the bounding-sphere "
                "radius); colour renders show the asset's base colour unlit, "
                "geometry renders are white Lambertian under a head light. Metric protocol version "
                f"{PROTOCOL_VERSION}; CLIP models: {', '.join(p.clip_models) or 'the protocol default'}.",
            )
            doc.p(f"Executor: {self.executor(d)}.")
        hardware, versions = self.machines()
        if hardware:
            doc.h(2, "Hardware and software")
            label = "tab:trilemma-hardware"
            doc.table(
                Table(label, ["Hardware the cells ran on."], [["Hardware"], ["Cells"]], hardware, "p{0.75\\linewidth}r")
            )
            doc.table(
                Table(
                    "tab:trilemma-versions",
                    ["Library versions recorded with the runs."],
                    [["Library"], ["Versions"]],
                    versions,
                    "lp{0.6\\linewidth}",
                )
            )
        planned = [d for d in self.data if not d.ran]
        if planned:
            doc.h(2, "Studies prepared but not run here")
            from eval.judging.metrics.clip import DEFAULT_CLIP

            clip = sorted({m for d in planned for m in d.study.protocol.clip_models} or {DEFAULT_CLIP})
            doc.p(
                "These study files are ready for a GPU host; they were not run on this machine. Each also needs "
                f"the CLIP checkpoint(s) the protocol scores with ({', '.join(clip)}) for CLIP score and "
                "R-precision. What each method needs and the expected cost (the methods' own time estimates on "
                "a GPU, summed over the cells):"
            )
            doc.items([self.plan_line(d) for d in planned])

    def executor(self, d: StudyData) -> str:
        from eval.study.run import MANIFEST

        manifest = Path(d.study.output) / MANIFEST
        if manifest.exists():
            try:
                last = json.loads(manifest.read_text()).get("last_run", {})
            except (OSError, ValueError):
                last = {}
            if last.get("executor"):
                return public(last["executor"])
        return "not recorded (no manifest in the study's output folder)"

    def machines(self) -> tuple[list[list[Text]], list[list[Text]]]:
        from eval.study.document import _hardware_rows, _version_rows

        hw: dict[str, int] = {}
        libs: dict[str, set[str]] = {}
        for d in self.shown():
            if d.cells["run_id"].eq("").all():
                continue
            for key, n in _hardware_rows(d.store, d.cells):
                hw[key] = hw.get(key, 0) + n
            for lib, versions in _version_rows(d.store, d.cells):
                libs.setdefault(lib, set()).update(v for v in versions.split(", ") if v)
        return (
            [[[public(k)], [str(n)]] for k, n in hw.items()],
            [[[lib], [", ".join(sorted(v))]] for lib, v in sorted(libs.items())],
        )

    def plan_line(self, d: StudyData) -> Text:
        import methods

        seconds = 0.0
        by_method: dict[str, list[str]] = {}
        for v in d.study.methods:
            cells = [c for c in d.study.cells if c.variant == v.label]
            m = methods.get(v.method)
            settings = type(m.default_settings(cells[0].modality)).from_dict(cells[0].settings)
            seconds += sum(m.estimate_seconds(settings, True) for _ in cells)
            if v.method in by_method:
                by_method[v.method].append(v.label)
                continue
            by_method[v.method] = [v.label]
            what = []
            if m.weights:
                size = f" ({m.weights_gb:g} GB)" if m.weights_gb else ""
                names = [w.rsplit("/", 1)[-1] if w.startswith("http") else w for w in m.weights]
                listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
                what.append(f"weights {listed}{size}")
            if m.needs_gpu:
                what.append("a CUDA GPU")
            if m.vram_gb >= 1:
                what.append(f"about {m.vram_gb:g} GB of GPU memory")
            by_method[v.method].append("; ".join(what) or "no weights to download")
        needs = []
        for method_id, (first, need, *more) in ((k, v) for k, v in by_method.items()):
            variants = [first, *more]
            names = variants[0] if len(variants) == 1 else f"{method_id}: {len(variants)} variants"
            needs.append(f"{names} ({need})")
        cost = f"{seconds / 3600:.1f} GPU hours" if seconds >= 3600 else f"{seconds / 60:.0f} GPU minutes"
        return [
            Code(d.study.path.name),
            f": {len(d.cells)} cells, about {cost}; ",
            "; ".join(needs),
            ".",
        ]

    # -- 4.0.2

    def metric_groups(self, d: StudyData) -> list[tuple[str, list[str]]]:
        """The chapter's tables for a study: (title, metrics) with directed metrics and cost."""
        s = d.summary[np.isfinite(d.summary["mean"])]
        names = list(dict.fromkeys(s["metric"]))
        direction = dict(zip(s["metric"], s["higher_is_better"], strict=False))
        group = dict(zip(s["metric"], s["group"], strict=False))
        directed = [m for m in names if direction.get(m) in ("higher", "lower")]
        quality = [m for m in directed if is_quality(m) or m in REFERENCE_METRICS or group[m] == "alignment"]
        image = [m for m in directed if m not in quality and group[m] == "image"]
        diversity = [m for m in directed if group[m] == "diversity"]
        cost = [m for m in names if m in (TIME_METRIC, "peak_rss_mb", "peak_gpu_mb")]
        props = [m for m in directed if m not in quality + image + diversity + cost and group[m] != "cost"]
        out = [
            ("Quality", quality + diversity),
            ("Image fidelity", image),
            ("Mesh and point-cloud properties", props),
            ("Cost", cost),
        ]
        return [(title, metrics) for title, metrics in out if metrics]

    def metrics(self) -> None:
        doc = self.doc
        doc.h(1, SECTIONS[1])
        shown: list[str] = []
        for d in self.shown():
            for _, metrics in self.metric_groups(d):
                shown += metrics
        shown = list(dict.fromkeys(shown))
        self.table_metrics = shown
        if not shown:
            doc.p("No metric has a value in these studies, so none is defined here.")
        else:
            doc.p(
                "Each metric in the result tables, defined once. Values are computed by the workbench's metric "
                "protocol (eval.judging.protocol) on every asset the same way; methods never score themselves. The "
                "settings are those recorded with the values."
            )
            doc.items([self.metric_item(m) for m in shown])
        bootstrap = self.data[0].study.report if self.data else None
        if bootstrap is not None:
            level = round(bootstrap.confidence * 100)
            doc.p(
                f"Statistics: each table cell is the mean over a variant's cells (inputs x seeds) with a {level}% "
                f"percentile bootstrap interval ({bootstrap.bootstrap} resamples, seed 0)",
                Cite(("efron1993bootstrap",)),
                ". Two variants are compared by a paired bootstrap over the input-seed pairs both finished: the "
                "interval of the mean per-pair difference; a difference is called significant when that interval "
                "excludes 0. Agreement between two rankings is Kendall's tau-b",
                Cite(("kendall1938tau",)),
                ", each metric oriented so that larger is better.",
            )
        extra = self.descriptive(shown)
        if extra:
            doc.p(
                "Recorded for information but not compared (no preferred direction): ",
                *self.code_list(extra),
                ".",
            )
        skipped = self.skipped()
        if skipped:
            doc.p("Metrics that were skipped, with the reason the protocol gave:")
            doc.items(skipped)
        quality = [d for d in self.shown() if d.quality is None]
        for d in quality:
            doc.p(
                f"Study {d.name} measured no quality measure (R-precision, CLIP score, reference F-score or "
                "Chamfer distance, held-out PSNR, human preference), so its quality axis is empty: no "
                "quality-vs-time or trilemma plot is drawn, and mesh properties such as watertightness are not "
                "used in its place."
            )

    def metric_item(self, metric: str) -> Text:
        entry = definition(metric)
        rows = [r for d in self.shown() for r in [d.results[d.results["metric"] == metric]] if len(r)]
        unit, direction, settings = "", "", {}
        if rows:
            first = rows[0].iloc[0]
            unit, direction = first["unit"], first["higher_is_better"]
            try:
                settings = json.loads(first["metric_settings"] or "{}")
            except ValueError:
                settings = {}
        elif metric == DIVERSITY_METRIC:
            unit, direction = "r", "higher"
            settings = {"points": DIVERSITY_POINTS, "pairs": "every two seeds of one input"}
        else:
            for d in self.shown():
                part = d.summary[d.summary["metric"] == metric]
                if len(part):
                    unit, direction = part["unit"].iloc[0], part["higher_is_better"].iloc[0]
                    break
        out: Text = [Bold(entry.title), " (", Code(metric), "): ", entry.wording]
        if entry.formula_tex:
            out += [": ", Math(entry.formula_tex, entry.formula_md)]
        out.append(f". Unit: {unit or 'none'}; {direction_text(direction)}")
        shown = self.settings_text(settings)
        if shown:
            out.append(f". Settings: {shown}")
        out.append(".")
        if entry.cites:
            out.insert(-1, Cite(entry.cites))
        return out

    @staticmethod
    def settings_text(settings: dict[str, Any]) -> str:
        parts = []
        for key, value in settings.items():
            if key in HIDDEN_SETTINGS:
                continue
            if isinstance(value, float):
                value = fmt(value)
            if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 60 and key != "frame":
                parts.append(f"{key} = {public(value)}")
            elif isinstance(value, list) and len(value) <= 4 and all(isinstance(x, (int, float, str)) for x in value):
                parts.append(f"{key} = {', '.join(public(x) for x in value)}")
        return "; ".join(parts)

    @staticmethod
    def code_list(names: list[str]) -> Text:
        out: Text = []
        for i, n in enumerate(names):
            if i:
                out.append(", ")
            out.append(Code(n))
        return out

    def descriptive(self, shown: list[str]) -> list[str]:
        names: list[str] = []
        for d in self.shown():
            r = d.results
            part = r[np.isfinite(r["value"]) & (r["higher_is_better"] == "") & (r["group"] != "cost")]
            names += [m for m in dict.fromkeys(part["metric"]) if m not in shown]
        return list(dict.fromkeys(names))

    def skipped(self) -> list[Text]:
        seen: dict[tuple[str, str], int] = {}
        for d in self.shown():
            r = d.results
            part = r[r["metric"].str.endswith("_skipped")]
            for metric, reason in zip(part["metric"], part["value_text"], strict=True):
                key = (metric[: -len("_skipped")], public(reason)[:300])
                seen[key] = seen.get(key, 0) + 1
        return [[Code(family), f" ({n} cells): {reason}"] for (family, reason), n in seen.items()]

    # -- 4.0.3

    def results(self) -> None:
        doc = self.doc
        doc.h(1, SECTIONS[2])
        if not self.data:
            doc.p("No study was given, so there are no results.")
            return
        for d in self.data:
            if not d.ran:
                doc.p(f"Study {d.name} has not been run here (see the setup), so it has no results.")
                continue
            self.study_heading(2, d)
            counts = d.cells["status"].value_counts()
            doc.p(
                f"Study {d.name}: {len(d.cells)} cells, "
                + ", ".join(
                    f"{int(counts.get(s, 0))} {w}"
                    for s, w in (
                        ("done", "done"),
                        ("failed", "failed"),
                        ("timeout", "timed out"),
                        ("not run", "not run"),
                    )
                )
                + "."
            )
            if d.done.empty:
                doc.p(
                    f"No cell of study {d.name} finished, so there are no results to compare; the failures are "
                    "listed below."
                )
                self.failures(d)
                continue
            groups = self.metric_groups(d)
            for title, metrics in groups:
                self.metric_tables(d, title, metrics)
            self.figures_for(d)
            self.analysis(d, groups)
            self.failures(d)

    def metric_tables(self, d: StudyData, title: str, metrics: list[str]) -> None:
        level = round(d.study.report.confidence * 100)
        chunks = [metrics[i : i + TABLE_COLUMNS] for i in range(0, len(metrics), TABLE_COLUMNS)]
        variants = d.variants
        index = {(r["variant"], r["metric"]): r for r in d.summary.to_dict("records")}
        for part, chunk in enumerate(chunks, start=1):
            name = title if len(chunks) == 1 else f"{title} {part}"
            best = {m: best_variant(d.summary, m) for m in chunk}
            header: list[Text] = [["Variant"]]
            for m in chunk:
                arrow = {"higher": " ↑", "lower": " ↓"}.get(index_direction(d.summary, m), "")
                header.append([Code(m), arrow])
            rows = []
            for v in variants:
                row: list[Text] = [[v]]
                for m in chunk:
                    e = index.get((v, m))
                    if e is None or not np.isfinite(e["mean"]):
                        row.append(["--"])
                        continue
                    mean = fmt(e["mean"])
                    cell: Text = [Bold(mean) if best[m] == v else mean]
                    cell.append(f" [{fmt(e['low'])}, {fmt(e['high'])}]" if e["n"] > 1 else " (one cell)")
                    row.append(cell)
                rows.append(row)
            self.doc.table(
                Table(
                    self.label("tab", d, name),
                    [
                        f"{name} of study {d.name}: mean and {level}% bootstrap interval over inputs x seeds; "
                        "the best per column in bold (none on a tie); arrows give the better direction."
                    ],
                    header,
                    rows,
                    "l" + "c" * len(chunk),
                )
            )

    def figures_for(self, d: StudyData) -> None:
        from eval.study.plots import _human_plot, _scatter
        from eval.study.report import Report
        from eval.study.tables import trilemma_frame

        report = Report(self.out, d.cells, d.results, d.summary, d.quality)
        figs = self.out / "figures"
        stem = file_stem(d.name)
        q = d.quality
        if self.renders:
            for path, input_id, label in self.render_grids(d):
                self.add_figure(
                    d,
                    f"render-{input_id}",
                    path,
                    [
                        f"Input {input_id} ({label}): per method variant (rows), {GRID_VIEWS} ring views in colour "
                        f"(left) and geometry (right), the lowest seed that finished."
                    ],
                )
        if q is None:
            return
        tri = trilemma_frame(report)
        if tri["quality_mean"].notna().any() and tri["seconds_mean"].notna().any():
            _scatter(
                tri, "seconds", "quality", f"{q} vs time", "seconds_total (s, log)", q,
                figs / f"{stem}-quality-time", log_x=True, html=False,
            )  # fmt: skip
            self.add_figure(
                d,
                "quality-time",
                figs / f"{stem}-quality-time.png",
                [f"Quality ({q}) against generation time ({TIME_METRIC}, log scale) per variant, study {d.name}; "
                 f"bars: {round(d.study.report.confidence * 100)}% intervals."],
            )  # fmt: skip
        if tri["quality_mean"].notna().any() and tri["diversity_mean"].notna().any():
            _scatter(
                tri, "diversity", "quality", f"{q} vs diversity (colour: seconds)", DIVERSITY_METRIC, q,
                figs / f"{stem}-trilemma", colour="seconds", html=False,
            )  # fmt: skip
            self.add_figure(
                d,
                "trilemma",
                figs / f"{stem}-trilemma.png",
                [f"The generative trilemma for study {d.name}: quality ({q}) against diversity across seeds "
                 f"({DIVERSITY_METRIC}), colour: mean seconds per cell."],
            )  # fmt: skip
        if self.psnr_plot(d, figs / f"{stem}-psnr-time.png"):
            self.add_figure(
                d,
                "psnr-time",
                figs / f"{stem}-psnr-time.png",
                [
                    "Held-out PSNR against training time (seconds_train, else seconds_total) per cell of the video "
                    f"methods, study {d.name}."
                ],
            )
        if not d.human.empty:
            files = _human_plot(report, d.human, figs / f"{stem}-human", html=False)
            if files:
                self.add_figure(
                    d, "human", figs / f"{stem}-human.png", [f"Human against automatic ({q}) ranking, study {d.name}."]
                )

    def add_figure(self, d: StudyData, name: str, path: Path, caption: Text) -> None:
        if not path.is_file():
            return
        self.figures.append(path)
        self.doc.figure(Figure(self.label("fig", d, name), f"figures/{path.name}", caption))

    def render_grids(self, d: StudyData) -> list[tuple[Path, str, str]]:
        from PIL import Image, ImageDraw

        from eval.judging import render
        from methods.export import load_asset

        out = []
        cameras = render.camera_ring(GRID_VIEWS)
        res, pad, label_w, title_h = 96, 4, 170, 24
        done = d.done
        for input_id in list(dict.fromkeys(done["input_id"]))[: min(MAX_GRIDS, d.study.report.renders)]:
            rows = []
            for variant in d.variants:
                part = done[(done["input_id"] == input_id) & (done["variant"] == variant)].sort_values("seed")
                shots = None
                if len(part):
                    try:
                        modes = render.render_modes(
                            load_asset(part["asset_path"].iloc[0]), cameras, resolution=res, supersample=1
                        )
                        shots = modes["color"].images() + modes["geometry"].images()
                    except (OSError, ValueError):
                        shots = None
                rows.append((variant, shots))
            if all(s is None for _, s in rows):
                continue
            width = label_w + 2 * GRID_VIEWS * (res + pad) + 2 * pad
            sheet = Image.new("RGB", (width, title_h + len(rows) * (res + pad)), "white")
            draw = ImageDraw.Draw(sheet)
            label = str(done.loc[done["input_id"] == input_id, "input"].iloc[0])
            draw.text((pad, 6), f"{input_id}: {label}"[:120], fill="black")
            for r, (variant, shots) in enumerate(rows):
                y = title_h + r * (res + pad)
                draw.multiline_text((pad, y + res // 2 - 12), "\n".join(_wrap(variant, 26)[:3]), fill="black")
                if shots is None:
                    draw.text((label_w, y + res // 2), "no finished cell", fill="gray")
                for v, shot in enumerate(shots or []):
                    x = label_w + v * (res + pad) + (2 * pad if v >= GRID_VIEWS else 0)
                    sheet.paste(shot, (x, y))
            path = self.out / "figures" / f"{file_stem(d.name)}-render-{file_stem(input_id)}.png"
            sheet.save(path)
            out.append((path, input_id, label))
        return out

    def psnr_plot(self, d: StudyData, path: Path) -> bool:
        from eval.study.plots import _figure, _save_png, mpl_text

        r = d.results
        part = r[(r["metric"] == "psnr") & (r["modality"] == "video") & np.isfinite(r["value"])]
        if part.empty:
            return False
        train = r[(r["metric"] == "seconds_train") & np.isfinite(r["value"])].set_index("cell_key")["value"]
        seconds = d.cells.set_index("cell_key")["seconds_total"]
        seconds = train.reindex(seconds.index).fillna(seconds)  # the training stage where the method reports it
        fig, ax = _figure()
        for variant, rows in part.groupby("variant", sort=False):
            ax.scatter(seconds.reindex(rows["cell_key"]).to_numpy(), rows["value"], s=36, label=mpl_text(variant))
            for key, value, label in zip(rows["cell_key"], rows["value"], rows["input"], strict=True):
                ax.annotate(mpl_text(str(label)[:24]), (seconds.get(key, np.nan), value), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))  # fmt: skip
        ax.set(title="held-out PSNR vs training time", xlabel="seconds_train (s)", ylabel="psnr (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        _save_png(fig, path.with_suffix(""))
        return True

    def analysis(self, d: StudyData, groups: list[tuple[str, list[str]]]) -> None:
        doc = self.doc
        self.doc.h(2 if not self.several else 3, f"Analysis of study {d.name}" if self.several else "Analysis")
        opts = d.study.report
        metrics = [m for _, ms in groups for m in ms if index_direction(d.summary, m) in ("higher", "lower")]
        with_values = [v for v in d.variants if v in set(d.summary.loc[np.isfinite(d.summary["mean"]), "variant"])]
        if len(with_values) > 1:
            doc.p("Ranking of the variants by mean, per metric (best first):")
            doc.items([[analysis.ranking_sentence(d.summary, m)] for m in metrics])
        else:
            doc.p(f"Only {', '.join(with_values) or 'no variant'} has values in study {d.name}, so nothing is ranked.")
        q = d.quality
        compared = [m for m in (q, TIME_METRIC) if m and m in set(d.summary["metric"])]
        rows, sentences = [], []
        variants = [v for v in d.variants if v in set(d.summary["variant"])]
        for m in compared:
            for i, a in enumerate(variants):
                for b in variants[i + 1 :]:
                    diff = analysis.paired_difference(d.results, m, a, b, opts.bootstrap, opts.confidence)
                    if diff is None:
                        continue
                    rows.append(
                        [
                            [Code(m)],
                            [f"{a} - {b}"],
                            [fmt(diff.mean)],
                            [f"[{fmt(diff.low)}, {fmt(diff.high)}]"],
                            [str(diff.pairs)],
                            ["yes" if diff.significant else "no"],
                        ]
                    )
                    if m == q:
                        sentences.append([analysis.significance_sentence(diff)])
        level = round(opts.confidence * 100)
        if rows:
            label = self.label("tab", d, "significance")
            doc.p(
                "Pairwise differences (paired bootstrap over the input-seed pairs both variants finished) are in ",
                Ref(label),
                "." if not sentences else f"; on the quality measure {q}:",
            )
            doc.items(sentences)
            doc.table(
                Table(
                    label,
                    [
                        f"Paired differences in study {d.name}: mean of (first minus second) over shared input-seed "
                        f"pairs, {level}% paired-bootstrap interval; significant when it excludes 0."
                    ],
                    [["Metric"], ["Pair"], ["Mean difference"], [f"{level}% interval"], ["Pairs"], ["Significant"]],
                    rows,
                    "llcccc",
                )
            )
        elif q is None:
            doc.p("No pairwise quality comparison: the study measured no quality measure.")
        else:
            doc.p("No pairwise comparison: no two variants share two or more finished input-seed pairs.")
        self.agreement(d, metrics)
        self.pareto(d)
        self.human(d)

    def agreement(self, d: StudyData, metrics: list[str]) -> None:
        doc = self.doc
        chosen = [m for m in metrics if is_quality(m) or m in REFERENCE_METRICS][:8]
        table = analysis.metric_agreement(d.summary, chosen)
        table = table[np.isfinite(table["tau"])]
        if table.empty:
            n = d.summary["variant"].nunique()
            doc.p(
                "Agreement between quality measures (Kendall's tau) needs two measures and three or more variants "
                f"with values on both; study {d.name} has {len(chosen)} quality measure(s) and {n} variant(s) "
                "with values, so it is not computed."
            )
            return
        label = self.label("tab", d, "agreement")
        disagree = table[table["tau"] < 0]
        agree = table[table["tau"] >= 0.6]
        parts: Text = [
            f"Kendall's tau between the variant rankings of the {len(chosen)} quality measures (",
            Ref(label),
            "): ",
        ]
        if len(disagree):
            parts.append(
                "the metrics disagree (tau < 0) on "
                + "; ".join(f"{r.a} vs {r.b} (tau = {fmt(r.tau)})" for r in disagree.itertuples())
            )
        else:
            parts.append("no two metrics rank the variants in opposite directions (every tau >= 0)")
        parts.append(f"; {len(agree)} of {len(table)} pairs agree strongly (tau >= 0.6).")
        doc.p(*parts)
        doc.table(
            Table(
                label,
                [f"Kendall's tau-b between metric rankings of the variants in study {d.name} (larger is better "
                 "on every metric after orientation)."],
                [["Metric"], ["Metric"], ["Variants"], ["tau"], ["p"]],
                [[[Code(r.a)], [Code(r.b)], [str(r.variants)], [fmt(r.tau)], [fmt(r.p)]] for r in table.itertuples()],
                "llccc",
            )
        )  # fmt: skip

    def pareto(self, d: StudyData) -> None:
        q = d.quality
        if q is None:
            self.doc.p("No cost-quality Pareto front: the study measured no quality measure.")
            return
        s = d.summary
        qm = s[(s["metric"] == q) & np.isfinite(s["mean"])].set_index("variant")["mean"]
        cm = s[(s["metric"] == TIME_METRIC) & np.isfinite(s["mean"])].set_index("variant")["mean"]
        shared = [v for v in d.variants if v in qm.index and v in cm.index]
        if len(shared) < 2:
            self.doc.p(f"No cost-quality Pareto front: fewer than two variants have both {q} and {TIME_METRIC}.")
            return
        higher = index_direction(s, q) != "lower"
        points = {v: (float(cm[v]), float(qm[v])) for v in shared}
        front = analysis.pareto_front(points, higher)
        others = [v for v in shared if v not in front]
        text = (
            f"Cost-quality Pareto front ({TIME_METRIC} against {q}, means): "
            + ", ".join(f"{v} ({fmt(points[v][0])} s, {fmt(points[v][1])})" for v in front)
            + (
                "; dominated (another variant is at least as fast and as good, and better on one): " + ", ".join(others)
                if others
                else "; no variant is dominated"
            )
            + "."
        )
        self.doc.p(text)

    def human(self, d: StudyData) -> None:
        h = d.human
        if h.empty:
            return
        column = "win_rate" if h["votes"].sum() else "likert"
        what = "arena win rate" if column == "win_rate" else "mean Likert score"
        scored = h[np.isfinite(h[column])].sort_values(column, ascending=False, kind="stable")
        text = (  # each vote counts once for each of its two variants
            f"Human judgement ({what}; {int(h['votes'].sum()) // 2} votes, {int(h['ratings'].sum())} ratings): "
            + ", ".join(f"{r.variant} {fmt(getattr(r, column))}" for r in scored.itertuples())
        )
        if d.quality is not None:
            agreement = ranking_agreement(d.summary, h)
            row = agreement[agreement["metric"] == d.quality]
            if len(row) and np.isfinite(row["tau"].iloc[0]):
                r = row.iloc[0]
                text += f"; Kendall's tau with {d.quality}: {fmt(r['tau'])} over {r['variants']} variants"
            else:
                text += f"; Kendall's tau with {d.quality} needs three or more variants with both, so it is not given"
        label = self.label("tab", d, "human")
        self.doc.p(text + " (", Ref(label), ").")
        self.doc.table(
            Table(
                label,
                [f"Human judgement in study {d.name}: arena win rate (ties and both-bad count half) and mean Likert "
                 "score (overall criterion), with the votes and ratings they rest on."],
                [["Variant"], ["Win rate"], ["Votes"], ["Mean Likert"], ["Ratings"]],
                [
                    [[r.variant], [fmt(r.win_rate)], [str(r.votes)], [fmt(r.likert)], [str(r.ratings)]]
                    for r in h.itertuples()
                ],
                "lcccc",
            )
        )  # fmt: skip

    def failures(self, d: StudyData) -> None:
        doc = self.doc
        bad = d.cells[d.cells["status"].isin(["failed", "timeout"])]
        if bad.empty:
            doc.p(f"Failures and timeouts: none; every cell of study {d.name} that ran finished.")
            return
        per = bad.groupby(["variant", "status"], sort=False).size()
        doc.p(
            "Failures and timeouts: "
            + "; ".join(f"{v}: {n} {s}" for (v, s), n in per.items())
            + f" (of {len(d.cells)} cells)."
        )
        grouped = bad.assign(error=bad["error"].map(lambda e: shorten(public(e), 300, placeholder=" ..."))).groupby(
            ["variant", "status", "error"], sort=False
        )
        rows = [[[v], [s], [str(len(g))], [e]] for (v, s, e), g in grouped]
        more = len(rows) - MAX_ROWS
        rows = rows[:MAX_ROWS] + ([[["..."], [""], [""], [f"{more} more kinds of error"]]] if more > 0 else [])
        doc.table(
            Table(
                self.label("tab", d, "failures"),
                [f"Failed and timed-out cells of study {d.name}, by error."],
                [["Variant"], ["Status"], ["Cells"], ["Error"]],
                rows,
                "llrp{0.5\\linewidth}",
            )
        )


def file_stem(text: str) -> str:
    """A file name LaTeX's graphicx reads without trouble: letters, digits and '-' only."""
    return re.sub(r"[^A-Za-z0-9-]", "-", text)


def index_direction(summary: pd.DataFrame, metric: str) -> str:
    part = summary.loc[summary["metric"] == metric, "higher_is_better"]
    return str(part.iloc[0]) if len(part) else ""


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [text]
