"""What people see at four slots side by side, in a real browser (Playwright driving Debian's Chromium).

One app server for the module, the procedural test methods plus a tall and a flat box (instant, no
weights); each check drives the page as a visitor would and reads what the browser drew. Skipped where
chromium or the playwright package is missing.
"""

from __future__ import annotations

import io
import json
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from methods.registry import register, unregister
from tests.conftest_app import AppTestSphere

pytest_plugins = ["tests.conftest_app"]
playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed"),
]

WIDTH, HEIGHT = 1280, 800
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-swiftshader"]
# the text of every visible Strengths table (a gradio Dataframe: a header table, then the body's cells)
STRENGTH_TEXT = """() => [...document.querySelectorAll('table.header-table')]
  .filter(t => t.offsetParent && t.innerText.includes('95% low')).map(t => t.closest('.block').innerText)"""
STRENGTH_COLUMNS = 10  # rank, method, Elo, 95% low, 95% high, votes, wins, losses, ties, both bad


def strength_rows(texts: list[str]) -> list[list[str]]:
    rows = []
    for text in texts:
        cells = [c.strip() for c in text.splitlines() if c.strip()]
        body = cells[cells.index("both bad") + 1 :]
        rows += [body[k : k + STRENGTH_COLUMNS] for k in range(0, len(body) - STRENGTH_COLUMNS + 1, STRENGTH_COLUMNS)]
    return rows


HIDE_OVERLAYS = "[data-testid=block-label], .icon-button-wrapper { display: none !important; }"
BACKGROUND = np.array([0.94, 0.95, 0.97]) * 255  # the slots' clear colour (ui.generate)


class AppTestTall(AppTestSphere):
    """A box four times taller than it is wide (a lamp, a chair's back)."""

    id = "app-test-tall"
    label = "Test tall"

    def run(self, inputs, settings):
        import trimesh

        yield from ()
        shape = trimesh.creation.box(extents=(0.3, 1.6, 0.3))
        return self.asset(shape, np.tile([0.8, 0.2, 0.2], (len(shape.vertices), 1)))


class AppTestFlat(AppTestSphere):
    """A wide, thin slab (a plate, a table top)."""

    id = "app-test-flat"
    label = "Test flat"

    def run(self, inputs, settings):
        import trimesh

        yield from ()
        shape = trimesh.creation.box(extents=(1.6, 0.12, 0.9))
        return self.asset(shape, np.tile([0.2, 0.3, 0.8], (len(shape.vertices), 1)))


class AppTestSplats(AppTestSphere):
    """A tall column of Gaussian splats, red above and blue below, off the origin (+Y up, as every asset)."""

    id = "app-test-splats"
    label = "Test splats"
    representation = "gaussian splats"
    output = "splats"

    def run(self, inputs, settings):
        from methods.base import Asset, Gaussians

        yield from ()
        rng = np.random.default_rng(0)
        n = 600
        means = rng.uniform([-0.15, -1.5, -0.15], [0.15, 1.5, 0.15], (n, 3)) + [3.0, 2.0, -1.0]
        rgb = np.where(means[:, 1:2] > 2.0, [0.9, 0.1, 0.1], [0.1, 0.2, 0.9])
        sh = ((rgb - 0.5) / 0.28209479)[:, None, :]
        gaussians = Gaussians(
            means.astype(np.float32),
            np.full((n, 3), np.log(0.06), np.float32),
            np.tile(np.array([1.0, 0.0, 0.0, 0.0], np.float32), (n, 1)),
            np.full(n, 4.0, np.float32),
            sh.astype(np.float32),
        )
        return Asset(gaussians=gaussians, stage_seconds={"sample": 0.01})


SHAPES = (AppTestTall, AppTestFlat, AppTestSplats)
FOUR = ["Test sphere (~1 s)", "Test points (~1 s)", "Test tall (~1 s)", "Test flat (~1 s)"]


@pytest.fixture(scope="module")
def shapes():
    for cls in SHAPES:
        register(cls)
    yield
    for cls in SHAPES:
        unregister(cls.id)


@pytest.fixture(scope="module")
def server(shapes, app_server):  # the shapes are registered before the app is built
    return app_server


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chrome = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--enable-unsafe-swiftshader"]
        )
        yield chrome
        chrome.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.get_by_role("tab", name="Text → 3D").wait_for()
    yield page
    context.close()


def text_tab(page):
    return page.locator("div[role=tabpanel]:visible").first


def pick(page, labels: list[str]) -> None:
    """Tick exactly ``labels`` in the visible method list."""
    boxes = page.locator("label:visible:has(input[type=checkbox])")
    for i in range(boxes.count()):
        label = boxes.nth(i)
        name = label.inner_text().strip()
        if name in ("Randomize seed",) or "Run slow methods" in name:
            continue
        if label.locator("input").is_checked() != (name in labels):
            label.click()


def generate(page, prompt: str, labels: list[str]) -> None:
    page.locator('textarea[placeholder="a red ceramic coffee mug"]').fill(prompt)
    pick(page, labels)
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function(f"document.body.innerText.split('Done in').length - 1 >= {len(labels)}", timeout=120_000)


# ----------------------------------------------------------------------------- method choice


def test_each_method_is_listed_once_and_an_unavailable_one_cannot_be_ticked(page):
    tab = text_tab(page)
    text = tab.inner_text()
    assert text.count("Test unavailable") == 1, "listed once, with its reason"
    assert "trilemma_no_such_package" in text
    boxes = [t.strip() for t in tab.locator("label:has(input[type=checkbox])").all_inner_texts()]
    assert not [b for b in boxes if "Test unavailable" in b], boxes  # not a checkbox: it cannot be ticked
    assert "Test sphere (~1 s)" in boxes


# ----------------------------------------------------------------------------- four slots


def canvas_pixels(page, canvas) -> np.ndarray:
    """What the viewer drew, the overlays (label, toolbar) hidden."""
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB"), dtype=np.float64)


def settled_pixels(page, canvas, drawn, guard_s: float = 180.0) -> np.ndarray:
    """The canvas once it has drawn something and two frames half a second apart agree (the viewers load,
    sort and ease their cameras over several frames; how long depends on the machine, so poll, not sleep).
    ``guard_s`` only keeps a broken page from hanging the suite."""
    deadline, last = time.monotonic() + guard_s, None
    while True:
        pixels = canvas_pixels(page, canvas)
        if last is not None and drawn(pixels) and np.abs(pixels - last).max() <= 8:
            return pixels
        if time.monotonic() > deadline:
            return pixels
        last = pixels
        page.wait_for_timeout(500)


def _drawn_on_background(pixels: np.ndarray) -> bool:
    return bool((np.abs(pixels - BACKGROUND).max(axis=2) > 24).any())


def _drawn_on_black(pixels: np.ndarray) -> bool:
    return bool((pixels[6:-6, 6:-6].max(axis=2) > 40).any())


def object_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) margins in px between the frame's edges and the pixels that are not background."""
    mask = np.abs(pixels - BACKGROUND).max(axis=2) > 24
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert len(rows) and len(cols), "the viewer drew nothing"
    h, w = mask.shape
    return int(rows[0]), int(h - 1 - rows[-1]), int(cols[0]), int(w - 1 - cols[-1])


def test_four_slots_renders_strip_viewers_and_the_empty_matrix(page, tmp_path):
    generate(page, "a red ceramic coffee mug", FOUR)
    slots = page.locator(".result-slot:visible")
    assert slots.count() == 4

    # what the metrics saw: thumbnails visible (not under the label) and at least 96 px, at four slots
    page.wait_for_function(
        "[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent !== null).length === 4"
    )
    strips = page.locator(".slot-renders:visible")
    strips.nth(0).scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "strips.png"))
    for i in range(4):
        first = strips.nth(i).locator("img").first
        first.wait_for()
        first.scroll_into_view_if_needed()
        box = first.bounding_box()
        assert box["width"] >= 96 and box["height"] >= 96, box
        centre = page.evaluate(
            "([x, y]) => { const e = document.elementFromPoint(x, y); return e && e.tagName; }",
            [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
        )
        assert centre == "IMG", f"slot {i + 1}: the thumbnail is covered by {centre}"
    # a thumbnail opens a large preview, not one inside the strip
    strips.nth(0).locator("img").first.click()
    preview = page.locator(".slot-renders .preview").first
    preview.wait_for()
    big = preview.bounding_box()
    assert big["width"] >= 0.6 * WIDTH and big["height"] >= 0.6 * HEIGHT, big
    page.keyboard.press("Escape")
    close = page.locator(
        ".slot-renders .preview button[aria-label='Close'], .slot-renders .preview button[title='Close']"
    )
    if page.locator(".slot-renders .preview").count() and close.count():
        close.first.click()

    # each viewer frames its asset whole: object pixels near the frame's edges in the tight direction, not beyond
    page.add_style_tag(content=HIDE_OVERLAYS)
    margins = {}
    for name in ("sphere", "points", "tall", "flat"):
        canvas = slots.filter(has_text=f"Test {name}").locator("canvas").first
        canvas.scroll_into_view_if_needed()
        canvas.wait_for()
        pixels = settled_pixels(page, canvas, _drawn_on_background)  # Babylon eases the camera in
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / f"viewer_{name}.png")
        margins[name] = (pixels.shape, object_box(pixels))
    for name in ("tall", "flat"):
        (h, w, _), (top, bottom, left, right) = margins[name]
        assert min(top, bottom, left, right) >= 2, f"{name}: the object touches the frame's edge {margins[name]}"
        # near the edges in its long direction (perspective makes the nearer end the tighter one)
        if name == "tall":
            assert min(top, bottom) <= 0.12 * h and max(top, bottom) <= 0.25 * h, margins[name]
        else:
            assert min(left, right) <= 0.12 * w and max(left, right) <= 0.25 * w, margins[name]

    page.screenshot(path=str(tmp_path / "four_slots.png"), full_page=True)


def test_the_matrix_says_why_it_is_empty(page):
    pick(page, ["Test sphere (~1 s)"])
    accordion = page.locator("button:visible, span:visible").filter(has_text="Test sphere settings").first
    if accordion.count():
        accordion.click()
    page.locator("label:visible:has(input[type=checkbox])").filter(has_text="Fail").first.click()
    page.locator('textarea[placeholder="a red ceramic coffee mug"]').fill("a blue mug")
    page.get_by_role("button", name="Generate").click()
    page.wait_for_function("document.body.innerText.includes('Failed:')", timeout=60_000)
    matrix = page.locator("table.comparison-matrix:visible").first
    matrix.wait_for()
    page.wait_for_function(
        "[...document.querySelectorAll('table.comparison-matrix')].some(t => t.innerText.includes('no metrics'))"
    )
    assert "appear here as each method finishes" not in matrix.inner_text()


# ----------------------------------------------------------------------------- arena and leaderboard


def test_arena_vote_waits_for_answers_and_the_viewing_time_then_the_leaderboard_holds_it(page, server):
    # pairs need two methods' runs of one input: the four-slot test made them; make sure on a fresh store too
    generate(page, "a green glass vase", ["Test sphere (~1 s)", "Test tall (~1 s)"])
    page.get_by_role("tab", name="Arena").click()
    page.get_by_role("button", name="New pair").click()
    vote = page.locator("button:visible").filter(has_text="Vote").first
    page.wait_for_function(
        "[...document.querySelectorAll('button')]"
        ".some(b => b.offsetParent && /Vote \\(look for \\d+ s more\\)/.test(b.innerText))"
    )
    assert vote.is_disabled(), "Vote is disabled while the viewing time counts down"
    # the countdown ends, but questions are unanswered: still disabled, and it says how many are left
    page.wait_for_function(
        "[...document.querySelectorAll('button')].some(b => b.offsetParent && b.innerText.includes('answer 4 more'))",
        timeout=60_000,
    )
    assert vote.is_disabled()
    radios = page.locator("fieldset:visible").filter(has=page.locator("input[type=radio]"))
    questions = [radios.nth(i) for i in range(radios.count()) if "left" in radios.nth(i).inner_text().lower()]
    assert len(questions) >= 4
    for q in questions[:3]:
        q.locator("label").filter(has_text="left").first.click()
    page.wait_for_function(
        "[...document.querySelectorAll('button')].some(b => b.offsetParent && b.innerText.includes('answer 1 more'))"
    )
    assert vote.is_disabled()
    questions[3].locator("label").filter(has_text="left").first.click()
    page.wait_for_function(
        "[...document.querySelectorAll('button')]"
        ".some(b => b.offsetParent && b.innerText.trim() === 'Vote' && !b.disabled)"
    )
    vote.click()
    page.wait_for_function("document.body.innerText.includes('your vote is saved')")

    # one vote: the estimate sits strictly inside its interval, and the page says the votes cannot rank yet
    page.get_by_role("tab", name="Leaderboard").click()
    refresh = page.get_by_role("button", name="Refresh")
    if refresh.count():
        refresh.first.click()
    page.wait_for_function("document.body.innerText.includes('cannot rank')", timeout=60_000)
    rows = strength_rows(page.evaluate(STRENGTH_TEXT))
    assert rows, "no strengths shown"
    for r in rows:
        elo, low, high = float(r[2]), float(r[3]), float(r[4])
        assert low < elo < high, json.dumps(r)


# ----------------------------------------------------------------------------- runs tab


def test_runs_tab_galleries_load_without_scrolling(page, server, app_client):
    app_client.predict(
        "a small red mug", ["app-test-sphere", "app-test-points"], 0, False, "{}", api_name="/text_to_3d"
    )
    page.reload()  # the Runs tab lists the store's runs when the page opens
    page.get_by_role("tab", name="Runs").click()
    page.wait_for_function("document.body.innerText.includes('a small red mug')", timeout=30_000)
    ticks = page.locator("label:visible:has(input[type=checkbox])").filter(has_text=" · ")
    for i in range(2):
        ticks.nth(i).click()
    page.wait_for_function(
        "[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent !== null).length >= 2",
        timeout=60_000,
    )
    # no scrolling: every thumbnail of the strips must load (lazy images below the fold never did)
    page.wait_for_function(
        """[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent !== null)
        .every(g => { const imgs = [...g.querySelectorAll('img')];
          return imgs.length >= 16 && imgs.every(i => i.complete && i.naturalWidth > 0); })""",
        timeout=60_000,
    )


def test_a_splat_is_framed_whole_and_upright(page, tmp_path):
    generate(page, "a red ceramic coffee mug", ["Test splats (~1 s)"])
    slot = page.locator(".result-slot:visible").filter(has_text="Test splats")
    canvas = slot.locator("canvas").first
    canvas.wait_for()
    canvas.scroll_into_view_if_needed()
    page.add_style_tag(content=HIDE_OVERLAYS)
    pixels = settled_pixels(page, canvas, _drawn_on_black)  # the splat viewer sorts and draws over a few frames
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "viewer_splats.png")
    pixels = pixels[6:-6, 6:-6]  # inside the canvas's rounded corners (the page shows there)
    mask = pixels.max(axis=2) > 40  # the splat viewer draws on black
    rows = np.flatnonzero(mask.any(axis=1))
    assert len(rows), "the splat viewer drew nothing"
    h = mask.shape[0]
    top, bottom = int(rows[0]), int(h - 1 - rows[-1])
    assert min(top, bottom) >= 2, (top, bottom)  # whole: not cut at the top or the bottom
    assert min(top, bottom) <= 0.15 * h and max(top, bottom) <= 0.3 * h, (top, bottom)  # and filling the height
    # upright: red above, blue below (the splat viewer draws +Y down; the viewer copy is turned for it)
    upper, lower = pixels[rows[0] : rows[0] + len(rows) // 3], pixels[rows[-1] - len(rows) // 3 : rows[-1]]
    upper_mask, lower_mask = mask[rows[0] : rows[0] + len(rows) // 3], mask[rows[-1] - len(rows) // 3 : rows[-1]]
    red_above = upper[upper_mask][:, 0].mean() - upper[upper_mask][:, 2].mean()
    blue_below = lower[lower_mask][:, 2].mean() - lower[lower_mask][:, 0].mean()
    assert red_above > 30 and blue_below > 30, (red_above, blue_below)
