"""The Methods tab: a card per registered method with its declared data and whether it can run here."""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from methods.registry import availability, get, ids
from ui import served

MODALITY_NAMES = {"text": "text", "image": "image", "video": "video / views"}


# The settings that set a run's cost, in the order a cost line names them, each as it reads there.
COST_SETTINGS: tuple[tuple[str, str], ...] = (
    ("model_size", "{} model"),
    ("num_inference_steps", "{:,} steps"),
    ("steps", "{:,} steps"),
    ("image_steps", "{:,} image steps"),
    ("upsample", "upsampler {}"),
    ("budget_seconds", "budget {:g} s"),
    ("resolution", "{} px renders"),
    ("max_image_size", "frames up to {} px"),
    ("max_frames", "up to {} frames"),
    ("frame_size", "{}³ decoding grid"),
    ("grid_size", "{}³ SDF grid"),
    ("grid_resolution", "{}³ field grid"),
    ("mc_resolution", "{}³ marching cubes"),
    ("mesh_resolution", "{}³ marching cubes"),
)


def cost_assumptions(settings: Any) -> str:
    """What a cost figure assumes: the cost-setting values of ``settings`` (the defaults), named the same way
    on every card; an automatic time budget says so."""
    parts = []
    for name, form in COST_SETTINGS:
        if not hasattr(settings, name):
            continue
        value = getattr(settings, name)
        if name == "budget_seconds" and not value:
            parts.append("the automatic time budget (whichever ends first: steps or budget)")
        elif isinstance(value, bool):
            parts.append(form.format("on" if value else "off"))
        else:
            parts.append(form.format(value))
    return ", ".join(parts) or "one sample, no setting changes its cost"


def method_cards() -> list[dict[str, Any]]:
    """Each method's spec plus ``available`` and ``reason`` (checked now: packages, GPU, weights), and its cost:
    the method's own estimate for its default settings on a GPU and on a CPU, with what that assumes."""
    cards = []
    for mid in ids():
        method = get(mid)
        status = availability(method)
        defaults = method.default_settings(method.modalities[0])
        gpu = float(method.estimate_seconds(defaults, gpu=True))
        cpu = float(method.estimate_seconds(defaults, gpu=False))
        assumes = f"{method.modalities[0]} input, default settings: {cost_assumptions(defaults)}"
        if hasattr(defaults, "budget_seconds") and not defaults.budget_seconds and cpu < gpu:
            assumes += "; a CPU gets a shorter budget, so it runs fewer steps and gives a rougher result"
        cost = {"cost_gpu": gpu, "cost_cpu": cpu, "cost_assumes": assumes}
        cards.append({**method.spec(), **cost, "available": status.ok, "reason": served.redact(status.reason)})
    return cards


def _seconds(value: float) -> str:
    if not value:
        return "–"
    if value < 1:
        return "1 s"
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


def _cost(card: dict[str, Any]) -> str:
    gpu, cpu = card.get("cost_gpu", card["seconds_gpu"]), card.get("cost_cpu", card["seconds_cpu"])
    line = f"~{_seconds(gpu)} on a GPU · ~{_seconds(cpu)} on a CPU"
    if card.get("cost_assumes"):
        line += f'<br><span class="assumes">for {html.escape(card["cost_assumes"])}</span>'
    return line


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
        ("cost", _cost(card)),
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
