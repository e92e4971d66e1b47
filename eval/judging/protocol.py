"""Which metrics run for which modality, streamed as rows to the panel and the run store.

Methods never score themselves: every asset goes through :func:`score` the same way. The order
is cheapest first: mesh (or point-cloud) quality for every asset, then held-out views when the
method hands some over, geometry against a reference mesh when one is given, then the metrics
that need renders: image-input fidelity and CLIP alignment. A metric family that cannot run
here (no CLIP weights, no LPIPS weights, no Open3D) yields one ``<family>_skipped`` row whose
value says why; it never stops the run.

The ``context`` dict (all keys optional; unknown keys are ignored):

    clip_models       list of CLIP checkpoints to score with (default: openai/clip-vit-base-patch32)
    clip_download     allow downloading CLIP weights (default False: cached weights only)
    method_clip_models  CLIP checkpoints the method optimised against (never used for scoring)
    method_settings   the method's settings; string values naming a CLIP checkpoint count as above
    views             ring views for CLIP (default 8, at 30 degrees elevation)
    resolution        render resolution in pixels (default 224)
    captions          R-precision caption set (list of str, or a text file with one per line;
                      default: the study's prompt set, assets/prompts.txt)
    reference_mesh    a mesh file to compare geometry against (Chamfer, F-score, NC, IoU)
    icp               rigidly align to the reference first (default False)
    samples           surface samples for reference geometry (default 100000)
    lpips_weights     state-dict file(s) for LPIPS (default: $TRILEMMA_LPIPS_WEIGHTS, else lpips_source)
    lpips_source      "official" (default: fetched once into the cache, eval.judging.metrics.lpips_weights) or a
                      folder holding the official files ($TRILEMMA_LPIPS_SOURCE); offline: a skipped row
    lpips_net         vgg (default) or alex
    renders_dir       keep what the metrics saw there (eval.judging.renders; the runner: <run>/renders, "" for none)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from methods.base import Asset, Inputs, normalize

PROTOCOL_VERSION = "2"
FRAME = "normalised: bounding-box centre at the origin, unit bounding sphere, +Y up"
STUDY_PROMPTS = Path(__file__).resolve().parents[2] / "assets" / "prompts.txt"
log = logging.getLogger(__name__)


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


# ----------------------------------------------------------------------------- options


@dataclass
class ProtocolOptions:
    """The protocol's settings, read from the ``context`` dict (see the module docstring)."""

    clip_models: list[str] = field(default_factory=list)
    clip_download: bool = False
    method_clip_models: list[str] = field(default_factory=list)
    views: int = 8
    resolution: int = 224
    supersample: int = 2
    captions: list[str] | None = None
    captions_source: str = ""
    reference_mesh: str | None = None
    icp: bool = False
    samples: int = 100_000
    lpips_weights: list[str] = field(default_factory=list)
    lpips_net: str = "vgg"
    lpips_source: str = "official"

    @classmethod
    def from_context(cls, context: dict[str, Any] | None) -> ProtocolOptions:
        from eval.judging.metrics.clip import DEFAULT_CLIP

        ctx = dict(context or {})
        models = ctx.get("clip_models") or ctx.get("clip_checkpoint") or ctx.get("clip_model") or [DEFAULT_CLIP]
        method_models = list(_as_list(ctx.get("method_clip_models")))
        for key, value in (ctx.get("method_settings") or {}).items():
            if isinstance(value, str) and "clip" in (key.lower() + value.lower()) and "/" in value:
                method_models.append(value)
        opts = cls(
            clip_models=list(dict.fromkeys(_as_list(models))),
            clip_download=bool(ctx.get("clip_download", False)),
            method_clip_models=list(dict.fromkeys(method_models)),
            views=_int(ctx, "views", cls.views),
            resolution=_int(ctx, "resolution", cls.resolution),
            supersample=_int(ctx, "supersample", cls.supersample),
            reference_mesh=ctx.get("reference_mesh") or ctx.get("reference") or None,
            icp=bool(ctx.get("icp", False)),
            samples=_int(ctx, "samples", cls.samples),
            lpips_net=str(ctx.get("lpips_net") or cls.lpips_net),
        )
        weights = ctx.get("lpips_weights") or os.environ.get("TRILEMMA_LPIPS_WEIGHTS", "")
        opts.lpips_weights = [w for w in (weights.split(os.pathsep) if isinstance(weights, str) else weights) if w]
        opts.lpips_source = str(ctx.get("lpips_source") or os.environ.get("TRILEMMA_LPIPS_SOURCE") or "official")
        captions = ctx.get("captions", ctx.get("caption_set"))
        if isinstance(captions, (str, Path)):
            opts.captions, opts.captions_source = read_captions(captions), str(captions)
        elif captions:
            opts.captions = [str(c) for c in captions]
            opts.captions_source = str(ctx.get("captions_source") or "given")
        if opts.views < 1 or opts.resolution < 32 or opts.supersample < 1 or opts.samples < 100:
            raise ValueError("views >= 1, resolution >= 32, supersample >= 1 and samples >= 100 are required")
        if opts.lpips_net not in ("vgg", "alex"):
            raise ValueError(f"lpips_net must be vgg or alex, got {opts.lpips_net!r}")
        return opts

    def study_captions(self) -> tuple[list[str], str]:
        """The R-precision caption set and where it came from (default: the study's prompt set)."""
        if self.captions:
            return self.captions, self.captions_source
        if STUDY_PROMPTS.is_file():
            return read_captions(STUDY_PROMPTS), "assets/prompts.txt"
        return [], ""


def _int(ctx: dict[str, Any], key: str, default: int) -> int:
    value = ctx.get(key)
    return default if value is None else int(value)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def read_captions(path: str | Path) -> list[str]:
    """One caption a line; blank lines and lines starting with # are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# ----------------------------------------------------------------------------- mesh and point quality

_QUALITY_ROWS = (
    # name, unit, higher_is_better
    ("welded_vertices", "", None),
    ("watertight", "", True),
    ("winding_consistent", "", True),
    ("non_manifold_edges", "", False),
    ("non_manifold_vertices", "", False),
    ("boundary_edges", "", False),
    ("components", "", None),
    ("self_intersecting_faces", "", False),
    ("degenerate_faces", "", False),
    ("euler_characteristic", "", None),
    ("genus", "", None),
    ("surface_area", "r²", None),
    ("volume", "r³", None),
)


def mesh_stat_rows(asset: Asset) -> list[MetricRow]:
    """Mesh quality (each property separately) and point-cloud quality, in the normalised frame.

    Lengths are in units of the bounding-sphere radius r (the asset is normalised first if needed).
    """
    from eval.judging.metrics.mesh_quality import OUTLIER_NEIGHBOURS, OUTLIER_STD_RATIO, WELD_TOLERANCE, point_quality
    from eval.judging.metrics.mesh_quality import mesh_quality as measure

    if asset.normalization is None:
        asset = normalize(asset)
    rows: list[MetricRow] = []
    if asset.mesh is not None:
        m = asset.mesh
        q = measure(m.vertices, m.faces)
        settings = {"frame": FRAME, "weld_tolerance": WELD_TOLERANCE, "topology": "on welded vertices"}
        if asset.gaussians is not None:  # a splat asset's mesh is derived: say how
            settings["mesh_from_splats"] = _splat_mesh_method(asset)
        extent = (m.vertices.max(0) - m.vertices.min(0)).tolist() if len(m.vertices) else [0.0, 0.0, 0.0]
        rows += [
            MetricRow("vertices", q.vertices, "", None, "geometry"),
            MetricRow("faces", q.faces, "", None, "geometry"),
        ]
        values = q.as_dict()
        rows += [
            MetricRow(name, values[name], unit, better, "geometry", settings) for name, unit, better in _QUALITY_ROWS
        ]
        rows.append(MetricRow("bbox", " x ".join(f"{v:.3f}" for v in extent), "r", None, "geometry", {"frame": FRAME}))
    if asset.points is not None:
        p = point_quality(asset.points.points)
        settings = {
            "frame": FRAME,
            "outlier_rule": f"mean {OUTLIER_NEIGHBOURS}-NN distance > mean + {OUTLIER_STD_RATIO} std",
        }
        if asset.gaussians is not None:
            settings["points_from_splats"] = "splat centres with opacity >= 0.5"
        rows += [
            MetricRow("points", p.points, "", None, "geometry"),
            MetricRow("nn_spacing_mean", p.spacing_mean, "r", None, "geometry", settings),
            MetricRow("nn_spacing_std", p.spacing_std, "r", None, "geometry", settings),
            MetricRow("outlier_fraction", p.outlier_fraction, "", False, "geometry", settings),
        ]
    if asset.gaussians is not None:
        rows += splat_rows(asset)
    return rows


OPACITY_BINS = (0.0, 0.005, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def _splat_mesh_method(asset: Asset) -> str:
    info = asset.views.get("mesh") if isinstance(asset.views.get("mesh"), dict) else {}
    if not info:
        return "unknown"
    return f"{info.get('method', 'unknown')} (level {info.get('level')}, lattice {info.get('resolution')})"


def splat_rows(asset: Asset) -> list[MetricRow]:
    """What a Gaussian-splat asset is made of: count, opacity histogram, sizes (normalised frame), SH degree."""
    g = asset.gaussians
    opacity = g.opacities
    counts, _ = np.histogram(opacity, bins=OPACITY_BINS)
    size = np.exp(g.log_scales.astype(np.float64)).max(1) if len(g) else np.zeros(0)
    what = {"frame": FRAME, "measures": "the splats themselves (not a render)"}
    edges = zip(OPACITY_BINS[:-1], OPACITY_BINS[1:], counts, strict=True)
    hist = " | ".join(f"{lo:g}-{hi:g}: {int(n)}" for lo, hi, n in edges)
    return [
        MetricRow("splats", int(len(g)), "", None, "geometry", what),
        MetricRow("splat_sh_degree", int(g.sh_degree), "", None, "geometry", what),
        MetricRow("splat_opacity_mean", float(opacity.mean()) if len(g) else 0.0, "", None, "geometry", what),
        MetricRow("splat_opacity_histogram", hist, "", None, "geometry", what | {"bins": list(OPACITY_BINS)}),
        MetricRow(
            "splat_opaque_fraction",
            float((opacity >= 0.5).mean()) if len(g) else 0.0,
            "",
            None,
            "geometry",
            what | {"opaque": "opacity >= 0.5"},
        ),
        MetricRow(
            "splat_size_median",
            float(np.median(size)) if len(g) else 0.0,
            "r",
            None,
            "geometry",
            what | {"size": "largest axis scale (1 sigma)"},
        ),
    ]


# ----------------------------------------------------------------------------- the protocol


def score(asset: Asset, inputs: Inputs, context: dict[str, Any] | None = None) -> Iterator[MetricRow]:
    """Yield the metric rows of the protocol for this asset and input, cheapest first.

    The asset should be normalised (the runner does it); an asset that is not is normalised here.
    Every row's settings carry the protocol version.
    """
    for row in _rows(asset, inputs, context):
        row.settings = {"protocol": PROTOCOL_VERSION, **row.settings}
        yield row


def _rows(asset: Asset, inputs: Inputs, context: dict[str, Any] | None) -> Iterator[MetricRow]:
    try:
        opts = ProtocolOptions.from_context(context)
    except (TypeError, ValueError, OSError) as exc:
        yield _skipped("protocol_options", "cost", f"bad protocol options ({exc}); using the defaults")
        opts = ProtocolOptions.from_context(None)
    if asset.normalization is None:
        asset = normalize(asset)
    scale = float(asset.normalization.get("scale", 1.0))
    yield MetricRow("normalization_scale", scale, "×", None, "geometry", dict(asset.normalization))
    yield from _guarded("mesh_quality", "geometry", lambda: mesh_stat_rows(asset))
    if asset.views.get("heldout_pred") is not None and asset.views.get("heldout_gt") is not None:
        yield from _guarded("heldout", "image", lambda: _heldout_rows(asset, opts))
    if opts.reference_mesh:
        yield from _guarded("reference", "geometry", lambda: _reference_rows(asset, opts))
    shots = _Shots(asset, opts)
    if inputs.image is not None:
        yield from _guarded("image", "image", lambda: _image_rows(shots, inputs, opts))
    if inputs.prompt or inputs.image is not None:
        yield from _guarded("clip", "alignment", lambda: _clip_rows(shots, inputs, opts))
    if (context or {}).get("renders_dir"):  # keep what the metrics saw, beside the asset (eval.judging.renders)
        try:
            from eval.judging.renders import save_protocol_renders

            save_protocol_renders(shots.cache, opts.views, asset, inputs, context["renders_dir"])
        except Exception:  # thumbnails are a convenience: never a reason to lose the run's numbers
            log.warning("the protocol's renders could not be saved", exc_info=True)


@dataclass
class _Shots:
    """The protocol's renders of one asset, made on first need and shared by the metric families."""

    asset: Asset
    opts: ProtocolOptions
    cache: dict[str, Any] = field(default_factory=dict)

    def get(self, kind: str) -> Any:
        """``front`` (the input's viewpoint, colour) or ``color`` / ``geometry`` (the ring)."""
        from eval.judging.render import camera_ring, front_camera, render, render_modes

        if kind not in self.cache:
            size = {"resolution": self.opts.resolution, "supersample": self.opts.supersample}
            if kind == "front":
                self.cache[kind] = render(self.asset, [front_camera()], **size)
            else:  # one rasterisation per ring view serves both modes
                self.cache.update(render_modes(self.asset, camera_ring(self.opts.views), **size))
        return self.cache[kind]


def _guarded(family: str, group: str, make_rows) -> Iterator[MetricRow]:
    """The family's rows; if it fails, one row that says so (the run and the other families go on)."""
    try:
        rows = make_rows()
        yield from rows
    except Exception as exc:  # a metric must never take the run down with it
        log.warning("metric family %s failed", family, exc_info=True)
        yield MetricRow(f"{family}_skipped", f"{type(exc).__name__}: {exc}", "", None, group)


def _skipped(family: str, group: str, reason: str, settings: dict[str, Any] | None = None) -> MetricRow:
    return MetricRow(f"{family}_skipped", reason, "", None, group, settings or {})


def _heldout_rows(asset: Asset, opts: ProtocolOptions) -> Iterator[MetricRow]:
    """PSNR / SSIM / LPIPS on the method's held-out frames (full frame, as the NeRF protocol)."""
    from eval.judging.metrics.image import ImageQuality

    pred = np.asarray(asset.views["heldout_pred"], dtype=np.float32)[..., :3]
    gt = np.asarray(asset.views["heldout_gt"], dtype=np.float32)[..., :3]
    if pred.shape != gt.shape or pred.ndim != 4:
        raise ValueError(f"held-out frames must be two (N, H, W, 3) arrays of one shape, got {pred.shape}, {gt.shape}")
    model, lpips_note = _lpips_model(opts)
    acc = ImageQuality(model)
    for p, g in zip(pred, gt, strict=True):
        acc.update(p, g)
    values = acc.compute()
    settings = {"frames": len(pred), "split": asset.views.get("split", "test"), "region": "full frame"}
    yield MetricRow("psnr", values["psnr"], "dB", True, "image", settings)
    yield MetricRow("ssim", values["ssim"], "", True, "image", settings)
    if "lpips" in values:
        yield MetricRow("lpips", values["lpips"], "", False, "image", settings | _lpips_settings(opts))
    else:
        yield _skipped("lpips", "image", lpips_note)


def _lpips_model(opts: ProtocolOptions) -> tuple[Any, str]:
    """The LPIPS network (given files, else the official ones from the cache or a download), else (None, why not)."""
    if not opts.lpips_weights:
        from eval.judging.metrics.lpips_weights import LpipsUnavailable, resolve

        try:
            opts.lpips_weights = [str(p) for p in resolve(opts.lpips_net, opts.lpips_source)]
        except LpipsUnavailable as exc:
            return None, str(exc)
    from eval.judging.metrics.lpips_net import load_lpips
    from methods import runtime

    key = f"lpips:{opts.lpips_net}:{os.pathsep.join(opts.lpips_weights)}"
    try:
        return runtime.get_model(key, lambda: load_lpips(opts.lpips_weights, opts.lpips_net)), ""
    except OSError as exc:
        return None, str(exc)


def _lpips_settings(opts: ProtocolOptions) -> dict[str, Any]:
    return {"lpips": f"v0.1 {opts.lpips_net}", "lpips_weights": [Path(w).name for w in opts.lpips_weights]}


def _reference_rows(asset: Asset, opts: ProtocolOptions) -> Iterator[MetricRow]:
    from eval.judging.metrics import geometry
    from eval.judging.render import point_normals
    from methods.export import load_asset

    reference = normalize(load_asset(opts.reference_mesh))
    if reference.mesh is None or len(reference.mesh.faces) == 0:
        raise ValueError(f"{Path(opts.reference_mesh).name} has no faces: a reference must be a mesh")
    settings = geometry.ReferenceSettings(samples=opts.samples, icp=opts.icp)
    if asset.mesh is not None and len(asset.mesh.faces):
        points, normals = geometry.sample_surface(asset.mesh, opts.samples, seed=settings.seed)
        source = "surface samples"
    else:
        points = np.asarray(asset.all_points(), dtype=np.float64)
        if len(points) > opts.samples:
            points = points[np.random.default_rng(settings.seed).choice(len(points), opts.samples, replace=False)]
        normals = point_normals(points)
        source = "the asset's points (PCA normals)"
    result = geometry.compare_to_reference(points, normals, reference.mesh, settings)
    common = settings.describe() | {"reference": Path(opts.reference_mesh).name, "prediction": source, "frame": FRAME}
    yield MetricRow("chamfer_l1", result["chamfer_l1"], "r", False, "geometry", common)
    yield MetricRow("chamfer_l2", result["chamfer_l2"], "r²", False, "geometry", common)
    for frac in settings.f_score_fractions:
        key = f"{frac:g}"
        row_settings = common | {"threshold": result["thresholds"][key], "threshold_fraction_of_diagonal": frac}
        yield MetricRow(f"f_score@{key}", result[f"f_score@{key}"], "", True, "geometry", row_settings)
    yield MetricRow("normal_consistency", result["normal_consistency"], "", True, "geometry", common)
    if opts.icp:
        yield MetricRow(
            "icp_rmse", result["icp_rmse"], "r", False, "geometry", common | {"transform": result["icp_transform"]}
        )
    if asset.mesh is not None and len(asset.mesh.faces):
        mesh = asset.mesh
        if opts.icp:
            t = np.asarray(result["icp_transform"])
            mesh = type(mesh)(np.asarray(mesh.vertices, np.float64) @ t[:3, :3].T + t[:3, 3], mesh.faces)
        iou = geometry.volume_iou(mesh, reference.mesh, settings.iou_points, settings.seed)
        iou_settings = common | {"occupancy": "Embree ray parity, majority of 3 rays"}
        yield MetricRow("volume_iou", iou, "", True, "geometry", iou_settings)


def _image_rows(shots: _Shots, inputs: Inputs, opts: ProtocolOptions) -> Iterator[MetricRow]:
    """The input image against the render from its viewpoint (front, after normalisation), foreground only."""
    from eval.judging.metrics.image import fit_foreground, lpips, psnr, split_rgba, ssim

    shot = shots.get("front")
    rgb_in, alpha_in = split_rgba(inputs.image)
    target, mask_in = fit_foreground(rgb_in, alpha_in, opts.resolution)
    pred, mask_pred = fit_foreground(shot.rgb[0], shot.alpha[0], opts.resolution)
    mask = np.maximum(mask_in, mask_pred) > 0.5
    settings = shot.settings | {
        "view": "front (az 0, el 0)",
        "align": "each image cropped to its alpha box, fitted to 80% of the frame, centred on white",
        "region": "union of the input's and the render's foreground",
        "input_alpha": bool(alpha_in.min() < 1.0),
    }
    yield MetricRow("input_psnr", psnr(pred, target, mask), "dB", True, "image", settings)
    yield MetricRow("input_ssim", ssim(pred, target, mask), "", True, "image", settings)
    model, note = _lpips_model(opts)
    if model is None:
        yield _skipped("input_lpips", "image", note)
    else:
        yield MetricRow(
            "input_lpips", lpips(model, pred, target, mask), "", False, "image", settings | _lpips_settings(opts)
        )


def _scoring_models(opts: ProtocolOptions) -> list[tuple[str, str]]:
    """(model, note) per requested model, replacing any the method optimised against."""
    from eval.judging.metrics.clip import CLIP_CHOICES

    out = []
    for model in opts.clip_models:
        note = ""
        if model in opts.method_clip_models:
            alternatives = [m for m in CLIP_CHOICES if m not in opts.method_clip_models and m not in opts.clip_models]
            if not alternatives:
                continue
            note = f"the method optimised against {model}; scored with {alternatives[0]} instead"
            model = alternatives[0]
        out.append((model, note))
    return out


def _clip_rows(shots: _Shots, inputs: Inputs, opts: ProtocolOptions) -> Iterator[MetricRow]:
    from eval.judging.metrics import clip
    from eval.judging.metrics.image import fit_foreground, split_rgba

    models = _scoring_models(opts)
    if not models:
        yield _skipped("clip", "alignment", "every CLIP model on offer is one the method optimised against")
        return
    captions, source = opts.study_captions()
    for index, (checkpoint, note) in enumerate(models):
        suffix = "" if index == 0 else f"[{checkpoint.rsplit('/', 1)[-1]}]"
        try:
            scorer = clip.CLIPScorer.load(checkpoint, allow_download=opts.clip_download)
        except clip.CLIPUnavailable as exc:
            yield _skipped(
                f"clip{suffix}", "alignment", str(exc), {"clip_model": checkpoint} | ({"note": note} if note else {})
            )
            continue
        base = scorer.describe() | ({"note": note} if note else {})
        if inputs.prompt:
            text = scorer.embed_texts([inputs.prompt])[0]
            for mode, tag in (("color", ""), ("geometry", "_geometry")):
                views = shots.get(mode)
                emb = scorer.embed_images(views.rgb)
                settings = base | views.settings
                yield MetricRow(f"clip_score{tag}{suffix}", clip.clip_score(emb, text), "", True, "alignment", settings)
                if len(captions) >= 2:
                    pool, target = clip.caption_index(inputs.prompt, captions)
                    value = clip.r_precision(emb, scorer.embed_texts(pool), target)
                    rp_settings = settings | {"captions": source, "caption_count": len(pool)}
                    yield MetricRow(f"r_precision{tag}{suffix}", value, "", True, "alignment", rp_settings)
            if len(captions) < 2:
                yield _skipped(f"r_precision{suffix}", "alignment", "no caption set with two or more captions")
        if inputs.image is not None:
            rgb_in, alpha_in = split_rgba(inputs.image)
            reference = scorer.embed_images(fit_foreground(rgb_in, alpha_in, opts.resolution)[0][None])[0]
            front = shots.get("front")
            front_img = fit_foreground(front.rgb[0], front.alpha[0], opts.resolution)[0]
            settings = base | front.settings | {"align": "alpha box fitted to 80% of the frame, on white"}
            value = clip.image_similarity(reference, scorer.embed_images(front_img[None]))
            yield MetricRow(f"clip_image_similarity{suffix}", value, "", True, "alignment", settings)
            ring = shots.get("color")
            value = clip.image_similarity(reference, scorer.embed_images(ring.rgb))
            yield MetricRow(f"clip_image_similarity_ring{suffix}", value, "", True, "alignment", base | ring.settings)
