"""One model of a document, written as Markdown, HTML and LaTeX: the study report and the chapter.

A :class:`Doc` is a list of blocks: headings (level 1 is the document's title), paragraphs and list
items made of segments (plain text, :class:`Cite`, :class:`Code`, :class:`Bold`, :class:`Small`,
:class:`Math`, :class:`Ref`), :class:`Table` and :class:`Figure`. What a document says is built by its
content code (:mod:`eval.study.report`, :mod:`eval.study.chapter`); how it is typeset is a
:class:`Style` handed to the writers :func:`markdown`, :func:`html_page` and :func:`latex`.

Plain text is escaped for each output (Markdown specials with ``Style.escape_markdown``, HTML
always, LaTeX always: its specials, arrows, dashes and the like as commands, other non-ASCII reduced
to ASCII). Tables and figures are numbered in order; a :class:`Ref` reads "Table 2" / "Figure 1".
Citations go through :mod:`eval.study.bibliography` (``Doc.methods`` names the methods that have no
paper metadata, cited from their own attributes).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eval.study.bibliography import reference_text, short_cite

__all__ = [
    "Bold",
    "Cite",
    "Code",
    "Doc",
    "Figure",
    "Math",
    "Ref",
    "Seg",
    "Small",
    "Style",
    "Table",
    "Text",
    "html_page",
    "latex",
    "latex_table",
    "markdown",
    "md",
    "tex",
]


@dataclass(frozen=True)
class Cite:
    keys: tuple[str, ...]


@dataclass(frozen=True)
class _Marked:
    text: str


class Code(_Marked):
    """Code or a name from the code: monospace."""


class Bold(_Marked):
    """Bold (the best value of a column)."""


class Small(_Marked):
    """Text set smaller in LaTeX (an interval beside its mean); plain elsewhere."""


@dataclass(frozen=True)
class Math:
    tex: str
    md: str


@dataclass(frozen=True)
class Ref:
    label: str  # tab:... or fig:...


Seg = str | Cite | Code | Bold | Small | Math | Ref
Text = list[Seg]


def text(value: Any) -> Text:
    """A cell or an entry as segments: a value that is not a list is one plain-text segment."""
    return value if isinstance(value, list) else [str(value)]


@dataclass
class Table:
    label: str  # "" for a table nothing refers to (not numbered)
    caption: Text
    header: list[Text]
    rows: list[list[Text]]
    align: str = ""  # LaTeX column spec

    def __post_init__(self) -> None:  # a cell given as a plain value is one plain-text segment
        self.header = [text(h) for h in self.header]
        self.rows = [[text(c) for c in row] for row in self.rows]


@dataclass
class Figure:
    label: str  # "" for an unnumbered figure
    path: str  # relative to the document's folder
    caption: Text
    width: float = 0.9  # of the line, in LaTeX
    link: str | None = None  # an interactive version (HTML / Markdown)


@dataclass
class Doc:
    blocks: list[tuple[str, Any]] = field(default_factory=list)
    methods: dict[str, object] = field(default_factory=dict)  # citation key -> method without paper metadata

    def h(self, level: int, heading: str) -> None:
        self.blocks.append(("h", (level, heading)))

    def p(self, *segs: Seg) -> None:
        self.blocks.append(("p", list(segs)))

    def items(self, entries: list[Text] | list[str]) -> None:
        if entries:
            self.blocks.append(("ul", [text(e) for e in entries]))

    def table(self, table: Table) -> None:
        self.blocks.append(("table", table))

    def figure(self, figure: Figure) -> None:
        self.blocks.append(("fig", figure))

    def tables(self) -> list[Table]:
        return [data for kind, data in self.blocks if kind == "table"]

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
            if kind in counts and data.label:
                counts[kind] += 1
                out[data.label] = counts[kind]
        return out


@dataclass(frozen=True)
class Style:
    """How one kind of document is typeset; the content is the same model either way."""

    escape_markdown: bool = True  # plain text escaped in Markdown (else written as it is, tables aside)
    title: str = "{}"  # the level-1 heading's wording in Markdown
    latex_title: str = "\\chapter{{{}}}"  # the level-1 heading in LaTeX (its text escaped)
    latex_sections: tuple[str, ...] = ("subsection", "subsubsection", "paragraph")  # levels 2, 3, 4
    latex_preamble: str = ""
    latex_graphics_dir: str = ""  # put before a figure's path in \includegraphics
    table_placement: str = "htbp"
    fit_tables: bool = True  # tables wider than the line shrink to it (\trilemmafit, defined in the preamble)
    html_style: str = ""


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


def tex(value: Any) -> str:
    """Plain text as LaTeX: special characters escaped; other non-ASCII reduced to ASCII (or '?')."""
    out = []
    for ch in str(value):
        if ch in _TEX_CHARS:
            out.append(_TEX_CHARS[ch])
        elif ord(ch) < 128:
            out.append(ch if ch.isprintable() else " ")
        else:
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append("".join(_TEX_CHARS.get(c, c) for c in ascii_) or "?")
    return "".join(out)


def _ref_kind(label: str) -> str:
    return "Table" if label.startswith("tab:") else "Figure"


def _write(segs: Text, plain: Callable[[str], str], marks: dict[type, Callable[[str], str]], other) -> str:
    """Segments in one output: plain text through ``plain``, Code / Bold / Small through ``marks``, and
    Cite / Math / Ref through ``other``."""
    return "".join(
        plain(s) if isinstance(s, str) else marks[type(s)](s.text) if isinstance(s, _Marked) else other(s) for s in segs
    )


_TEX_MARKS = {
    Code: lambda t: f"\\texttt{{{tex(t)}}}",
    Bold: lambda t: f"\\textbf{{{tex(t)}}}",
    Small: lambda t: f"{{\\scriptsize {tex(t)}}}",
}


def _tex_other(s: Cite | Math | Ref) -> str:
    if isinstance(s, Cite):
        return f"~\\cite{{{','.join(s.keys)}}}"
    return f"${s.tex}$" if isinstance(s, Math) else f"{_ref_kind(s.label)}~\\ref{{{s.label}}}"


def tex_text(segs: Text) -> str:
    return _write(segs, tex, _TEX_MARKS, _tex_other)


def latex_table(t: Table, style: Style) -> str:
    tabular = [
        f"\\begin{{tabular}}{{{t.align}}}",
        "\\toprule",
        " & ".join(tex_text(h) for h in t.header) + " \\\\",
        "\\midrule",
        *(" & ".join(tex_text(c) for c in row) + " \\\\" for row in t.rows),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    if style.fit_tables:
        tabular = ["\\trilemmafit{%", *tabular[:-1], tabular[-1] + "}"]
    return "\n".join(
        [
            f"\\begin{{table}}[{style.table_placement}]",
            "\\centering",
            "\\small",
            f"\\caption{{{tex_text(t.caption)}}}",
            f"\\label{{{t.label}}}",
            *tabular,
            "\\end{table}",
        ]
    )


def latex(doc: Doc, style: Style) -> str:
    out = [style.latex_preamble] if style.latex_preamble else []
    for kind, data in doc.blocks:
        if kind == "h":
            level, heading = data
            if level == 1:
                out.append(style.latex_title.format(tex(heading)))
            else:
                out.append(f"\\{style.latex_sections[level - 2]}{{{tex(heading)}}}")
        elif kind == "p":
            out.append(tex_text(data))
        elif kind == "ul":
            out.append("\\begin{itemize}\n" + "\n".join(f"\\item {tex_text(e)}" for e in data) + "\n\\end{itemize}")
        elif kind == "table":
            out.append(latex_table(data, style))
        elif kind == "fig":
            out.append(
                "\n".join(
                    [
                        "\\begin{figure}[htbp]",
                        "\\centering",
                        f"\\includegraphics[width={data.width:g}\\linewidth]{{{style.latex_graphics_dir}{data.path}}}",
                        f"\\caption{{{tex_text(data.caption)}}}",
                        f"\\label{{{data.label}}}",
                        "\\end{figure}",
                    ]
                )
            )
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~$])")


def md(value: Any) -> str:
    """Plain text as Markdown: every character Markdown would read as syntax escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(value).replace("\n", " "))


def _md_cell(value: str) -> str:
    """A table cell of text written as it is: only what would break the row escaped."""
    return value.replace("|", "\\|").replace("\n", " ")


class _Markdown:
    def __init__(self, doc: Doc, style: Style):
        self.doc, self.style = doc, style
        self.numbers = doc.numbers()

    def text(self, segs: Text) -> str:
        plain = md if self.style.escape_markdown else str
        marks = {Code: lambda t: f"`{t.replace('`', '')}`", Bold: lambda t: f"**{plain(t)}**", Small: plain}
        return _write(segs, plain, marks, self.other)

    def other(self, s: Cite | Math | Ref) -> str:
        if isinstance(s, Cite):
            return " (" + "; ".join(f"[{md(short_cite(k, self.doc.methods))}](#ref-{k})" for k in s.keys) + ")"
        return f"`{s.md}`" if isinstance(s, Math) else f"{_ref_kind(s.label)} {self.numbers.get(s.label, '?')}"

    def cell(self, segs: Text) -> str:
        written = self.text(segs)
        return written if self.style.escape_markdown else _md_cell(written)

    def caption(self, kind: str, label: str, segs: Text) -> str:
        return f"**{kind} {self.numbers[label]}.** {self.text(segs)}"

    def block(self, kind: str, data: Any) -> str:
        if kind == "h":
            level, heading = data
            return "#" * level + " " + (self.style.title.format(heading) if level == 1 else heading)
        if kind == "p":
            return self.text(data)
        if kind == "ul":
            return "\n".join(f"- {self.text(e)}" for e in data)
        if kind == "table":
            head = "| " + " | ".join(self.cell(h) for h in data.header) + " |"
            rule = "|" + "---|" * len(data.header)
            rows = ["| " + " | ".join(self.cell(c) for c in row) + " |" for row in data.rows]
            above = [self.caption("Table", data.label, data.caption), ""] if data.label else []
            return "\n".join([*above, head, rule, *rows])
        # a figure
        if data.label:
            n = self.numbers[data.label]
            return f"![Figure {n}]({data.path})\n\n{self.caption('Figure', data.label, data.caption)}"
        img = f"![{self.text(data.caption)}]({data.path})"
        return f"{img} ([interactive]({data.link}))" if data.link else img


def markdown(doc: Doc, style: Style) -> str:
    """The document in Markdown; the cited works listed at the end under "References"."""
    writer = _Markdown(doc, style)
    out = [writer.block(kind, data) for kind, data in doc.blocks]
    keys = doc.cited()
    if keys:
        out.append("## References")
        out.append("\n".join(f'- <a id="ref-{k}"></a>{md(reference_text(k, doc.methods))}' for k in keys))
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- HTML


_HTML_MARKS = {
    Code: lambda t: f"<code>{html.escape(t)}</code>",
    Bold: lambda t: f"<b>{html.escape(t)}</b>",
    Small: lambda t: f"<small>{html.escape(t)}</small>",
}


def _html_text(segs: Text, doc: Doc, numbers: dict[str, int]) -> str:
    def other(s: Cite | Math | Ref) -> str:
        if isinstance(s, Cite):
            return (
                " ("
                + "; ".join(f'<a href="#ref-{k}">{html.escape(short_cite(k, doc.methods))}</a>' for k in s.keys)
                + ")"
            )
        return (
            f"<code>{html.escape(s.md)}</code>"
            if isinstance(s, Math)
            else f"{_ref_kind(s.label)} {numbers.get(s.label, '?')}"
        )

    return _write(segs, html.escape, _HTML_MARKS, other)


def html_page(doc: Doc, title: str, style: Style) -> str:
    """The document as one HTML page (no scripts; images and interactive plots linked)."""
    numbers = doc.numbers()

    def inline(segs: Text) -> str:
        return _html_text(segs, doc, numbers)

    body = []
    for kind, data in doc.blocks:
        if kind == "h":
            body.append(f"<h{data[0]}>{html.escape(data[1])}</h{data[0]}>")
        elif kind == "p":
            body.append(f"<p>{inline(data)}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{inline(e)}</li>" for e in data) + "</ul>")
        elif kind == "table":
            caption = f"<caption>Table {numbers[data.label]}. {inline(data.caption)}</caption>" if data.label else ""
            head = "".join(f"<th>{inline(h)}</th>" for h in data.header)
            trs = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in data.rows)
            body.append(f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
        elif kind == "fig":
            caption = inline(data.caption)
            if data.label:
                caption = f"Figure {numbers[data.label]}. {caption}"
            img = f'<img src="{html.escape(data.path)}" alt="{html.escape(_plain(data.caption))}">'
            more = f' <a href="{html.escape(data.link)}">interactive</a>' if data.link else ""
            body.append(f"<figure>{img}<figcaption>{caption}{more}</figcaption></figure>")
    keys = doc.cited()
    if keys:
        body.append("<h2>References</h2>")
        refs = "".join(f'<li id="ref-{k}">{html.escape(reference_text(k, doc.methods))}</li>' for k in keys)
        body.append(f"<ul>{refs}</ul>")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style.html_style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _plain(segs: Text) -> str:
    return "".join(s if isinstance(s, str) else getattr(s, "text", getattr(s, "md", "")) for s in segs)
