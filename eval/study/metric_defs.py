"""What each metric of the protocol means: wording, formula, unit, direction and the paper it comes from.

:func:`definition` matches a metric name as :mod:`eval.judging.protocol` writes it (``clip_score``,
``clip_score_geometry[ViT-L-14]``, ``f_score@0.01``, ``seconds_train``, ...) to its entry; a name it
does not know gets a plain entry from the row's own unit and direction, so every metric in a
table is defined. ``QUALITY_ORDER`` lists the quality measures (and only those) that a report may
use as its quality axis, in order of preference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["QUALITY_ORDER", "MetricDef", "definition", "is_quality"]


@dataclass(frozen=True)
class MetricDef:
    title: str
    wording: str  # plain text
    formula_tex: str = ""  # LaTeX math (inside $...$), may be empty
    formula_md: str = ""  # the same formula in plain text / Unicode
    cites: tuple[str, ...] = ()


# Quality measures in order of preference for the quality axis: alignment with the prompt, then
# agreement with a reference shape, then held-out view synthesis.
QUALITY_ORDER = (
    r"r_precision(\[.*\])?",
    r"clip_score(\[.*\])?",
    r"r_precision_geometry(\[.*\])?",
    r"clip_score_geometry(\[.*\])?",
    r"f_score@0\.02",
    r"f_score@.*",
    r"chamfer_l1",
    r"chamfer_l2",
    r"psnr",
    r"human_bt",
)


def is_quality(metric: str) -> bool:
    """Whether a metric measures quality (prompt alignment, reference geometry, held-out views, people)."""
    return any(re.fullmatch(p, metric) for p in QUALITY_ORDER)


def quality_rank(metric: str) -> int:
    for i, pattern in enumerate(QUALITY_ORDER):
        if re.fullmatch(pattern, metric):
            return i
    return len(QUALITY_ORDER)


_CLIP_VIEWS = "the asset rendered from the protocol's camera ring"

_RULES: list[tuple[str, MetricDef]] = [
    (
        r"clip_score(_geometry)?(\[.*\])?",
        MetricDef(
            "CLIP score",
            "Mean over the V ring views of 100 times the cosine similarity (clamped at 0) between the CLIP "
            f"image embedding of each view and the CLIP text embedding of the prompt; views are {_CLIP_VIEWS}",
            r"\mathrm{CLIPS} = \frac{1}{V}\sum_{v=1}^{V} 100\,\max(\cos(E_I(x_v), E_T(p)), 0)",
            "CLIPS = (1/V) Σ_v 100 · max(cos(E_I(x_v), E_T(p)), 0)",
            ("hessel2021clipscore", "radford2021clip"),
        ),
    ),
    (
        r"r_precision(_geometry)?(\[.*\])?",
        MetricDef(
            "CLIP R-precision",
            "Fraction of the V ring views whose most similar caption (CLIP cosine similarity) among the "
            "caption set is the asset's own prompt (top-1 retrieval)",
            r"\mathrm{RP} = \frac{1}{V}\sum_{v=1}^{V} [\arg\max_{c} \cos(E_I(x_v), E_T(c)) = p]",
            "RP = (1/V) Σ_v [argmax_c cos(E_I(x_v), E_T(c)) = p]",
            ("park2021benchmark", "jain2022dreamfields", "radford2021clip"),
        ),
    ),
    (
        r"clip_image_similarity(_ring)?(\[.*\])?",
        MetricDef(
            "CLIP image similarity",
            "100 times the cosine similarity between the CLIP embedding of the input image and that of the "
            "front render (or, for the ring variant, the mean over the ring views)",
            r"100\,\cos(E_I(x_{\mathrm{in}}), E_I(x_v))",
            "100 · cos(E_I(x_in), E_I(x_v))",
            ("radford2021clip",),
        ),
    ),
    (
        r"chamfer_l1",
        MetricDef(
            "Chamfer-L1 distance",
            "Symmetric mean Euclidean distance between points sampled on the asset's surface (P) and on the "
            "reference mesh (Q), both in the normalised frame (unit bounding sphere)",
            r"\mathrm{CD}_1 = \tfrac12\big(\tfrac{1}{|P|}\sum_{p}\min_{q}\|p-q\| + \tfrac{1}{|Q|}\sum_{q}\min_{p}"
            r"\|q-p\|\big)",
            "CD₁ = ½ (mean_p min_q ‖p − q‖ + mean_q min_p ‖q − p‖)",
            ("fan2017point", "mescheder2019occupancy"),
        ),
    ),
    (
        r"chamfer_l2",
        MetricDef(
            "Chamfer-L2 distance",
            "As Chamfer-L1 with squared distances",
            r"\mathrm{CD}_2 = \tfrac12\big(\tfrac{1}{|P|}\sum_{p}\min_{q}\|p-q\|^2 + \tfrac{1}{|Q|}\sum_{q}\min_{p}"
            r"\|q-p\|^2\big)",
            "CD₂ = ½ (mean_p min_q ‖p − q‖² + mean_q min_p ‖q − p‖²)",
            ("fan2017point", "mescheder2019occupancy"),
        ),
    ),
    (
        r"f_score@.*",
        MetricDef(
            "F-score",
            "Harmonic mean of precision (fraction of the asset's surface points within the threshold tau of "
            "the reference) and recall (the converse); tau is the fraction after the @ of the reference's "
            "bounding-box diagonal",
            r"F(\tau) = \frac{2 P(\tau) R(\tau)}{P(\tau) + R(\tau)}",
            "F(τ) = 2 P(τ) R(τ) / (P(τ) + R(τ))",
            ("tatarchenko2019single",),
        ),
    ),
    (
        r"normal_consistency",
        MetricDef(
            "Normal consistency",
            "Mean absolute cosine between each surface point's normal and the normal of its nearest neighbour "
            "on the other surface, over both directions",
            r"\mathrm{NC} = \tfrac12\big(\tfrac{1}{|P|}\sum_p |n_p \cdot n_{q(p)}| + \tfrac{1}{|Q|}\sum_q "
            r"|n_q \cdot n_{p(q)}|\big)",
            "NC = ½ (mean_p |n_p · n_q(p)| + mean_q |n_q · n_p(q)|)",
            ("mescheder2019occupancy",),
        ),
    ),
    (
        r"volume_iou",
        MetricDef(
            "Volumetric IoU",
            "Intersection over union of the occupied volumes of the asset and the reference, estimated on "
            "points drawn uniformly in the cube [-1, 1]^3",
            r"\mathrm{IoU} = |O_A \cap O_R| / |O_A \cup O_R|",
            "IoU = |O_A ∩ O_R| / |O_A ∪ O_R|",
            ("mescheder2019occupancy",),
        ),
    ),
    (
        r"icp_rmse",
        MetricDef("ICP residual", "Root-mean-square distance left after rigid ICP alignment to the reference"),
    ),
    (
        r"(input_)?psnr",
        MetricDef(
            "PSNR",
            "Peak signal-to-noise ratio between a render and the ground-truth image (held-out views of the "
            "capture; for input_psnr, the input image against the front render), colours in [0, 1]",
            r"\mathrm{PSNR} = -10\log_{10}\mathrm{MSE}",
            "PSNR = −10 log₁₀ MSE",
            (),
        ),
    ),
    (
        r"(input_)?ssim",
        MetricDef(
            "SSIM",
            "Structural similarity between a render and the ground-truth image (held-out views; for "
            "input_ssim, the input image against the front render)",
            cites=("wang2004ssim",),
        ),
    ),
    (
        r"(input_)?lpips",
        MetricDef(
            "LPIPS",
            "Learned perceptual distance between a render and the ground-truth image (deep features)",
            cites=("zhang2018lpips",),
        ),
    ),
    (
        r"seed_diversity_chamfer_l1",
        MetricDef(
            "Diversity across seeds",
            "For each input, the mean Chamfer-L1 distance between the assets of every pair of seeds (2048 "
            "surface points each, normalised frame), averaged over the inputs",
            r"\mathrm{Div} = \frac{1}{\binom{S}{2}}\sum_{i<j}\mathrm{CD}_1(A_i, A_j)",
            "Div = mean over seed pairs i < j of CD₁(A_i, A_j)",
            ("fan2017point",),
        ),
    ),
    (r"seconds_total", MetricDef("Time", "Wall-clock seconds of the method's stages and export, without scoring")),
    (r"seconds_(.*)", MetricDef("Stage time", "Wall-clock seconds of one stage of the method")),
    (r"peak_rss_mb", MetricDef("Peak memory", "Peak resident memory of the process during the cell")),
    (r"peak_gpu_mb", MetricDef("Peak GPU memory", "Peak GPU memory allocated during the cell")),
    (r"watertight", MetricDef("Watertight", "1 when every edge of the welded mesh has exactly two faces, else 0")),
    (
        r"winding_consistent",
        MetricDef("Consistent winding", "1 when neighbouring faces of the welded mesh are oriented alike, else 0"),
    ),
    (r"non_manifold_edges", MetricDef("Non-manifold edges", "Edges shared by more than two faces")),
    (r"non_manifold_vertices", MetricDef("Non-manifold vertices", "Vertices whose faces do not form one fan")),
    (r"boundary_edges", MetricDef("Boundary edges", "Edges with only one face (holes in the surface)")),
    (r"self_intersecting_faces", MetricDef("Self-intersecting faces", "Faces that cross another face of the mesh")),
    (r"degenerate_faces", MetricDef("Degenerate faces", "Faces with zero area")),
    (r"outlier_fraction", MetricDef("Outlier fraction", "Fraction of points far from their neighbours")),
]

_DIRECTION = {"higher": "higher is better", "lower": "lower is better"}


def definition(metric: str) -> MetricDef:
    """The metric's entry (a plain one, named after the metric, when the catalogue does not know it)."""
    for pattern, entry in _RULES:
        if re.fullmatch(pattern, metric):
            return entry
    return MetricDef(
        metric.replace("_", " ").capitalize(), "As recorded by the metric protocol (eval.judging.protocol)"
    )


def direction_text(direction: str) -> str:
    return _DIRECTION.get(direction, "no preferred direction (reported for information)")
