"""The comparison matrix: metrics as rows, methods as columns, the best value per row marked.

Rows are grouped (quality, image, geometry, mesh quality, cost) and keep the order in which they
first arrived, so the matrix grows without reshuffling as methods finish. A row's label carries
its unit and direction ("chamfer_l1 (r) ↓"); a metric a method could not measure shows as
"skipped" with the reason on hover (the protocol's ``<family>_skipped`` rows). The best value is
marked only where the metric has a direction and at least two methods have a number. The
long-form rows (one per metric per method) stay as they were: the panel's CSV/JSON download and
the API report.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

from eval.judging.protocol import MetricRow
from ui.panel import PANEL_HEADERS, format_value, table

GROUPS = ("quality", "image", "geometry", "mesh quality", "cost")
GROUP_OF = {"alignment": "quality", "diversity": "quality", "image": "image", "geometry": "geometry", "cost": "cost"}
# eval.judging.protocol.mesh_stat_rows: counts and topology of the asset itself, not a comparison with anything
MESH_QUALITY = {
    "vertices",
    "faces",
    "welded_vertices",
    "watertight",
    "winding_consistent",
    "non_manifold_edges",
    "non_manifold_vertices",
    "boundary_edges",
    "components",
    "self_intersecting_faces",
    "degenerate_faces",
    "euler_characteristic",
    "genus",
    "surface_area",
    "volume",
    "bbox",
    "points",
    "nn_spacing_mean",
    "nn_spacing_std",
    "outlier_fraction",
    "normalization_scale",
    "mesh_quality",
}
SKIPPED = "_skipped"
BEST_MARK = "★"


@dataclass
class Cell:
    text: str = ""  # "" where the method has no row (yet)
    value: Any = None
    skipped_reason: str = ""
    best: bool = False


@dataclass
class MatrixRow:
    key: str
    group: str
    label: str  # name, unit and direction
    higher_is_better: bool | None
    cells: list[Cell] = field(default_factory=list)


def metric_key(row: MetricRow) -> str:
    """The matrix row of a metric row: a skipped family shares the row of the metric it stands for."""
    return row.name[: -len(SKIPPED)] if row.name.endswith(SKIPPED) else row.name


def matrix_group(row: MetricRow) -> str:
    key = metric_key(row)
    if key in MESH_QUALITY:
        return "mesh quality"
    return GROUP_OF.get(row.group, row.group)


def _label(name: str, unit: str, higher_is_better: bool | None) -> str:
    arrow = {True: " ↑", False: " ↓", None: ""}[higher_is_better]
    return f"{name}{f' ({unit})' if unit else ''}{arrow}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def comparison_matrix(rows: list[tuple[str, MetricRow]], methods: list[str]) -> list[MatrixRow]:
    """The matrix of ``(method label, row)`` pairs for the columns ``methods`` (slot order), grouped."""
    column = {m: i for i, m in enumerate(methods)}
    by_key: dict[str, MatrixRow] = {}
    for method, row in rows:
        if method not in column:
            continue
        key = metric_key(row)
        skipped = row.name.endswith(SKIPPED)
        entry = by_key.get(key)
        if entry is None:
            unit, better = ("", None) if skipped else (row.unit, row.higher_is_better)
            entry = MatrixRow(key, matrix_group(row), _label(key, unit, better), better)
            entry.cells = [Cell() for _ in methods]
            by_key[key] = entry
        elif not skipped and entry.higher_is_better is None and row.higher_is_better is not None:
            entry.higher_is_better = row.higher_is_better  # the first arrival was a skip: take the real row's
            entry.label = _label(key, row.unit, row.higher_is_better)
        cell = entry.cells[column[method]]
        if skipped:
            cell.text, cell.skipped_reason = "skipped", str(row.value)
        else:
            cell.text, cell.value, cell.skipped_reason = format_value(row.value), row.value, ""
    ordered = sorted(by_key.values(), key=lambda r: GROUPS.index(r.group) if r.group in GROUPS else len(GROUPS))
    for entry in ordered:
        _mark_best(entry)
    return ordered


def _mark_best(entry: MatrixRow) -> None:
    numbers = [(_number(c.value), i) for i, c in enumerate(entry.cells) if not c.skipped_reason]
    numbers = [(v, i) for v, i in numbers if v is not None]
    if entry.higher_is_better is None or len(numbers) < 2:
        return
    best = max(v for v, _ in numbers) if entry.higher_is_better else min(v for v, _ in numbers)
    if all(v == best for v, _ in numbers):
        return  # a tie across every method marks nothing
    for v, i in numbers:
        entry.cells[i].best = v == best


WAITING = "metrics appear here as each method finishes"


def matrix_html(rows: list[tuple[str, MetricRow]], methods: list[str], empty: str = WAITING) -> str:
    """The matrix as an HTML table (group header rows, best values bold with a star, skips with a tooltip);
    ``empty`` is the line it shows while there is no row (why it is empty)."""
    if not methods:
        return ""
    matrix = comparison_matrix(rows, methods)
    head = "".join(f"<th scope='col'>{html.escape(m)}</th>" for m in methods)
    body, group = [], None
    for entry in matrix:
        if entry.group != group:
            group = entry.group
            body.append(f"<tr class='matrix-group'><th colspan='{len(methods) + 1}'>{html.escape(group)}</th></tr>")
        cells = []
        for cell in entry.cells:
            if cell.skipped_reason:
                reason = html.escape(cell.skipped_reason, quote=True)
                cells.append(f"<td class='matrix-skipped' title='{reason}'>skipped</td>")
            elif cell.best:
                cells.append(f"<td class='matrix-best'><b>{BEST_MARK} {html.escape(cell.text)}</b></td>")
            else:
                cells.append(f"<td>{html.escape(cell.text) or '–'}</td>")
        body.append(f"<tr data-metric='{html.escape(entry.key, quote=True)}'><th scope='row'>"
                    f"{html.escape(entry.label)}</th>{''.join(cells)}</tr>")  # fmt: skip
    if not body:
        body.append(f"<tr><td colspan='{len(methods) + 1}' class='matrix-empty'>{html.escape(empty)}</td></tr>")
    return (
        "<table class='comparison-matrix'><thead><tr><th scope='col'>metric</th>"
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def long_form_csv(rows: list[tuple[str, MetricRow]]) -> str:
    """The long-form rows (one per metric per method) as CSV, the panel's columns."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(PANEL_HEADERS)
    writer.writerows(table(rows))
    return out.getvalue()


def long_form_json(records: list[dict[str, Any]]) -> str:
    """The long-form rows exactly as the API report gives them (ui.panel.metric_json)."""
    return json.dumps(records, indent=1, default=str)
