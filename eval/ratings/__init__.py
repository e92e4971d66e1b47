"""Ratings for the qualitative study: arena pairs and votes, Likert ratings, the leaderboard, sync, CLI.

Public API (``from eval import ratings``; ``ratings.serve_pair(...)``)::

    eval.ratings.votes          serve_pair, vote, rate, leaderboard, export, the rater tokens (this
                                package re-exports its public names)
    eval.ratings.bradley_terry  the maths: Bradley-Terry fit and bootstrap, win rates, Krippendorff's
                                alpha, Kendall's tau, noise raters
    eval.ratings.sync           the vote log synced to a Hugging Face dataset (CommitScheduler)
    eval.ratings.cli            ``python -m eval ratings export|leaderboard``

Votes and ratings live in the run store (:mod:`eval.runs.store`); nothing here imports torch.
"""

from eval.ratings.votes import (
    ANSWER_LABELS,
    ANSWER_SCORE,
    ANSWERS,
    CRITERIA,
    CRITERION_LABELS,
    EXPORT_FORMATS,
    LIKERT,
    PROMPT_SETS_DIR,
    RATER_PATTERN,
    AlreadyVoted,
    InvalidVote,
    NoPairAvailable,
    Policy,
    RateLimited,
    RatingError,
    ServedPair,
    TooEarly,
    UnknownPair,
    UnknownRunId,
    VoteResult,
    candidate_pairs,
    check_answers,
    check_rater,
    check_scores,
    export,
    flagged_raters,
    get_pair,
    hf_rater_id,
    input_label,
    issue_token,
    leaderboard,
    new_rater_id,
    pair_rows,
    prompt_sets,
    rate,
    rating_rows,
    serve_pair,
    token_rater,
    vote,
    vote_rows,
)

__all__ = [
    "ANSWERS",
    "ANSWER_LABELS",
    "ANSWER_SCORE",
    "AlreadyVoted",
    "CRITERIA",
    "CRITERION_LABELS",
    "EXPORT_FORMATS",
    "InvalidVote",
    "LIKERT",
    "NoPairAvailable",
    "PROMPT_SETS_DIR",
    "Policy",
    "RATER_PATTERN",
    "RateLimited",
    "RatingError",
    "ServedPair",
    "TooEarly",
    "UnknownPair",
    "UnknownRunId",
    "VoteResult",
    "candidate_pairs",
    "check_answers",
    "check_rater",
    "check_scores",
    "export",
    "flagged_raters",
    "get_pair",
    "hf_rater_id",
    "input_label",
    "issue_token",
    "leaderboard",
    "new_rater_id",
    "pair_rows",
    "prompt_sets",
    "rate",
    "rating_rows",
    "serve_pair",
    "token_rater",
    "vote",
    "vote_rows",
]
