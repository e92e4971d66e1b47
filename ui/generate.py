"""The three modality tabs (Text → 3D, Image → 3D, Video → 3D), built by one function.

Each tab: the input with examples from assets/, the modality's methods (unavailable ones listed
with their reason), a shared seed, a closed settings accordion per method, up to four result
slots (viewer, downloads, status) and a metric panel that gains rows as each method finishes.

Each tab also registers an API-only endpoint (/text_to_3d, /image_to_3d, /video_to_3d) whose
signature suits scripts: the input, a list of method ids, seed, randomize_seed and the settings
as a JSON string ``{"method id": {"setting": value}}``. It returns the GLB files and a report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from eval.runs.cache import format_seconds
from eval.runs.store import StoreError, outputs_dir
from methods import runtime
from methods.base import IMAGE_SUFFIXES, MethodError
from methods.registry import get, listing
from ui import jobs, public, served
from ui.arena import likert_row
from ui.hosting import GPU_CONCURRENCY_ID
from ui.inputs import preview_image, preview_views
from ui.matrix import WAITING, long_form_csv, long_form_json, matrix_html
from ui.panel import PANEL_HEADERS, table
from ui.runs import owned_state, remembering
from ui.settings_form import SettingsForm, build_settings_form
from ui.viewer_asset import camera_for

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLES = ASSETS / "examples"
TITLES = {"text": "Text → 3D", "image": "Image → 3D", "video": "Video → 3D"}
API_NAMES = {"text": "text_to_3d", "image": "image_to_3d", "video": "video_to_3d"}
QUICK_SECONDS = 60  # methods expected to finish within a minute here are ticked at first
PEER_FACTOR = 1.5  # when none is quick: the fastest method and those expected within 1.5x its time
VIEWER_HEIGHT = 300
RENDERS_HEIGHT = 160  # one row of 100 px thumbnails under the label, scrolled sideways (ui.style.CSS)


# ----------------------------------------------------------------------------- examples


def example_prompts(path: Path = ASSETS / "prompts.txt") -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def example_images() -> list[Path]:
    return sorted(EXAMPLES.glob("*.png"))


def example_view_sets() -> list[list[Path]]:
    def views(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

    return [views(folder) for folder in sorted(EXAMPLES.iterdir()) if folder.is_dir()]


# ----------------------------------------------------------------------------- method choices


def method_choices(modality: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(label, id) choices for the method list, the ids ticked at first, and notes on the unavailable
    ones with their full reason.

    Only methods that can run here are choices (an unavailable one cannot be ticked); each is listed
    once, the unavailable ones in the notes under the list, by label, with their reason. Each choice's
    label carries its expected time on this machine ("~1 s", "~33 min"), and the methods ticked at first
    are those expected to finish within ``QUICK_SECONDS`` here (at most ``jobs.MAX_METHODS``); when none
    is that quick, the fastest and those within ``PEER_FACTOR`` of it (nerf and gaussian-splatting side
    by side on a CPU).
    """
    choices, timed, notes = [], [], []
    gpu = runtime.gpu_present()
    for row in listing(modality):
        if not row["available"]:
            notes.append(f"**{row['label']}**: {served.redact(row['reason'])}")
            continue
        seconds = expected_here(row["id"], modality, gpu)
        choices.append((f"{row['label']} (~{format_seconds(max(seconds, 1.0))})", row["id"]))
        timed.append((seconds, row["id"]))
    quick = [mid for seconds, mid in timed if seconds <= QUICK_SECONDS][: jobs.MAX_METHODS]
    if not quick and timed:  # none is that quick (the video methods on a CPU): the fastest and its peers
        fastest = min(timed)[0]
        quick = [mid for seconds, mid in timed if seconds <= PEER_FACTOR * fastest][: jobs.MAX_METHODS]
    return choices, quick, notes


def unavailable_note(modality: str, notes: list[str], n_available: int) -> str:
    """The Markdown under the method list: which methods cannot run here and why, and, when none can,
    what would make them run."""
    if not notes:
        return ""
    head = "Cannot run on this machine:" if n_available else "**No method for this input can run on this machine.**"
    lines = [head, *(f"- {n}" for n in notes)]
    if not n_available:
        text = " ".join(notes)
        fixes = []
        if "not in the cache" in text or "not cached" in text:
            fixes.append(
                "their weights download on first use: start the app once with network access (without"
                " `HF_HUB_OFFLINE=1`), or put the weights in the Hugging Face cache (`HF_HOME`)"
            )
        if "package" in text:
            fixes.append("install the missing Python packages (`pip install -r requirements.txt`)")
        if "GPU" in text or "CUDA" in text:
            fixes.append("run on a machine with a GPU")
        fixes.append(f"`python -m methods list --modality {modality}` says why each one cannot run")
        lines.append("To make them run: " + "; ".join(fixes) + ".")
    return "\n".join(lines)


def expected_here(method_id: str, modality: str, gpu: bool) -> float:
    """The method's own estimate of seconds for its default settings on this machine's device."""
    method = get(method_id)
    return float(method.estimate_seconds(method.default_settings(modality), gpu=gpu))


# ----------------------------------------------------------------------------- layout


@dataclass
class ResultSlot:
    column: gr.Column
    viewer: gr.Model3D
    status: gr.Markdown
    files: gr.File
    result: gr.State  # {"glb", "files", "label"}: its change shows the model, in an event of its own
    renders: gr.Gallery | None = None  # the protocol's renders under the viewer (eval.judging.renders)

    @property
    def outputs(self) -> list[gr.components.Component | gr.Column]:
        """What the Generate handler streams to; the viewer and downloads follow ``result``."""
        return [self.column, self.result, self.status]


@dataclass
class ModalityTab:
    """The components of one modality tab (tests and later tabs reach them through this)."""

    modality: str
    input: gr.components.Component
    methods: gr.CheckboxGroup
    seed: gr.Slider
    randomize: gr.Checkbox
    run: gr.Button
    notice: gr.Markdown  # why a request was refused (bad input), under the Generate button
    forms: list[SettingsForm]
    slots: list[ResultSlot]
    panel: gr.Dataframe
    handler: Callable[..., Iterator[list[Any]]] | None = None  # the Generate handler (a generator)
    api_inputs: list[gr.components.Component] = field(default_factory=list)
    api_outputs: list[gr.components.Component] = field(default_factory=list)
    matrix: gr.HTML | None = None  # metrics x methods (ui.matrix), filled as methods finish
    metric_files: gr.File | None = None  # the long-form rows as CSV and JSON, once the request is done


def _build_input(modality: str) -> tuple[gr.components.Component, list[Any]]:
    """The tab's input and the triggers that start a run besides the Generate button."""
    if modality == "text":
        prompt = gr.Textbox(
            label="Prompt", placeholder="a red ceramic coffee mug", lines=2, max_lines=4, autofocus=True
        )
        prompts = example_prompts()
        if prompts:
            gr.Examples(examples=[[p] for p in prompts], inputs=[prompt], label="Example prompts", cache_examples=False)
        return prompt, [prompt.submit]
    if modality == "image":
        with gr.Row(equal_height=True):
            upload = gr.File(label="Image", file_types=["image"], type="filepath", height=120, scale=1)
            preview = gr.Image(label="Preview", type="pil", image_mode="RGBA", interactive=False, height=200, scale=1)
        note = gr.Markdown(elem_classes=["input-note"])
        # queued (app.py puts it in the "pages" group, a few per address) and bounded: a thumbnail, measured first
        upload.change(_preview_image, upload, [preview, note], api_visibility="private")
        images = example_images()
        if images:
            gr.Examples(
                examples=[[str(p), str(p)] for p in images],
                inputs=[preview, upload],
                label="Example images",
                cache_examples=False,
            )
        return upload, []
    upload = gr.File(
        label=UPLOAD_LABEL, file_count="multiple", file_types=["video", "image"], type="filepath", height=140
    )
    gallery = gr.Gallery(label="Views", columns=8, height=110, allow_preview=False, interactive=False)
    note = gr.Markdown(elem_classes=["input-note"])
    upload.change(_preview_views, upload, [gallery, note, upload], api_visibility="private")
    view_sets = example_view_sets()
    if view_sets:
        gr.Examples(
            examples=[[[str(p) for p in views]] for views in view_sets],
            inputs=[upload],
            example_labels=[f"{views[0].parent.name} ({len(views)} views)" for views in view_sets],
            label="Example views",
            cache_examples=False,
        )
    return upload, []


def _preview_image(path: str | None):
    return preview_image(path)


UPLOAD_LABEL = "Video or views"


def upload_label(paths: list[str] | None) -> str:
    """The upload box's label says how many files it holds (the box itself shows only the first few)."""
    n = len(paths or [])
    return UPLOAD_LABEL if not n else f"{UPLOAD_LABEL}: {n} file{'s' if n != 1 else ''}"


def _preview_views(paths: list[str] | None):
    gallery, note = preview_views(paths)
    return gallery, note, gr.update(label=upload_label(paths))


def _build_slots(n_visible: int, labels: list[str]) -> list[ResultSlot]:
    slots = []
    with gr.Row(equal_height=False, elem_classes=["result-row"]):
        for i in range(jobs.MAX_METHODS):
            with gr.Column(visible=i < n_visible, min_width=220, elem_classes=["result-slot"]) as column:
                viewer = gr.Model3D(
                    label=labels[i] if i < len(labels) else f"Result {i + 1}",
                    height=VIEWER_HEIGHT,
                    clear_color=(0.94, 0.95, 0.97, 1.0),
                    interactive=False,
                )
                renders = gr.Gallery(
                    label="What the metrics saw",  # one line: a longer label covered the thumbnails
                    columns=8,
                    height=RENDERS_HEIGHT,
                    object_fit="contain",
                    allow_preview=True,
                    visible=False,
                    elem_classes=["slot-renders"],
                )
                status = gr.Markdown("Ready: press **Generate**.", elem_classes=["slot-status"])
                files = gr.File(label="Download", file_count="multiple", interactive=False, visible=False)
                result = gr.State(None)
                with gr.Accordion("Rate this result (1-5)", open=False, elem_classes=["slot-rating"]):
                    likert_row(result)
            # A model streamed inside the generator's updates is sometimes dropped by the browser when updates
            # come in a burst; set once by a plain event, it always arrives.
            result.change(_show_result, result, [viewer, files, renders], api_visibility="private", queue=False)
            slots.append(ResultSlot(column, viewer, status, files, result, renders))
    return slots


def _show_result(result: dict[str, Any] | None):
    if not result:
        return gr.skip(), gr.skip(), gr.skip()
    files = result.get("files") or None
    viewer = result.get("viewer") or result.get("glb")  # a reduced copy when the asset is heavy
    renders = [tuple(item) for item in result.get("renders") or []]
    return (
        gr.update(value=viewer, label=result.get("label"), **camera_for(viewer)),
        gr.update(value=files, visible=bool(files)),
        gr.update(value=renders or None, visible=bool(renders)),
    )


def build_modality_tab(modality: str) -> ModalityTab:
    """Build the tab's contents in the current Blocks context (call inside ``gr.Tab``)."""
    if modality not in TITLES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {', '.join(TITLES)}")
    choices, ticked, notes = method_choices(modality)
    labels = {value: get(value).label for _, value in choices}
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            input_component, extra_triggers = _build_input(modality)
        with gr.Column(scale=4):
            methods_box = gr.CheckboxGroup(
                choices=choices,
                value=ticked,
                label="Methods",
                info=f"Pick up to {jobs.MAX_METHODS}; they run one after another and appear side by side.",
                visible=bool(choices),  # with none that can run here, the note below says what would make them
            )
            if not choices and not notes:
                gr.Markdown(f"No method takes {modality} input yet.", elem_classes=["input-note"])
            if notes:
                gr.Markdown(unavailable_note(modality, notes, len(choices)), elem_classes=["input-note", "unavailable"])
            with gr.Row(equal_height=True):
                seed = gr.Slider(0, jobs.MAX_SEED, value=0, step=1, label="Seed", scale=3)
                randomize = gr.Checkbox(value=True, label="Randomize seed", scale=1)
            # Slow methods show a finished run with the same input, settings and seed; running them
            # again is offered only where a GPU makes that bearable.
            rerun = gr.Checkbox(value=False, label="Run slow methods again even when a cached result exists",
                                visible=runtime.gpu_present())  # fmt: skip
            forms = [build_settings_form(get(value), modality, visible=value in ticked) for _, value in choices]
            run = gr.Button("Generate", variant="primary", size="lg")
            notice = gr.Markdown(visible=False, elem_classes=["notice"])
    slots = _build_slots(max(len(ticked), 1), [labels[m] for m in ticked])
    matrix = gr.HTML(value="", elem_classes=["comparison-matrix-box"], label="Comparison")
    with gr.Accordion("Long-form metric rows (one per metric per method) and downloads", open=False):
        panel = gr.Dataframe(
            headers=PANEL_HEADERS,
            value=[],
            label="Metrics (↑ higher is better, ↓ lower is better)",
            interactive=False,
            wrap=True,
            max_height=360,
            column_widths=["22%", "26%", "24%", "14%", "14%"],
        )
        metric_files = gr.File(label="Metrics as CSV / JSON", file_count="multiple", interactive=False)
    handler = _ui_handler(modality, forms)
    tab = ModalityTab(
        modality, input_component, methods_box, seed, randomize, run, notice, forms, slots, panel, handler
    )
    tab.matrix, tab.metric_files = matrix, metric_files

    methods_box.change(
        _selection_handler(forms),
        methods_box,
        [f.accordion for f in forms],
        api_visibility="private",
        queue=False,
    )
    setting_components = [c for f in forms for c in f.components]
    owned = owned_state()  # the browser remembers (signed) the runs its requests made: its Runs tab on a shared host
    n_inputs = 6 + len(setting_components)
    gr.on(
        triggers=[*extra_triggers, run.click],
        fn=remembering(handler),
        inputs=[input_component, methods_box, seed, randomize, rerun, *setting_components, owned],
        outputs=[notice, seed, *[c for s in slots for c in s.outputs], panel, matrix, metric_files, owned],
        api_visibility="private",
        show_progress="minimal",
        concurrency_limit=1,
        concurrency_id=GPU_CONCURRENCY_ID,
        validator=public.admit(n_inputs),  # a shared host's per-session, per-address and total share of the queue
    )
    _build_api(tab)
    return tab


def _selection_handler(forms: list[SettingsForm]):
    """Show the settings of the ticked methods. The slots change only when Generate runs, so a shown model
    never sits under another method's name."""

    def on_select(selected: list[str] | None):
        selected = list(selected or [])
        return [gr.update(visible=f.method_id in selected) for f in forms]

    return on_select


# ----------------------------------------------------------------------------- the UI handler


def _ui_handler(modality: str, forms: list[SettingsForm]):
    sizes = [len(f.components) for f in forms]

    def generate(
        raw_input: Any, selected: list[str] | None, seed: float, randomize: bool, rerun: bool, *setting_values: Any
    ):
        selected = list(selected or [])
        settings, offset = {}, 0
        for form, size in zip(forms, sizes, strict=True):
            if form.method_id in selected:
                settings[form.method_id] = form.to_settings(setting_values[offset : offset + size])
            offset += size
        try:
            job = jobs.plan_job(modality, raw_input, selected, seed, randomize, settings, rerun=bool(rerun))
        except MethodError as exc:
            # A toast and a note, not gr.Error: an error would mark every output component as failed.
            gr.Warning(str(exc))
            yield [gr.update(value=f"⚠️ {exc}", visible=True)] + [gr.skip()] * (4 + 3 * jobs.MAX_METHODS)
            return
        try:
            for state in jobs.run_job_on_gpu(job):
                yield _ui_outputs(job, state)
        except StoreError as exc:
            gr.Warning(store_message(exc))
            yield [gr.update(value=f"⚠️ {store_message(exc)}", visible=True)] + [gr.skip()] * (4 + 3 * jobs.MAX_METHODS)

    return generate


def _ui_outputs(job: jobs.Job, state: jobs.JobState) -> list[Any]:
    """Updates for the notice, seed, the four slots and the panel (each slot: column, result, status)."""
    out: list[Any] = [gr.update(value="", visible=False), job.seed]
    for i in range(jobs.MAX_METHODS):
        slot = state.slots[i] if i < len(state.slots) else None
        if slot is None:
            out += [gr.update(visible=False), gr.skip(), gr.skip()]
            continue
        result = {
            "glb": slot.glb,
            "files": list(slot.files),
            "label": slot.label,
            "id": slot.run_id if slot.glb else None,
        }
        if slot.viewer and slot.viewer != slot.glb:
            result["viewer"] = slot.viewer
        if slot.renders:
            result["renders"] = [list(item) for item in slot.renders]
        elif slot.state == "running" and slot.preview:  # a training method's latest preview, until it is done
            result["renders"] = [[slot.preview, f"preview ({slot.stage})"]]
        out += [gr.update(visible=True), result, slot.status_markdown()]
    out.append(table(state.metrics))
    out.append(matrix_html(state.metrics, [slot.label for slot in state.slots], empty_matrix_reason(state)))
    out.append(write_metric_files(state) if state.finished and state.metrics else gr.skip())
    return out


def empty_matrix_reason(state: jobs.JobState) -> str:
    """Why the matrix has no row yet: methods still to finish, or none that could give metrics."""
    states = [slot.state for slot in state.slots]
    if any(s in ("queued", "running") for s in states):
        return WAITING
    refused, failed = states.count("refused"), states.count("failed")
    if refused == len(states):
        return "no metrics: no method was run (each slot says why it was not)"
    if refused + failed == len(states):
        return "no metrics: no method finished (each slot says why it failed or was not run)"
    return "no metrics were recorded for these runs"


def write_metric_files(state: jobs.JobState) -> list[str]:
    """The request's long-form rows as metrics.csv and metrics.json in a fresh folder under the outputs."""
    folder = outputs_dir() / "metrics" / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.csv").write_text(long_form_csv(state.metrics), encoding="utf-8")
    (folder / "metrics.json").write_text(long_form_json(state.metric_records), encoding="utf-8")
    paths = [str(folder / "metrics.csv"), str(folder / "metrics.json")]
    served.SERVED.publish(*paths)
    return paths


# ----------------------------------------------------------------------------- the API


def run_for_api(modality: str, raw_input: Any, methods: Any, seed: Any, randomize_seed: bool, settings_json: str):
    """Run like the UI, stricter: any refused method is an error, and only the end result is returned."""
    try:
        settings = jobs.parse_settings_json(settings_json)
        job = jobs.plan_job(modality, raw_input, methods, seed, bool(randomize_seed), settings)
    except MethodError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    if job.refusals:
        raise gr.Error("; ".join(job.refusals), print_exception=False)
    try:
        *_, state = jobs.run_job_on_gpu(job)  # run to the end; the API returns only the final state
    except StoreError as exc:
        raise gr.Error(store_message(exc), print_exception=False) from None
    files = [slot.glb for slot in state.slots if slot.glb]
    if not files:
        raise gr.Error("; ".join(f"{slot.method_id}: {slot.message}" for slot in state.slots), print_exception=False)
    runs, index = [], 0
    for slot in state.slots:
        entry = {"method": slot.method_id, "status": slot.state, "run_id": slot.run_id, "error": None}
        if slot.glb:
            entry["file_index"], index = index, index + 1
        else:
            entry["error"] = slot.message
        runs.append(entry)
    report = {
        "modality": modality,
        "seed": job.seed,
        "inputs": job.inputs.describe(),
        "runs": runs,
        "metrics": state.metric_records,
    }
    return files, report


def text_to_3d(prompt: str, methods: list[str], seed: int, randomize_seed: bool, settings_json: str):
    """Generate a 3D asset per method from a text prompt; returns (GLB files, report)."""
    return run_for_api("text", prompt, methods, seed, randomize_seed, settings_json)


def image_to_3d(image: str, methods: list[str], seed: int, randomize_seed: bool, settings_json: str):
    """Generate a 3D asset per method from an image file; returns (GLB files, report)."""
    return run_for_api("image", image, methods, seed, randomize_seed, settings_json)


def video_to_3d(video: list[str], methods: list[str], seed: int, randomize_seed: bool, settings_json: str):
    """Generate a 3D asset per method from a video file or several views; returns (files, report).

    One file per method: a .glb, or a .splat for Gaussian splats (their mesh .glb is in the run folder).
    """
    return run_for_api("video", video, methods, seed, randomize_seed, settings_json)


def store_message(exc: Exception) -> str:
    return f"the run store cannot be used, so nothing was run: {served.redact(exc)}"


API_FUNCTIONS = {"text": text_to_3d, "image": image_to_3d, "video": video_to_3d}


def _build_api(tab: ModalityTab) -> None:
    """Hidden components and a hidden trigger: the tab's scripting endpoint with a short, stable signature."""
    modality = tab.modality
    with gr.Column(visible=False):
        if modality == "text":
            api_input = gr.Textbox(label="prompt")
        elif modality == "image":
            api_input = gr.File(label="image", type="filepath")
        else:
            api_input = gr.File(label="video", file_count="multiple", type="filepath")
        ids = [value for _, value in tab.methods.choices]
        api_methods = gr.Dropdown(choices=ids, value=[], multiselect=True, allow_custom_value=True, label="methods")
        # text, not gr.Number: "abc" or 1.5 reach jobs.resolve_seed and its clear refusal (Number fails
        # generically on "abc" and rounds 1.5 to 2); whole numbers sent as numbers work as before
        api_seed = gr.Textbox(value="0", label="seed")
        api_randomize = gr.Checkbox(value=False, label="randomize_seed")
        api_settings = gr.Textbox(value="{}", label="settings_json")
        api_files = gr.File(file_count="multiple", label="glb_files")
        api_report = gr.JSON(label="report")
        trigger = gr.Button(visible=False)
    tab.api_inputs = [api_input, api_methods, api_seed, api_randomize, api_settings]
    tab.api_outputs = [api_files, api_report]
    trigger.click(
        API_FUNCTIONS[modality],
        tab.api_inputs,
        tab.api_outputs,
        api_name=API_NAMES[modality],
        concurrency_limit=1,
        concurrency_id=GPU_CONCURRENCY_ID,
        validator=public.admit(len(tab.api_inputs)),
    )
