"""The Arena, Leaderboard and Likert UI driven end to end through gradio_client, on runs of tiny methods."""

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from eval.ratings import Policy
from eval.runs.runner import execute
from eval.runs.store import Store
from methods.base import Asset, Inputs, Mesh, Method, Progress, Settings, setting
from methods.registry import register, unregister

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

PROMPTS = ("a red chair", "a blue lamp")
MIN_VIEW = 3.0  # long enough to vote too early even on a busy machine


class ArenaSphere(Method):
    """A procedural icosphere whose colour comes from the input and seed (instant, no weights)."""

    id = "arena-test-sphere"
    label = "Arena test sphere"
    modalities = ("text",)
    family = "procedural (tests)"
    representation = "mesh"

    @dataclass(kw_only=True)
    class Settings(Settings):
        subdivisions: int = setting(2, min=0, max=3, step=1)

    def shape(self, settings):
        import trimesh

        return trimesh.creation.icosphere(subdivisions=settings.subdivisions)

    def run(self, inputs, settings):
        yield Progress("build", 0.0, "building")
        shape = self.shape(settings)
        rng = np.random.default_rng(int(inputs.hash()[:8], 16) ^ settings.seed)
        colors = np.tile(rng.random(3), (len(shape.vertices), 1))
        return Asset(mesh=Mesh(shape.vertices, shape.faces, colors), stage_seconds={"build": 0.01})


class ArenaBox(ArenaSphere):
    id = "arena-test-box"
    label = "Arena test box"

    def shape(self, settings):
        import trimesh

        return trimesh.creation.box(extents=(1.0, 0.5, 0.3))


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    """Runs of two test methods on two prompts, made through eval.runs.runner.execute, in a private store."""
    root = tmp_path_factory.mktemp("arena")
    for cls in (ArenaSphere, ArenaBox):
        register(cls)
    store = Store(root / "arena.db")
    runs = {}
    try:
        for prompt in PROMPTS:
            for method in (ArenaSphere.id, ArenaBox.id):
                events = list(execute(method, Inputs.text(prompt), {"seed": 1}, store=store, out_root=root / "runs"))
                runs[(method, prompt)] = events[-1].run_id
        yield SimpleNamespace(root=root, store=store, runs=runs)
    finally:
        for cls in (ArenaSphere, ArenaBox):
            unregister(cls.id)


@pytest.fixture(scope="module")
def client(study):
    from gradio_client import Client

    from ui.arena import build_arena_tab, likert_row
    from ui.leaderboard import build_leaderboard_tab

    policy = Policy(min_view_seconds=MIN_VIEW, votes_per_minute=0, pairs_per_minute=0, ratings_per_minute=0)
    rated_run = study.runs[(ArenaBox.id, PROMPTS[0])]
    with gr.Blocks() as demo:
        with gr.Tab("Arena"):
            build_arena_tab(study.store, policy)
        with gr.Tab("Leaderboard"):
            build_leaderboard_tab(study.store, n_boot=200)
        with gr.Tab("Rate"):
            likert_row(gr.State(rated_run), store=study.store, policy=policy, api_name="rate_asset")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def _file(update) -> Path:
    value = update["value"] if isinstance(update, dict) else update
    return Path(value["path"] if isinstance(value, dict) else value)


def test_arena_end_to_end(client, study):
    from gradio_client.exceptions import AppError
    from pygltflib import GLTF2

    out = client.predict(None, "any", "any", "Textured", api_name="/arena_new_pair")
    served = time.monotonic()  # the server recorded the pair before this
    rater, left, right, shown_input = out[0], _file(out[1]), _file(out[2]), out[3]
    assert rater.startswith("anon-")
    assert shown_input in {f"text: {p}" for p in PROMPTS}
    for path in (left, right):
        data = path.read_bytes()
        assert data[:4] == b"glTF"
        # anonymised: neither the file, nor its name, nor the URL path says which method or run made it
        assert b"arena-test" not in data and b"trilemma3d" not in data
        assert "arena-test" not in str(path)
        assert not any(run_id.encode() in data or run_id in str(path) for run_id in study.runs.values())
    assert left.read_bytes() != right.read_bytes()  # a sphere and a box

    with pytest.raises(AppError, match=r"at least 3 s before voting"):
        client.predict(rater, "left", "tie", "both_bad", "left", api_name="/arena_vote")
    assert study.store.read("SELECT count(*) FROM votes")[0][0] == 0
    time.sleep(max(0.0, served + MIN_VIEW + 0.1 - time.monotonic()))
    out = client.predict(rater, "left", "tie", "both_bad", "left", api_name="/arena_vote")
    assert out[0] == rater and "saved" in out[1]
    assert "Arena test sphere" in out[2] and "Arena test box" in out[2]  # revealed only now
    with pytest.raises(AppError, match="already has your vote"):
        client.predict(rater, "right", "right", "right", "right", api_name="/arena_vote")
    assert study.store.read("SELECT count(*) FROM votes")[0][0] == 1
    assert study.store.read("SELECT count(*) FROM vote_answers")[0][0] == 4

    # the view toggle applies to both sides: textureless copies have no colours or materials
    out = client.predict("Textureless", api_name="/arena_view")
    for update in out:
        gltf = GLTF2().load(str(_file(update)))
        assert all(p.attributes.COLOR_0 is None and p.material is None for m in gltf.meshes for p in m.primitives)
    assert all(u["display_mode"] == "wireframe" for u in client.predict("Wireframe", api_name="/arena_view"))

    # the second prompt's pair, then nothing left for this rater
    out = client.predict(rater, "text", "any", "Textured", api_name="/arena_new_pair")
    served = time.monotonic()
    assert out[3] != shown_input
    time.sleep(max(0.0, served + MIN_VIEW + 0.1 - time.monotonic()))
    with pytest.raises(AppError, match="missing: Texture and appearance"):
        client.predict(rater, "right", None, "tie", "right", api_name="/arena_vote")
    client.predict(rater, "right", "right", "tie", "right", api_name="/arena_vote")
    out = client.predict(rater, "any", "any", "Textured", api_name="/arena_new_pair")
    assert "no pair to rate" in out[5]

    # another browser (no id yet) gets its own id and the least-voted pairs
    other = client.predict(None, "image", "any", "Textured", api_name="/arena_new_pair")
    assert other[0] != rater and "no pair to rate for image" in other[5]


def test_leaderboard_tab_through_the_api(client, study):
    from eval import ratings

    pair = ratings.serve_pair(study.store, "anon-leaderboard", policy=Policy(min_view_seconds=0))
    ratings.vote(study.store, pair.id, "anon-leaderboard", dict.fromkeys(ratings.CRITERIA, "tie"), policy=Policy(0))
    out = client.predict("any", "any", False, api_name="/leaderboard")
    summary, board = out[0], out[-1]
    assert "raters" in summary and "bootstrap" in summary
    assert board["votes_used"] >= 1 and set(board["methods"]) <= {ArenaSphere.id, ArenaBox.id}
    strengths = out[1].get("value", out[1])  # an update carrying the table
    assert strengths["headers"][:3] == ["rank", "method", "Elo"]
    assert {row[1] for row in strengths["data"]} == set(board["methods"])
    empty = client.predict("video", "any", False, api_name="/leaderboard")
    assert empty[-1]["votes"] == 0


def test_likert_row_through_the_api(client, study):
    from gradio_client.exceptions import AppError

    before = study.store.read("SELECT count(*) FROM ratings")[0][0]
    token, status = client.predict(None, 4, None, None, 5, api_name="/rate_asset")  # the server issues a token
    assert token.startswith("anon-") and "Saved 2 ratings" in status
    rater = token.rpartition(".")[0]
    again, _ = client.predict(token, 3, None, None, None, api_name="/rate_asset")
    assert again == token  # the same rater keeps its token
    with pytest.raises(AppError):
        client.predict(token, 7, None, None, None, api_name="/rate_asset")
    with pytest.raises(AppError, match="at least one criterion"):
        client.predict(token, None, None, None, None, api_name="/rate_asset")
    forged, _ = client.predict("anon-likert1", 2, None, None, None, api_name="/rate_asset")
    assert forged != "anon-likert1", "an id the client made up is never used: it gets a fresh server-issued one"
    rows = study.store.read("SELECT rater, criterion, score FROM ratings ORDER BY id")[before:]
    assert [tuple(r) for r in rows[:3]] == [(rater, "geometry", 4), (rater, "overall", 5), (rater, "geometry", 3)]
    assert rows[3][0] == forged.rpartition(".")[0] and "anon-likert1" not in {r[0] for r in rows}


def test_rater_ids(monkeypatch: pytest.MonkeyPatch):
    from ui import arena

    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("TRILEMMA_HF_LOGIN", "1")
    assert not arena.hf_login_enabled()  # only on a Space
    monkeypatch.setenv("SPACE_ID", "someone/trilemma3d")
    assert arena.hf_login_enabled()
    monkeypatch.setenv("TRILEMMA_HF_LOGIN", "0")
    assert not arena.hf_login_enabled()
    rater, token = arena.resolve_rater(None)
    assert rater.startswith("anon-") and token.startswith(rater + ".")
    assert arena.resolve_rater(token) == (rater, token)
    assert arena.resolve_rater("forged id with spaces")[0].startswith("anon-")
    assert arena.resolve_rater(rater)[0] != rater, "an unsigned id is not an identity"
    assert arena.resolve_rater(token, SimpleNamespace(username="ada"))[0] == "hf:ada"
