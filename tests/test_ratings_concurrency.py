"""The vote tables under load and under a crash: no vote lost, none duplicated, none half-written."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from eval import ratings
from eval.ratings import AlreadyVoted
from eval.runs.store import Store
from tests.processes import in_threads
from tests.ratings_support import OPEN, answers, make_store

ROOT = Path(__file__).resolve().parents[1]
METHODS = tuple(f"m-{i:02d}" for i in range(10))  # 45 run pairs on one input


def assert_whole_votes(store: Store) -> None:
    assert store.integrity_ok()
    per_vote = store.read(
        "SELECT v.id, count(a.criterion) FROM votes v LEFT JOIN vote_answers a ON a.vote_id = v.id GROUP BY v.id"
    )
    assert all(n == len(ratings.CRITERIA) for _, n in per_vote)
    assert store.read("SELECT count(*) FROM vote_answers WHERE vote_id NOT IN (SELECT id FROM votes)")[0][0] == 0
    assert store.read("PRAGMA foreign_key_check") == []


def test_50_writer_threads_x_40_votes_lose_none_and_duplicate_none(tmp_path: Path):
    store, _ = make_store(tmp_path, METHODS)
    errors: list[BaseException] = []
    replays_refused = []
    start = threading.Barrier(50)

    def rater(t: int) -> None:
        try:
            start.wait()
            name = f"anon-thread{t:02d}"
            for i in range(40):
                pair = ratings.serve_pair(store, name, policy=OPEN)
                ratings.vote(store, pair.id, name, answers(("left", "right", "tie", "both_bad")[i % 4]), policy=OPEN)
                if i % 10 == 0:  # a replay right away, racing the other threads' writes
                    try:
                        ratings.vote(store, pair.id, name, answers(), policy=OPEN)
                    except AlreadyVoted:
                        replays_refused.append(1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    in_threads(rater, 50)
    assert not errors, errors[:3]
    assert len(replays_refused) == 50 * 4
    assert tuple(store.read("SELECT count(*), count(DISTINCT pair_id) FROM votes")[0]) == (2000, 2000)
    assert store.read("SELECT count(*) FROM (SELECT DISTINCT rater, run_lo, run_hi FROM votes)")[0][0] == 2000
    assert store.read("SELECT count(*) FROM vote_answers")[0][0] == 2000 * 4
    per_rater = store.read("SELECT rater, count(*) FROM votes GROUP BY rater")
    assert len(per_rater) == 50 and {n for _, n in per_rater} == {40}
    assert_whole_votes(store)


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from eval import ratings
    from eval.runs.store import Store
    from tests.ratings_support import OPEN, answers

    store = Store({db!r})
    pairs = [r[0] for r in store.read("SELECT id FROM pairs ORDER BY served_at")]
    n_answers = 0

    def trace(sql):
        # called before each statement, once per row of an executemany
        global n_answers
        if sql.startswith("INSERT INTO vote_answers"):
            n_answers += 1
            if n_answers == 30 * 4 + 2:  # the 31st vote: its vote row and one answer are written
                print("inside", flush=True)
                time.sleep(60)

    store._conn().set_trace_callback(trace)
    for pair_id in pairs:
        ratings.vote(store, pair_id, "anon-batch", answers("tie"), policy=OPEN)
        print("voted", flush=True)
    """
)


def test_sigkill_in_the_middle_of_a_batch_of_votes_leaves_only_whole_votes(tmp_path: Path):
    store, _ = make_store(tmp_path, METHODS)
    for _ in range(40):
        ratings.serve_pair(store, "anon-batch", policy=OPEN)
    store.close()
    code = CHILD.format(root=str(ROOT), db=str(store.path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    voted = 0
    try:
        for line in child.stdout:
            if line.strip() == "inside":
                break
            voted += 1
        else:
            raise AssertionError(f"the child ended before the kill (exit {child.wait()})")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert voted == 30
    after = Store(store.path)  # recovers the WAL the killed writer left
    assert_whole_votes(after)
    assert after.read("SELECT count(*) FROM votes")[0][0] == 30
    # the store takes writes again at once (no lock left behind)
    pair = ratings.serve_pair(after, "anon-after", policy=OPEN)
    ratings.vote(after, pair.id, "anon-after", answers(), policy=OPEN)
    assert_whole_votes(after)
