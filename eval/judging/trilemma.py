"""The generative learning trilemma (Xiao et al. 2022), measured on the four trained families.

Quality, diversity and speed of ``vae``, ``gan``, ``ddpm`` and ``score-sde`` on held-out captions
(captions never seen in training, made of words that were), against the reference shapes of each
caption from the procedural data set (methods.families.data):

- quality: per sample, against the nearest of its caption's reference shapes, Chamfer-L1 and F-score
  (eval.judging.metrics.geometry, ONet convention) and voxel IoU at 32^3; the colour error (distance of the
  mean colour to the named colour); shape accuracy (the nearest reference over all captions has the
  sample's category); and the set metrics MMD, COV, 1-NNA (eval.judging.metrics_sets) of all samples
  against all references;
- diversity: the mean pairwise Chamfer-L1 between a caption's samples (different seeds), next to
  the same number for the references; coverage (COV) reads as diversity too;
- speed: samples per second of the sampling network at batch 1 (one torch thread unless told),
  and the seconds of meshing.

Shapes are compared in the data frame ([-1, 1]^3, +Y up), not normalised: size is part of a caption.
Every choice that changes a number is a field of :class:`StudyConfig` and is stored with the results.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.judging import metrics_sets
from methods.families import data
from methods.families.text import CATEGORIES, COLOURS, caption, tokenize

FAMILY_METHODS = ("vae", "gan", "ddpm", "score-sde")


def _geometry():
    """eval.judging.metrics.geometry when present (the project's one Chamfer / F-score), else None."""
    try:
        from eval.judging.metrics import geometry
    except ImportError:
        return None
    return geometry


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """(mean_a d(a, B) + mean_b d(b, A)) / 2, Euclidean (the ONet convention of eval.judging.metrics.geometry)."""
    geometry = _geometry()
    if geometry is not None:
        return geometry.chamfer_distance(a, b, workers=1)["chamfer_l1"]
    return 0.5 * metrics_sets.chamfer_distance(a, b, squared=False)


def f_score(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    geometry = _geometry()
    if geometry is not None:
        return geometry.f_score(a, b, tau, workers=1)
    return metrics_sets.f_score(a, b, tau)


def heldout_captions(which: str = "plain") -> list[str]:
    """The held-out captions: ``plain`` (one per category, no size word: 12) or ``all`` (60).

    ``train`` is the control set of training captions: per category, the plain caption with the
    colour after its held-out one (12). Settings and checkpoints are chosen on it, never on the
    held-out captions.
    """
    train, test = data.split_captions()
    if which == "all":
        return test
    if which == "plain":
        return [c for c in test if len(c.split()) == 3]
    if which == "train":
        held = dict(data.heldout_pairs())
        names = data.COLOUR_NAMES
        return [caption(cat, names[(names.index(held[cat]) + 1) % len(names)]) for cat in CATEGORIES]
    raise ValueError(f"which must be 'plain', 'all' or 'train', got {which!r}")


@dataclass
class StudyConfig:
    captions: tuple[str, ...] = field(default_factory=lambda: tuple(heldout_captions("plain")))
    samples_per_caption: int = 4
    refs_per_caption: int = 4
    points: int = data.POINTS
    f_tau: float = 0.1  # absolute, in the data frame (objects span about 1.5); the model voxel is 0.125
    iou_grid: int = data.GRID
    mesh_resolution: int = data.MESH_RESOLUTION
    set_squared: bool = True  # PointFlow's squared Chamfer for MMD / COV / 1-NNA
    speed_runs: int = 3
    threads: int = 1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Shape:
    """A generated or reference shape as the metrics see it."""

    caption: str
    points: np.ndarray  # (N, 3)
    colors: np.ndarray  # (N, 3)
    occupancy: np.ndarray  # (G, G, G) bool at cfg.iou_grid


def reference_sets(cfg: StudyConfig) -> dict[str, list[Shape]]:
    """``refs_per_caption`` reference shapes per caption (exact meshes' point clouds, occupancy)."""
    out: dict[str, list[Shape]] = {}
    for text in cfg.captions:
        samples = data.reference_samples(
            text, cfg.refs_per_caption, seed=cfg.seed, grid=cfg.iou_grid, mesh_resolution=cfg.mesh_resolution
        )
        out[text] = [Shape(text, s.points, s.point_colors, s.occupancy >= 0.5) for s in samples]
    return out


def write_reference_mesh(caption: str, path: str | Path, seed: int = 0, resolution: int = data.MESH_RESOLUTION) -> Path:
    """Write draw ``seed`` of a template caption's reference mesh (with colours) to ``path`` (.ply, .glb, ...).

    The protocol scores any run against it with ``context={"reference_mesh": path}`` (Chamfer,
    F-score, normal consistency, IoU in its normalised frame): the per-run half of this study.
    """
    import trimesh

    sample = data.make_sample(data.spec_for_caption(caption, seed), mesh_resolution=resolution, seed=seed)
    colours = (np.clip(sample.vertex_colors, 0, 1) * 255).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(sample.vertices, sample.faces, vertex_colors=colours, process=False).export(str(path))
    return path


def reference_mesh_file(caption: str, folder: str | Path, seed: int = 0) -> Path:
    """The caption's reference mesh (draw ``seed``) as a .ply in ``folder``, written once.

    The name carries a digest of the data generator's source, so a changed generator writes a new
    file rather than reusing a stale one (a study's cell keys include the reference's digest).
    """
    digest = data.generator_digest(f"{caption}|{seed}")[:12]
    path = Path(folder) / f"{caption.replace(' ', '-')}-s{seed}-{digest}.ply"
    if not path.is_file():
        tmp = write_reference_mesh(caption, path.with_suffix(".tmp.ply"), seed=seed)
        tmp.replace(path)
    return path


def _load(method_id: str, checkpoint: str = ""):
    from methods.families import models
    from methods.families.sample import weights_path

    return models.load(weights_path(method_id, checkpoint), "cpu")


def method_settings(method_id: str, overrides: dict[str, Any] | None = None):
    """The method's default Settings with ``overrides`` (validated)."""
    import methods

    method = methods.get(method_id)
    defaults = method.default_settings("text")
    return type(defaults).from_dict(dict(overrides or {}), base=defaults) if overrides else defaults


def generate(method_id: str, cfg: StudyConfig, settings: Any) -> tuple[dict[str, list[Shape]], float]:
    """``samples_per_caption`` shapes per caption, sampled in one batch per caption; and the mesh seconds."""
    import torch

    from methods.families import models
    from methods.families.sample import grid_to_asset, upsample

    model = _load(method_id, settings.checkpoint)
    out: dict[str, list[Shape]] = {}
    mesh_seconds = []
    for ci, text in enumerate(cfg.captions):
        ids = tokenize(text).ids
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + ci)
        grids = models.sample_grids(model, [ids] * cfg.samples_per_caption, settings, "cpu", generator=g)
        shapes = []
        for k, grid in enumerate(grids):
            t = time.perf_counter()
            asset = grid_to_asset(grid, level=float(settings.threshold), points=cfg.points, seed=k)
            mesh_seconds.append(time.perf_counter() - t)
            occ = upsample(np.clip(grid, 0, 1), cfg.iou_grid)[0] >= float(settings.threshold)
            pts = asset.points.points if asset.points is not None else asset.mesh.vertices[: cfg.points]
            cols = asset.points.colors if asset.points is not None else np.zeros_like(pts)
            shapes.append(Shape(text, pts, cols, occ))
        out[text] = shapes
    return out, float(np.mean(mesh_seconds))


def speed(method_id: str, cfg: StudyConfig, settings: Any) -> dict[str, float]:
    """Seconds per sample of the sampling network at batch 1 (median of ``speed_runs`` after a warm-up)."""
    import torch

    from methods.families import models

    model = _load(method_id, settings.checkpoint)
    ids = [tokenize(cfg.captions[0]).ids]
    models.sample_grids(model, ids, settings, "cpu", generator=torch.Generator().manual_seed(0))  # warm-up
    times = []
    for run in range(cfg.speed_runs):
        t = time.perf_counter()
        models.sample_grids(model, ids, settings, "cpu", generator=torch.Generator().manual_seed(run + 1))
        times.append(time.perf_counter() - t)
    sec = float(np.median(times))
    return {"seconds_per_sample": sec, "samples_per_second": 1.0 / sec if sec > 0 else float("inf")}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _nearest_palette(rgb: np.ndarray) -> str:
    names = list(COLOURS)
    table = np.asarray([COLOURS[n] for n in names])
    return names[int(np.linalg.norm(table - rgb[None], axis=1).argmin())]


def quality(gen: dict[str, list[Shape]], refs: dict[str, list[Shape]], cfg: StudyConfig) -> dict[str, float]:
    """Per-sample quality against the nearest reference of its caption, averaged; shape and colour accuracy."""
    cds, fs, ious, cerr, cacc, sacc = [], [], [], [], [], []
    all_refs = [r for rs in refs.values() for r in rs]
    for text, shapes in gen.items():
        cat, col, _ = data.parse_caption(text)
        named = np.asarray(COLOURS[col])
        for s in shapes:
            d = [chamfer_l1(s.points, r.points) for r in refs[text]]
            best = int(np.argmin(d))
            cds.append(d[best])
            fs.append(max(f_score(s.points, r.points, cfg.f_tau) for r in refs[text]))
            ious.append(max(_iou(s.occupancy, r.occupancy) for r in refs[text]))
            mean_rgb = s.colors.mean(0)
            cerr.append(float(np.linalg.norm(mean_rgb - named)))
            cacc.append(_nearest_palette(mean_rgb) == col)
            nearest = min(all_refs, key=lambda r: chamfer_l1(s.points, r.points))
            sacc.append(data.parse_caption(nearest.caption)[0] == cat)
    return {
        "chamfer_l1": float(np.mean(cds)),
        "f_score": float(np.mean(fs)),
        "voxel_iou": float(np.mean(ious)),
        "colour_error": float(np.mean(cerr)),
        "colour_accuracy": float(np.mean(cacc)),
        "shape_accuracy": float(np.mean(sacc)),
    }


def diversity(shapes: dict[str, list[Shape]]) -> float:
    """Mean over captions of the mean pairwise Chamfer-L1 between that caption's shapes."""
    per = []
    for group in shapes.values():
        if len(group) > 1:
            d = [chamfer_l1(a.points, b.points) for i, a in enumerate(group) for b in group[i + 1 :]]
            per.append(float(np.mean(d)))
    return float(np.mean(per)) if per else 0.0


def set_scores(gen: dict[str, list[Shape]], refs: dict[str, list[Shape]], cfg: StudyConfig) -> dict[str, Any]:
    g = [s.points for shapes in gen.values() for s in shapes]
    r = [s.points for shapes in refs.values() for s in shapes]
    return metrics_sets.set_metrics(g, r, squared=cfg.set_squared)


def measure(
    method_id: str,
    cfg: StudyConfig,
    refs: dict[str, list[Shape]] | None = None,
    overrides: dict[str, Any] | None = None,
    label: str = "",
) -> dict[str, Any]:
    """One row of the trilemma table for a method (and settings overrides)."""
    import torch

    torch.set_num_threads(cfg.threads)
    refs = refs if refs is not None else reference_sets(cfg)
    settings = method_settings(method_id, overrides)
    gen, mesh_seconds = generate(method_id, cfg, settings)
    row: dict[str, Any] = {"label": label or method_id, "method": method_id, "settings": settings.to_dict()}
    row.update(quality(gen, refs, cfg))
    row.update(set_scores(gen, refs, cfg))
    row["diversity"] = diversity(gen)
    row.update(speed(method_id, cfg, settings))
    row["mesh_seconds"] = mesh_seconds
    return row


def reference_row(cfg: StudyConfig, refs: dict[str, list[Shape]]) -> dict[str, Any]:
    """The data's own row: a second draw of references (other seeds) scored like a method (a ceiling)."""
    other = StudyConfig(**{**cfg.to_dict(), "seed": cfg.seed + 10_000, "refs_per_caption": cfg.samples_per_caption})
    draw = reference_sets(other)
    row: dict[str, Any] = {"label": "data (other draws)", "method": "data", "settings": {}}
    row.update(quality(draw, refs, cfg))
    row.update(set_scores(draw, refs, cfg))
    row["diversity"] = diversity(draw)
    row.update({"seconds_per_sample": float("nan"), "samples_per_second": float("nan"), "mesh_seconds": 0.0})
    return row
