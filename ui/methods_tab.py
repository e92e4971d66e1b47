"""The Methods tab: a card per registered method with its declared data and whether it can run here."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from methods.registry import availability, get, ids
from ui import served

MODALITY_NAMES = {"text": "text", "image": "image", "video": "video / views"}


def method_cards() -> list[dict[str, Any]]:
    """Each method's spec plus ``available`` and ``reason`` (checked now: packages, GPU, weights)."""
    cards = []
    for mid in ids():
        method = get(mid)
        status = availability(method)
        cards.append({**method.spec(), "available": status.ok, "reason": served.redact(status.reason)})
    return cards


def _seconds(value: float) -> str:
    if not value:
        return "–"
    if value < 1:
        return "under 1 s"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


def _weights(card: dict[str, Any]) -> str:
    names = card.get("weights") or []
    if not names:
        return "none (procedural or trained here)"
    links = []
    for name in names:
        url = name if name.startswith(("http://", "https://")) else f"https://huggingface.co/{name}"
        links.append(f'<a href="{html.escape(url)}" target="_blank" rel="noopener">{html.escape(name)}</a>')
    size = f" ({card['weights_gb']:.1f} GB)" if card.get("weights_gb") else ""
    return ", ".join(links) + size


def card_html(card: dict[str, Any]) -> str:
    """One method card (all text escaped)."""
    e = html.escape
    ok = card["available"]
    badge = (
        '<span class="badge ok">available</span>' if ok else '<span class="badge no">unavailable</span>'
    ) + f' <span class="reason">{e(card["reason"])}</span>'
    paper = card.get("paper") or "paper"
    paper_link = (
        f'<a href="{e(card["paper_url"])}" target="_blank" rel="noopener">{e(paper)}</a>'
        if card.get("paper_url")
        else e(card.get("paper") or "–")
    )
    modalities = ", ".join(MODALITY_NAMES.get(m, m) for m in card["modalities"])
    rows = [
        ("input", e(modalities)),
        ("family", e(card["family"])),
        ("representation", e(card["representation"])),
        ("output", e(card["output"])),
        ("paper", paper_link),
        ("cost", f"{_seconds(card['seconds_gpu'])} on a GPU · {_seconds(card['seconds_cpu'])} on a CPU"),
        ("VRAM", f"{card['vram_gb']:.0f} GB" if card.get("vram_gb") else "–"),
        ("licence", e(card.get("licence") or "–")),
        ("weights", _weights(card)),
    ]
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<div class="method-card {"ok" if ok else "no"}">'
        f"<h3>{e(card['label'])} <code>{e(card['id'])}</code></h3>"
        f'<div class="availability">{badge}</div><dl>{body}</dl></div>'
    )


def cards_html(cards: list[dict[str, Any]] | None = None) -> str:
    cards = method_cards() if cards is None else cards
    if not cards:
        return '<p class="empty">No methods are registered yet.</p>'
    return '<div class="method-cards">' + "".join(card_html(c) for c in cards) + "</div>"


def build_methods_tab() -> gr.HTML:
    """Build the tab's contents in the current Blocks context (call inside ``gr.Tab``)."""
    gr.Markdown(
        "Every method the workbench knows, with what it takes, what it makes and what it costs. "
        "A method that cannot run here says why; it never disappears."
    )
    cards = gr.HTML(cards_html())
    refresh = gr.Button("Check availability again", size="sm", variant="secondary")
    refresh.click(cards_html, None, cards, api_visibility="private")
    return cards
