"""Which metrics run for which modality, streamed as rows to the panel and the run store.

Methods never score themselves: every asset goes through :func:`score` the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from methods.base import Asset, Inputs

PROTOCOL_VERSION = "1"


@dataclass
class MetricRow:
    """One measured value with everything needed to read and reproduce it."""

    name: str
    value: float | int | bool | str | None
    unit: str = ""
    higher_is_better: bool | None = None  # None: neither (a count, a time reported for information)
    group: str = "cost"  # cost | geometry | alignment | image | diversity
    settings: dict[str, Any] = field(default_factory=dict)  # what changes the number (views, model, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]


def cost_rows(stage_seconds: dict[str, float], peak_rss_mb: float | None, peak_gpu_mb: float | None) -> list[MetricRow]:
    rows = [
        MetricRow(f"seconds_{stage}", round(float(sec), 3), "s", False, "cost") for stage, sec in stage_seconds.items()
    ]
    rows.append(MetricRow("seconds_total", round(float(sum(stage_seconds.values())), 3), "s", False, "cost"))
    if peak_rss_mb is not None:
        rows.append(MetricRow("peak_rss_mb", round(float(peak_rss_mb), 1), "MB", False, "cost"))
    if peak_gpu_mb is not None:
        rows.append(MetricRow("peak_gpu_mb", round(float(peak_gpu_mb), 1), "MB", False, "cost"))
    return rows


def mesh_stat_rows(asset: Asset) -> list[MetricRow]:
    """Counts and basic topology of the asset (normalised or not: counts do not depend on it)."""
    import trimesh

    rows: list[MetricRow] = []
    if asset.mesh is not None:
        m = asset.mesh
        tm = trimesh.Trimesh(m.vertices, m.faces, process=False)
        extent = (m.vertices.max(0) - m.vertices.min(0)).tolist() if len(m.vertices) else [0.0, 0.0, 0.0]
        components = (
            int(trimesh.graph.connected_components(tm.face_adjacency, nodes=np.arange(len(tm.faces))).__len__())
            if len(tm.faces)
            else 0
        )
        rows += [
            MetricRow("vertices", int(len(m.vertices)), "", None, "geometry"),
            MetricRow("faces", int(len(m.faces)), "", None, "geometry"),
            MetricRow("watertight", bool(tm.is_watertight) if len(tm.faces) else False, "", True, "geometry"),
            MetricRow("components", components, "", None, "geometry"),
            MetricRow("bbox", " x ".join(f"{v:.3f}" for v in extent), "", None, "geometry"),
        ]
    if asset.points is not None:
        rows.append(MetricRow("points", int(len(asset.points.points)), "", None, "geometry"))
    return rows


def score(asset: Asset, inputs: Inputs, context: dict[str, Any] | None = None) -> Iterator[MetricRow]:
    """Yield the metric rows of the protocol for this asset and input, cheapest first."""
    yield from mesh_stat_rows(asset)
