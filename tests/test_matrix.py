"""The comparison matrix: metrics x methods, grouped, best per row marked, skips with their reason, stable order."""

from __future__ import annotations

import csv
import io
import json
import re

from eval.judging.protocol import MetricRow
from ui.matrix import GROUPS, comparison_matrix, long_form_csv, long_form_json, matrix_html
from ui.panel import metric_json

METHODS = ["Shap-E", "NeRF", "VAE"]  # slot order


def _rows() -> list[tuple[str, MetricRow]]:
    """Rows as they stream in: each method's in turn, mixed directions, one skipped for one method."""
    lpips_reason = "LPIPS weights are not in the cache and downloads are offline"
    return [
        ("Shap-E", MetricRow("faces", 2000, "", None, "geometry")),
        ("Shap-E", MetricRow("psnr", 21.5, "dB", True, "image")),
        ("Shap-E", MetricRow("lpips", 0.31, "", False, "image")),
        ("Shap-E", MetricRow("clip_score", 0.27, "", True, "alignment")),
        ("Shap-E", MetricRow("seconds_total", 14.0, "s", False, "cost")),
        ("NeRF", MetricRow("faces", 451108, "", None, "geometry")),
        ("NeRF", MetricRow("psnr", 27.25, "dB", True, "image")),
        ("NeRF", MetricRow("lpips_skipped", lpips_reason, "", None, "image")),
        ("NeRF", MetricRow("chamfer_l1", 0.02, "r", False, "geometry")),
        ("NeRF", MetricRow("clip_score", 0.25, "", True, "alignment")),
        ("NeRF", MetricRow("seconds_total", 120.0, "s", False, "cost")),
        ("VAE", MetricRow("faces", 900, "", None, "geometry")),
        ("VAE", MetricRow("psnr", 18.0, "dB", True, "image")),
        ("VAE", MetricRow("lpips", 0.45, "", False, "image")),
        ("VAE", MetricRow("chamfer_l1", 0.05, "r", False, "geometry")),
        ("VAE", MetricRow("clip_score", 0.21, "", True, "alignment")),
        ("VAE", MetricRow("seconds_total", 0.2, "s", False, "cost")),
    ]


def _best(matrix) -> dict[str, list[str]]:
    return {r.key: [METHODS[i] for i, c in enumerate(r.cells) if c.best] for r in matrix}


def test_best_per_row_follows_each_metrics_direction():
    matrix = comparison_matrix(_rows(), METHODS)
    assert _best(matrix) == {
        "clip_score": ["Shap-E"],  # ↑
        "psnr": ["NeRF"],  # ↑
        "lpips": ["Shap-E"],  # ↓; NeRF's skip is not a number
        "chamfer_l1": ["NeRF"],  # ↓
        "faces": [],  # no direction: nothing is best
        "seconds_total": ["VAE"],  # ↓
    }
    labels = {r.key: r.label for r in matrix}
    assert labels["psnr"] == "psnr (dB) ↑" and labels["chamfer_l1"] == "chamfer_l1 (r) ↓" and labels["faces"] == "faces"


def test_rows_are_grouped_and_the_columns_are_the_slots():
    matrix = comparison_matrix(_rows(), METHODS)
    assert [r.group for r in matrix] == sorted((r.group for r in matrix), key=GROUPS.index)
    assert [(r.group, r.key) for r in matrix] == [
        ("quality", "clip_score"),
        ("image", "psnr"),
        ("image", "lpips"),
        ("geometry", "chamfer_l1"),
        ("mesh quality", "faces"),
        ("cost", "seconds_total"),
    ]
    chamfer = next(r for r in matrix if r.key == "chamfer_l1")
    assert [c.text for c in chamfer.cells] == ["", "0.02", "0.05"]  # Shap-E has no reference row


def test_a_skipped_metric_shows_as_skipped_with_its_reason_on_hover():
    matrix = comparison_matrix(_rows(), METHODS)
    lpips = next(r for r in matrix if r.key == "lpips")
    assert lpips.label == "lpips ↓" and lpips.cells[1].text == "skipped"
    assert "offline" in lpips.cells[1].skipped_reason and not lpips.cells[1].best
    page = matrix_html(_rows(), METHODS)
    assert re.search(r"<td class='matrix-skipped' title='LPIPS weights [^']*offline'>skipped</td>", page)
    row = re.search(r"<tr data-metric='psnr'>(.*?)</tr>", page).group(1)
    assert row.count("★") == 1 and "<b>★ 27.25</b>" in row
    assert page.index("<th scope='col'>Shap-E</th>") < page.index("<th scope='col'>NeRF</th>")


def test_order_is_stable_as_rows_stream_in():
    rows = _rows()
    seen: list[str] = []
    for n in range(1, len(rows) + 1):
        keys = [r.key for r in comparison_matrix(rows[:n], METHODS)]
        # rows already shown keep their relative order; new ones join their group
        assert [k for k in keys if k in seen] == [k for k in seen if k in keys]
        seen = keys
    first_pass = [r.key for r in comparison_matrix(rows[:5], METHODS)]
    assert first_pass == ["clip_score", "psnr", "lpips", "faces", "seconds_total"]


def test_a_skip_arriving_first_takes_the_real_rows_direction_later():
    rows = [
        ("NeRF", MetricRow("lpips_skipped", "offline", "", None, "image")),
        ("Shap-E", MetricRow("lpips", 0.3, "", False, "image")),
        ("VAE", MetricRow("lpips", 0.4, "", False, "image")),
    ]
    (lpips,) = comparison_matrix(rows, METHODS)
    assert lpips.label == "lpips ↓" and [c.best for c in lpips.cells] == [True, False, False]


def test_long_form_downloads_keep_every_row():
    rows = _rows()
    parsed = list(csv.reader(io.StringIO(long_form_csv(rows))))
    assert parsed[0] == ["method", "metric", "value", "unit", "better"] and len(parsed) == len(rows) + 1
    assert parsed[8] == [
        "NeRF",
        "lpips_skipped",
        "LPIPS weights are not in the cache and downloads are offline",
        "",
        "",
    ]
    records = [metric_json(method.lower(), "run", row) for method, row in rows]
    assert json.loads(long_form_json(records)) == json.loads(json.dumps(records))


def test_an_empty_matrix_says_why_it_is_empty():
    from ui import jobs
    from ui.generate import empty_matrix_reason

    def state(*states):
        return jobs.JobState(slots=[jobs.SlotState(f"m{i}", f"M{i}", state=s) for i, s in enumerate(states)])

    assert empty_matrix_reason(state("done", "running")) == "metrics appear here as each method finishes"
    refused = empty_matrix_reason(state("refused", "refused"))
    assert refused == "no metrics: no method was run (each slot says why it was not)"
    assert "no method finished" in empty_matrix_reason(state("refused", "failed"))
    page = matrix_html([], ["M0", "M1"], refused)
    assert "<td colspan='3' class='matrix-empty'>no metrics: no method was run" in page
    assert "appear here" not in page
