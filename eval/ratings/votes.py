"""Ratings for the qualitative study: arena pairs and votes, Likert ratings, export, leaderboard.

Storage is the run store (tables ``pairs``, ``votes``, ``vote_answers``, ``ratings``, added by the
second migration in :data:`eval.runs.store.MIGRATIONS`). Votes and ratings reference runs by id, never
copies of assets. Nothing is updated or deleted: a changed Likert rating is a new row (the latest
one counts), and votes of raters flagged as noise or as steering one method (:func:`biased_raters`)
stay in the table and are left out of the leaderboard only.

The arena protocol, each step checked on the server:

1. :func:`serve_pair` picks two finished runs of *different* methods for the *same* input (same
   inputs hash), favouring run pairs with few votes, puts them left/right so that each run shows
   on the left as often as on the right, and records the served pair (random id, rater, runs, time).
2. :func:`vote` accepts one answer per criterion (left / right / tie / both_bad) for a pair that was
   served to this rater, at least ``min_view_seconds`` after it was served, once per pair and once
   per rater and run pair, within the rater's rate limit; the vote and its answers are one
   transaction. The methods are revealed only in the vote's result.

Raters are ids, never addresses: ``anon-<random>`` made per browser (``anon-<random>:<cohort>`` when the
server issues it: a random tag shared by the ids one connection got within an hour), or ``hf:<user name>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import re
import secrets
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.ratings import bradley_terry as lb
from eval.runs.store import Store

CRITERIA: tuple[str, ...] = ("geometry", "appearance", "alignment", "overall")
CRITERION_LABELS: dict[str, str] = {
    "geometry": "Geometry",
    "appearance": "Texture and appearance",
    "alignment": "Alignment with the input",
    "overall": "Overall",
}
ANSWERS: tuple[str, ...] = ("left", "right", "tie", "both_bad")
ANSWER_LABELS: dict[str, str] = {"left": "Left", "right": "Right", "tie": "Tie", "both_bad": "Both bad"}
LIKERT: tuple[int, ...] = (1, 2, 3, 4, 5)
# Share of a vote that goes to the left run; "both bad" is a tie for the strengths (see eval.ratings.bradley_terry).
ANSWER_SCORE: dict[str, float] = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}
RATER_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{2,99}$")
PROMPT_SETS_DIR = Path(__file__).resolve().parents[2] / "assets" / "prompts"


# ----------------------------------------------------------------------------- errors


class RatingError(ValueError):
    """A vote or rating was refused; the message says why, for people. Nothing was stored."""


class UnknownPair(RatingError):
    """The pair id was never served (or was served to another rater)."""


class AlreadyVoted(RatingError):
    """A replayed vote: the pair, or the same two runs, already has this rater's vote."""


class TooEarly(RatingError):
    """The minimum viewing time since the pair was served has not passed."""


class RateLimited(RatingError):
    """The rater sent more votes, pairs or ratings per minute than the policy allows."""


class InvalidVote(RatingError):
    """An answer, criterion, score or rater id is not one of the allowed values."""


class UnknownRunId(RatingError):
    """A rating or pair names a run that is not in the store (or has no finished asset)."""


class NoPairAvailable(RatingError):
    """No two finished runs of different methods share an input (or all were voted on by this rater)."""


# ----------------------------------------------------------------------------- policy


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class Policy:
    """Anti-abuse settings; a limit of 0 switches that limit off."""

    min_view_seconds: float = 5.0  # between serving a pair and accepting its vote
    votes_per_minute: int = 10
    pairs_per_minute: int = 30
    ratings_per_minute: int = 30  # Likert submissions (one per asset, all its criteria)

    @classmethod
    def from_env(cls) -> Policy:
        """From TRILEMMA_MIN_VIEW_SECONDS and TRILEMMA_{VOTES,PAIRS,RATINGS}_PER_MINUTE (unset: the defaults)."""
        d = cls()
        return cls(
            min_view_seconds=_env_float("TRILEMMA_MIN_VIEW_SECONDS", d.min_view_seconds),
            votes_per_minute=int(_env_float("TRILEMMA_VOTES_PER_MINUTE", d.votes_per_minute)),
            pairs_per_minute=int(_env_float("TRILEMMA_PAIRS_PER_MINUTE", d.pairs_per_minute)),
            ratings_per_minute=int(_env_float("TRILEMMA_RATINGS_PER_MINUTE", d.ratings_per_minute)),
        )


# ----------------------------------------------------------------------------- raters


def new_rater_id(cohort: str = "") -> str:
    """A fresh anonymous rater id (kept per browser by the UI); random, so it says nothing about anyone.
    ``cohort`` (random, letters and digits) tags the ids one connection was issued (:func:`rater_group`)."""
    if cohort and not cohort.isalnum():
        raise ValueError("a cohort is letters and digits")
    return "anon-" + secrets.token_urlsafe(12) + (f":{cohort}" if cohort else "")


def issue_token(key: bytes, rater: str | None = None) -> str:
    """A rater token: ``<rater id>.<HMAC of the id under the server's key>``. Only the server can make one."""
    rater = check_rater(rater or new_rater_id())
    return f"{rater}.{_token_mac(key, rater)}"


def token_rater(token: Any, key: bytes) -> str | None:
    """The rater id a token was issued for, or None for anything the server did not sign with ``key``."""
    if not isinstance(token, str) or len(token) > 200 or "." not in token:
        return None
    rater, _, mac = token.rpartition(".")
    if not RATER_PATTERN.match(rater) or not hmac.compare_digest(mac, _token_mac(key, rater)):
        return None
    return rater


def _token_mac(key: bytes, rater: str) -> str:
    return hmac.new(key, rater.encode(), hashlib.sha256).hexdigest()[:32]


def hf_rater_id(username: str) -> str:
    return check_rater("hf:" + username)


def check_rater(rater: Any) -> str:
    if not isinstance(rater, str) or not RATER_PATTERN.match(rater):
        raise InvalidVote(f"invalid rater id {rater!r}: 3-100 letters, digits and _ . : - expected")
    return rater


# ----------------------------------------------------------------------------- prompt sets


def prompt_sets(root: str | Path | None = None) -> dict[str, list[str]]:
    """Named input sets: ``<root>/<name>.txt``, one prompt (or image / video file name) per line.

    ``root`` defaults to TRILEMMA_PROMPT_SETS, else ``assets/prompts`` in the repository. Lines
    starting with ``#`` and blank lines are skipped.
    """
    folder = Path(root or os.environ.get("TRILEMMA_PROMPT_SETS") or PROMPT_SETS_DIR)
    if not folder.is_dir():
        return {}
    sets = {}
    for path in sorted(folder.glob("*.txt")):
        lines = (" ".join(line.split()) for line in path.read_text(encoding="utf-8").splitlines())
        sets[path.stem] = [line for line in lines if line and not line.startswith("#")]
    return sets


def input_label(inputs: dict[str, Any]) -> str:
    """What identifies an input for people and prompt sets: the prompt, else the file name."""
    if inputs.get("prompt"):
        return str(inputs["prompt"])
    image = inputs.get("image")
    if isinstance(image, dict) and image.get("name"):
        return str(image["name"])
    return str(inputs.get("video") or inputs.get("hash") or "")


def _in_prompt_set(inputs: dict[str, Any], name: str | None, members: set[str] | None) -> bool:
    if not name:
        return True
    return inputs.get("prompt_set") == name or (members is not None and input_label(inputs) in members)


def _prompt_set_members(prompt_set: str | None) -> set[str] | None:
    if not prompt_set:
        return None
    sets = prompt_sets()
    return set(sets[prompt_set]) if prompt_set in sets else None


# ----------------------------------------------------------------------------- pairs


@dataclass
class ServedPair:
    """A pair as served. ``left`` / ``right`` hold run records (with the method: keep them server-side)."""

    id: str
    rater: str
    served_at: float
    left: dict[str, Any]
    right: dict[str, Any]
    modality: str
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_label(self) -> str:
        return input_label(self.inputs)


_RUN_COLUMNS = "id, method, modality, inputs_hash, inputs, asset_path, status"


def _run_view(row: sqlite3.Row | dict[str, Any]) -> dict[str, Any]:
    d = dict(row)
    if isinstance(d.get("inputs"), str):
        d["inputs"] = json.loads(d["inputs"])
    return d


def _check_rate(conn: sqlite3.Connection, count_sql: str, rater: str, now: float, per_minute: int, what: str) -> None:
    """RateLimited when ``rater`` already has ``per_minute`` of ``what`` in the last minute (0: no limit)."""
    if per_minute and conn.execute(count_sql, (rater, now - 60)).fetchone()[0] >= per_minute:
        raise RateLimited(f"too many {what}: at most {per_minute} a minute; take your time")


def candidate_pairs(
    store: Store, rater: str | None = None, *, modality: str | None = None, prompt_set: str | None = None
) -> list[dict[str, Any]]:
    """Run pairs that may be served: finished runs of different methods on the same input, assets on disk.

    Each row: ``lo``, ``hi`` (the two run dicts, ``lo['id'] < hi['id']``), ``votes`` (on this run
    pair, all raters) and, when ``rater`` is given, ``served`` (times served to this rater); pairs
    this rater already voted on are left out.
    """
    where = "status = 'done' AND asset_path IS NOT NULL" + (" AND modality = ?" if modality else "")
    runs = [
        _run_view(r) for r in store.read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where}", [modality] * bool(modality))
    ]
    members = _prompt_set_members(prompt_set)
    by_input: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        if _in_prompt_set(run["inputs"], prompt_set, members) and Path(run["asset_path"]).is_file():
            by_input.setdefault((run["modality"], run["inputs_hash"]), []).append(run)
    votes = {
        (r[0], r[1]): r[2] for r in store.read("SELECT run_lo, run_hi, count(*) FROM votes GROUP BY run_lo, run_hi")
    }
    voted, served = set(), Counter()
    if rater is not None:
        voted = {(r[0], r[1]) for r in store.read("SELECT run_lo, run_hi FROM votes WHERE rater = ?", (rater,))}
        for a, b, n in store.read(
            "SELECT min(run_left, run_right), max(run_left, run_right), count(*) FROM pairs"
            " WHERE rater = ? GROUP BY 1, 2",
            (rater,),
        ):
            served[(a, b)] = n
    out = []
    for group in by_input.values():
        group.sort(key=lambda r: r["id"])
        for i, lo in enumerate(group):
            for hi in group[i + 1 :]:
                key = (lo["id"], hi["id"])
                if lo["method"] == hi["method"] or key in voted:
                    continue
                out.append({"lo": lo, "hi": hi, "votes": votes.get(key, 0), "served": served.get(key, 0)})
    return out


def serve_pair(
    store: Store,
    rater: str,
    *,
    modality: str | None = None,
    prompt_set: str | None = None,
    runs: tuple[str, str] | None = None,
    policy: Policy | None = None,
    rng: random.Random | None = None,
) -> ServedPair:
    """Choose, record and return a pair for ``rater``.

    Among the run pairs this rater has been shown least often (a pair skipped without a vote comes
    back only when there is nothing new), the one with the fewest votes wins; then chance.
    ``runs`` serves a given pair of run ids instead (a study script, a shared link). The run that has
    been on the left less often goes left; on a tie, chance decides.
    """
    rater = check_rater(rater)
    policy = policy or Policy.from_env()
    rng = rng or random.Random()
    if runs is not None:
        lo, hi = sorted(_check_pair_runs(store, runs), key=lambda r: r["id"])
    else:
        candidates = candidate_pairs(store, rater, modality=modality, prompt_set=prompt_set)
        if not candidates:
            where = " for " + " / ".join(x for x in (modality, prompt_set) if x) if (modality or prompt_set) else ""
            raise NoPairAvailable(
                f"no pair to rate{where}: the arena needs finished runs of two different methods on the same "
                "input that you have not voted on yet; generate some in the modality tabs"
            )
        fewest = min((c["served"], c["votes"]) for c in candidates)
        choice = rng.choice([c for c in candidates if (c["served"], c["votes"]) == fewest])
        lo, hi = choice["lo"], choice["hi"]

    def record(conn: sqlite3.Connection) -> ServedPair:
        now = time.time()
        _check_rate(conn, "SELECT count(*) FROM pairs WHERE rater = ? AND served_at > ?", rater, now,
                    policy.pairs_per_minute, "new pairs")  # fmt: skip
        lo_left, hi_left = conn.execute(
            "SELECT coalesce(sum(run_left = ?), 0), coalesce(sum(run_left = ?), 0) FROM pairs"
            " WHERE (run_left = ? AND run_right = ?) OR (run_left = ? AND run_right = ?)",
            (lo["id"], hi["id"], lo["id"], hi["id"], hi["id"], lo["id"]),
        ).fetchone()
        lo_goes_left = lo_left < hi_left or (lo_left == hi_left and rng.random() < 0.5)
        left, right = (lo, hi) if lo_goes_left else (hi, lo)
        pair_id = secrets.token_urlsafe(16)
        conn.execute(
            "INSERT INTO pairs (id, rater, run_left, run_right, served_at) VALUES (?, ?, ?, ?, ?)",
            (pair_id, rater, left["id"], right["id"], now),
        )
        return ServedPair(pair_id, rater, now, left, right, left["modality"], left["inputs"])

    return store.write(record)


def _check_pair_runs(store: Store, runs: tuple[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(runs) != 2 or runs[0] == runs[1]:
        raise InvalidVote("a pair needs two different run ids")
    found = [_get_done_run(store, run_id) for run_id in runs]
    a, b = found
    if a["method"] == b["method"]:
        raise InvalidVote(f"both runs are from {a['method']}; a pair compares two different methods")
    if (a["modality"], a["inputs_hash"]) != (b["modality"], b["inputs_hash"]):
        raise InvalidVote("the two runs were made from different inputs; a pair compares the same input")
    return a, b


def _get_done_run(store: Store, run_id: Any) -> dict[str, Any]:
    rows = store.read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (str(run_id),)) if run_id else []
    if not rows:
        raise UnknownRunId(f"no run with id {run_id!r} in the store")
    run = _run_view(rows[0])
    if run["status"] != "done" or not run["asset_path"]:
        raise UnknownRunId(f"run {run_id!r} has status {run['status']!r} and no asset to rate")
    return run


def get_pair(store: Store, pair_id: str) -> ServedPair:
    """A served pair by id, with its run records."""
    rows = store.read("SELECT * FROM pairs WHERE id = ?", (pair_id,))
    if not rows:
        raise UnknownPair(f"no pair with id {pair_id!r} was served")
    p = rows[0]
    left, right = (
        _run_view(store.read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (p[k],))[0])
        for k in ("run_left", "run_right")
    )
    return ServedPair(p["id"], p["rater"], p["served_at"], left, right, left["modality"], left["inputs"])


# ----------------------------------------------------------------------------- votes


@dataclass
class VoteResult:
    """A stored vote and what the rater may now see: which method was on which side."""

    vote_id: int
    pair_id: str
    left_run: str
    right_run: str
    left_method: str
    right_method: str
    answers: dict[str, str]
    seconds_viewed: float


def check_answers(answers: dict[str, Any]) -> dict[str, str]:
    """One answer per criterion, each left | right | tie | both_bad (labels such as "Both bad" accepted)."""
    if not isinstance(answers, dict):
        raise InvalidVote("answers must map each criterion to left, right, tie or both_bad")
    unknown = sorted(set(answers) - set(CRITERIA))
    if unknown:
        raise InvalidVote(f"unknown criterion {', '.join(map(repr, unknown))}; the criteria are {', '.join(CRITERIA)}")
    missing = [CRITERION_LABELS[c] for c in CRITERIA if answers.get(c) in (None, "")]
    if missing:
        raise InvalidVote(f"answer every question before voting; missing: {', '.join(missing)}")
    clean = {}
    for criterion in CRITERIA:
        raw = answers[criterion]
        value = str(raw).strip().lower().replace(" ", "_") if isinstance(raw, str) else raw
        if value not in ANSWERS:
            raise InvalidVote(f"{criterion}: {raw!r} is not one of left, right, tie, both bad")
        clean[criterion] = value
    return clean


def vote(
    store: Store, pair_id: str, rater: str, answers: dict[str, Any], *, policy: Policy | None = None
) -> VoteResult:
    """Store one vote (all criteria) for a served pair, in one transaction, or refuse it whole."""
    rater = check_rater(rater)
    clean = check_answers(answers)
    policy = policy or Policy.from_env()
    if not isinstance(pair_id, str) or not pair_id:
        raise UnknownPair("no pair was served: ask for a new pair first")

    def record(conn: sqlite3.Connection) -> VoteResult:
        pair = conn.execute("SELECT * FROM pairs WHERE id = ?", (pair_id,)).fetchone()
        if pair is None:
            raise UnknownPair("this pair was never served; ask for a new pair")
        if pair["rater"] != rater:
            raise UnknownPair("this pair was served to another rater; ask for a new pair")
        if conn.execute("SELECT 1 FROM votes WHERE pair_id = ?", (pair_id,)).fetchone():
            raise AlreadyVoted("this pair already has your vote; a vote is counted once")
        lo, hi = sorted((pair["run_left"], pair["run_right"]))
        if conn.execute(
            "SELECT 1 FROM votes WHERE rater = ? AND run_lo = ? AND run_hi = ?", (rater, lo, hi)
        ).fetchone():
            raise AlreadyVoted("you have already voted on these two assets; one vote per rater per pair")
        now = time.time()
        viewed = now - pair["served_at"]
        if viewed < policy.min_view_seconds:
            raise TooEarly(
                f"look at both assets for at least {policy.min_view_seconds:g} s before voting "
                f"({max(viewed, 0.0):.1f} s so far)"
            )
        _check_rate(conn, "SELECT count(*) FROM votes WHERE rater = ? AND created > ?", rater, now,
                    policy.votes_per_minute, "votes")  # fmt: skip
        cur = conn.execute(
            "INSERT INTO votes (pair_id, rater, run_lo, run_hi, seconds_viewed, created) VALUES (?, ?, ?, ?, ?, ?)",
            (pair_id, rater, lo, hi, viewed, now),
        )
        vote_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO vote_answers (vote_id, criterion, answer) VALUES (?, ?, ?)",
            [(vote_id, c, a) for c, a in clean.items()],
        )
        methods = dict(
            conn.execute(
                "SELECT id, method FROM runs WHERE id IN (?, ?)", (pair["run_left"], pair["run_right"])
            ).fetchall()
        )
        return VoteResult(
            vote_id,
            pair_id,
            pair["run_left"],
            pair["run_right"],
            methods[pair["run_left"]],
            methods[pair["run_right"]],
            clean,
            viewed,
        )

    return store.write(record)


# ----------------------------------------------------------------------------- Likert ratings


def check_scores(scores: dict[str, Any]) -> dict[str, int]:
    """Criterion -> integer score 1..5; at least one criterion; unknown criteria and other values refused."""
    if not isinstance(scores, dict):
        raise InvalidVote("scores must map criteria to a whole number from 1 to 5")
    unknown = sorted(set(scores) - set(CRITERIA))
    if unknown:
        raise InvalidVote(f"unknown criterion {', '.join(map(repr, unknown))}; the criteria are {', '.join(CRITERIA)}")
    clean = {}
    for criterion in CRITERIA:
        value = scores.get(criterion)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value not in LIKERT:
            raise InvalidVote(f"{CRITERION_LABELS[criterion]}: a rating is a whole number from 1 to 5, got {value!r}")
        clean[criterion] = value
    if not clean:
        raise InvalidVote("choose a rating from 1 to 5 for at least one criterion")
    return clean


def rate(store: Store, run_id: str, rater: str, scores: dict[str, Any], *, policy: Policy | None = None) -> list[int]:
    """Store Likert scores (1-5) for one run in one transaction; returns the new rating ids.

    Rating the same run again appends new rows; the latest per rater, run and criterion counts.
    """
    rater = check_rater(rater)
    clean = check_scores(scores)
    policy = policy or Policy.from_env()
    _get_done_run(store, run_id)

    def record(conn: sqlite3.Connection) -> list[int]:
        now = time.time()
        _check_rate(conn, "SELECT count(DISTINCT created) FROM ratings WHERE rater = ? AND created > ?", rater, now,
                    policy.ratings_per_minute, "ratings")  # fmt: skip
        ids = []
        for criterion, score in clean.items():
            cur = conn.execute(
                "INSERT INTO ratings (run_id, rater, criterion, score, created) VALUES (?, ?, ?, ?, ?)",
                (run_id, rater, criterion, score, now),
            )
            ids.append(int(cur.lastrowid))
        return ids

    return store.write(record)


# ----------------------------------------------------------------------------- reading and export


def vote_rows(store: Store) -> list[dict[str, Any]]:
    """One row per vote and criterion, joined with the pair and the two runs (ids, methods, input)."""
    rows = store.read(
        """
        SELECT v.id AS vote_id, v.pair_id, v.rater, a.criterion, a.answer, p.run_left, p.run_right,
               rl.method AS method_left, rr.method AS method_right, rl.modality, rl.inputs_hash, rl.inputs,
               p.served_at, v.created AS voted_at, v.seconds_viewed
        FROM votes v
        JOIN vote_answers a ON a.vote_id = v.id
        JOIN pairs p ON p.id = v.pair_id
        JOIN runs rl ON rl.id = p.run_left
        JOIN runs rr ON rr.id = p.run_right
        ORDER BY v.id, a.criterion
        """
    )
    out = []
    for r in rows:
        d = dict(r)
        inputs = json.loads(d.pop("inputs") or "{}")
        d["input"] = input_label(inputs)
        d["prompt_set"] = inputs.get("prompt_set", "")
        d["winner_run"] = {"left": d["run_left"], "right": d["run_right"]}.get(d["answer"])
        d["winner_method"] = {"left": d["method_left"], "right": d["method_right"]}.get(d["answer"])
        out.append(d)
    return out


def rating_rows(store: Store) -> list[dict[str, Any]]:
    """One row per Likert rating with the run's method and input; ``latest`` marks the one that counts."""
    rows = store.read(
        """
        SELECT g.id AS rating_id, g.run_id, r.method, r.modality, r.inputs_hash, r.inputs, g.rater, g.criterion,
               g.score, g.created,
               g.id = (SELECT max(h.id) FROM ratings h
                       WHERE h.run_id = g.run_id AND h.rater = g.rater AND h.criterion = g.criterion) AS latest
        FROM ratings g JOIN runs r ON r.id = g.run_id
        ORDER BY g.id
        """
    )
    out = []
    for r in rows:
        d = dict(r)
        inputs = json.loads(d.pop("inputs") or "{}")
        d["input"] = input_label(inputs)
        d["prompt_set"] = inputs.get("prompt_set", "")
        d["latest"] = bool(d["latest"])
        out.append(d)
    return out


def pair_rows(store: Store) -> list[dict[str, Any]]:
    """Every served pair, voted or not (for attrition: served but never voted)."""
    rows = store.read(
        "SELECT p.id AS pair_id, p.rater, p.run_left, p.run_right, p.served_at, v.id AS vote_id"
        " FROM pairs p LEFT JOIN votes v ON v.pair_id = p.id ORDER BY p.served_at"
    )
    return [dict(r) for r in rows]


EXPORT_FORMATS = ("csv", "parquet")


def export(store: Store, out_dir: str | Path, fmt: str = "csv") -> dict[str, Path]:
    """Write the study tables (votes, ratings, pairs) as CSV or Parquet; returns name -> path.

    Rows carry run ids and method names, never asset data; ``rater_flag`` says why a rater's votes
    are left out of the leaderboard (empty when they count).
    """
    import pandas as pd

    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise RuntimeError(
                "Parquet export needs pyarrow (pip install pyarrow==26.0.1); CSV works without"
            ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    votes = vote_rows(store)
    flags = flagged_raters(votes)
    for row in votes:
        row["rater_flag"] = flags.get(row["rater"], "")
    columns = {
        "votes": [
            "vote_id",
            "pair_id",
            "rater",
            "rater_flag",
            "criterion",
            "answer",
            "run_left",
            "run_right",
            "method_left",
            "method_right",
            "winner_run",
            "winner_method",
            "modality",
            "inputs_hash",
            "input",
            "prompt_set",
            "served_at",
            "voted_at",
            "seconds_viewed",
        ],
        "ratings": [
            "rating_id",
            "run_id",
            "method",
            "modality",
            "inputs_hash",
            "input",
            "prompt_set",
            "rater",
            "criterion",
            "score",
            "latest",
            "created",
        ],
        "pairs": ["pair_id", "rater", "run_left", "run_right", "served_at", "vote_id"],
    }
    tables = {"votes": votes, "ratings": rating_rows(store), "pairs": pair_rows(store)}
    paths = {}
    for name, rows in tables.items():
        frame = pd.DataFrame(rows, columns=columns[name])
        path = out / f"{name}.{fmt}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False, engine="pyarrow")
        tmp.replace(path)
        paths[name] = path
    return paths


# ----------------------------------------------------------------------------- leaderboard


def flagged_raters(votes: list[dict[str, Any]], **kw: Any) -> dict[str, str]:
    """Raters whose overall answers look like noise (see :func:`eval.ratings.bradley_terry.noise_raters`) or
    follow one method far beyond the other raters' consensus (:func:`biased_raters`)."""
    overall = [v for v in votes if v["criterion"] == "overall"]
    return {**biased_raters(overall), **lb.noise_raters(((v["rater"], v["answer"]) for v in overall), **kw)}


BIAS_MIN_VOTES = 10  # decisive votes with the method before a rater can be flagged for it
BIAS_MIN_SHARE = 0.9  # ... choosing it in at least 90% of them
BIAS_P = 1e-3  # ... where the others' consensus makes that this unlikely (one-sided, exact)


def biased_raters(
    votes: list[dict[str, Any]],
    *,
    min_votes: int = BIAS_MIN_VOTES,
    min_share: float = BIAS_MIN_SHARE,
    p_value: float = BIAS_P,
    rounds: int = 5,
) -> dict[str, str]:
    """Raters whose decisive votes (left or right) follow one method far beyond the consensus, with the reason.

    For each vote of rater r between methods m and o, the consensus chance that m is chosen is the share of
    m's wins against o in the votes of the *other* raters not flagged so far (a Beta(1, 1) prior, so an
    unseen pair counts as a coin). r is flagged for m when r chose m in at least ``min_share`` of at least
    ``min_votes`` votes with m and the chance of choosing m that often under the consensus (the exact
    Poisson-binomial tail) is below ``p_value``; as in the 3D Arena's fraud checks, the votes are kept
    and left out of the leaderboard. The consensus is refitted without the flagged raters (``rounds``
    times at most), so a crowd of steering identities cannot make its own votes the consensus.
    """
    decisive = [v for v in votes if v["answer"] in ("left", "right") and v["method_left"] != v["method_right"]]
    members: dict[str, set[str]] = {}
    for v in decisive:
        members.setdefault(rater_group(v["rater"]), set()).add(v["rater"])
    flagged: dict[str, str] = {}  # group -> reason
    for _ in range(rounds):
        wins: Counter = Counter()  # (winner, loser) -> votes, over raters not flagged
        mine: dict[str, Counter] = {}
        for v in decisive:
            winner, loser = (v["method_left"], v["method_right"])[:: 1 if v["answer"] == "left" else -1]
            group = rater_group(v["rater"])
            mine.setdefault(group, Counter())[(winner, loser)] += 1
            if group not in flagged:
                wins[(winner, loser)] += 1
        found: dict[str, str] = {}
        for rater, own in mine.items():
            base = wins if rater in flagged else wins - own  # leave the rater's own votes out
            per_method: dict[str, list[tuple[float, bool]]] = {}
            for (winner, loser), n in own.items():
                for m, other, chose in ((winner, loser, True), (loser, winner, False)):
                    share = (base[(m, other)] + 1) / (base[(m, other)] + base[(other, m)] + 2)
                    per_method.setdefault(m, []).extend([(share, chose)] * n)
            for method, trials in sorted(per_method.items()):
                chosen = sum(c for _, c in trials)
                if len(trials) < min_votes or chosen < min_share * len(trials):
                    continue
                tail = _poisson_binomial_tail([share for share, _ in trials], chosen)
                if tail < p_value:
                    expected = sum(share for share, _ in trials) / len(trials)
                    who = (
                        f" ({len(members[rater])} identities issued to one connection)"
                        if len(members[rater]) > 1
                        else ""
                    )
                    found[rater] = (
                        f"chose {method} in {chosen} of {len(trials)} votes with it{who}, where the other raters "
                        f"choose it {expected:.0%} of the time (chance {tail:.1g})"
                    )
                    break
        if found == flagged:
            break
        flagged = found
    return {r: reason for group, reason in flagged.items() for r in sorted(members[group])}


def rater_group(rater: str) -> str:
    """Who stands behind a rater id for the bias check: the cohort of anonymous ids one connection was
    issued within an hour (``anon-<random>:<cohort>``, see ``ui.arena``), else the id itself. A cohort is
    random, never derived from an address."""
    if rater.startswith("anon-") and ":" in rater:
        return "cohort:" + rater.rpartition(":")[2]
    return rater


def _poisson_binomial_tail(probabilities: list[float], k: int) -> float:
    """P(at least ``k`` successes) for independent trials with the given success chances (exact, O(n^2))."""
    dist = [1.0]
    for p in probabilities:
        nxt = [0.0] * (len(dist) + 1)
        for i, q in enumerate(dist):
            nxt[i] += q * (1 - p)
            nxt[i + 1] += q * p
        dist = nxt
    return float(sum(dist[k:]))


def _keep(row: dict[str, Any], modality: str | None, prompt_set: str | None, members: set[str] | None) -> bool:
    if modality and row["modality"] != modality:
        return False
    if not prompt_set:
        return True
    return row["prompt_set"] == prompt_set or (members is not None and row["input"] in members)


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def leaderboard(
    store: Store,
    *,
    modality: str | None = None,
    prompt_set: str | None = None,
    include_flagged: bool = False,
    criteria: tuple[str, ...] = CRITERIA,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    exclude_metric_groups: tuple[str, ...] = ("cost",),
) -> dict[str, Any]:
    """Everything the Leaderboard tab and ``python -m eval ratings leaderboard`` show, JSON-able.

    Per criterion: Bradley-Terry strengths on the Elo scale with bootstrap intervals, win counts,
    the win-rate matrix. Agreement: Krippendorff's alpha over run pairs voted by several raters
    (nominal) and over runs rated by several raters (ordinal), and Kendall's tau between the
    overall human ranking and each automatic metric's per-method mean.
    """
    unknown = sorted(set(criteria) - set(CRITERIA))
    if unknown:
        raise ValueError(f"unknown criterion {', '.join(unknown)}; the criteria are {', '.join(CRITERIA)}")
    members = _prompt_set_members(prompt_set)
    all_votes = vote_rows(store)
    flags = flagged_raters(all_votes)
    selected = [v for v in all_votes if _keep(v, modality, prompt_set, members)]
    used = [v for v in selected if include_flagged or v["rater"] not in flags]
    methods = sorted({v["method_left"] for v in used} | {v["method_right"] for v in used})
    index = {m: i for i, m in enumerate(methods)}
    result: dict[str, Any] = {
        "filters": {"modality": modality, "prompt_set": prompt_set, "include_flagged": include_flagged},
        "settings": {
            "model": "Bradley-Terry, maximum a posteriori; ties and 'both bad' = half a win each",
            "prior": f"Gaussian on log-strengths, sd {lb.PRIOR_SD_ELO:.0f} Elo (Chatbot Arena's reg 0.5);"
            " it sets the gaps of methods the votes cannot rank yet",
            "intervals": "hull of the percentile bootstrap and the posterior's normal interval",
            "scale": "Elo: mean 1000, 400 points = 10:1 odds",
            "n_boot": n_boot,
            "level": level,
            "seed": seed,
        },
        "votes": len({v["vote_id"] for v in selected}),
        "votes_used": len({v["vote_id"] for v in used}),
        "raters": len({v["rater"] for v in used}),
        "flagged_raters": {r: flags[r] for r in sorted(flags)},
        "methods": methods,
        "criteria": {},
    }
    for criterion in criteria:
        rows = [v for v in used if v["criterion"] == criterion]
        first = [index[v["method_left"]] for v in rows]
        second = [index[v["method_right"]] for v in rows]
        score = [ANSWER_SCORE[v["answer"]] for v in rows]
        strengths = lb.bootstrap_bradley_terry(
            first, second, score, len(methods), n_boot=n_boot, level=level, seed=seed
        )
        rate, count = lb.win_rate_matrix(first, second, score, len(methods))
        tally = {m: Counter() for m in methods}
        for v in rows:
            for side, other in (("left", "right"), ("right", "left")):
                m = v[f"method_{side}"]
                tally[m]["votes"] += 1
                tally[m][{side: "wins", other: "losses"}.get(v["answer"], v["answer"])] += 1
        table = []
        for rank, i in enumerate(strengths.rank(), start=1):
            m = methods[i]
            table.append(
                {
                    "rank": rank,
                    "method": m,
                    "elo": round(float(strengths.elo[i]), 1),
                    "lower": round(float(strengths.lower[i]), 1),
                    "upper": round(float(strengths.upper[i]), 1),
                    **{k: tally[m][k] for k in ("votes", "wins", "losses", "tie", "both_bad")},
                }
            )
        result["criteria"][criterion] = {
            "label": CRITERION_LABELS[criterion],
            "votes": len(rows),
            "mle_exists": lb.mle_exists(lb.win_counts(first, second, score, len(methods))),
            "unranked": {
                methods[i]: why for i, why in lb.unranked(lb.win_counts(first, second, score, len(methods))).items()
            },
            "table": table,
            "win_rate": [[_finite(x) for x in row] for row in rate.tolist()],
            "counts": count.tolist(),
        }
    result["agreement"] = _agreement(store, used, criteria, modality, prompt_set, members, flags, include_flagged)
    result["agreement"]["metric_tau"] = _metric_tau(store, used, result, exclude_metric_groups)
    return result


def _agreement(store, used, criteria, modality, prompt_set, members, flags, include_flagged) -> dict[str, Any]:
    code = {"left": 0, "right": 1, "tie": 2, "both_bad": 3}
    votes_alpha = {}
    for criterion in criteria:
        # unit: the run pair; value: the answer as seen from the pair's first run (positions differ per rater)
        cells = {}
        for v in used:
            if v["criterion"] != criterion:
                continue
            flipped = v["run_left"] > v["run_right"]
            answer = {"left": "right", "right": "left"}.get(v["answer"], v["answer"]) if flipped else v["answer"]
            key = tuple(sorted((v["run_left"], v["run_right"])))
            cells[(v["rater"], key)] = code[answer]
        votes_alpha[criterion] = _alpha_of(cells, "nominal")
    ratings = [
        r
        for r in rating_rows(store)
        if r["latest"] and _keep(r, modality, prompt_set, members) and (include_flagged or r["rater"] not in flags)
    ]
    ratings_alpha = {}
    for criterion in criteria:
        cells = {(r["rater"], r["run_id"]): r["score"] for r in ratings if r["criterion"] == criterion}
        ratings_alpha[criterion] = _alpha_of(cells, "ordinal")
    likert = {}
    for criterion in criteria:
        per_method: dict[str, list[int]] = {}
        for r in ratings:
            if r["criterion"] == criterion:
                per_method.setdefault(r["method"], []).append(r["score"])
        likert[criterion] = [
            {"method": m, "mean": round(float(np.mean(s)), 3), "n": len(s)} for m, s in sorted(per_method.items())
        ]
    return {"votes_alpha": votes_alpha, "ratings_alpha": ratings_alpha, "likert": likert}


def _alpha_of(cells: dict[tuple[str, Any], float], level: str) -> dict[str, Any]:
    raters = sorted({r for r, _ in cells})
    units = sorted({u for _, u in cells}, key=str)
    per_unit = Counter(u for _, u in cells)
    repeated = sum(1 for n in per_unit.values() if n >= 2)
    if repeated == 0:
        return {"alpha": None, "items": 0, "raters": len(raters), "level": level}
    r_index, u_index = {r: i for i, r in enumerate(raters)}, {u: i for i, u in enumerate(units)}
    data = np.full((len(raters), len(units)), np.nan)
    for (r, u), value in cells.items():
        data[r_index[r], u_index[u]] = value
    alpha = lb.krippendorff_alpha(data, level)  # type: ignore[arg-type]
    return {"alpha": _finite(round(alpha, 4)), "items": repeated, "raters": len(raters), "level": level}


def _metric_tau(
    store: Store, used: list[dict[str, Any]], board: dict[str, Any], exclude: tuple[str, ...]
) -> list[dict]:
    """Kendall's tau between the overall human ranking and each automatic metric's per-method mean."""
    overall = board["criteria"].get("overall")
    if overall is None or not used:
        return []
    human = {row["method"]: row["elo"] for row in overall["table"]}
    run_ids = sorted({v["run_left"] for v in used} | {v["run_right"] for v in used})
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    for chunk in range(0, len(run_ids), 500):
        ids = run_ids[chunk : chunk + 500]
        rows = store.read(
            f"SELECT r.method, m.name, m.value, m.higher_is_better, m.grp FROM metrics m JOIN runs r ON r.id = m.run_id"
            f" WHERE m.run_id IN ({', '.join('?' * len(ids))}) AND m.higher_is_better IS NOT NULL",
            ids,
        )
        for r in rows:
            if r["grp"] in exclude:
                continue
            value = json.loads(r["value"]) if r["value"] is not None else None
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            sign = 1.0 if r["higher_is_better"] else -1.0
            values.setdefault((r["name"], r["grp"]), {}).setdefault(r["method"], []).append(sign * float(value))
    out = []
    for (name, group), per_method in sorted(values.items()):
        common = sorted(m for m in per_method if m in human)
        entry = {"metric": name, "group": group, "methods": len(common), "tau": None, "p": None}
        if len(common) >= 3:
            tau, p = lb.kendall_tau([human[m] for m in common], [float(np.mean(per_method[m])) for m in common])
            entry.update(tau=_finite(round(tau, 4)), p=_finite(round(p, 4)))
        out.append(entry)
    return out
