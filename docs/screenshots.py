"""Regenerate the screenshots in docs/screenshots/: the app at 1280x800 as a visitor sees it.

    python docs/screenshots.py [--out docs/screenshots] [--budget 30]

Starts the app on a free local port with a throw-away run store, drives it with Playwright and
Debian's Chromium (``apt-get install chromium``; ``pip install playwright``), and writes:

- ``text-four-slots.png``: the Text tab after *Generate* with the four methods ticked on a CPU
  (VAE, GAN, DDPM, score-SDE: the shipped weights, offline), their viewers and what the metrics saw;
- ``video-nerf-splats.png``: the Video tab on the bundled turntable views, NeRF and Gaussian
  splatting side by side (``--budget`` seconds of training each: minutes on a CPU in all);
- ``arena.png``: the Arena with a pair of those runs.

PNGs are written with an adaptive 256-colour palette to keep them small.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 800
PROMPT = "a tall blue lamp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_small(png: bytes, path: Path) -> None:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size // 1024} KB")


def wait_text(page, text: str, count: int = 1, timeout_s: float = 900) -> None:
    page.wait_for_function(
        f"document.body.innerText.split({text!r}).length - 1 >= {count}", timeout=int(timeout_s * 1000)
    )


def settle(page, seconds: float = 3.0) -> None:
    """Let the viewers load and draw (Babylon and the splat viewer animate their first frames)."""
    page.wait_for_timeout(int(seconds * 1000))


def text_tab(page, out: Path) -> None:
    page.get_by_role("tab", name="Text → 3D").click()
    page.locator('textarea[placeholder="a red ceramic coffee mug"]').fill(PROMPT)
    page.get_by_role("button", name="Generate").click()
    wait_text(page, "Done in", 4)
    page.wait_for_function(
        "[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent).length >= 4", timeout=60_000
    )
    page.locator(".result-slot:visible").first.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -170)")  # the method list's foot above the four slots
    settle(page)
    save_small(page.screenshot(), out / "text-four-slots.png")


def video_tab(page, out: Path, budget: float) -> None:
    page.get_by_role("tab", name="Video → 3D").click()
    panel = page.locator("div[role=tabpanel]:visible").first
    panel.get_by_text("turntable (24 views)").first.click()
    page.wait_for_function("document.body.innerText.includes('24 views')", timeout=60_000)
    for label in ("NeRF (video / multi-view) settings", "3D Gaussian Splatting (video / multi-view) settings"):
        panel.get_by_text(label).first.click()
    budgets = panel.get_by_label("Training budget (s)")
    for i in range(budgets.count()):
        field = budgets.nth(i)
        if field.is_visible() and field.get_attribute("type") == "number":
            field.fill(str(budget))
            field.press("Tab")
    for label in ("NeRF (video / multi-view) settings", "3D Gaussian Splatting (video / multi-view) settings"):
        panel.get_by_text(label).first.click()  # closed again: the slots sit higher on the page
    panel.get_by_role("button", name="Generate").click()
    wait_text(page, "Done in", 2, timeout_s=1800)
    page.wait_for_function(
        "[...document.querySelectorAll('.slot-renders')].filter(g => g.offsetParent).length >= 2", timeout=60_000
    )
    panel.locator(".result-slot:visible").first.scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -120)")
    settle(page, 5.0)
    save_small(page.screenshot(), out / "video-nerf-splats.png")


def arena(page, out: Path) -> None:
    page.get_by_role("tab", name="Arena").click()
    page.get_by_role("button", name="New pair").click()
    page.wait_for_function("document.body.innerText.includes('Vote (')", timeout=60_000)
    settle(page, 3.0)
    radios = page.locator("fieldset:visible").filter(has=page.locator("input[type=radio]"))
    for i in range(radios.count()):  # two of four answered: the button says what is left
        if i in (1, 2) and "left" in radios.nth(i).inner_text().lower():
            radios.nth(i).locator("label").filter(has_text="left").first.click()
    # the viewers, the questions and the Vote button (counting down) in the frame
    page.evaluate(
        "window.scrollTo(0, window.scrollY + 90"
        " + document.querySelector('#arena-new-pair').getBoundingClientRect().top)"
    )
    settle(page, 1.0)
    save_small(page.screenshot(), out / "arena.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--budget", type=float, default=30.0, help="training seconds for nerf and splats each")
    parser.add_argument("--only", choices=("text", "video", "arena"), action="append", help="some of the shots")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="trilemma-shots-"))
    os.environ.update(
        TRILEMMA_OUTPUTS=str(scratch / "outputs"),
        TRILEMMA_DB=str(scratch / "data" / "trilemma.db"),
        GRADIO_ANALYTICS_ENABLED="False",
        TRILEMMA_MIN_VIEW_SECONDS=os.environ.get("TRILEMMA_MIN_VIEW_SECONDS", "5"),
    )
    (scratch / "data").mkdir(parents=True)
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    import app

    demo = app.build_app()
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **app.launch_kwargs())
    shots = args.only or ["text", "video", "arena"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox", "--enable-unsafe-swiftshader"]
            )
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_role("tab", name="Text → 3D").wait_for()
            started = time.monotonic()
            if "text" in shots or "arena" in shots:
                text_tab(page, args.out)
            if "video" in shots:
                video_tab(page, args.out, args.budget)
            if "arena" in shots:
                arena(page, args.out)
            browser.close()
            print(f"done in {time.monotonic() - started:.0f} s")
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
