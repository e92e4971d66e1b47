"""The study's tables: cells and results from the store, bootstrap summaries, diversity, human scores.

Intervals are the mean over a variant's cells (inputs x seeds) with a percentile bootstrap interval
(:func:`bootstrap_ci`). Diversity: for each variant and input, the mean pairwise Chamfer-L1 between
the assets of different seeds (eval.judging.metrics.geometry), averaged over inputs.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.runs.store import Store
from eval.study.executors import TIMEOUT
from eval.study.run import finished_cells
from eval.study.spec import Study

GROUP_ORDER = ("alignment", "image", "geometry", "diversity", "cost")
COST_METRICS = ("seconds_total", "peak_rss_mb", "peak_gpu_mb")
TIME_METRIC = "seconds_total"
DIVERSITY_METRIC = "seed_diversity_chamfer_l1"
DIVERSITY_POINTS = 2048
CELL_COLUMNS = [
    "study",
    "cell_key",
    "method",
    "method_version",
    "variant",
    "input_set",
    "input_id",
    "input",
    "modality",
    "seed",
]


@dataclass
class Report:
    """The study's tables (and, once written, the report's files): what the report and the chapter draw."""

    out_dir: Path
    cells: pd.DataFrame
    results: pd.DataFrame
    summary: pd.DataFrame
    quality: str | None
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def study_tables(study: Study, store: Store) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str | None]:
    """(cells, results, summary, quality) of a study: the summary has the seed-diversity rows added,
    quality is the metric shown as quality (:func:`pick_quality`)."""
    opts = study.report
    cells = cell_table(study, store)
    results = result_table(cells, store)
    summary = summarize(results, opts.bootstrap, opts.confidence)
    diversity = diversity_rows(cells)
    if len(diversity):
        extra = diversity.assign(group="diversity", metric=DIVERSITY_METRIC, unit="", higher_is_better="higher")
        summary = pd.concat([summary, summarize(extra, opts.bootstrap, opts.confidence)], ignore_index=True)
    return cells, results, summary, pick_quality(summary, study.protocol.quality)


def slug(text: str) -> str:
    """A file-name-safe version of a name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def bootstrap_ci(
    values: Sequence[float], n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval of the mean: (mean, low, high).

    Draws ``n_resamples`` index sets of ``len(values)`` with ``numpy.random.default_rng(seed).integers(0,
    n, size=(n_resamples, n))``, takes each resample's mean, and returns the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of those means (linear interpolation, numpy's default). NaNs
    are dropped first; no values gives NaNs, one value gives a zero-width interval.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) == 1:
        return mean, mean, mean
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_resamples, len(x)))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def summarize(results: pd.DataFrame, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per method variant and numeric metric: n, mean and the bootstrap interval over the variant's cells."""
    numeric = results[np.isfinite(results["value"])]
    rows = []
    keys = ["method", "variant", "group", "metric", "unit", "higher_is_better"]
    for key, part in numeric.groupby(keys, sort=False, dropna=False):
        mean, low, high = bootstrap_ci(part["value"].to_numpy(), n_resamples, confidence, seed)
        rows.append({**dict(zip(keys, key, strict=True)), "n": len(part), "mean": mean, "low": low, "high": high})
    columns = [*keys, "n", "mean", "low", "high"]
    return pd.DataFrame(rows, columns=columns).astype({"mean": float, "low": float, "high": float})


def cell_table(study: Study, store: Store) -> pd.DataFrame:
    """One row per cell of the study, with the outcome of the run that counts (status 'not run' if none)."""
    runs = finished_cells(store, study.name)
    sets = {i.id: s.name for s in study.inputs for i in s.items}
    rows = []
    for cell in study.cells:
        run = runs.get(cell.key)
        row = {
            "study": study.name,
            "cell_key": cell.key,
            "method": cell.method,
            "method_version": cell.method_version,
            "variant": cell.variant,
            "input_set": sets[cell.input_id],
            "input_id": cell.input_id,
            "input": cell.input_label,
            "modality": cell.modality,
            "seed": cell.seed,
            "status": "not run",
            "error": "",
            "run_id": "",
            "asset_path": "",
            "seconds_total": math.nan,
            "peak_rss_mb": math.nan,
            "peak_gpu_mb": math.nan,
            "created": math.nan,
        }
        if run is not None:
            stages = json.loads(run["stage_seconds"] or "{}")
            error = run["error"] or ""
            row.update(
                status="timeout" if error.startswith(TIMEOUT) else run["status"],
                error=error,
                run_id=run["id"],
                asset_path=run["asset_path"] or "",
                seconds_total=float(sum(stages.values())) if stages else math.nan,
                peak_rss_mb=_num(run["peak_rss_mb"]),
                peak_gpu_mb=_num(run["peak_gpu_mb"]),
                created=float(run["created"]),
            )
        rows.append(row)
    return pd.DataFrame(rows)


def result_table(cells: pd.DataFrame, store: Store) -> pd.DataFrame:
    """One row per cell and metric: the cell's columns, then metric, group, unit, higher_is_better,
    value (float; NaN when the value is not a number), value_text and the metric's settings."""
    recorded = cells[cells["run_id"] != ""]
    by_run = recorded.set_index("run_id")[CELL_COLUMNS]
    rows = []
    ids = list(by_run.index)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for r in store.read(f"SELECT * FROM metrics WHERE run_id IN ({marks}) ORDER BY run_id, id", chunk):
            value = json.loads(r["value"]) if r["value"] is not None else None
            hib = r["higher_is_better"]
            rows.append(
                {
                    **by_run.loc[r["run_id"]].to_dict(),
                    "run_id": r["run_id"],
                    "metric": r["name"],
                    "group": r["grp"],
                    "unit": r["unit"],
                    "higher_is_better": "" if hib is None else ("higher" if hib else "lower"),
                    "value": _num(value),
                    "value_text": "" if value is None else str(value),
                    "metric_settings": r["settings"],
                }
            )
    columns = [
        *CELL_COLUMNS,
        "run_id",
        "metric",
        "group",
        "unit",
        "higher_is_better",
        "value",
        "value_text",
        "metric_settings",
    ]
    table = pd.DataFrame(rows, columns=columns).astype({"value": float})  # float even with no rows
    order = {k: i for i, k in enumerate(cells["cell_key"])}
    return table.sort_values(
        ["cell_key", "metric"], key=lambda s: s.map(order) if s.name == "cell_key" else s, kind="stable"
    ).reset_index(drop=True)


def diversity_rows(cells: pd.DataFrame, points: int = DIVERSITY_POINTS) -> pd.DataFrame:
    """Per variant and input with two or more finished seeds: the mean pairwise Chamfer-L1 between seeds."""
    from eval.judging.metrics.geometry import chamfer_distance

    rows = []
    done = cells[(cells["status"] == "done") & (cells["asset_path"] != "")]
    for (method, variant, input_id), part in done.groupby(["method", "variant", "input_id"], sort=False):
        clouds = [_surface_points(p, points) for p in part["asset_path"]]
        clouds = [c for c in clouds if c is not None]
        if len(clouds) < 2:
            continue
        pairs = [chamfer_distance(a, b, workers=1)["chamfer_l1"] for a, b in itertools.combinations(clouds, 2)]
        rows.append(
            {
                "method": method,
                "variant": variant,
                "input_id": input_id,
                "seeds": len(clouds),
                "value": float(np.mean(pairs)),
            }
        )
    return pd.DataFrame(rows, columns=["method", "variant", "input_id", "seeds", "value"])


def _surface_points(asset_path: str, n: int) -> np.ndarray | None:
    from eval.judging.metrics.geometry import sample_surface
    from methods.export import load_asset

    try:
        asset = load_asset(asset_path)
    except (OSError, ValueError):
        return None
    if asset.mesh is not None and len(asset.mesh.faces):
        return sample_surface(asset.mesh, n, seed=0)[0]
    pts = asset.all_points()
    if len(pts) > n:
        pts = pts[np.random.default_rng(0).choice(len(pts), n, replace=False)]
    return pts if len(pts) else None


def _num(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return math.nan


def pick_quality(summary: pd.DataFrame, wanted: str | None = None) -> str | None:
    """The metric shown as "quality": a quality measure only (R-precision, CLIP score, reference F-score
    or Chamfer, held-out PSNR; :data:`eval.study.metric_defs.QUALITY_ORDER`), never a mesh property such
    as ``watertight``. The protocol's choice when it is one and has values, else the first by preference;
    None when the study measured none."""
    from eval.study.metric_defs import is_quality, quality_rank

    have = summary[np.isfinite(summary["mean"])]
    names = list(dict.fromkeys(have["metric"]))
    if wanted and wanted in names and is_quality(wanted):
        return wanted
    quality = sorted((m for m in names if is_quality(m)), key=quality_rank)
    return quality[0] if quality else None


def human_scores(store: Store, cells: pd.DataFrame) -> pd.DataFrame:
    """Per method variant, from the study's runs: the arena win rate ("overall"; ties and both-bad count
    half) and the mean Likert score ("overall"), with how many votes and ratings they rest on."""
    from eval import ratings

    variant_of = dict(zip(cells["run_id"], cells["variant"], strict=True))
    variant_of.pop("", None)
    wins: dict[str, list[float]] = {}
    for v in ratings.vote_rows(store):
        if v["criterion"] != "overall":
            continue
        for side, other in (("left", "right"), ("right", "left")):
            variant = variant_of.get(v[f"run_{side}"])
            if variant is not None and v[f"run_{other}"] in variant_of:
                wins.setdefault(variant, []).append(
                    1.0 - ratings.ANSWER_SCORE[v["answer"]] if side == "right" else ratings.ANSWER_SCORE[v["answer"]]
                )
    likert: dict[str, list[float]] = {}
    for r in ratings.rating_rows(store):
        if r["latest"] and r["criterion"] == "overall" and r["run_id"] in variant_of:
            likert.setdefault(variant_of[r["run_id"]], []).append(float(r["score"]))
    rows = []
    for variant in sorted(set(wins) | set(likert)):
        w, s = wins.get(variant, []), likert.get(variant, [])
        rows.append(
            {
                "variant": variant,
                "win_rate": float(np.mean(w)) if w else math.nan,
                "votes": len(w),
                "likert": float(np.mean(s)) if s else math.nan,
                "ratings": len(s),
            }
        )
    return pd.DataFrame(rows, columns=["variant", "win_rate", "votes", "likert", "ratings"])


def ranking_agreement(summary: pd.DataFrame, human: pd.DataFrame) -> pd.DataFrame:
    """Kendall's tau between the human ranking of variants (win rate, else Likert) and each metric's means."""
    from eval.ratings.bradley_terry import kendall_tau

    if human.empty:
        return pd.DataFrame(columns=["metric", "group", "human", "variants", "tau", "p"])
    column = "win_rate" if human["votes"].sum() else "likert"
    score = dict(zip(human["variant"], human[column], strict=True))
    rows = []
    directed = summary[summary["higher_is_better"].isin(["higher", "lower"])]
    for (metric, group), part in directed.groupby(["metric", "group"], sort=False):
        part = part[part["variant"].map(lambda v: np.isfinite(score.get(v, math.nan)))]
        sign = np.where(part["higher_is_better"] == "higher", 1.0, -1.0)
        tau = p = math.nan
        if len(part) >= 3:
            tau, p = kendall_tau([score[v] for v in part["variant"]], list(sign * part["mean"].to_numpy()))
        rows.append({"metric": metric, "group": group, "human": column, "variants": len(part), "tau": tau, "p": p})
    return pd.DataFrame(rows, columns=["metric", "group", "human", "variants", "tau", "p"])


def variant_points(report: Report, metric: str) -> pd.DataFrame:
    part = report.summary[report.summary["metric"] == metric]
    return part.set_index("variant")[["method", "mean", "low", "high", "n"]]


def trilemma_frame(report: Report) -> pd.DataFrame:
    """Per variant: quality, seconds and diversity means with their intervals (NaN where missing)."""
    variants = list(dict.fromkeys(report.cells["variant"]))
    frame = pd.DataFrame(index=pd.Index(variants, name="variant"))
    frame["method"] = report.cells.groupby("variant", sort=False)["method"].first()
    for name, metric in (("quality", report.quality), ("seconds", TIME_METRIC), ("diversity", DIVERSITY_METRIC)):
        pts = variant_points(report, metric) if metric else pd.DataFrame(columns=["mean", "low", "high"])
        for col in ("mean", "low", "high"):
            frame[f"{name}_{col}"] = pts[col].reindex(frame.index) if len(pts) else math.nan
    return frame.reset_index()


def table_groups(report: Report) -> list[tuple[str, list[str]]]:
    """(group, metrics) for the per-method tables, in GROUP_ORDER; cost keeps seconds and memory."""
    out = []
    s = report.summary
    groups = [g for g in GROUP_ORDER if g in set(s["group"])] + sorted(set(s["group"]) - set(GROUP_ORDER))
    for group in groups:
        metrics = list(dict.fromkeys(s.loc[s["group"] == group, "metric"]))
        if group == "cost":
            metrics = [m for m in metrics if m.startswith("seconds_") or m.startswith("peak_")]
        if metrics:
            out.append((group, metrics))
    return out


def metric_matrix(summary: pd.DataFrame, metrics: list[str], variants: list[str]) -> list[list[dict | None]]:
    """For each variant, for each metric: its summary row as a dict (None when missing)."""
    index = {(r["variant"], r["metric"]): r for r in summary.to_dict("records")}
    return [[index.get((v, m)) for m in metrics] for v in variants]


def best_variant(summary: pd.DataFrame, metric: str) -> str | None:
    part = summary[(summary["metric"] == metric) & np.isfinite(summary["mean"])]
    if part.empty or part["higher_is_better"].iloc[0] not in ("higher", "lower") or len(part) < 2:
        return None
    best = part["mean"].max() if part["higher_is_better"].iloc[0] == "higher" else part["mean"].min()
    winners = part[part["mean"] == best]
    return str(winners["variant"].iloc[0]) if len(winners) == 1 else None  # a tie marks no one


def _run_json_column(store: Store, run_ids: list[str], column: str) -> list[dict[str, Any]]:
    out = []
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        rows = store.read(f"SELECT {column} FROM runs WHERE id IN ({', '.join('?' * len(chunk))})", chunk)
        out += [json.loads(r[0] or "{}") for r in rows]
    return out


def hardware_rows(store: Store, cells: pd.DataFrame) -> list[list[Any]]:
    """(machine, cells) for the machines the cells' runs recorded."""
    counts: dict[str, int] = {}
    for hw in _run_json_column(store, [r for r in cells["run_id"] if r], "hardware"):
        parts = [
            hw.get("gpu") and f"{hw['gpu']} ({hw.get('gpu_memory_gb', '?')} GB)",
            f"{hw.get('cpu_count')} CPUs",
            hw.get("machine"),
            hw.get("platform"),
            f"device {hw.get('device')}",
        ]
        key = ", ".join(str(p) for p in parts if p)
        counts[key] = counts.get(key, 0) + 1
    return [[k, n] for k, n in counts.items()] or [["no runs recorded", 0]]


def version_rows(store: Store, cells: pd.DataFrame) -> list[list[Any]]:
    """(library, versions) the cells' runs recorded, the versions joined by ", "."""
    seen: dict[str, set[str]] = {}
    for versions in _run_json_column(store, [r for r in cells["run_id"] if r], "versions"):
        for lib, version in versions.items():
            seen.setdefault(lib, set()).add(str(version))
    return [[lib, ", ".join(sorted(v))] for lib, v in sorted(seen.items())] or [["no runs recorded", ""]]
