"""A method's Settings as gradio controls and back: ``Settings.describe()`` -> components -> a settings dict.

The seed is not part of a form: it lives outside as one shared Seed control (with "Randomize seed").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from methods.base import Method

SHARED_FIELDS = frozenset({"seed"})


def component_for(spec: dict[str, Any], value: Any = None) -> gr.components.Component:
    """The control for one field of ``Settings.describe()``: number -> Slider (bounded) or Number,
    bool -> Checkbox, choices -> Dropdown, str -> Textbox. ``value`` overrides the field's default."""
    value = spec["default"] if value is None else value
    label, info = spec["label"], spec.get("help") or None
    kind = spec["type"]
    if spec.get("choices") is not None:
        return gr.Dropdown(choices=list(spec["choices"]), value=value, label=label, info=info)
    if kind == "bool":
        return gr.Checkbox(value=bool(value), label=label, info=info)
    if kind in ("int", "float"):
        lo, hi, step = spec.get("min"), spec.get("max"), spec.get("step")
        if lo is not None and hi is not None:
            step = step if step is not None else (1 if kind == "int" else (hi - lo) / 100)
            return gr.Slider(minimum=lo, maximum=hi, step=step, value=value, label=label, info=info)
        return gr.Number(
            value=value,
            label=label,
            info=info,
            minimum=lo,
            maximum=hi,
            step=step or 1,
            precision=0 if kind == "int" else None,
        )
    return gr.Textbox(value="" if value is None else str(value), label=label, info=info, max_lines=1)


@dataclass
class SettingsForm:
    """The controls of one method's settings, in ``names`` order, inside a closed accordion."""

    method_id: str
    names: list[str] = field(default_factory=list)
    components: list[gr.components.Component] = field(default_factory=list)
    accordion: gr.Accordion | None = None

    def to_settings(self, values: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
        """The component values (in ``components`` order) as a ``{setting: value}`` dict for ``Settings.from_dict``."""
        return form_values(self.names, values)


def build_settings_form(method: Method, modality: str, visible: bool = True) -> SettingsForm:
    """A closed ``gr.Accordion`` with one control per setting of ``method`` (defaults of the modality)."""
    defaults = method.default_settings(modality).to_dict()
    form = SettingsForm(method.id)
    specs = [s for s in type(method.default_settings(modality)).describe() if s["name"] not in SHARED_FIELDS]
    # Basic settings first, advanced ones after; describe() keeps declaration order within each group.
    specs.sort(key=lambda s: bool(s.get("advanced")))
    with gr.Accordion(f"{method.label} settings", open=False, visible=visible) as accordion:
        if not specs:
            gr.Markdown("This method has no settings besides the seed.")
        for spec in specs:
            form.names.append(spec["name"])
            form.components.append(component_for(spec, defaults.get(spec["name"])))
    form.accordion = accordion
    return form


def form_values(names: list[str], values: list[Any] | tuple[Any, ...]) -> dict[str, Any]:
    """Pair names with values; a cleared Number (None) is left out so the method's default applies."""
    if len(names) != len(values):
        raise ValueError(f"{len(values)} values for {len(names)} settings")
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}
