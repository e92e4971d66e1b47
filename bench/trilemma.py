"""Benchmark: the generative learning trilemma of the four trained families (quality, diversity, speed).

Loads the shipped weights (assets/weights/), samples every held-out caption with each family, scores
the samples against the captions' reference shapes (eval.judging.trilemma) and prints one table; writes the
rows (JSON, with the study config) and the trilemma plot (PNG) to ``--out``.

Usage::

    python bench/trilemma.py                          # 12 held-out captions x 4 seeds, default samplers
    python bench/trilemma.py --variants               # also DDPM-1000, DDIM-10, PC-50, ODE-50 rows
    python bench/trilemma.py --captions all --samples 8 --refs 8 --out outputs/trilemma-full
    python bench/trilemma.py --weights-dir outputs/new-weights   # weights written by the training CLI's --out
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import methods.families  # noqa: E402,F401 (registers the four methods)
from eval.judging import trilemma  # noqa: E402
from methods.families.sample import weights_path  # noqa: E402

VARIANTS: dict[str, list[tuple[str, dict]]] = {
    "vae": [],
    "gan": [],
    "ddpm": [("ddpm ancestral 1000", {"sampler": "ddpm", "steps": 1000}), ("ddim 10", {"steps": 10})],
    "score-sde": [("sde pc 50", {"steps": 50}), ("sde ode 50", {"sampler": "ode", "steps": 50})],
}
COLUMNS = [
    ("label", "{:<22}"),
    ("chamfer_l1", "{:>8.4f}"),
    ("f_score", "{:>6.3f}"),
    ("voxel_iou", "{:>6.3f}"),
    ("shape_accuracy", "{:>6.2f}"),
    ("colour_accuracy", "{:>6.2f}"),
    ("mmd_cd", "{:>7.4f}"),
    ("cov_cd", "{:>5.2f}"),
    ("1nna_cd", "{:>6.3f}"),
    ("diversity", "{:>6.3f}"),
    ("samples_per_second", "{:>8.2f}"),
]
HEADERS = {
    "label": "family",
    "chamfer_l1": "CD-L1↓",
    "f_score": "F↑",
    "voxel_iou": "IoU↑",
    "shape_accuracy": "shape↑",
    "colour_accuracy": "col↑",
    "mmd_cd": "MMD↓",
    "cov_cd": "COV↑",
    "1nna_cd": "1-NNA",
    "diversity": "div",
    "samples_per_second": "samp/s↑",
}


def table(rows: list[dict]) -> str:
    widths = [len(fmt.format(rows[0][k])) if rows else 8 for k, fmt in COLUMNS]
    head = " ".join(
        f"{HEADERS[k]:>{w}}" if i else f"{HEADERS[k]:<{w}}"
        for i, ((k, _), w) in enumerate(zip(COLUMNS, widths, strict=True))
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for k, fmt in COLUMNS:
            v = r.get(k)
            cells.append(fmt.format(v) if not (isinstance(v, float) and math.isnan(v)) else f"{'-':>8}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Left: the trilemma triangle (quality, diversity, speed, each scaled to [0, 1] over the families);
    right: quality (F-score) against diversity (coverage), marker area ~ log speed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fam = [r for r in rows if r["method"] != "data"]
    data_row = next((r for r in rows if r["method"] == "data"), None)
    q = np.array([r["f_score"] for r in fam])
    d = np.array([r["cov_cd"] for r in fam])
    s = np.log10(np.array([r["samples_per_second"] for r in fam]))

    def unit(v: np.ndarray) -> np.ndarray:
        span = v.max() - v.min()
        return (v - v.min()) / span if span > 0 else np.ones_like(v)

    fig = plt.figure(figsize=(12, 5.2))
    ax = fig.add_subplot(1, 2, 1, projection="polar")
    angles = np.array([90, 210, 330]) * np.pi / 180
    for i, r in enumerate(fam):
        vals = np.array([unit(q)[i], unit(d)[i], unit(s)[i]]) * 0.85 + 0.15
        ax.plot(np.r_[angles, angles[0]], np.r_[vals, vals[0]], marker="o", label=r["label"])
        ax.fill(np.r_[angles, angles[0]], np.r_[vals, vals[0]], alpha=0.08)
    ax.set_xticks(angles)
    ax.set_xticklabels(["quality\n(F-score)", "diversity\n(coverage)", "speed\n(log samples/s)"])
    ax.set_yticklabels([])
    ax.set_ylim(0, 1)
    ax.set_title("Generative learning trilemma (scaled over the rows)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, -0.32), ncol=3, fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    sizes = 40 + 120 * unit(s)
    for i, r in enumerate(fam):
        ax2.scatter(d[i], q[i], s=sizes[i], alpha=0.8)
        ax2.annotate(f"{r['label']}\n{r['samples_per_second']:.2g}/s", (d[i], q[i]), fontsize=8,
                     xytext=(5, 5), textcoords="offset points")  # fmt: skip
    if data_row is not None:
        ax2.scatter(data_row["cov_cd"], data_row["f_score"], marker="*", s=200, c="k")
        ax2.annotate("data", (data_row["cov_cd"], data_row["f_score"]), xytext=(5, -10), textcoords="offset points")
    ax2.set_xlabel("diversity: coverage (COV-CD) ↑")
    ax2.set_ylabel("quality: F-score ↑")
    ax2.set_title("Quality vs diversity (marker size: speed)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=list(trilemma.FAMILY_METHODS), choices=trilemma.FAMILY_METHODS)
    p.add_argument(
        "--captions",
        choices=("plain", "all", "train"),
        default="plain",
        help="held-out captions (plain: one per category; all) or the training-caption control set (train)",
    )
    p.add_argument("--samples", type=int, default=4, help="samples (seeds) per caption")
    p.add_argument("--refs", type=int, default=4, help="reference shapes per caption")
    p.add_argument("--speed-runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", action="store_true", help="also other samplers / step counts")
    p.add_argument("--no-data-row", action="store_true", help="skip the data's own (ceiling) row")
    p.add_argument("--out", default="outputs/trilemma")
    p.add_argument("--weights-dir", default="", help="load <dir>/<family>.safetensors instead of the shipped weights")
    args = p.parse_args(argv)
    cfg = trilemma.StudyConfig(
        captions=tuple(trilemma.heldout_captions(args.captions)),
        samples_per_caption=args.samples,
        refs_per_caption=args.refs,
        speed_runs=args.speed_runs,
        threads=args.threads,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    refs = trilemma.reference_sets(cfg)
    kind = "training" if args.captions == "train" else "held-out"
    took = time.perf_counter() - t0
    print(f"references: {len(cfg.captions)} {kind} captions x {cfg.refs_per_caption} ({took:.0f} s)")
    rows = []
    if not args.no_data_row:
        rows.append(trilemma.reference_row(cfg, refs))
    for fam in args.families:
        runs = [(fam, {})] + (VARIANTS[fam] if args.variants else [])
        for label, overrides in runs:
            if args.weights_dir:
                overrides = {**overrides, "checkpoint": str(Path(args.weights_dir) / weights_path(fam).name)}
            t = time.perf_counter()
            rows.append(trilemma.measure(fam, cfg, refs, overrides, label))
            print(f"  {label}: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    print(table(rows))
    record = {"config": cfg.to_dict(), "rows": rows, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (out / "trilemma.json").write_text(json.dumps(record, indent=1, default=str))
    plot(rows, out / "trilemma.png")
    print(f"wrote {out / 'trilemma.json'} and {out / 'trilemma.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
