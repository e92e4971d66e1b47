"""The page in a real browser: Debian's headless Chromium renders the app's tabs and a non-blank screenshot.

Skipped where chromium is not installed. The screenshot is kept at
``$TRILEMMA_SCREENSHOT_DIR/app.png`` when that variable is set (else in pytest's tmp folder).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image, ImageStat

pytest_plugins = ["tests.conftest_app"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed"),
]

TAB_LABELS = ("Text → 3D", "Image → 3D", "Video → 3D", "Methods")
VIRTUAL_TIME_MS = 20_000  # page time Chromium simulates before dumping: enough for gradio to fetch config and render
TIMEOUT_S = 120


def chromium_flags(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-unsafe-swiftshader",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
    ]


def chromium(args: list[str], profile: Path, url: str) -> subprocess.CompletedProcess:
    command = ["chromium", *chromium_flags(profile), f"--virtual-time-budget={VIRTUAL_TIME_MS}", *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture()
def profile(tmp_path: Path) -> Path:
    folder = tmp_path / "chromium-profile"
    folder.mkdir()
    return folder


def test_page_renders_its_tabs(app_server, profile):
    proc = chromium(["--dump-dom"], profile, app_server.url)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    missing = [label for label in TAB_LABELS if label not in dom]
    assert not missing, f"tabs missing from the rendered page: {missing}"
    assert "Trilemma3D" in dom and "Generate" in dom


def test_screenshot_is_not_blank(app_server, profile, tmp_path):
    out_dir = Path(os.environ.get("TRILEMMA_SCREENSHOT_DIR") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "app.png"
    png.unlink(missing_ok=True)
    proc = chromium([f"--screenshot={png}"], profile, app_server.url)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 1000)
    spread = ImageStat.Stat(image.convert("L")).stddev[0]
    colours = len(image.getcolors(maxcolors=1 << 20) or [])
    assert spread > 10 and colours > 50, f"the screenshot looks blank (grey stddev {spread:.1f}, {colours} colours)"


# ----------------------------------------------------------------------------- driving the page


class DevTools:
    """The Chrome DevTools protocol over ``--remote-debugging-pipe`` (fds 3 and 4): no websocket library needed."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1000):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 carries its answers
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        flags = [f for f in chromium_flags(profile) if not f.startswith("--window-size")]
        self.proc = subprocess.Popen(
            ["chromium", *flags, f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire_fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{method} got no answer in {timeout} s")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.js(expression):
            if time.monotonic() > deadline:
                page = self.js("document.body.innerText") or ""
                raise TimeoutError(f"waited {timeout} s for: {expression}\npage text:\n{page[-3000:]}")
            time.sleep(0.25)

    def screenshot(self, path: Path, width: int, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self._to_browser)
        os.close(self._from_browser)


RENDERS_LOADED = """[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent !== null)
  .every(g => [...g.querySelectorAll('img')].length >= 16 && [...g.querySelectorAll('img')].every(i => i.complete
  && i.naturalWidth > 0)) && document.querySelectorAll('.slot-renders img').length >= 32"""
STRIP_COUNTS = """[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent !== null)
  .map(g => g.querySelectorAll('img').length)"""
SKIPS_WITH_REASON = """[...document.querySelectorAll("table.comparison-matrix td.matrix-skipped")]
  .filter(td => td.innerText === 'skipped' && td.title.length > 10).length"""
PROMPT_BOX = 'textarea[placeholder="a red ceramic coffee mug"]'
SET_PROMPT = (
    "(text) => { const box = document.querySelector(" + json.dumps(PROMPT_BOX) + ");"
    " box.value = text; box.dispatchEvent(new Event('input', {bubbles: true})); return box.value; }"
)
PICK_METHODS = """(wanted) => { const boxes = [...document.querySelectorAll('label')].filter(l =>
  l.offsetParent !== null && l.querySelector('input[type=checkbox]') && l.innerText.trim() !== 'Randomize seed');
  for (const l of boxes) { if (l.querySelector('input').checked !== wanted.includes(l.innerText.trim())) l.click(); }
  return boxes.filter(l => l.querySelector('input').checked).map(l => l.innerText.trim()); }"""
CLICK = """(text) => { const el = [...document.querySelectorAll('button, label')]
  .find(e => e.offsetParent !== null && e.innerText.trim() === text); if (el) el.click(); return !!el; }"""


def test_generate_in_the_browser(app_server, profile, tmp_path):
    """Type a prompt, tick two methods, press Generate: both slots finish and the panel fills."""
    browser = DevTools(profile)
    try:
        browser.open(app_server.url)
        browser.wait_for(f"!!document.querySelector('{PROMPT_BOX}')")
        # bad input first: the note under the button says why, and no output is marked as failed
        assert browser.js(f"({SET_PROMPT})('   ')") == "   "
        assert browser.js(f"({CLICK})('Generate')")
        browser.wait_for("document.body.innerText.includes('⚠️ the prompt is empty')", timeout=30)
        assert browser.js("document.body.innerText.includes('Error')") is False
        # a good run with two methods
        assert browser.js(f"({SET_PROMPT})('a red ceramic coffee mug')") == "a red ceramic coffee mug"
        wanted = ["Test sphere (~1 s)", "Test points (~1 s)"]  # each label says its expected time here
        picked = browser.js(f"({PICK_METHODS})({json.dumps(wanted)})")
        assert sorted(picked) == sorted(wanted)
        assert browser.js(f"({CLICK})('Generate')")
        browser.wait_for(
            "document.body.innerText.split('Done in').length - 1 >= 2 && document.body.innerText.includes('vertices')",
            timeout=90,
        )
        text = browser.js("document.body.innerText")
        assert "⚠️ the prompt is empty" not in text, "a good run clears the note"
        assert "seconds_total" in text and "Error" not in text
        browser.wait_for("document.querySelectorAll('canvas').length >= 2", timeout=30)  # a viewer per slot
        # under each viewer, the renders the metrics saw: 8 colour + 8 geometry ring thumbnails, served images
        browser.wait_for(RENDERS_LOADED, timeout=30)
        strips = browser.js(STRIP_COUNTS)
        assert len(strips) == 2 and all(n >= 16 for n in strips), strips
        # the comparison matrix: a column per method in slot order; CLIP (offline) skipped with its reason on hover
        header = browser.js("[...document.querySelectorAll('table.comparison-matrix thead th')].map(t => t.innerText)")
        assert header == ["metric", "Test sphere", "Test points"], header
        assert browser.js(SKIPS_WITH_REASON) >= 2
        out_dir = Path(os.environ.get("TRILEMMA_SCREENSHOT_DIR") or tmp_path)
        out_dir.mkdir(parents=True, exist_ok=True)
        time.sleep(2)  # let the viewers draw their first frames
        browser.screenshot(out_dir / "app_run.png", 1400, 1700)
    finally:
        browser.close()


CLICK_TAB = """(text) => { const tab = [...document.querySelectorAll('[role=tab]')]
  .find(e => e.innerText.trim() === text); if (tab) tab.click();
  return !!tab && tab.getAttribute('aria-selected') === 'true'; }"""
# gallery thumbnails load lazily: bring each strip into view, then every image must have loaded
STRIPS_IN_VIEW_LOADED = """(() => {
  const strips = [...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent !== null);
  strips.forEach(g => g.scrollIntoView());
  return strips.length >= 2 && strips.every(g => { const imgs = [...g.querySelectorAll('img')];
    return imgs.length >= 16 && imgs.every(i => i.complete && i.naturalWidth > 0); }); })()"""
TICK_RUNS = """(n) => { const group = [...document.querySelectorAll('label')].filter(l => l.offsetParent !== null
  && l.querySelector('input[type=checkbox]') && l.innerText.includes(' · ')).slice(0, n);
  group.forEach(l => { if (!l.querySelector('input').checked) l.click(); }); return group.length; }"""


def test_runs_tab_lists_and_compares_stored_runs(app_server, app_client, profile):
    """Runs written by a request are listed when the page opens; ticking two fills the viewers and matrix."""
    app_client.predict(
        "a small red mug", ["app-test-sphere", "app-test-points"], 0, False, "{}", api_name="/text_to_3d"
    )
    browser = DevTools(profile)
    try:
        browser.open(app_server.url)
        browser.wait_for(f"({CLICK_TAB})('Runs')")
        browser.wait_for("document.body.innerText.includes('a small red mug')", timeout=30)
        assert browser.js(f"({TICK_RUNS})(2)") == 2
        browser.wait_for("document.querySelectorAll('table.comparison-matrix thead th').length === 3", timeout=60)
        header = browser.js("[...document.querySelectorAll('table.comparison-matrix thead th')].map(t => t.innerText)")
        assert header[0] == "metric" and {h.split(" · ")[0] for h in header[1:]} == {
            "app-test-sphere",
            "app-test-points",
        }
        browser.wait_for(STRIPS_IN_VIEW_LOADED, timeout=60)  # the renders strip under each ticked run
        assert browser.js("document.querySelectorAll('canvas').length") >= 2
    finally:
        browser.close()
