"""The study's maths: Bradley-Terry with ties, bootstrap coverage, win rates, alpha, tau, noise raters."""

import math

import numpy as np
import pytest

from eval.ratings.bradley_terry import (
    DEFAULT_L2,
    ELO_SCALE,
    PRIOR_SD_ELO,
    bootstrap_bradley_terry,
    bradley_terry,
    fit_bradley_terry,
    kendall_tau,
    krippendorff_alpha,
    mle_exists,
    noise_raters,
    posterior_sd,
    to_elo,
    unranked,
    win_counts,
    win_rate_matrix,
)


def simulate(theta: np.ndarray, n_votes: int, rng: np.random.Generator):
    """Votes between random pairs of items drawn from the Bradley-Terry model with log-strengths theta."""
    k = len(theta)
    first = rng.integers(0, k, n_votes)
    second = (first + rng.integers(1, k, n_votes)) % k
    p = 1.0 / (1.0 + np.exp(-(theta[first] - theta[second])))
    score = (rng.random(n_votes) < p).astype(float)
    return first, second, score


def test_two_items_closed_form():
    # 30 wins to 10: the MLE odds are 3:1, so the Elo gap is 400 log10(3) = 190.8
    first, second, score = [0] * 40, [1] * 40, [1.0] * 30 + [0.0] * 10
    elo = to_elo(bradley_terry(first, second, score, 2, l2=1e-9))  # no prior to speak of: the MLE
    assert elo[0] - elo[1] == pytest.approx(400 * math.log10(3), abs=0.01)
    assert elo.mean() == pytest.approx(1000.0)


def test_the_prior_is_chatbot_arenas_and_its_map_solves_the_penalised_score_equation():
    # FastChat's fit_contextual_bt: reg 0.5 on base-10 ratings r (logit = ln10 (r_a - r_b)); theta = ln10 r
    assert pytest.approx(0.5 / math.log(10) ** 2) == DEFAULT_L2
    assert pytest.approx(400 * math.sqrt(2), rel=1e-9) == PRIOR_SD_ELO
    # two items, 30:10: theta = (d/2, -d/2) solves 30 - 40 sigmoid(d) = l2 d / 2
    d = bradley_terry([0] * 40, [1] * 40, [1.0] * 30 + [0.0] * 10, 2) @ np.array([1.0, -1.0])
    assert 30 - 40 / (1 + math.exp(-d)) == pytest.approx(DEFAULT_L2 * d / 2, abs=1e-9)
    assert 0 < math.log(3) - d < 0.01  # pulled towards 0 by 1.2 Elo points
    # 3:0 has no finite MLE; with the prior the gap is finite and solves 3 (1 - sigmoid(d)) = l2 d / 2
    d = bradley_terry([0, 0, 0], [1, 1, 1], [1.0] * 3, 2) @ np.array([1.0, -1.0])
    assert 3 * (1 - 1 / (1 + math.exp(-d))) == pytest.approx(DEFAULT_L2 * d / 2, abs=1e-9)


def test_few_votes_give_intervals_with_the_estimate_strictly_inside():
    # the case: with 3 votes every bootstrap resample is the same, so the percentile interval
    # collapsed onto the estimate ("1424.3 [1000, 1424.3]"); the posterior keeps it inside
    cases = [
        ([0, 0, 0], [1, 1, 1], [1.0] * 3, 2),  # one method won all three
        ([0], [1], [1.0], 2),  # a single vote
        ([0, 1], [1, 2], [1.0, 1.0], 3),  # a chain
        ([0, 1, 0], [1, 0, 1], [1.0, 0.5, 0.5], 2),  # a win and two ties
        ([0, 0, 1], [1, 2, 2], [0.5, 0.5, 0.5], 3),  # only ties
    ]
    for first, second, score, k in cases:
        s = bootstrap_bradley_terry(first, second, score, k, n_boot=300, seed=0)
        assert np.all(s.lower < s.elo) and np.all(s.elo < s.upper), (first, second, score, s)
        assert np.all(np.isfinite(s.lower)) and np.all(np.isfinite(s.upper))


def test_with_many_votes_the_interval_is_the_bootstraps():
    rng = np.random.default_rng(3)
    first, second, score = simulate(np.array([0.6, 0.0, -0.6]), 3000, rng)
    s = bootstrap_bradley_terry(first, second, score, 3, n_boot=1000, seed=1)
    wins = win_counts(first, second, score, 3)
    theta = fit_bradley_terry(wins)
    half = 1.959964 * ELO_SCALE * posterior_sd(wins, theta)
    # the posterior's half-width matches the bootstrap's spread, so the hull adds little
    boot_half = (s.upper - s.lower) / 2
    assert np.allclose(half, boot_half, rtol=0.15), (half, boot_half)


def test_posterior_sd_by_hand_for_two_items():
    # two items, n votes at p: information [[c + l2, -c], [-c, c + l2]] with c = n p (1 - p); the mean-zero
    # strengths are +-d/2 and d = theta_0 - theta_1 has variance 2 / (2c + l2) (the eigenvalue along (1, -1)),
    # so sd(theta_0) = sd(d) / 2
    wins = np.array([[6.0, 0.0], [0.0, 0.0]])
    wins[0, 1], wins[1, 0] = 6.0, 4.0
    theta = fit_bradley_terry(wins)
    p = 1 / (1 + math.exp(-(theta[0] - theta[1])))
    c = 10 * p * (1 - p)
    expected = math.sqrt(2 / (2 * c + DEFAULT_L2)) / 2
    assert posterior_sd(wins, theta) == pytest.approx([expected, expected], rel=1e-9)


def test_unranked_names_who_won_or_lost_everything():
    w = win_counts([0, 0, 0], [1, 1, 1], [1.0] * 3, 2)
    assert unranked(w) == {0: "won every comparison", 1: "lost every comparison"}
    # A beat B, B and C traded wins: A's gap is the prior's, B and C as a group lost every comparison to A
    w = win_counts([0, 1, 2], [1, 2, 1], [1.0, 1.0, 1.0], 3)
    u = unranked(w)
    assert u[0] == "won every comparison" and set(u) == {0, 1, 2}
    # a method with no votes yet
    assert unranked(win_counts([0, 1], [1, 0], [1.0, 1.0], 3)) == {2: "no comparisons"}
    # the MLE exists: everyone is ranked by the data
    assert unranked(win_counts([0, 1, 2, 0], [1, 2, 0, 2], [1.0, 1.0, 1.0, 0.0], 3)) == {}


def test_recovers_the_order_of_known_strengths():
    rng = np.random.default_rng(7)
    theta = np.linspace(-1.5, 1.5, 6)
    rng.shuffle(theta)
    first, second, score = simulate(theta, 4000, rng)
    est = bradley_terry(first, second, score, 6)
    assert list(np.argsort(est)) == list(np.argsort(theta))
    assert np.abs(est - (theta - theta.mean())).max() < 0.15


def test_bootstrap_intervals_cover_the_truth_at_the_nominal_rate():
    rng = np.random.default_rng(2024)
    covered, total = 0, 0
    for rep in range(40):
        theta = rng.normal(0.0, 0.8, 5)
        first, second, score = simulate(theta, 600, rng)
        s = bootstrap_bradley_terry(first, second, score, 5, n_boot=1000, seed=rep)
        truth = to_elo(theta - theta.mean())
        assert np.all(s.lower <= s.elo) and np.all(s.elo <= s.upper)
        covered += int(np.sum((s.lower <= truth) & (truth <= s.upper)))
        total += 5
    rate = covered / total
    # 200 intervals at 95%: the binomial 99% range is about 0.91 to 0.985
    assert 0.9 <= rate <= 0.99, rate


def test_bootstrap_is_seeded_and_batch_fit_matches_single_fits():
    rng = np.random.default_rng(1)
    first, second, score = simulate(np.array([0.5, 0.0, -0.5]), 300, rng)
    a = bootstrap_bradley_terry(first, second, score, 3, n_boot=200, seed=5)
    b = bootstrap_bradley_terry(first, second, score, 3, n_boot=200, seed=5)
    assert np.array_equal(a.lower, b.lower) and np.array_equal(a.upper, b.upper)
    wins = np.stack([win_counts(first[:100], second[:100], score[:100], 3), win_counts(first, second, score, 3)])
    batch = fit_bradley_terry(wins)
    assert np.allclose(batch[0], fit_bradley_terry(wins[0]), atol=1e-8)
    assert np.allclose(batch[1], fit_bradley_terry(wins[1]), atol=1e-8)


def test_ties_count_half_and_pull_items_together():
    only_ties = bradley_terry([0, 1, 0, 1], [1, 0, 1, 0], [0.5] * 4, 2)
    assert np.allclose(only_ties, 0.0)
    decisive = bradley_terry([0] * 20, [1] * 20, [1.0] * 15 + [0.0] * 5, 2, l2=1e-9)
    with_ties = bradley_terry([0] * 40, [1] * 40, [1.0] * 15 + [0.0] * 5 + [0.5] * 20, 2, l2=1e-9)
    assert 0 < with_ties[0] - with_ties[1] < decisive[0] - decisive[1]
    # 15 + 10 half wins against 5 + 10: odds 25:15
    assert with_ties[0] - with_ties[1] == pytest.approx(math.log(25 / 15), abs=1e-3)
    # the side of the tie does not matter
    swapped = bradley_terry([1] * 40, [0] * 40, [0.0] * 15 + [1.0] * 5 + [0.5] * 20, 2, l2=1e-9)
    assert np.allclose(swapped, with_ties, atol=1e-9)


def test_an_item_that_always_wins_stays_finite_and_first():
    first, second, score = [0, 0, 0, 1, 1], [1, 2, 1, 2, 2], [1.0, 1.0, 1.0, 1.0, 0.0]
    assert not mle_exists(win_counts(first, second, score, 3))  # item 0 never lost: no finite MLE
    s = bootstrap_bradley_terry(first, second, score, 3, n_boot=100)
    assert np.all(np.isfinite(s.elo)) and np.all(np.isfinite(s.lower)) and s.rank()[0] == 0


def test_mle_exists_iff_the_win_graph_is_strongly_connected():
    # a cycle 0 > 1 > 2 > 0: every split has a win each way
    assert mle_exists(win_counts([0, 1, 2], [1, 2, 0], [1.0] * 3, 3))
    # a tie is a half win both ways
    assert mle_exists(win_counts([0], [1], [0.5], 2))
    # {0, 1} beat {2, 3} every time, though each group is mixed inside
    first, second = [0, 1, 0, 2, 0, 1], [1, 0, 2, 3, 3, 2]
    assert not mle_exists(win_counts(first, second, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 4))
    assert not mle_exists(win_counts([0], [1], [1.0], 3))  # item 2 never compared


def test_win_rate_matrix_by_hand():
    # 0 beats 1 twice and ties once; 2 beats 0 once; 1 and 2 never met
    rate, count = win_rate_matrix([0, 1, 0, 2], [1, 0, 1, 0], [1.0, 0.0, 0.5, 1.0], 3)
    assert rate[0, 1] == pytest.approx(2.5 / 3) and rate[1, 0] == pytest.approx(0.5 / 3)
    assert rate[2, 0] == 1.0 and rate[0, 2] == 0.0
    assert math.isnan(rate[1, 2]) and math.isnan(rate[0, 0])
    assert count.tolist() == [[0, 3, 1], [3, 0, 0], [1, 0, 0]]


def test_bad_comparisons_are_refused():
    with pytest.raises(ValueError, match="itself"):
        bradley_terry([0], [0], [1.0], 2)
    with pytest.raises(ValueError, match="indices"):
        bradley_terry([0], [2], [1.0], 2)
    with pytest.raises(ValueError, match="score"):
        bradley_terry([0], [1], [0.7], 2)


# ----------------------------------------------------------------------------- Krippendorff's alpha

NAN = float("nan")
# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", the 4 observers x 12 units example.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


@pytest.mark.parametrize(
    ("level", "expected"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_alpha_matches_krippendorffs_published_example(level, expected):
    assert krippendorff_alpha(KRIPPENDORFF_2011, level) == pytest.approx(expected, abs=5e-4)


def test_alpha_small_cases_by_hand():
    # nominal, units (a,a) (a,b) (b,b): o_aa = o_bb = 2, o_ab = o_ba = 1, n_a = n_b = 3, n = 6
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (2 n_a n_b) = 1 - 5 * 2 / 18 = 4/9
    assert krippendorff_alpha([[0, 0, 1], [0, 1, 1]], "nominal") == pytest.approx(4 / 9)
    # interval, units (1,2) (3,3): sum o d = 2 * 1; sum n_c n_k d = 2 * (1 + 8 + 2) = 22; alpha = 1 - 3 * 2 / 22
    assert krippendorff_alpha([[1, 3], [2, 3]], "interval") == pytest.approx(8 / 11)
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "ordinal") == pytest.approx(1.0)
    # one value everywhere, or nothing pairable: undefined
    assert math.isnan(krippendorff_alpha([[2, 2], [2, 2]]))
    assert math.isnan(krippendorff_alpha([[1, NAN], [NAN, 2]]))


# ----------------------------------------------------------------------------- Kendall's tau


def test_kendall_tau_by_hand():
    # pairs of (1,2,3,4) vs (1,3,2,4): 5 concordant, 1 discordant -> (5 - 1) / 6
    tau, p = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])
    assert tau == pytest.approx(2 / 3) and 0 < p <= 1
    # tau-b with a tie in x: 5 concordant, 0 discordant, 1 pair tied in x -> 5 / sqrt(5 * 6)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4])[0] == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1], [2])[0])


# ----------------------------------------------------------------------------- noise raters


def test_noise_raters_flags_position_bias_only():
    rng = np.random.default_rng(0)
    votes = [("always-left", "left")] * 19 + [("always-left", "right")]
    votes += [("careful", a) for a in rng.choice(["left", "right", "tie"], 40, p=[0.45, 0.45, 0.1])]
    votes += [("new", "left")] * 5
    flags = noise_raters(votes)
    assert set(flags) == {"always-left"}
    assert "'left' in 19 of 20" in flags["always-left"]


def test_elo_scale():
    assert ELO_SCALE * math.log(10) == pytest.approx(400.0)
