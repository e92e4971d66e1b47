"""The Arena tab: two anonymised assets for the same input side by side, one vote per criterion.

Also :func:`likert_row`, a 1-5 rating row for any asset (the modality tabs put one under each viewer).

Raters are ids only: an anonymous ``anon-<random>`` id that the server issues as a signed token
(``<id>.<HMAC>``, key from TRILEMMA_RATER_SECRET, else random per process) kept in the browser's
localStorage (``gr.BrowserState``), or ``hf:<user name>`` after Hugging Face sign-in, offered only on a
Space with TRILEMMA_HF_LOGIN=1. A token the server did not sign is never used as an identity: it gets a
fresh one (serving, rating) or the vote is refused. New identities and votes are also limited per
connection (the client address, counted in memory for the window only, never stored).
All the checks (pair served to this rater, minimum viewing time, one vote per pair, rate limits)
happen in :mod:`eval.ratings`, on the server; the UI only mirrors them. The assets shown are copies
without the glTF metadata (which names the method), under names derived from a per-process secret,
so neither the file nor its name tells which method made it; each serve makes a fresh copy whose bytes
(mesh buffers included) differ from the run's file and from every other copy (:func:`blind_copy`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from eval import ratings
from eval.judging.renders import input_files
from eval.ratings import CRITERIA, CRITERION_LABELS, LIKERT, Policy, RatingError
from eval.runs.store import Store
from ui import hosting
from ui.served import SERVED
from ui.viewer_asset import camera_for

log = logging.getLogger(__name__)

VIEW_MODES = ("Textured", "Textureless", "Wireframe")
ANSWER_CHOICES = [(label, key) for key, label in ratings.ANSWER_LABELS.items()]
ANY = "any"
RATER_STORAGE_KEY = "trilemma3d-rater"
# Callable by gradio_client (tests, scripts) but kept out of the API page, which lists the generation endpoints.
API_VISIBILITY = "undocumented"
# Both viewers get exactly these settings (assets are normalised to the unit sphere, +Y up).
VIEWER_SETTINGS: dict[str, Any] = {
    "height": 420,
    "clear_color": (0.94, 0.95, 0.97, 1.0),
    "camera_position": (45.0, 70.0, 3.2),
    "zoom_speed": 1.0,
    "pan_speed": 1.0,
    "interactive": False,
}
QUESTIONS = {
    "geometry": "Which shape is better: structure, detail, no holes or floaters?",
    "appearance": "Which looks better: texture, colour, shading?",
    "alignment": "Which matches the input better?",
    "overall": "Which one is better overall?",
}
_PROCESS_KEY = secrets.token_bytes(32)  # signs rater tokens when TRILEMMA_RATER_SECRET is not set
RATERS_PER_CONNECTION_HOUR = 20  # new anonymous identities one client address may get in an hour
VOTES_PER_CONNECTION_MINUTE = 20  # votes (and Likert submissions) from one client address in a minute


def hf_login_enabled() -> bool:
    """Hugging Face sign-in is offered only on a Space and only when TRILEMMA_HF_LOGIN=1."""
    return hosting.on_space() and os.environ.get("TRILEMMA_HF_LOGIN", "0").strip() == "1"


def rater_state() -> gr.BrowserState:
    """The per-browser rater id (localStorage); every tab that rates shares the same key."""
    secret = os.environ.get("TRILEMMA_RATER_SECRET", "trilemma3d-rater-id")
    return gr.BrowserState(None, storage_key=RATER_STORAGE_KEY, secret=secret)


def token_key() -> bytes:
    secret = os.environ.get("TRILEMMA_RATER_SECRET", "").strip()
    return hashlib.sha256(b"trilemma3d rater token:" + secret.encode()).digest() if secret else _PROCESS_KEY


class ConnectionLimits:
    """Sliding-window counts per client address and kind, in memory only (no address is ever stored)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._cohorts: dict[str, tuple[str, float]] = {}

    def allowed(self, kind: str, host: str | None, limit: int, window: float) -> bool:
        if not host or limit <= 0:
            return True
        with self._lock:
            hits = self._hits.setdefault((kind, host), deque())
            while hits and hits[0] < time.monotonic() - window:
                hits.popleft()
            return len(hits) < limit

    def record(self, kind: str, host: str | None) -> None:
        if host:
            with self._lock:
                self._hits.setdefault((kind, host), deque()).append(time.monotonic())

    def cohort(self, host: str | None, window: float = 3600) -> str:
        """A random tag shared by the rater ids one address is issued within ``window`` (the bias check
        judges them together); a new tag after that. Random: the address is never stored nor derivable."""
        if not host:
            return ""
        with self._lock:
            if len(self._cohorts) > 10000:  # forget the addresses whose hour is over
                now = time.monotonic()
                self._cohorts = {h: c for h, c in self._cohorts.items() if now - c[1] <= window}
            tag, since = self._cohorts.get(host, ("", 0.0))
            if not tag or time.monotonic() - since > window:
                tag, since = secrets.token_hex(6), time.monotonic()
                self._cohorts[host] = (tag, since)
            return tag


CONNECTIONS = ConnectionLimits()


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def connection(request: Any) -> str | None:
    return hosting.client_address(request)


def resolve_rater(
    token: Any, profile: gr.OAuthProfile | None = None, request: Any = None, *, issue: bool = True
) -> tuple[str, str]:
    """``(rater, token)``: the signed-in ``hf:`` id, else the id this server signed into ``token``.

    Without a valid token a new one is issued (``issue``; at most TRILEMMA_RATERS_PER_CONNECTION an hour
    per client address), or, where a vote needs the identity a pair was served to, RatingError.
    """
    key = token_key()
    rater = ratings.token_rater(token, key)
    if rater is None:
        if not issue:
            raise RatingError("your rater token was not issued by this server; press New pair to get one")
        host = connection(request)
        limit = _env_limit("TRILEMMA_RATERS_PER_CONNECTION", RATERS_PER_CONNECTION_HOUR)
        if not CONNECTIONS.allowed("rater", host, limit, 3600):
            raise ratings.RateLimited("too many new raters from this connection; try again in an hour")
        CONNECTIONS.record("rater", host)
        token = ratings.issue_token(key, ratings.new_rater_id(CONNECTIONS.cohort(host)))
        rater = ratings.token_rater(token, key)
    username = getattr(profile, "username", None) if profile is not None else None
    return (ratings.hf_rater_id(username) if username else rater), token


def count_vote(request: Any, kind: str = "vote") -> None:
    """Refuse a vote or rating beyond TRILEMMA_VOTES_PER_CONNECTION a minute from one client address."""
    limit = _env_limit("TRILEMMA_VOTES_PER_CONNECTION", VOTES_PER_CONNECTION_MINUTE)
    if not CONNECTIONS.allowed(kind, connection(request), limit, 60):
        raise ratings.RateLimited("too many votes from this connection: take your time")


# ----------------------------------------------------------------------------- viewer files


def viewer_file(run: dict[str, Any], mode: str = "Textured", cache_dir: str | Path | None = None) -> str:
    """A fresh anonymised copy of a run's .glb for one serve (textureless: colours, UVs and materials removed).

    Every serve writes a new copy that differs byte-wise from the run's own file and from every other copy
    (:func:`blind_copy`): hashing the file or its mesh buffers matches it to nothing the Runs tab shows.
    Copies older than ``COPY_RETENTION_S`` are removed as new ones are made.
    """
    if mode not in VIEW_MODES:
        raise ValueError(f"mode must be one of {VIEW_MODES}")
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir()) / "trilemma3d-arena"
    _prune(root)
    out = root / secrets.token_hex(12) / "asset.glb"
    blind_copy(run["asset_path"], out, textureless=mode != "Textured")
    return str(out)


COPY_RETENTION_S = 3600  # a served copy is needed while its page is open; an hour is plenty


def _prune(root: Path) -> None:
    if not root.is_dir():
        return
    cutoff = time.time() - COPY_RETENTION_S
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                for file in folder.iterdir():
                    file.unlink(missing_ok=True)
                folder.rmdir()
        except OSError:  # another worker pruned it first
            continue


def blind_copy(src: str | Path, dst: str | Path, *, textureless: bool = False, rng: Any = None) -> Path:
    """An anonymised copy of a .glb (:func:`anonymise_glb`) with the same geometry in a fresh random order:
    vertices permuted (faces re-indexed, colours and UVs carried along), faces permuted and each triangle's
    corners rotated (its winding kept), and a random nonce in the asset's extras. So the file, its JSON and
    its buffers differ on every serve while what the viewer draws does not."""
    import numpy as np
    import trimesh

    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(64))
    scene = trimesh.load(str(src), force="scene")
    for name, geometry in list(scene.geometry.items()):
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces):
            perm = rng.permutation(len(geometry.vertices))
            inverse = np.argsort(perm)
            faces = inverse[geometry.faces][rng.permutation(len(geometry.faces))]
            turn = rng.integers(0, 3, len(faces))
            faces = np.take_along_axis(faces, (np.arange(3)[None, :] + turn[:, None]) % 3, axis=1)
            visual = geometry.visual.copy()
            if getattr(visual, "kind", None) == "vertex":
                visual.vertex_colors = visual.vertex_colors[perm]
            elif getattr(visual, "uv", None) is not None and len(visual.uv) == len(perm):
                visual.uv = visual.uv[perm]
            scene.geometry[name] = trimesh.Trimesh(
                geometry.vertices[perm], faces, visual=visual, process=False, maintain_order=True
            )
        elif isinstance(geometry, trimesh.PointCloud) and len(geometry.vertices):
            perm = rng.permutation(len(geometry.vertices))
            colors = geometry.colors
            scene.geometry[name] = trimesh.PointCloud(
                geometry.vertices[perm], colors=colors[perm] if len(colors) == len(perm) else None
            )
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shuffled = dst.with_suffix(f".{secrets.token_hex(4)}.shuffled.glb")
    shuffled.write_bytes(scene.export(file_type="glb"))
    try:
        anonymise_glb(shuffled, dst, textureless=textureless, nonce=secrets.token_hex(16))
    finally:
        shuffled.unlink(missing_ok=True)
    return dst


def anonymise_glb(src: str | Path, dst: str | Path, *, textureless: bool = False, nonce: str = "") -> Path:
    """Copy a .glb without extras, names or generator (which name the run and method); optionally grey.
    ``nonce`` goes into the asset's extras (a served copy's own random id)."""
    from pygltflib import GLTF2

    gltf = GLTF2().load(str(src))
    gltf.asset.extras = {"copy": nonce} if nonce else {}
    gltf.asset.generator = "Trilemma3D"
    gltf.extras = {}
    for collection in (gltf.scenes, gltf.nodes, gltf.meshes, gltf.materials, gltf.images, gltf.textures):
        for item in collection:
            item.extras = {}
            if hasattr(item, "name"):
                item.name = None
    if textureless:
        for mesh in gltf.meshes:
            for primitive in mesh.primitives:
                primitive.attributes.COLOR_0 = None
                primitive.attributes.TEXCOORD_0 = None
                primitive.attributes.TEXCOORD_1 = None
                primitive.material = None
        gltf.materials, gltf.textures, gltf.images, gltf.samplers = [], [], [], []
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(f".{secrets.token_hex(4)}.tmp")
    gltf.save_binary(str(tmp))
    tmp.replace(dst)
    return dst


def input_image(run: dict[str, Any]) -> str | None:
    """The input the runner kept beside the run's asset (the image, or the first of the views' thumbnails),
    or an older run's ``input.png`` ...; None for a prompt."""
    folder = Path(run["asset_path"]).parent
    kept = input_files(folder)
    if kept:
        return kept[0]
    for name in ("input.png", "input.webp", "input.jpg", "input.jpeg"):
        if (folder / name).is_file():
            return str(folder / name)
    return None


def method_label(method_id: str) -> str:
    try:
        import methods

        return methods.get(method_id).label
    except Exception:  # a method that is no longer registered (restored votes, removed code) keeps its id
        return method_id


# ----------------------------------------------------------------------------- the tab


@dataclass
class ArenaTab:
    """The Arena tab's components (tests and app.py reach them through this)."""

    rater: gr.BrowserState
    pair: gr.State
    modality: gr.Dropdown
    prompt_set: gr.Dropdown
    view: gr.Radio
    new_pair: gr.Button
    prompt: gr.Textbox
    image: gr.Image
    left: gr.Model3D
    right: gr.Model3D
    questions: dict[str, gr.Radio]
    vote: gr.Button
    status: gr.Markdown
    reveal: gr.Markdown
    timer: gr.Timer
    login: gr.LoginButton | None


def vote_button(state: dict | None, wait_left: float, answers: Any) -> Any:
    """The Vote button's update: enabled only for a shown, unvoted pair, once the viewing time has passed
    (counting down on the button) and every question has an answer (the button says how many are left)."""
    if not state or state.get("voted"):
        return gr.update(value="Vote", interactive=False)
    if wait_left > 0:
        return gr.update(value=f"Vote (look for {math.ceil(wait_left)} s more)", interactive=False)
    missing = sum(1 for a in answers if not a)
    if missing:
        return gr.update(value=f"Vote (answer {missing} more question{'s' if missing > 1 else ''})", interactive=False)
    return gr.update(value="Vote", interactive=True)


def build_arena_tab(store: Store | None = None, policy: Policy | None = None) -> ArenaTab:
    """Build the Arena in the current Blocks context (call inside ``gr.Tab``).

    API: ``/arena_new_pair`` (rater id, modality, prompt set, view) and ``/arena_vote`` (rater id and
    one answer per criterion: left | right | tie | both_bad), ``/arena_view`` (view mode).
    """
    stores: list[Store] = [store] if store is not None else []

    def get_store() -> Store:
        if not stores:
            stores.append(Store())
        return stores[0]

    def get_policy() -> Policy:
        return policy or Policy.from_env()

    start_sync(get_store)
    gr.Markdown(
        "Two models made from the **same input** by two different methods, shown without their names. "
        "Turn them around, then answer each question: *left*, *right*, *tie* or *both bad*. "
        "The methods are revealed after your vote."
    )
    login = gr.LoginButton() if hf_login_enabled() else None
    rater = rater_state()
    pair = gr.State(None)  # server side: the served pair, including which method is where
    with gr.Row():
        modality = gr.Dropdown([ANY, "text", "image", "video"], value=ANY, label="Input kind", scale=1)
        prompt_set = gr.Dropdown([ANY, *ratings.prompt_sets()], value=ANY, label="Prompt set", scale=1)
        view = gr.Radio(list(VIEW_MODES), value=VIEW_MODES[0], label="View (both sides)", scale=2)
        new_pair = gr.Button("New pair", variant="secondary", scale=1, elem_id="arena-new-pair")
    with gr.Row(equal_height=False):
        prompt = gr.Textbox(label="Input", interactive=False, lines=1, max_lines=3, scale=3)
        image = gr.Image(label="Input image", interactive=False, visible=False, height=160, scale=1)
    with gr.Row(equal_height=True):
        left = gr.Model3D(label="Left", **VIEWER_SETTINGS)
        right = gr.Model3D(label="Right", **VIEWER_SETTINGS)
    questions = {}
    with gr.Row():
        for criterion in CRITERIA:
            questions[criterion] = gr.Radio(
                ANSWER_CHOICES, label=CRITERION_LABELS[criterion], info=QUESTIONS[criterion], min_width=200
            )
    vote = gr.Button("Vote", variant="primary", interactive=False)
    status = gr.Markdown("Press **New pair** to start.")
    reveal = gr.Markdown()
    timer = gr.Timer(0.5, active=False)

    def serve(
        browser_id: Any,
        kind: str,
        pset: str,
        mode: str,
        profile: gr.OAuthProfile | None = None,
        request: gr.Request = None,
    ) -> tuple[Any, ...]:
        clear = [gr.update(value=None) for _ in CRITERIA]
        anon = browser_id if isinstance(browser_id, str) else None
        try:
            who, anon = resolve_rater(browser_id, profile, request)
            served = ratings.serve_pair(
                get_store(),
                who,
                modality=None if kind in (ANY, None, "") else kind,
                prompt_set=None if pset in (ANY, None, "") else pset,
                policy=get_policy(),
            )
        except RatingError as exc:
            return (
                anon,
                None,
                None,
                None,
                "",
                gr.update(value=None, visible=False),
                f"**{exc}**",
                "",
                gr.update(interactive=False),
                gr.Timer(active=False),
                *clear,
            )
        state = {
            "id": served.id,
            "rater": who,
            "served_at": served.served_at,
            "left": served.left,
            "right": served.right,
            "voted": False,
        }
        img = input_image(served.left) if served.modality in ("image", "video") else None
        SERVED.publish(img)  # the input image next to the run's asset
        wait = get_policy().min_view_seconds
        note = f"Look at both for at least {wait:g} s, then vote." if wait > 0 else "Vote when you are ready."
        return (
            anon,
            state,
            *_viewer_updates(state, mode),
            f"{served.modality}: {served.input_label}",
            gr.update(value=img, visible=img is not None),
            note,
            "",
            vote_button(state, wait, [None] * len(CRITERIA)),
            gr.Timer(active=wait > 0),
            *clear,
        )

    def tick(state: dict | None, *answers: str | None) -> tuple[Any, Any]:
        """The Vote button while a pair is shown: the viewing time counting down on it, then what is missing."""
        left_s = get_policy().min_view_seconds - (time.time() - state["served_at"]) if state else 0.0
        return vote_button(state, left_s, answers), gr.Timer(active=bool(state) and left_s > 0)

    def on_answer(state: dict | None, *answers: str | None) -> Any:
        left_s = get_policy().min_view_seconds - (time.time() - state["served_at"]) if state else 0.0
        return vote_button(state, left_s, answers)

    def change_view(state: dict | None, mode: str) -> tuple[Any, Any]:
        if not state:
            return None, None
        return _viewer_updates(state, mode)

    def cast(
        browser_id: Any,
        state: dict | None,
        geometry: str | None,
        appearance: str | None,
        alignment: str | None,
        overall: str | None,
        profile: gr.OAuthProfile | None = None,
        request: gr.Request = None,
    ):
        if not state:
            raise gr.Error("No pair is being shown: press New pair first.", print_exception=False)
        answers = {"geometry": geometry, "appearance": appearance, "alignment": alignment, "overall": overall}
        try:
            who, anon = resolve_rater(browser_id, profile, request, issue=False)
            count_vote(request)
            result = ratings.vote(get_store(), state["id"], who, answers, policy=get_policy())
        except RatingError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        CONNECTIONS.record("vote", connection(request))
        _sync_vote(get_store(), result.vote_id)
        state = {**state, "voted": True}
        text = (
            f"**Left** was **{method_label(result.left_method)}** (`{result.left_run}`) · "
            f"**Right** was **{method_label(result.right_method)}** (`{result.right_run}`)"
        )
        return (
            anon,
            state,
            "Thank you, your vote is saved. Press **New pair** for another.",
            text,
            gr.update(value="Vote", interactive=False),
            gr.Timer(active=False),
        )

    serve_outputs = [rater, pair, left, right, prompt, image, status, reveal, vote, timer, *questions.values()]
    new_pair.click(
        serve,
        [rater, modality, prompt_set, view],
        serve_outputs,
        api_name="arena_new_pair",
        api_visibility=API_VISIBILITY,
    )
    view.change(change_view, [pair, view], [left, right], api_name="arena_view", api_visibility=API_VISIBILITY)
    timer.tick(
        tick, [pair, *questions.values()], [vote, timer], api_visibility="private", queue=False, show_progress="hidden"
    )
    for question in questions.values():
        question.change(
            on_answer, [pair, *questions.values()], vote, api_visibility="private", queue=False, show_progress="hidden"
        )
    vote.click(
        cast,
        [rater, pair, *questions.values()],
        [rater, pair, status, reveal, vote, timer],
        api_name="arena_vote",
        api_visibility=API_VISIBILITY,
    )
    return ArenaTab(
        rater,
        pair,
        modality,
        prompt_set,
        view,
        new_pair,
        prompt,
        image,
        left,
        right,
        questions,
        vote,
        status,
        reveal,
        timer,
        login,
    )


def _viewer_updates(state: dict[str, Any], mode: str) -> tuple[Any, Any]:
    """The same view settings for both sides; a pair whose assets cannot be read is a clear error."""
    display = "wireframe" if mode == "Wireframe" else "solid"
    try:
        files = [viewer_file(state[side], mode if mode in VIEW_MODES else VIEW_MODES[0]) for side in ("left", "right")]
    except Exception as exc:  # a missing or corrupt .glb: the next New pair offers another pair
        log.warning("cannot show pair %s: %s: %s", state.get("id"), type(exc).__name__, exc)
        message = "The models of this pair cannot be opened; press New pair for another."
        raise gr.Error(message, print_exception=False) from None
    return tuple(gr.update(value=f, display_mode=display, **camera_for(f)) for f in files)  # type: ignore[return-value]


def start_sync(get_store: Callable[[], Store]) -> None:
    """With a Hub dataset configured, restore its votes and start pushing now, not at the first vote."""
    from eval.ratings import sync as ratings_sync

    if ratings_sync.SyncConfig.from_env() is not None:
        ratings_sync.for_database(str(get_store().path))


def _sync_vote(store: Store, vote_id: int) -> None:
    from eval.ratings import sync as ratings_sync

    try:
        sync = ratings_sync.for_database(str(store.path))
        if sync is not None:
            sync.record_vote(store, vote_id)
    except Exception as exc:  # the vote is in the store; the Hub copy catches up with the next one
        log.warning("could not queue vote %s for the Hub: %s", vote_id, exc)


def _sync_ratings(store: Store, rating_ids: list[int]) -> None:
    from eval.ratings import sync as ratings_sync

    try:
        sync = ratings_sync.for_database(str(store.path))
        if sync is not None:
            sync.record_ratings(store, rating_ids)
    except Exception as exc:
        log.warning("could not queue ratings for the Hub: %s", exc)


# ----------------------------------------------------------------------------- Likert


@dataclass
class LikertRow:
    """A 1-5 rating per criterion for the asset whose run id is in ``run_id``."""

    scores: dict[str, gr.Radio]
    submit: gr.Button
    status: gr.Markdown
    rater: gr.BrowserState


def likert_row(
    run_id: gr.State,
    *,
    store: Store | None = None,
    policy: Policy | None = None,
    rater: gr.BrowserState | None = None,
    api_name: str | None = None,
) -> LikertRow:
    """A compact row of 1-5 ratings (geometry, appearance, alignment, overall) and a Rate button.

    Put it right under a viewer; ``run_id`` is a ``gr.State`` holding the shown asset's run id (or a
    run record dict with an ``id``). The scores clear when the run id changes. ``api_name`` names the
    endpoint (give each row its own, e.g. ``rate_text_0``; undocumented like the arena's); without it the
    endpoint is private.
    """
    stores: list[Store] = [store] if store is not None else []

    def get_store() -> Store:
        if not stores:
            stores.append(Store())
        return stores[0]

    rater = rater if rater is not None else rater_state()
    scores = {}
    with gr.Row(equal_height=True, elem_classes=["likert-row"]):
        for criterion in CRITERIA:
            scores[criterion] = gr.Radio(list(LIKERT), label=f"{CRITERION_LABELS[criterion]} (1-5)", min_width=150)
        submit = gr.Button("Rate", size="sm", min_width=80, scale=0)
    status = gr.Markdown(elem_classes=["slot-status"])

    def submit_scores(
        browser_id: Any,
        current: Any,
        geometry: int | None,
        appearance: int | None,
        alignment: int | None,
        overall: int | None,
        profile: gr.OAuthProfile | None = None,
        request: gr.Request = None,
    ):
        run = current.get("id") if isinstance(current, dict) else current
        if not run:
            raise gr.Error("There is no asset to rate yet: generate one first.", print_exception=False)
        scores = {"geometry": geometry, "appearance": appearance, "alignment": alignment, "overall": overall}
        try:
            who, anon = resolve_rater(browser_id, profile, request)
            count_vote(request, "rating")
            ids = ratings.rate(get_store(), str(run), who, scores, policy=policy or Policy.from_env())
        except RatingError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        CONNECTIONS.record("rating", connection(request))
        _sync_ratings(get_store(), ids)
        return anon, f"Saved {len(ids)} rating{'s' * (len(ids) != 1)}, thank you."

    visibility = API_VISIBILITY if api_name else "private"
    submit.click(
        submit_scores, [rater, run_id, *scores.values()], [rater, status], api_name=api_name, api_visibility=visibility
    )
    run_id.change(
        lambda _: [*(gr.update(value=None) for _ in CRITERIA), ""],
        [run_id],
        [*scores.values(), status],
        api_visibility="private",
        queue=False,
    )
    return LikertRow(scores, submit, status, rater)
