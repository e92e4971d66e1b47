"""The live metric panel: metric rows as table rows (for the gr.Dataframe) and as JSON (for the API)."""

from __future__ import annotations

import math
from typing import Any

from eval.judging.protocol import MetricRow

PANEL_HEADERS = ["method", "metric", "value", "unit", "better"]


def format_value(value: Any) -> str:
    """A metric value as people read it: yes/no, integers plainly, floats to 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def table_row(method: str, row: MetricRow) -> list[str]:
    """One panel row: method, metric, value, unit, ↑/↓ (which direction is better; blank when neither)."""
    return [method, row.name, format_value(row.value), row.unit, row.arrow]


def table(rows: list[tuple[str, MetricRow]]) -> list[list[str]]:
    """The panel's rows for ``(method label, metric row)`` pairs, in the order they were measured."""
    return [table_row(method, row) for method, row in rows]


def metric_json(method_id: str, run_id: str, row: MetricRow) -> dict[str, Any]:
    """A metric row for API callers: raw value, unit, direction and the settings that produced it."""
    return {
        "method": method_id,
        "run_id": run_id,
        "metric": row.name,
        "value": row.value,
        "unit": row.unit,
        "higher_is_better": row.higher_is_better,
        "arrow": row.arrow,
        "group": row.group,
        "settings": row.settings,
    }
