"""Arena pairs, votes and Likert ratings in the run store: the protocol, bad input, export, leaderboard."""

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from eval import ratings
from eval.ratings import (
    AlreadyVoted,
    InvalidVote,
    NoPairAvailable,
    Policy,
    RateLimited,
    TooEarly,
    UnknownPair,
    UnknownRunId,
)
from eval.ratings import cli as ratings_cli
from eval.ratings import sync as ratings_sync
from eval.runs.store import MIGRATIONS, Store
from tests.ratings_support import OPEN, add_run, answers, make_store
from ui.leaderboard import views


def counts(store) -> tuple[int, int, int]:
    return tuple(store.read(f"SELECT count(*) FROM {t}")[0][0] for t in ("votes", "vote_answers", "ratings"))


def test_serve_and_vote_reveals_methods_and_stores_one_row_per_criterion(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b"))
    pair = ratings.serve_pair(store, "anon-rater1", policy=OPEN)
    assert {pair.left["method"], pair.right["method"]} == {"m-a", "m-b"}
    assert pair.input_label == "a chair" and pair.modality == "text"
    result = ratings.vote(store, pair.id, "anon-rater1", answers("left", overall="Both bad"), policy=OPEN)
    assert (result.left_method, result.right_method) == (pair.left["method"], pair.right["method"])
    assert result.answers["overall"] == "both_bad"
    assert counts(store) == (1, 4, 0)
    rows = ratings.vote_rows(store)
    assert {r["criterion"] for r in rows} == set(ratings.CRITERIA)
    assert all(r["run_left"] == pair.left["id"] and r["input"] == "a chair" for r in rows)
    # the only run pair is voted on: nothing left for this rater, but another rater gets it
    with pytest.raises(NoPairAvailable, match="different methods on the same input"):
        ratings.serve_pair(store, "anon-rater1", policy=OPEN)
    assert ratings.serve_pair(store, "anon-rater2", policy=OPEN).left["id"] in runs.values()


def test_pairs_only_join_different_methods_on_the_same_input(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b"), ("a chair", "a lamp"))
    add_run(store, tmp_path, "m-a", "a chair", seed=1)  # same method twice on one input: never paired
    add_run(store, tmp_path, "m-c", "a chair", status="failed")  # no asset: never served
    cands = ratings.candidate_pairs(store)
    assert len(cands) == 3  # chair: (a0, b), (a1, b); lamp: (a, b)
    for c in cands:
        assert c["lo"]["method"] != c["hi"]["method"] and c["lo"]["inputs_hash"] == c["hi"]["inputs_hash"]
    (tmp_path / runs[("m-a", "a lamp")] / "asset.glb").unlink()  # an asset that is gone is not served
    assert len(ratings.candidate_pairs(store)) == 2
    assert len(ratings.candidate_pairs(store, modality="image")) == 0


def test_pairs_with_fewest_votes_are_served_first(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b", "m-c"))
    a, b, c = (runs[(m, "a chair")] for m in ("m-a", "m-b", "m-c"))
    for rater, pair in (("anon-r1", (a, b)), ("anon-r2", (a, c)), ("anon-r3", (a, b))):
        served = ratings.serve_pair(store, rater, runs=pair, policy=OPEN)
        ratings.vote(store, served.id, rater, answers(), policy=OPEN)
    rng = random.Random(0)
    for i in range(6):  # (b, c) has no vote yet: every new rater gets it
        served = ratings.serve_pair(store, f"anon-new{i}", policy=OPEN, rng=rng)
        assert {served.left["id"], served.right["id"]} == {b, c}
    # a rater who skipped (b, c) is offered the least-voted pair they have not seen, not the same one again
    served = ratings.serve_pair(store, "anon-new0", policy=OPEN, rng=rng)
    assert {served.left["id"], served.right["id"]} == {a, c}
    served = ratings.serve_pair(store, "anon-new0", policy=OPEN, rng=rng)
    assert {served.left["id"], served.right["id"]} == {a, b}


def test_left_and_right_are_balanced_per_run_pair(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b"))
    a = runs[("m-a", "a chair")]
    lefts = [ratings.serve_pair(store, f"anon-rater{i}", policy=OPEN).left["id"] == a for i in range(40)]
    assert sum(lefts) == 20
    assert 0 < sum(lefts[:10]) < 10  # chance decides the first placement, not a fixed order


def test_bad_votes_are_refused_and_nothing_is_stored(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b", "m-c"))
    pair = ratings.serve_pair(store, "anon-rater1", policy=OPEN)
    with pytest.raises(UnknownPair, match="never served"):
        ratings.vote(store, "not-a-served-pair", "anon-rater1", answers(), policy=OPEN)
    with pytest.raises(UnknownPair, match="another rater"):
        ratings.vote(store, pair.id, "anon-someone-else", answers(), policy=OPEN)
    with pytest.raises(InvalidVote, match="missing: Overall"):
        ratings.vote(store, pair.id, "anon-rater1", {**answers(), "overall": None}, policy=OPEN)
    with pytest.raises(InvalidVote, match="not one of left, right, tie, both bad"):
        ratings.vote(store, pair.id, "anon-rater1", answers("up"), policy=OPEN)
    with pytest.raises(InvalidVote, match="unknown criterion 'speed'"):
        ratings.vote(store, pair.id, "anon-rater1", {**answers(), "speed": "left"}, policy=OPEN)
    with pytest.raises(InvalidVote, match="invalid rater id"):
        ratings.vote(store, pair.id, "a b", answers(), policy=OPEN)
    with pytest.raises(TooEarly, match=r"at least 30 s before voting \(0\.\d s so far\)"):
        ratings.vote(store, pair.id, "anon-rater1", answers(), policy=Policy(min_view_seconds=30))
    assert counts(store) == (0, 0, 0)
    ratings.vote(store, pair.id, "anon-rater1", answers(), policy=OPEN)
    with pytest.raises(AlreadyVoted, match="already has your vote"):  # a replay of the same pair
        ratings.vote(store, pair.id, "anon-rater1", answers("right"), policy=OPEN)
    # the same two runs served again (e.g. from a study link): one vote per rater per run pair
    again = ratings.serve_pair(store, "anon-rater1", runs=(pair.right["id"], pair.left["id"]), policy=OPEN)
    with pytest.raises(AlreadyVoted, match="already voted on these two assets"):
        ratings.vote(store, again.id, "anon-rater1", answers(), policy=OPEN)
    assert counts(store) == (1, 4, 0)
    with pytest.raises(UnknownRunId, match="no run with id 'nope'"):
        ratings.serve_pair(store, "anon-rater1", runs=("nope", pair.left["id"]), policy=OPEN)
    with pytest.raises(InvalidVote, match="different methods"):
        same = add_run(store, tmp_path, "m-a", "a chair", seed=3)
        ratings.serve_pair(store, "anon-rater1", runs=(same, runs[("m-a", "a chair")]), policy=OPEN)


def test_minimum_viewing_time_then_vote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRILEMMA_MIN_VIEW_SECONDS", "0.3")
    policy = Policy.from_env()
    assert policy.min_view_seconds == 0.3
    store, _ = make_store(tmp_path, ("m-a", "m-b"))
    pair = ratings.serve_pair(store, "anon-rater1", policy=OPEN)
    with pytest.raises(TooEarly):
        ratings.vote(store, pair.id, "anon-rater1", answers())  # the policy from the environment
    threading.Event().wait(0.35)
    assert ratings.vote(store, pair.id, "anon-rater1", answers()).seconds_viewed >= 0.3
    monkeypatch.setenv("TRILEMMA_MIN_VIEW_SECONDS", "soon")
    with pytest.raises(ValueError, match="TRILEMMA_MIN_VIEW_SECONDS must be a number"):
        Policy.from_env()


def test_rate_limits_per_rater(tmp_path: Path):
    store, _ = make_store(tmp_path, ("m-a", "m-b", "m-c", "m-d"))
    policy = Policy(min_view_seconds=0, votes_per_minute=2, pairs_per_minute=4, ratings_per_minute=1)
    for _ in range(2):
        pair = ratings.serve_pair(store, "anon-rater1", policy=policy)
        ratings.vote(store, pair.id, "anon-rater1", answers(), policy=policy)
    pair = ratings.serve_pair(store, "anon-rater1", policy=policy)
    with pytest.raises(RateLimited, match="at most 2 a minute"):
        ratings.vote(store, pair.id, "anon-rater1", answers(), policy=policy)
    ratings.serve_pair(store, "anon-rater1", policy=policy)
    with pytest.raises(RateLimited, match="too many new pairs"):
        ratings.serve_pair(store, "anon-rater1", policy=policy)
    run = pair.left["id"]
    ratings.rate(store, run, "anon-rater1", {"overall": 4}, policy=policy)
    with pytest.raises(RateLimited, match="too many ratings"):
        ratings.rate(store, run, "anon-rater1", {"overall": 5}, policy=policy)
    assert counts(store) == (2, 8, 1)


def test_likert_ratings_validate_and_latest_counts(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b"))
    run = runs[("m-a", "a chair")]
    for bad in (0, 6, 2.5, True, "x", -1):
        with pytest.raises(InvalidVote, match="whole number from 1 to 5"):
            ratings.rate(store, run, "anon-rater1", {"geometry": bad}, policy=OPEN)
    with pytest.raises(InvalidVote, match="at least one criterion"):
        ratings.rate(store, run, "anon-rater1", {"geometry": None}, policy=OPEN)
    with pytest.raises(InvalidVote, match="unknown criterion"):
        ratings.rate(store, run, "anon-rater1", {"beauty": 3}, policy=OPEN)
    with pytest.raises(UnknownRunId, match="no run with id 'missing-run'"):
        ratings.rate(store, "missing-run", "anon-rater1", {"overall": 3}, policy=OPEN)
    failed = add_run(store, tmp_path, "m-c", "a chair", status="failed")
    with pytest.raises(UnknownRunId, match="status 'failed'"):
        ratings.rate(store, failed, "anon-rater1", {"overall": 3}, policy=OPEN)
    assert counts(store) == (0, 0, 0)
    assert len(ratings.rate(store, run, "anon-rater1", {"geometry": 2, "overall": "3"}, policy=OPEN)) == 2
    ratings.rate(store, run, "anon-rater1", {"overall": 5}, policy=OPEN)
    rows = ratings.rating_rows(store)
    assert len(rows) == 3  # append-only: the first overall rating is kept
    latest = {(r["criterion"], r["score"]) for r in rows if r["latest"]}
    assert latest == {("geometry", 2), ("overall", 5)}


def _vote_many(store, raters_answers: dict[str, str], rounds: int = 1, ranking: str = "abcd") -> None:
    """Each rater votes ``rounds`` times: always one answer, or "truth" (the better method by ``ranking``)."""
    for rater, answer in raters_answers.items():
        for _ in range(rounds):
            try:
                pair = ratings.serve_pair(store, rater, policy=OPEN)
            except NoPairAvailable:
                break
            best = min((pair.left, pair.right), key=lambda r: ranking.index(r["method"][-1]))
            value = answer if answer != "truth" else ("left" if best is pair.left else "right")
            ratings.vote(store, pair.id, rater, answers(value), policy=OPEN)


def test_leaderboard_excludes_noise_raters_but_keeps_their_votes(tmp_path: Path):
    prompts = tuple(f"prompt {i}" for i in range(5))
    store, runs = make_store(tmp_path, ("m-a", "m-b", "m-c"), prompts)
    _vote_many(store, {f"anon-honest{i}": "truth" for i in range(3)}, rounds=15, ranking="bac")
    _vote_many(store, {"anon-clicker": "left"}, rounds=15)
    board = ratings.leaderboard(store, n_boot=200)
    assert list(board["flagged_raters"]) == ["anon-clicker"]
    assert board["votes"] == 60 and board["votes_used"] == 45 and board["raters"] == 3
    for criterion in ratings.CRITERIA:
        table = board["criteria"][criterion]["table"]
        assert [r["method"] for r in table] == ["m-b", "m-a", "m-c"]
        assert all(r["lower"] <= r["elo"] <= r["upper"] for r in table)
        assert sum(r["votes"] for r in table) == 2 * 45
    assert board["criteria"]["overall"]["mle_exists"] is False  # the honest raters never disagree
    rates = board["criteria"]["overall"]["win_rate"]
    assert rates[1][0] == 1.0 and rates[0][1] == 0.0 and rates[0][0] is None  # methods in name order
    # the same raters voted on the same run pairs (from both sides): perfect agreement
    assert board["agreement"]["votes_alpha"]["overall"]["alpha"] == pytest.approx(1.0)
    with_flagged = ratings.leaderboard(store, n_boot=50, include_flagged=True)
    assert with_flagged["votes_used"] == 60 and with_flagged["raters"] == 4
    json.dumps(board)  # JSON-able, NaN-free
    assert "NaN" not in json.dumps(board)


def test_leaderboard_filters_by_prompt_set_and_modality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "furniture.txt").write_text("# chairs only\na chair\n\n")
    monkeypatch.setenv("TRILEMMA_PROMPT_SETS", str(sets))
    assert ratings.prompt_sets() == {"furniture": ["a chair"]}
    store, _ = make_store(tmp_path, ("m-a", "m-b"), ("a chair", "a lamp"))
    _vote_many(store, {"anon-r1": "left", "anon-r2": "right"}, rounds=2)
    assert ratings.leaderboard(store, n_boot=10)["votes"] == 4
    assert ratings.leaderboard(store, n_boot=10, prompt_set="furniture")["votes"] == 2
    assert ratings.leaderboard(store, n_boot=10, modality="image")["votes"] == 0
    pair = ratings.serve_pair(store, "anon-r3", prompt_set="furniture", policy=OPEN)
    assert pair.input_label == "a chair"
    ratings.vote(store, pair.id, "anon-r3", answers(), policy=OPEN)
    with pytest.raises(NoPairAvailable, match="for furniture"):
        ratings.serve_pair(store, "anon-r3", prompt_set="furniture", policy=OPEN)


def test_kendall_tau_against_automatic_metrics_and_rating_alpha(tmp_path: Path):
    prompts = tuple(f"prompt {i}" for i in range(4))
    store, runs = make_store(tmp_path, ("m-a", "m-b", "m-c", "m-d"), prompts)
    _vote_many(store, {f"anon-r{i}": "truth" for i in range(2)}, rounds=24)
    quality = {"m-a": 0.9, "m-b": 0.7, "m-c": 0.5, "m-d": 0.2}
    for (method, _), run_id in runs.items():
        store.add_metrics(
            run_id,
            [
                {"name": "clip_score", "value": quality[method], "higher_is_better": True, "group": "alignment"},
                {"name": "chamfer", "value": quality[method], "higher_is_better": False, "group": "geometry"},
                {"name": "seconds_total", "value": quality[method], "higher_is_better": False, "group": "cost"},
                {"name": "bbox", "value": "1 x 1 x 1", "higher_is_better": None, "group": "geometry"},
            ],
        )
    for run_id in list(runs.values())[:6]:
        for rater in ("anon-r0", "anon-r1"):
            ratings.rate(store, run_id, rater, {"overall": 4 if run_id.startswith("m-a") else 2}, policy=OPEN)
    board = ratings.leaderboard(store, n_boot=50)
    tau = {t["metric"]: t for t in board["agreement"]["metric_tau"]}
    assert set(tau) == {"clip_score", "chamfer"}  # cost and non-numeric metrics are not rankings of quality
    assert tau["clip_score"]["tau"] == pytest.approx(1.0) and tau["clip_score"]["methods"] == 4
    assert tau["chamfer"]["tau"] == pytest.approx(-1.0)  # lower is better, but it rewards the worst
    alpha = board["agreement"]["ratings_alpha"]["overall"]
    assert alpha["alpha"] == pytest.approx(1.0) and alpha["items"] == 6
    likert = {r["method"]: r for r in board["agreement"]["likert"]["overall"]}
    assert likert["m-a"]["mean"] == 4.0


def test_export_csv_and_parquet_reference_runs_only(tmp_path: Path):
    store, runs = make_store(tmp_path, ("m-a", "m-b"))
    _vote_many(store, {"anon-r1": "left"})
    ratings.serve_pair(store, "anon-r2", policy=OPEN)  # served, never voted
    ratings.rate(store, runs[("m-a", "a chair")], "anon-r1", {"overall": 5}, policy=OPEN)
    paths = ratings.export(store, tmp_path / "csv")
    votes = pd.read_csv(paths["votes"])
    assert len(votes) == 4 and set(votes["criterion"]) == set(ratings.CRITERIA)
    assert set(votes["run_left"]) | set(votes["run_right"]) == set(runs.values())
    assert votes["rater_flag"].isna().all()
    pairs = pd.read_csv(paths["pairs"])
    assert len(pairs) == 2 and pairs["vote_id"].isna().sum() == 1
    parquet = ratings.export(store, tmp_path / "pq", "parquet")
    assert pd.read_parquet(parquet["ratings"])["score"].tolist() == [5]
    assert pd.read_parquet(parquet["votes"]).shape == votes.shape
    with pytest.raises(ValueError, match="format must be one of csv, parquet"):
        ratings.export(store, tmp_path / "x", "xlsx")


def test_store_migration_adds_study_tables_to_an_existing_database(tmp_path: Path):
    path = tmp_path / "old.db"
    Store(path, migrations=MIGRATIONS[:1]).start_run(
        {"id": "r1", "method": "m", "modality": "text", "inputs_hash": "h"}
    )
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    assert counts(store) == (0, 0, 0) and store.get_run("r1")["method"] == "m"


def test_sync_lines_restore_a_fresh_store_idempotently(tmp_path: Path):
    store, runs = make_store(tmp_path / "a", ("m-a", "m-b", "m-c"))
    fake_scheduler = type("Scheduler", (), {"lock": threading.Lock(), "stop": lambda self: None})()
    sync = ratings_sync.RatingsSync(tmp_path / "outbox", fake_scheduler)
    for rater in ("anon-r1", "anon-r2"):
        pair = ratings.serve_pair(store, rater, policy=OPEN)
        sync.record_vote(store, ratings.vote(store, pair.id, rater, answers("tie"), policy=OPEN).vote_id)
    sync.record_ratings(store, ratings.rate(store, runs[("m-a", "a chair")], "anon-r1", {"overall": 3}, policy=OPEN))
    (tmp_path / "outbox" / "torn.jsonl").write_text('{"kind": "vote", "pa')  # a crash mid-line is skipped
    fresh = make_store(tmp_path / "b", ())[0]
    assert ratings_sync.restore(fresh, tmp_path / "outbox") == {"runs": 3, "votes": 2, "ratings": 1}
    assert ratings_sync.restore(fresh, tmp_path / "outbox") == {"runs": 0, "votes": 0, "ratings": 0}
    assert counts(fresh) == (2, 8, 1)
    assert ratings.leaderboard(fresh, n_boot=10)["votes_used"] == 2
    assert ratings_sync.SyncConfig.from_env() is None  # not configured in tests: no Hub access at all


def test_cli_leaderboard_and_export(tmp_path: Path, capsys: pytest.CaptureFixture):
    store, _ = make_store(tmp_path, ("m-a", "m-b", "m-c"), ("p1", "p2"))
    _vote_many(store, {f"anon-r{i}": "truth" for i in range(2)}, rounds=6)
    db = str(store.path)
    assert ratings_cli.main(["leaderboard", "--db", db, "--bootstrap", "100", "--json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in board["criteria"]["overall"]["table"]] == ["m-a", "m-b", "m-c"]
    assert ratings_cli.main(["leaderboard", "--db", db, "--bootstrap", "50", "--criterion", "geometry"]) == 0
    text = capsys.readouterr().out
    assert "Geometry (12 votes)" in text and "win rate" in text and "Overall" not in text.split("Agreement")[0]
    # every vote agreed with one ranking: the top one won everything, the last lost everything
    assert "the votes cannot rank m-a (won every comparison), m-c (lost every comparison) yet" in text
    assert ratings_cli.main(["export", "--db", db, "--out", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == {"votes": 48, "ratings": 0, "pairs": 12}
    assert ratings_cli.main(["leaderboard", "--db", str(tmp_path / "none.db")]) == 2
    assert "no run store at" in capsys.readouterr().err


def test_an_empty_study_has_an_empty_leaderboard(tmp_path: Path):
    board = ratings.leaderboard(make_store(tmp_path, ())[0], n_boot=10)
    assert board["votes"] == 0 and board["methods"] == [] and board["criteria"]["overall"]["table"] == []
    tables = views(board)
    assert tables["strengths"]["overall"] == [] and "**0** votes" in tables["summary"]
    assert tables["alpha"][0][1] == "–"


def test_python_m_eval_ratings_reads_trilemma_db(tmp_path: Path):
    store, _ = make_store(tmp_path, ("m-a", "m-b"))
    _vote_many(store, {"anon-r1": "tie"})
    env = {**os.environ, "TRILEMMA_DB": str(store.path), "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "eval", "ratings", "leaderboard", "--json", "--bootstrap", "20"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["votes_used"] == 1


def test_sync_start_restores_then_schedules_pushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub

    old, _ = make_store(tmp_path / "old", ("m-a", "m-b"))
    earlier = ratings_sync.RatingsSync(tmp_path / "earlier")
    pair = ratings.serve_pair(old, "anon-r1", policy=OPEN)
    earlier.record_vote(old, ratings.vote(old, pair.id, "anon-r1", answers(), policy=OPEN).vote_id)
    calls = {}

    def fake_download(repo_id, *, repo_type, local_dir, allow_patterns, token):
        calls["download"] = (repo_id, repo_type, allow_patterns, token)
        target = Path(local_dir) / ratings_sync.PATH_IN_REPO
        target.mkdir(parents=True, exist_ok=True)
        (target / earlier.path.name).write_bytes(earlier.path.read_bytes())

    class FakeScheduler:
        def __init__(self, **kw):
            calls["scheduler"] = kw
            self.lock = threading.Lock()

        def stop(self):
            calls["stopped"] = True

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    monkeypatch.setattr(huggingface_hub, "CommitScheduler", FakeScheduler)
    monkeypatch.setenv("TRILEMMA_HF_DATASET", "someone/trilemma3d-votes")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    fresh = make_store(tmp_path / "new", ())[0]
    sync = ratings_sync.start(fresh, folder=tmp_path / "sync")
    assert calls["download"] == ("someone/trilemma3d-votes", "dataset", ["data/*.jsonl"], "hf_test")
    assert counts(fresh) == (1, 4, 0)  # the Space's earlier vote is back before anyone votes
    kw = calls["scheduler"]
    assert kw["repo_id"] == "someone/trilemma3d-votes" and kw["repo_type"] == "dataset" and kw["private"] is True
    assert kw["path_in_repo"] == "data" and Path(kw["folder_path"]) == sync.folder
    sync.stop()
    assert calls["stopped"]
