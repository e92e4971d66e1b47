"""The look: one gradio theme, a little CSS and the header text. No external fonts are fetched."""

from __future__ import annotations

import gradio as gr

SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]

HEADER = """\
# Trilemma3D
Compare automatic 3D generation methods side by side. Give a **prompt**, an **image** or a **video**
(or several views), pick up to four methods and press **Generate**: each method's model appears in its own
viewer, and the metric panel fills in as each one finishes. Every run is recorded with its settings,
seed and hardware, so any number here can be reproduced. The **Methods** tab says what each method
is, what it costs, and why it cannot run here when it cannot.
"""

CSS = """
.gradio-container { max-width: 1480px !important; margin: 0 auto; }
#app-header h1 { margin-bottom: 0.2em; }
#app-header p { color: var(--body-text-color-subdued); max-width: 980px; }
.input-note p { font-size: var(--text-sm); color: var(--body-text-color-subdued); margin: 0; }
.notice { background: #fef3c7; border: 1px solid #f59e0b; border-radius: var(--radius-md); padding: 4px 10px; }
.notice p { color: #92400e; margin: 0; }
.slot-status p { font-size: var(--text-sm); margin: 0.2em 0; min-height: 1.4em; }
.method-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; }
.method-card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 12px 16px; background: var(--block-background-fill); }
.method-card.no { opacity: 0.85; border-style: dashed; }
.method-card h3 { margin: 0 0 6px 0; font-size: var(--text-lg); }
.method-card h3 code { font-size: var(--text-sm); font-weight: normal; }
.method-card dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 8px 0 0 0;
  font-size: var(--text-sm); }
.method-card dt { color: var(--body-text-color-subdued); }
.method-card dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
.method-card dd a { word-break: break-all; }
.method-card .assumes { color: var(--body-text-color-subdued); font-size: var(--text-xs); }
.method-card .availability { font-size: var(--text-sm); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-weight: 600; font-size: var(--text-xs); }
.badge.ok { background: #dcfce7; color: #166534; }
.badge.no { background: #fee2e2; color: #991b1b; }
.method-card .reason { color: var(--body-text-color-subdued); }
/* What the metrics saw: one row of 100 px thumbnails below the label, scrolled sideways; a preview opens large */
.slot-renders .grid-wrap { padding-top: 30px !important; overflow-x: auto !important; overflow-y: hidden !important; }
.slot-renders .grid-container { grid-auto-flow: column !important; grid-template-columns: none !important;
  grid-template-rows: 100px !important; grid-auto-columns: 100px !important; }
.slot-renders .preview { position: fixed !important; inset: 4vh 4vw !important; width: auto !important;
  height: auto !important; z-index: 1000 !important; border: 1px solid var(--border-color-primary);
  box-shadow: 0 10px 40px rgba(0, 0, 0, 0.35); background: var(--background-fill-primary); }
/* viewer titles stay clear of the toolbar */
.result-slot label[data-testid="block-label"], .arena-viewer label[data-testid="block-label"] {
  max-width: calc(100% - 96px); overflow: hidden; white-space: nowrap; }
"""

# Gallery thumbnails load lazily, so a gallery built in a hidden tab stayed blank until scrolled: load them at once.
HEAD = """<script>
new MutationObserver((records) => {
  for (const record of records) for (const node of record.addedNodes) {
    if (node.nodeType !== 1) continue;
    const lazy = node.matches('img[loading="lazy"]') ? [node] : node.querySelectorAll('img[loading="lazy"]');
    for (const img of lazy) img.loading = 'eager';
  }
}).observe(document.documentElement, { subtree: true, childList: true });
</script>"""


def theme() -> gr.themes.Base:
    return gr.themes.Soft(
        primary_hue="indigo",
        secondary_hue="sky",
        neutral_hue="slate",
        font=SYSTEM_FONTS,
        font_mono=MONO_FONTS,
    )
