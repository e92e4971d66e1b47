"""Analysis sentences from the numbers only: rankings, paired-bootstrap significance, Kendall's tau
between metrics, the cost-quality Pareto front.

Every function takes the study's tables (``results``: one row per cell and metric; ``summary``: per
variant and metric, the mean and its interval) and returns numbers; the ``*_sentence`` functions turn
those numbers into text and say nothing the numbers do not. Significance: the mean of the per-pair
differences over the (input, seed) pairs both variants finished, with a percentile bootstrap interval
(:func:`eval.study.tables.bootstrap_ci`, seed 0); significant when the interval excludes 0.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eval.study.tables import bootstrap_ci

__all__ = [
    "PairedDifference",
    "metric_agreement",
    "paired_difference",
    "pareto_front",
    "ranking",
    "ranking_sentence",
    "significance_sentence",
]


def fmt(x: float, missing: str = "n/a") -> str:
    """A number in at most four significant digits (scientific notation when very large or small)."""
    if not np.isfinite(x):
        return missing
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.2e}"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.0f}"


@dataclass(frozen=True)
class PairedDifference:
    metric: str
    a: str
    b: str
    direction: str  # higher | lower | ""
    pairs: int
    mean: float  # mean of a - b over the shared (input, seed) pairs
    low: float
    high: float
    confidence: float

    @property
    def significant(self) -> bool:
        return bool(self.low > 0 or self.high < 0)

    @property
    def better(self) -> str | None:
        """The variant the mean difference favours (None when equal or the metric has no direction)."""
        if self.mean == 0 or self.direction not in ("higher", "lower"):
            return None
        a_higher = self.mean > 0
        return self.a if a_higher == (self.direction == "higher") else self.b


def paired_difference(
    results: pd.DataFrame,
    metric: str,
    a: str,
    b: str,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference | None:
    """Variant ``a`` minus ``b`` on ``metric`` over the (input, seed) pairs both have; None under 2 pairs."""
    part = results[(results["metric"] == metric) & np.isfinite(results["value"])]
    if part.empty:
        return None
    values = part.groupby(["variant", "input_id", "seed"], sort=False)["value"].mean()
    if a not in values.index.get_level_values(0) or b not in values.index.get_level_values(0):
        return None
    va, vb = values.loc[a], values.loc[b]
    shared = va.index.intersection(vb.index)
    if len(shared) < 2:
        return None
    diffs = (va.loc[shared] - vb.loc[shared]).to_numpy()
    mean, low, high = bootstrap_ci(diffs, n_resamples, confidence, seed)
    direction = str(part["higher_is_better"].iloc[0])
    return PairedDifference(metric, a, b, direction, len(shared), mean, low, high, confidence)


def significance_sentence(d: PairedDifference) -> str:
    """One sentence: which variant the difference favours, by how much, the interval, and whether it is significant."""
    level = round(d.confidence * 100)
    interval = f"mean difference {fmt(d.mean)}, {level}% paired-bootstrap interval [{fmt(d.low)}, {fmt(d.high)}]"
    where = f"over {d.pairs} shared input-seed pairs"
    if d.better is None:
        head = f"On {d.metric}, {d.a} minus {d.b}: {interval} {where}"
    else:
        worse = d.b if d.better == d.a else d.a
        head = f"On {d.metric}, {d.better} scores better than {worse} ({d.a} minus {d.b}: {interval} {where})"
    if d.significant:
        return f"{head}; the interval excludes 0, so the difference is significant."
    return f"{head}; the interval contains 0, so the difference is not significant."


def ranking(summary: pd.DataFrame, metric: str) -> list[tuple[str, float]]:
    """(variant, mean), best first (by the metric's direction; highest first when it has none)."""
    part = summary[(summary["metric"] == metric) & np.isfinite(summary["mean"])]
    if part.empty:
        return []
    ascending = part["higher_is_better"].iloc[0] == "lower"
    part = part.sort_values("mean", ascending=ascending, kind="stable")
    return list(zip(part["variant"], part["mean"].astype(float), strict=True))


def ranking_sentence(summary: pd.DataFrame, metric: str) -> str:
    ranked = ranking(summary, metric)
    if not ranked:
        return f"{metric}: no values."
    direction = summary.loc[summary["metric"] == metric, "higher_is_better"].iloc[0]
    if len(ranked) == 1:
        return f"{metric}: only {ranked[0][0]} has values ({fmt(ranked[0][1])})."
    parts = [f"{ranked[0][0]} ({fmt(ranked[0][1])})"]
    for (_, prev), (variant, value) in itertools.pairwise(ranked):
        sep = " = " if value == prev else (" > " if direction != "lower" else " < ")
        parts.append(f"{sep}{variant} ({fmt(value)})")
    how = {"higher": "higher is better", "lower": "lower is better"}.get(direction, "no preferred direction")
    return f"{metric} ({how}): " + "".join(parts) + "."


def metric_agreement(summary: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Kendall's tau-b between each two metrics' variant means, each oriented so that larger is better
    (tau 1: the same ranking, -1: reversed); only variants with both values, at least 3."""
    from eval.ratings.bradley_terry import kendall_tau

    rows = []
    table = summary[np.isfinite(summary["mean"])]
    for m1, m2 in itertools.combinations(metrics, 2):
        s1 = _oriented(table, m1)
        s2 = _oriented(table, m2)
        shared = s1.index.intersection(s2.index)
        tau = p = math.nan
        if len(shared) >= 3:
            tau, p = kendall_tau(s1.loc[shared].to_numpy(), s2.loc[shared].to_numpy())
        rows.append({"a": m1, "b": m2, "variants": len(shared), "tau": tau, "p": p})
    return pd.DataFrame(rows, columns=["a", "b", "variants", "tau", "p"]).astype({"tau": float, "p": float})


def _oriented(summary: pd.DataFrame, metric: str) -> pd.Series:
    part = summary[summary["metric"] == metric]
    sign = -1.0 if len(part) and part["higher_is_better"].iloc[0] == "lower" else 1.0
    return pd.Series(sign * part["mean"].to_numpy(), index=part["variant"].to_numpy())


def pareto_front(points: dict[str, tuple[float, float]], quality_higher: bool = True) -> list[str]:
    """Variants no other variant beats on both cost (lower) and quality, given (cost, quality) means."""
    front = []
    for v, (cost, q) in points.items():
        dominated = False
        for w, (c2, q2) in points.items():
            if w == v:
                continue
            q_ok = q2 >= q if quality_higher else q2 <= q
            q_strict = q2 > q if quality_higher else q2 < q
            if c2 <= cost and q_ok and (c2 < cost or q_strict):
                dominated = True
                break
        if not dominated:
            front.append(v)
    return sorted(front, key=lambda v: points[v][0])
