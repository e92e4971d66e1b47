"""The study's plots (matplotlib PNG and plotly HTML) and the per-input grids of turntable renders.

Plots: quality vs generation time (log scale), quality vs diversity across seeds coloured by time
(the generative trilemma), the distribution of each metric per variant, and, where the study has
ratings, the human ranking against the automatic one. Figures are built with matplotlib's object
API (no pyplot state: safe in a server thread); the HTML versions share one plotly.min.js.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from eval.study.spec import Study
from eval.study.tables import (
    COST_METRICS,
    DIVERSITY_METRIC,
    Report,
    ranking_agreement,
    slug,
    trilemma_frame,
    variant_points,
)


def write_plots(report: Report, out: Path, human: pd.DataFrame | None = None) -> dict[str, Path]:
    """PNG (matplotlib) and interactive HTML (plotly) plots; plots without data are left out."""
    files: dict[str, Path] = {}
    tri = trilemma_frame(report)
    q = report.quality
    if q and tri["quality_mean"].notna().any() and tri["seconds_mean"].notna().any():
        files.update(
            _scatter(
                tri,
                "seconds",
                "quality",
                f"{q} vs generation time",
                "seconds_total (s, log)",
                q,
                out / "quality_vs_time",
                log_x=True,
            )
        )
    if q and tri["quality_mean"].notna().any() and tri["diversity_mean"].notna().any():
        files.update(
            _scatter(
                tri,
                "diversity",
                "quality",
                f"{q} vs diversity across seeds (colour: seconds)",
                DIVERSITY_METRIC,
                q,
                out / "quality_vs_diversity",
                colour="seconds",
            )
        )
    results = report.results[np.isfinite(report.results["value"])]
    shown = [m for m in dict.fromkeys(results["metric"]) if _distribution_worthy(results, m)]
    for metric in shown:
        files.update(_distribution(results[results["metric"] == metric], metric, out / f"dist_{slug(metric)}"))
    if human is not None and not human.empty and q:
        files.update(_human_plot(report, human, out / "human_vs_automatic"))
    return files


def _distribution_worthy(results: pd.DataFrame, metric: str) -> bool:
    part = results[results["metric"] == metric]
    return part["higher_is_better"].iloc[0] != "" or metric in COST_METRICS


def _figure(width: float = 6.4, height: float = 4.2):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a server thread

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots()


def _scatter(
    tri,
    x: str,
    y: str,
    title: str,
    xlabel: str,
    ylabel: str,
    stem: Path,
    *,
    log_x: bool = False,
    colour: str | None = None,
    html: bool = True,
) -> dict[str, Path]:
    data = tri[tri[f"{x}_mean"].notna() & tri[f"{y}_mean"].notna()]
    fig, ax = _figure()
    xerr = [data[f"{x}_mean"] - data[f"{x}_low"], data[f"{x}_high"] - data[f"{x}_mean"]]
    yerr = [data[f"{y}_mean"] - data[f"{y}_low"], data[f"{y}_high"] - data[f"{y}_mean"]]
    ax.errorbar(
        data[f"{x}_mean"],
        data[f"{y}_mean"],
        xerr=np.abs(xerr),
        yerr=np.abs(yerr),
        fmt="none",
        ecolor="0.6",
        elinewidth=1,
        capsize=2,
    )
    c = data[f"{colour}_mean"] if colour else None
    if colour:
        points = ax.scatter(data[f"{x}_mean"], data[f"{y}_mean"], c=c, cmap="viridis", s=40, zorder=3)
        fig.colorbar(points, ax=ax, label=f"{colour} (s)")
    else:
        ax.scatter(data[f"{x}_mean"], data[f"{y}_mean"], s=40, zorder=3)
    for _, row in data.iterrows():
        ax.annotate(
            mpl_text(row["variant"]),
            (row[f"{x}_mean"], row[f"{y}_mean"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    if log_x and (data[f"{x}_mean"] > 0).all():
        ax.set_xscale("log")
    ax.set(title=mpl_text(title), xlabel=mpl_text(xlabel), ylabel=mpl_text(ylabel))
    ax.grid(True, alpha=0.3)
    files = {f"{stem.name}.png": _save_png(fig, stem)}
    go = plotly_go() if html else None
    if go is not None:
        hover = [
            f"{v}<br>{x}: {a:.4g}<br>{y}: {b:.4g}"
            for v, a, b in zip(data["variant"], data[f"{x}_mean"], data[f"{y}_mean"], strict=True)
        ]
        marker: dict[str, Any] = {"size": 11}
        if colour:
            marker.update(
                color=list(data[f"{colour}_mean"]),
                colorscale="Viridis",
                showscale=True,
                colorbar={"title": f"{colour} (s)"},
            )
        trace = go.Scatter(
            x=list(data[f"{x}_mean"]),
            y=list(data[f"{y}_mean"]),
            mode="markers+text",
            text=list(data["variant"]),
            textposition="top center",
            hovertext=hover,
            hoverinfo="text",
            marker=marker,
            error_x={
                "type": "data",
                "symmetric": False,
                "array": list(np.abs(xerr[1])),
                "arrayminus": list(np.abs(xerr[0])),
            },
            error_y={
                "type": "data",
                "symmetric": False,
                "array": list(np.abs(yerr[1])),
                "arrayminus": list(np.abs(yerr[0])),
            },
        )
        layout = {
            "title": title,
            "xaxis": {"title": xlabel, "type": "log" if log_x else "linear"},
            "yaxis": {"title": ylabel},
            "template": "plotly_white",
        }
        files[f"{stem.name}.html"] = _save_html(go.Figure(trace, layout), stem)
    return files


def _distribution(part: pd.DataFrame, metric: str, stem: Path) -> dict[str, Path]:
    variants = list(dict.fromkeys(part["variant"]))
    values = [part.loc[part["variant"] == v, "value"].to_numpy() for v in variants]
    fig, ax = _figure(max(4.8, 1.2 * len(variants) + 2), 4.0)
    ax.boxplot(values, tick_labels=[mpl_text("\n".join(textwrap.wrap(v, 18))) for v in variants], showmeans=True)
    rng = np.random.default_rng(0)
    for i, vals in enumerate(values, start=1):
        ax.scatter(i + rng.uniform(-0.08, 0.08, len(vals)), vals, s=10, alpha=0.6, color="tab:blue", zorder=3)
    unit = part["unit"].iloc[0]
    ax.set(title=f"{metric} per cell", ylabel=f"{metric} ({unit})" if unit else metric)
    ax.grid(True, axis="y", alpha=0.3)
    files = {f"{stem.name}.png": _save_png(fig, stem)}
    go = plotly_go()
    if go is not None:
        traces = [
            go.Box(
                y=list(v),
                name=name,
                boxpoints="all",
                jitter=0.3,
                boxmean=True,
                hovertext=list(part.loc[part["variant"] == name, "input"]),
            )
            for name, v in zip(variants, values, strict=True)
        ]
        layout = {"title": f"{metric} per cell", "yaxis": {"title": metric}, "template": "plotly_white"}
        files[f"{stem.name}.html"] = _save_html(go.Figure(traces, layout), stem)
    return files


def _human_plot(report: Report, human: pd.DataFrame, stem: Path, html: bool = True) -> dict[str, Path]:
    column = "win_rate" if human["votes"].sum() else "likert"
    auto = variant_points(report, report.quality)["mean"]
    data = human.assign(auto=human["variant"].map(auto)).dropna(subset=[column, "auto"])
    if data.empty:
        return {}
    data = data.assign(human_rank=data[column].rank(ascending=False), auto_rank=data["auto"].rank(ascending=False))
    agreement = ranking_agreement(report.summary, human)
    row = agreement[agreement["metric"] == report.quality]
    tau = float(row["tau"].iloc[0]) if len(row) else math.nan
    title = f"human ({column}) vs {report.quality} ranking, Kendall tau = {tau:.2f}"
    fig, ax = _figure()
    ax.scatter(data["auto_rank"], data["human_rank"], s=40)
    for _, r in data.iterrows():
        ax.annotate(
            mpl_text(r["variant"]),
            (r["auto_rank"], r["human_rank"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set(title=mpl_text(title), xlabel=mpl_text(f"rank by {report.quality}"), ylabel=f"rank by {column}")
    ax.invert_xaxis()
    ax.invert_yaxis()
    files = {f"{stem.name}.png": _save_png(fig, stem)}
    go = plotly_go() if html else None
    if go is not None:
        trace = go.Scatter(
            x=list(data["auto_rank"]),
            y=list(data["human_rank"]),
            mode="markers+text",
            text=list(data["variant"]),
            textposition="top center",
        )
        layout = {
            "title": title,
            "xaxis": {"title": f"rank by {report.quality}", "autorange": "reversed"},
            "yaxis": {"title": f"rank by {column}", "autorange": "reversed"},
            "template": "plotly_white",
        }
        files[f"{stem.name}.html"] = _save_html(go.Figure(trace, layout), stem)
    return files


def mpl_text(text: str) -> str:
    """Text that matplotlib shows as written (a ``$`` would otherwise start mathtext)."""
    return str(text).replace("$", r"\$")


def _save_png(fig, stem: Path) -> Path:
    path = stem.with_suffix(".png")
    fig.savefig(path, dpi=120)
    return path


def _save_html(fig, stem: Path) -> Path:
    path = stem.with_suffix(".html")
    fig.write_html(path, include_plotlyjs="directory", full_html=True)  # one plotly.min.js beside the plots
    return path


def plotly_go():
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    return go


def write_render_grids(
    study: Study, cells: pd.DataFrame, out: Path, max_inputs: int, views: int, resolution: int = 128
) -> dict[str, Path]:
    """For each of the first ``max_inputs`` inputs: one PNG, a row of turntable views per method variant
    (the lowest seed that finished), rendered with eval.judging.render's camera ring and renderer."""
    from PIL import Image, ImageDraw

    from eval.judging import render
    from methods.export import load_asset

    files: dict[str, Path] = {}
    if max_inputs <= 0:
        return files
    cameras = render.camera_ring(views)
    variants = list(dict.fromkeys(cells["variant"]))
    label_w, pad = 200, 4
    for input_id in list(dict.fromkeys(cells["input_id"]))[:max_inputs]:
        rows = []
        for variant in variants:
            part = cells[(cells["input_id"] == input_id) & (cells["variant"] == variant) & (cells["status"] == "done")]
            part = part.sort_values("seed")
            if part.empty:
                rows.append((variant, None, "no finished cell"))
                continue
            try:
                shots = render.render(
                    load_asset(part["asset_path"].iloc[0]), cameras, resolution=resolution, supersample=1
                ).images()
                rows.append((variant, shots, f"seed {part['seed'].iloc[0]}"))
            except (OSError, ValueError) as exc:
                rows.append((variant, None, f"cannot render: {exc}"))
        if all(r[1] is None for r in rows):
            continue
        width = label_w + views * (resolution + pad)
        title_h = 28
        sheet = Image.new("RGB", (width, title_h + len(rows) * (resolution + pad)), "white")
        draw = ImageDraw.Draw(sheet)
        label = cells.loc[cells["input_id"] == input_id, "input"].iloc[0]
        draw.text((pad, 8), f"{input_id}: {label}"[:150], fill="black")
        for r, (variant, shots, note) in enumerate(rows):
            y = title_h + r * (resolution + pad)
            lines = textwrap.wrap(variant, 30)[:3]
            draw.multiline_text((pad, y + resolution // 2 - 8 * len(lines)), "\n".join(lines), fill="black")
            draw.text((pad, y + resolution // 2 + 8), note[:30], fill="gray")
            for v, shot in enumerate(shots or []):
                sheet.paste(shot, (label_w + v * (resolution + pad), y))
        path = out / f"{slug(input_id)}.png"
        sheet.save(path)
        files[f"renders/{path.name}"] = path
    return files
