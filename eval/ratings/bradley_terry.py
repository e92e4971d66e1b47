"""The maths of the qualitative study: pure functions over arrays, no database, no UI.

- :func:`bradley_terry`: maximum-likelihood Bradley-Terry strengths from paired comparisons.
- :func:`bootstrap_bradley_terry`: the same on the Elo scale with intervals (bootstrap and posterior).
- :func:`posterior_sd`: the posterior (Laplace) sd of each strength under the prior.
- :func:`unranked`: the items the data cannot rank yet (they won, or lost, all their comparisons).
- :func:`win_rate_matrix`: how often each item beat each other item.
- :func:`krippendorff_alpha`: agreement between raters (nominal, ordinal, interval or ratio data).
- :func:`kendall_tau`: rank agreement between the human ranking and an automatic metric's ranking.
- :func:`noise_raters`: raters whose answers look like noise (always the same position or answer).

Conventions. A comparison is ``(first, second, score)`` with item indices ``first != second`` and
``score`` the share of the win that goes to ``first``: 1 (first wins), 0 (second wins) or 0.5 (a tie).

Ties. A tie counts as half a win for each side, as in Chatbot Arena's Bradley-Terry fit. This
keeps the model at one parameter per item, is exactly the likelihood of a tie split into two
half-observations, and pulls two items together by the same amount whoever is on the left.
The Davidson (1970) extension would add a tie-propensity parameter; its strengths order the
items the same way when ties are symmetric, and with few votes per pair the extra parameter is
poorly determined, so we do not use it. "Both bad" answers are ties here (neither was preferred);
they are still counted separately in the vote counts.

The prior. The fit is Newton's method on the concave log-likelihood plus a Gaussian prior on the
log-strengths, ``l2`` = 1 / sd^2. The default is the regularisation Chatbot Arena's tooling fits with
(FastChat's ``fit_contextual_bt``: ``reg`` = 0.5 on base-10 ratings, i.e. sd sqrt(2) x 400 = 566 Elo
points; ``DEFAULT_L2`` = 0.5 / ln(10)^2 on our natural-log scale). Without it, the maximum-likelihood
estimate is finite only when the "won at least once against" graph is strongly connected (Ford 1957,
see :func:`mle_exists`); with a handful of votes it is not (a method won or lost all its
comparisons), and the prior sets the gaps there: :func:`unranked` names those methods, so the
leaderboard can say that the data cannot rank them yet. Where the MLE exists the prior moves the
strengths by far less than the intervals (1.2 Elo points at 30:10).

Intervals. The percentile bootstrap resamples votes with replacement (a multinomial draw over the
distinct (first, second, score) cells, so all replicates are fitted together as one batch). With few
votes its distribution has a few atoms and can collapse onto the estimate (every resample of "A won
3 of 3" is the same), leaving the estimate on the interval's end. So the interval reported is the
hull of the bootstrap's and the posterior's normal (Laplace) interval, estimate +- z sd from the
penalised information: it always holds the estimate strictly inside, and with many votes the two
agree, so it stays the bootstrap interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

ELO_BASE = 1000.0
ELO_SCALE = 400.0 / np.log(10.0)  # one unit of log-strength in Elo points: P(win) = 1 / (1 + 10^(-diff / 400))
# Chatbot Arena's regularisation (reg 0.5 on base-10 ratings): a Gaussian prior, sd sqrt(2) x 400 = 566 Elo points
DEFAULT_L2 = 0.5 / np.log(10.0) ** 2
PRIOR_SD_ELO = float(ELO_SCALE / np.sqrt(DEFAULT_L2))

AlphaLevel = Literal["nominal", "ordinal", "interval", "ratio"]


# ----------------------------------------------------------------------------- Bradley-Terry


def win_counts(first: Sequence[int], second: Sequence[int], score: Sequence[float], n_items: int) -> np.ndarray:
    """``W[i, j]``: wins of item i over item j, a tie counting half to each side (n_items x n_items)."""
    first, second, score = _comparisons(first, second, score, n_items)
    wins = np.zeros((n_items, n_items))
    np.add.at(wins, (first, second), score)
    np.add.at(wins, (second, first), 1.0 - score)
    return wins


def fit_bradley_terry(
    wins: np.ndarray, *, l2: float = DEFAULT_L2, max_iter: int = 200, tol: float = 1e-10
) -> np.ndarray:
    """Log-strengths (natural scale, mean zero) maximising the Bradley-Terry likelihood.

    ``wins`` is ``(K, K)`` or a batch ``(B, K, K)`` of win counts as from :func:`win_counts`;
    the result is ``(K,)`` or ``(B, K)``. P(i beats j) = sigmoid(theta_i - theta_j).
    """
    w = np.asarray(wins, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    if w.ndim != 3 or w.shape[1] != w.shape[2]:
        raise ValueError(f"wins must be (K, K) or (B, K, K), got shape {np.shape(wins)}")
    b, k, _ = w.shape
    if k == 0:
        return np.zeros(0) if single else np.zeros((b, 0))
    n = w + np.swapaxes(w, 1, 2)
    theta = np.zeros((b, k))
    active = np.ones(b, dtype=bool)
    for _ in range(max_iter):
        t, wa, na = theta[active], w[active], n[active]
        p = 1.0 / (1.0 + np.exp(-(t[:, :, None] - t[:, None, :])))
        grad = (wa - na * p).sum(axis=2) - l2 * t
        info = _information(na, p, l2)  # minus the Hessian
        step = np.linalg.solve(info, grad[..., None])[..., 0]
        # Newton on a logistic likelihood can overshoot far from the optimum; cap the step.
        step = np.clip(step, -2.0, 2.0)
        theta[active] = t + step
        done = np.abs(step).max(axis=1) < tol
        active[np.flatnonzero(active)[done]] = False
        if not active.any():
            break
    theta -= theta.mean(axis=1, keepdims=True)
    return theta[0] if single else theta


def _information(n: np.ndarray, p: np.ndarray, l2: float) -> np.ndarray:
    """Minus the Hessian of the penalised log-likelihood: the weighted graph Laplacian of n p (1 - p), plus l2 I."""
    curv = n * p * (1.0 - p)
    eye = np.eye(n.shape[-1])
    return np.einsum("bi,ij->bij", curv.sum(axis=2), eye) - curv + l2 * eye


def posterior_sd(wins: np.ndarray, theta: np.ndarray, *, l2: float = DEFAULT_L2) -> np.ndarray:
    """The Laplace sd of each mean-zero log-strength at the fit ``theta`` (``(K,)``, natural scale).

    The posterior under the Gaussian prior is approximated by a normal at its mode with the inverse
    of the penalised information as covariance, projected onto the mean-zero strengths (the ones
    reported). Finite and positive for any votes while ``l2`` > 0.
    """
    if l2 <= 0:
        raise ValueError(f"the posterior needs a prior: l2 must be positive, got {l2}")
    w = np.asarray(wins, dtype=np.float64)
    k = len(w)
    if k == 0:
        return np.zeros(0)
    t = np.asarray(theta, dtype=np.float64)
    p = 1.0 / (1.0 + np.exp(-(t[:, None] - t[None, :])))
    cov = np.linalg.inv(_information((w + w.T)[None], p[None], l2)[0])
    centre = np.eye(k) - 1.0 / k
    return np.sqrt(np.clip(np.diag(centre @ cov @ centre), 0.0, None))


def unranked(wins: np.ndarray) -> dict[int, str]:
    """Items the data cannot rank yet, with the reason: where the MLE does not exist (:func:`mle_exists`),
    the items of each group that won every comparison with the rest, or lost every one, or have none.

    Their gaps to the others are set by the prior, not the votes. Empty when the MLE exists.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    w = np.asarray(wins, dtype=np.float64)
    k = len(w)
    if k <= 1 or mle_exists(w):
        return {}
    _, label = connected_components(csr_matrix(w > 0), directed=True, connection="strong")
    played = (w + w.T).sum(axis=1) > 0
    out = {}
    for i in range(k):
        if not played[i]:
            out[i] = "no comparisons"
            continue
        group = label == label[i]
        won_out = w[np.ix_(group, ~group)].sum()  # wins (ties half) of the group over the others
        lost_out = w[np.ix_(~group, group)].sum()
        if lost_out == 0 and won_out > 0:
            out[i] = "won every comparison" if group.sum() == 1 else "its group won every comparison with the rest"
        elif won_out == 0 and lost_out > 0:
            out[i] = "lost every comparison" if group.sum() == 1 else "its group lost every comparison with the rest"
    return out


def mle_exists(wins: np.ndarray) -> bool:
    """Whether the Bradley-Terry MLE is finite: every item beat, and was beaten by, its way round the others.

    Ford (1957): the likelihood has a finite maximum iff for every split of the items into two
    groups some item of each group won (a tie counts) against some item of the other, i.e. the
    directed graph "i won against j at least once" is strongly connected.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    w = np.asarray(wins, dtype=np.float64)
    if len(w) <= 1:
        return True
    n_components, _ = connected_components(csr_matrix(w > 0), directed=True, connection="strong")
    return bool(n_components == 1)


def to_elo(theta: np.ndarray) -> np.ndarray:
    """Log-strengths (mean zero) on the Elo scale: mean 1000, 400 points = 10:1 odds."""
    return ELO_BASE + ELO_SCALE * np.asarray(theta, dtype=np.float64)


def bradley_terry(
    first: Sequence[int], second: Sequence[int], score: Sequence[float], n_items: int, *, l2: float = DEFAULT_L2
) -> np.ndarray:
    """Maximum-likelihood log-strengths (mean zero) from comparisons; ties count half a win each."""
    return fit_bradley_terry(win_counts(first, second, score, n_items), l2=l2)


@dataclass
class Strengths:
    """Bradley-Terry strengths on the Elo scale with bootstrap intervals, one entry per item."""

    elo: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    n_boot: int
    seed: int

    def rank(self) -> np.ndarray:
        """Item indices from strongest to weakest."""
        return np.argsort(-self.elo, kind="stable")


def bootstrap_bradley_terry(
    first: Sequence[int],
    second: Sequence[int],
    score: Sequence[float],
    n_items: int,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    l2: float = DEFAULT_L2,
) -> Strengths:
    """Elo-scale strengths with intervals: the hull of the percentile bootstrap (votes resampled with
    replacement) and the posterior's normal interval (:func:`posterior_sd`), so the estimate is strictly
    inside whenever there is a vote. With no votes the intervals are the estimate itself (1000)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    from scipy.stats import norm

    first, second, score = _comparisons(first, second, score, n_items)
    counts_all = win_counts(first, second, score, n_items)
    theta = fit_bradley_terry(counts_all, l2=l2)
    elo = to_elo(theta)
    if len(first) == 0:  # no votes: nothing to rank, no interval
        return Strengths(elo, elo.copy(), elo.copy(), level, n_boot, seed)
    half = norm.ppf(0.5 + level / 2.0) * ELO_SCALE * posterior_sd(counts_all, theta, l2=l2)
    cells, counts = np.unique(np.stack([first, second, score * 2.0]), axis=1, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(first), counts / counts.sum(), size=n_boot)  # (B, C)
    i, j, s = cells[0].astype(int), cells[1].astype(int), cells[2] / 2.0
    wins = np.zeros((n_boot, n_items, n_items))
    for c in range(cells.shape[1]):  # C distinct cells: at most 3 per ordered pair
        wins[:, i[c], j[c]] += draws[:, c] * s[c]
        wins[:, j[c], i[c]] += draws[:, c] * (1.0 - s[c])
    boot = to_elo(fit_bradley_terry(wins, l2=l2))
    tail = (1.0 - level) / 2.0 * 100.0
    lower, upper = np.percentile(boot, [tail, 100.0 - tail], axis=0)
    # the hull with the posterior's interval: the estimate strictly inside even where the resamples collapse
    lower, upper = np.minimum(lower, elo - half), np.maximum(upper, elo + half)
    return Strengths(elo, lower, upper, level, n_boot, seed)


def win_rate_matrix(
    first: Sequence[int], second: Sequence[int], score: Sequence[float], n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(rate, count)``: rate[i, j] = share of i's comparisons with j that i won (ties half; NaN if none)."""
    wins = win_counts(first, second, score, n_items)
    count = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, wins / np.where(count > 0, count, 1.0), np.nan)
    return rate, count.astype(int)


def _comparisons(first, second, score, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(first, dtype=np.int64).reshape(-1)
    b = np.asarray(second, dtype=np.int64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    if not (len(a) == len(b) == len(s)):
        raise ValueError("first, second and score must have the same length")
    if len(a) and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n_items):
        raise ValueError(f"item indices must be in [0, {n_items})")
    if np.any(a == b):
        raise ValueError("an item cannot be compared with itself")
    if not np.all(np.isin(s, (0.0, 0.5, 1.0))):
        raise ValueError("score must be 1 (first wins), 0 (second wins) or 0.5 (tie)")
    return a, b, s


# ----------------------------------------------------------------------------- agreement


def krippendorff_alpha(data: np.ndarray | Sequence[Sequence[float]], level: AlphaLevel = "nominal") -> float:
    """Krippendorff's alpha for a reliability matrix ``(raters, items)``; NaN marks a missing value.

    Values are numbers (use codes for nominal categories). Items with fewer than two values are
    not pairable and are dropped. Returns NaN when alpha is undefined (fewer than two pairable
    values, or every value the same). Follows Krippendorff (2011), "Computing Krippendorff's
    alpha-reliability": coincidence matrix, then 1 - (n - 1) sum(o * d) / sum(n_c n_k d).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"data must be a (raters, items) matrix, got shape {x.shape}")
    values = np.unique(x[~np.isnan(x)])
    if len(values) == 0:
        return float("nan")
    # counts[u, c]: how many raters gave item u the value c
    counts = np.stack([(x == v).sum(axis=0) for v in values], axis=1).astype(np.float64)
    m = counts.sum(axis=1)
    counts, m = counts[m >= 2], m[m >= 2]
    if len(m) == 0:
        return float("nan")
    coincidence = (counts / (m - 1)[:, None]).T @ counts - np.diag((counts / (m - 1)[:, None]).sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    delta = _alpha_distance(values, n_c, level)
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0.0:
        return float("nan")
    return float(1.0 - (n - 1.0) * (coincidence * delta).sum() / expected)


def _alpha_distance(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    c, k = np.meshgrid(values, values, indexing="ij")
    if level == "nominal":
        return (c != k).astype(np.float64)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            d = ((c - k) / (c + k)) ** 2
        return np.nan_to_num(d)
    # ordinal: the ranks between c and k, weighted by how often each value was used
    cum = np.concatenate([[0.0], np.cumsum(n_c)])
    idx = np.arange(len(values))
    lo, hi = np.minimum.outer(idx, idx), np.maximum.outer(idx, idx)
    between = cum[hi + 1] - cum[lo]
    return (between - (n_c[lo] + n_c[hi]) / 2.0) ** 2


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's tau-b (ties corrected) and its two-sided p-value, via scipy.stats.kendalltau."""
    from scipy.stats import kendalltau

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("x and y must have the same length")
    if len(a) < 2:
        return float("nan"), float("nan")
    result = kendalltau(a, b)
    return float(result.statistic), float(result.pvalue)


# ----------------------------------------------------------------------------- noise raters


def noise_raters(
    answers: Iterable[tuple[Hashable, Hashable]], *, min_votes: int = 12, max_share: float = 0.9
) -> dict[Hashable, str]:
    """Raters whose answers look like noise, with the reason, from ``(rater, answer)`` pairs.

    A rater is flagged after at least ``min_votes`` answers when one answer (``left``, ``right``,
    ``tie``, ...) makes up ``max_share`` or more of them. With positions randomised and balanced a
    careful rater answers "left" about half the time; 11 or more of 12 happens by chance with
    probability 0.3%.
    """
    per_rater: dict[Hashable, Counter] = {}
    for rater, answer in answers:
        per_rater.setdefault(rater, Counter())[answer] += 1
    flagged = {}
    for rater, counter in per_rater.items():
        total = sum(counter.values())
        answer, top = counter.most_common(1)[0]
        if total >= min_votes and top / total >= max_share:
            flagged[rater] = f"answered {answer!r} in {top} of {total} votes"
    return flagged
