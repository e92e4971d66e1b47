"""Study files: YAML parsed with line numbers, validated whole before anything runs.

A study file names its inputs, its methods with their settings, the seeds, the metric protocol,
the per-method time budget and the output folder (see assets/studies/ for annotated examples).
:func:`load_study` returns a :class:`Study` with every cell planned, or raises
:class:`StudyFileError` listing each problem with the line at fault (``study.yaml:12: ...``).

Paths to inputs (prompt files, image folders, scenes, reference meshes, caption sets) are relative
to the study file; ``output`` and ``store`` are relative to the current directory.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import methods
from eval.judging.protocol import PROTOCOL_VERSION
from eval.runs.store import outputs_dir
from eval.study.cells import Cell, DuplicateCell, cell_key, file_digest
from eval.study.prompts import PromptFileError, provenance, read_prompts
from methods.base import IMAGE_SUFFIXES, Inputs, InvalidInput, InvalidSettings, MethodError, load_image

MAX_SEED = 2**31 - 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
TOP_KEYS = ("name", "description", "output", "store", "seeds", "budget_s", "inputs", "methods", "protocol", "report")
INPUT_KINDS = {"prompts": "text", "captions": "text", "images": "image", "scene": "video"}
# `captions:` names a split of the families' procedural shape set (methods/families/data.py); each
# caption's reference mesh (draw 0) is written under <outputs>/references/captions/ and scored against.
CAPTION_SPLITS = ("heldout", "heldout-all", "train")
INPUT_KEYS = ("name", "limit", "key", "reference_mesh", "split", "frames")
METHOD_KEYS = ("id", "label", "settings", "sweep", "budget_s")
PROTOCOL_KEYS = ("clip_models", "views", "resolution", "captions", "quality", "options")
REPORT_KEYS = ("renders", "views", "bootstrap", "confidence")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")


class StudyFileError(ValueError):
    """A study file that cannot run; ``problems`` holds (line or None, message) pairs, one per fault."""

    def __init__(self, path: str | Path, problems: list[tuple[int | None, str]]):
        self.path = str(path)
        self.problems = sorted(problems, key=lambda p: (p[0] is None, p[0] or 0))
        lines = [f"{self.path}:{line}: {msg}" if line else f"{self.path}: {msg}" for line, msg in self.problems]
        super().__init__("\n".join(lines))


# ----------------------------------------------------------------------------- YAML with marks


class _Map(dict):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list):
    """A YAML sequence that remembers its line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]


class _MarkedLoader(yaml.SafeLoader):
    pass


def _construct_map(loader: _MarkedLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line, out.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _MarkedLoader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.item_lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def parse_yaml(text: str, path: str | Path = "<study>") -> Any:
    """The YAML document with line-aware mappings and sequences; StudyFileError on a syntax error."""
    try:
        return yaml.load(text, Loader=_MarkedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise StudyFileError(path, [(mark.line + 1 if mark else None, f"YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise StudyFileError(path, [(None, f"YAML: {exc}")]) from None


# ----------------------------------------------------------------------------- the study


@dataclass
class InputItem:
    """One input of the study: a prompt, an image, or a multi-view scene."""

    id: str  # "<set>/<nnn>", 1-based within its set
    set_name: str
    modality: str
    label: str  # the prompt, or the image / scene name
    prompt: str | None = None
    path: str | None = None  # image file, scene folder or video file
    split: str = "train"
    max_frames: int | None = None
    reference_mesh: str | None = None
    line: int = 0  # the input entry's line in the study file
    where: str = ""  # where in its source: "line 7" of a prompt file, or a file name
    inputs_hash: str = ""

    def load(self) -> Inputs:
        """The validated Inputs; InvalidInput when the file cannot be used."""
        if self.modality == "text":
            return Inputs.text(self.prompt or "")
        if self.modality == "image":
            return Inputs(modality="image", image=load_image(self.path), name=Path(self.path).name).validated()
        return load_scene(Path(self.path), self.split, self.max_frames)


@dataclass
class InputSet:
    name: str
    modality: str
    source: str  # the file or folder, or "inline"
    provenance: str
    line: int
    items: list[InputItem]
    reference_mesh: str | None = None


@dataclass
class MethodVariant:
    """A method with one choice of settings (a study entry with a sweep gives several)."""

    method: str
    label: str
    overrides: dict[str, Any]
    budget_s: float | None
    line: int


@dataclass
class Protocol:
    """The metric protocol: every choice that changes a number, part of each cell's key."""

    clip_models: list[str] = field(default_factory=list)  # empty: the protocol's default
    views: int | None = None
    resolution: int | None = None
    captions: list[str] | None = None  # the R-precision caption set (default: the study's prompts)
    captions_source: str = ""
    quality: str | None = None  # the metric shown as "quality" in the report (default: chosen from the results)
    options: dict[str, Any] = field(default_factory=dict)  # passed through to eval.judging.protocol.score

    def key(self) -> dict[str, Any]:
        captions = hashlib.sha256("\n".join(self.captions or []).encode()).hexdigest()[:16] if self.captions else None
        return {
            "version": PROTOCOL_VERSION,
            "clip_models": list(self.clip_models),
            "views": self.views,
            "resolution": self.resolution,
            "captions": captions,
            "options": self.options,
        }

    def context(self) -> dict[str, Any]:
        """What eval.judging.protocol.score receives (with the cell's reference mesh added)."""
        out: dict[str, Any] = dict(self.options)
        if self.clip_models:
            out["clip_models"] = list(self.clip_models)
        if self.views is not None:
            out["views"] = self.views
        if self.resolution is not None:
            out["resolution"] = self.resolution
        if self.captions:
            out["captions"] = list(self.captions)
        return out


def expand_cells(
    items: list[InputItem], variants: list[MethodVariant], seeds: list[int], protocol: dict[str, Any]
) -> list[Cell]:
    """Every (method variant, input, seed) cell whose modality the method takes, method-major so that
    a method's model stays loaded across its cells. DuplicateCell when two cells share a key."""
    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    references = {i.reference_mesh: file_digest(i.reference_mesh) for i in items if i.reference_mesh}
    for variant in variants:
        method = methods.get(variant.method)
        for item in items:
            if item.modality not in method.modalities:
                continue
            defaults = method.default_settings(item.modality)
            for seed in seeds:
                settings = type(defaults).from_dict({**variant.overrides, "seed": seed}, base=defaults).to_dict()
                key = cell_key(
                    method.id,
                    method.version,
                    settings,
                    seed,
                    item.inputs_hash,
                    protocol,
                    references.get(item.reference_mesh),
                )
                cell = Cell(
                    key,
                    method.id,
                    str(method.version),
                    variant.label,
                    settings,
                    seed,
                    item.id,
                    item.label,
                    item.modality,
                    item.inputs_hash,
                    variant.budget_s,
                )
                if key in seen:
                    raise DuplicateCell(
                        f"duplicated cell: {cell.title} computes the same as {seen[key].title}", variant.line
                    )
                seen[key] = cell
                cells.append(cell)
    return cells


@dataclass
class ReportOptions:
    renders: int = 12  # inputs that get a grid of turntable renders
    views: int = 6  # views per method in a render grid
    bootstrap: int = 2000  # bootstrap resamples per interval
    confidence: float = 0.95


@dataclass
class Study:
    name: str
    path: Path
    text: str
    output: Path
    seeds: list[int]
    inputs: list[InputSet]
    methods: list[MethodVariant]
    protocol: Protocol
    report: ReportOptions
    description: str = ""
    store: Path | None = None
    budget_s: float | None = None
    cells: list[Cell] = field(default_factory=list)

    def items(self) -> list[InputItem]:
        return [item for s in self.inputs for item in s.items]

    @functools.cached_property
    def _items_by_id(self) -> dict[str, InputItem]:
        return {i.id: i for i in self.items()}

    def item(self, item_id: str) -> InputItem:
        return self._items_by_id[item_id]

    def context_for(self, cell: Cell) -> dict[str, Any]:
        ctx = self.protocol.context()
        ref = self.item(cell.input_id).reference_mesh
        if ref:
            ctx["reference_mesh"] = ref
        ctx.update(study=self.name, cell=cell.key, method_settings=cell.settings)
        return ctx


def load_study(path: str | Path) -> Study:
    """Parse and validate a study file and plan its cells; StudyFileError names each line at fault."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError(path, [(None, "no such study file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError(path, [(None, f"cannot be read: {exc}")]) from None
    return _Validator(path, text).study()


# ----------------------------------------------------------------------------- validation


class _Validator:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.base = path.resolve().parent
        self.text = text
        self.problems: list[tuple[int | None, str]] = []

    def fail(self, line: int | None, message: str) -> None:
        self.problems.append((line, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise StudyFileError(self.path, self.problems)

    # -- helpers ---------------------------------------------------------------------------
    def keys(self, node: _Map, allowed: tuple[str, ...], where: str) -> None:
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(allowed)}"
                self.fail(node.key_lines.get(key, node.line), f"unknown key {key!r} in {where}{hint}")

    def number(self, node: _Map, key: str, *, integer: bool = False, low: float | None = None) -> Any:
        value = node[key]
        line = node.key_lines.get(key, node.line)
        kind = "a whole number" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            self.fail(line, f"{key} must be {kind}, got {value!r}")
            return None
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(line, f"{key} must be finite, got {value!r}")
            return None
        if low is not None and value < low:
            self.fail(line, f"{key} must be at least {low:g}, got {value!r}")
            return None
        return value

    def budget(self, node: _Map) -> float | None:
        if "budget_s" not in node or node["budget_s"] is None:
            return None
        value = node["budget_s"]
        line = node.key_lines["budget_s"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            self.fail(line, f"budget_s must be a positive number of seconds, got {value!r}")
            return None
        return float(value)

    def string(self, node: _Map, key: str) -> str | None:
        value = node[key]
        if not isinstance(value, str) or not value.strip():
            self.fail(node.key_lines.get(key, node.line), f"{key} must be a non-empty string, got {value!r}")
            return None
        return value.strip()

    def file(self, node: _Map, key: str, what: str, *, folder: bool | None = False) -> Path | None:
        raw = self.string(node, key)
        if raw is None:
            return None
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else self.base / p
        line = node.key_lines.get(key, node.line)
        if not p.exists():
            self.fail(line, f"no such {what}: {p}")
            return None
        if folder is True and not p.is_dir():
            self.fail(line, f"{what} {p} is not a folder")
            return None
        if folder is False and not p.is_file():
            self.fail(line, f"{what} {p} is not a file")
            return None
        return p

    # -- the study -------------------------------------------------------------------------
    def study(self) -> Study:
        doc = parse_yaml(self.text, self.path)
        if doc is None:
            raise StudyFileError(self.path, [(None, "the study file is empty")])
        if not isinstance(doc, _Map):
            raise StudyFileError(self.path, [(1, "a study file is a mapping (name:, inputs:, methods:, ...)")])
        self.keys(doc, TOP_KEYS, "the study")
        for required in ("name", "inputs", "methods"):
            if required not in doc:
                self.fail(None, f"the study needs `{required}:`")
        name = self.string(doc, "name") if "name" in doc else None
        if name is not None and not NAME_RE.match(name):
            self.fail(
                doc.key_lines["name"], f"name {name!r} must be letters, digits, '.', '_' or '-' (it names folders)"
            )
        description = str(doc.get("description") or "")
        seeds = self.seeds(doc) if "seeds" in doc else [0]
        budget = self.budget(doc)
        inputs = self.inputs(doc["inputs"]) if "inputs" in doc else []
        modalities = {s.modality for s in inputs}
        variants = self.methods(doc["methods"], modalities, budget) if "methods" in doc else []
        protocol = self.protocol(doc.get("protocol"), doc.key_lines.get("protocol", doc.line), inputs)
        report = self.report(doc.get("report"), doc.key_lines.get("report", doc.line))
        output = Path(doc["output"]).expanduser() if isinstance(doc.get("output"), str) else None
        if "output" in doc and output is None:
            self.fail(doc.key_lines["output"], f"output must be a folder path, got {doc['output']!r}")
        store = Path(doc["store"]).expanduser() if isinstance(doc.get("store"), str) else None
        if "store" in doc and store is None:
            self.fail(doc.key_lines["store"], f"store must be a file path, got {doc['store']!r}")
        self.raise_if_any()
        study = Study(
            name=name,
            path=self.path.resolve(),
            text=self.text,
            output=output or outputs_dir() / "studies" / name,
            seeds=seeds,
            inputs=inputs,
            methods=variants,
            protocol=protocol,
            report=report,
            description=description,
            store=store,
            budget_s=budget,
        )
        try:
            study.cells = expand_cells(study.items(), variants, seeds, protocol.key())
        except ValueError as exc:
            raise StudyFileError(self.path, [(getattr(exc, "line", None), str(exc))]) from None
        return study

    def seeds(self, doc: _Map) -> list[int]:
        value, line = doc["seeds"], doc.key_lines["seeds"]
        if isinstance(value, int) and not isinstance(value, bool):
            if not 1 <= value <= 10_000:
                self.fail(line, f"seeds: a count must be between 1 and 10000, got {value}")
                return []
            return list(range(value))
        if not isinstance(value, _Seq) or not value:
            self.fail(line, f"seeds must be a count or a non-empty list of seeds, got {value!r}")
            return []
        out = []
        for seed, item_line in zip(value, value.item_lines, strict=True):
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
                self.fail(item_line, f"a seed is a whole number from 0 to {MAX_SEED}, got {seed!r}")
            elif seed in out:
                self.fail(item_line, f"duplicated cell: seed {seed} is listed twice")
            else:
                out.append(seed)
        return out

    # -- inputs ----------------------------------------------------------------------------
    def inputs(self, node: Any) -> list[InputSet]:
        if not isinstance(node, _Seq) or not node:
            self.fail(getattr(node, "line", None), "inputs must be a non-empty list of prompt sets, images or scenes")
            return []
        sets: list[InputSet] = []
        explicit: dict[str, int] = {}
        for entry, line in zip(node, node.item_lines, strict=True):
            if isinstance(entry, str):  # a bare path: a prompt file
                entry = _Map(prompts=entry)
                entry.line, entry.key_lines = line, {"prompts": line}
            if not isinstance(entry, _Map):
                self.fail(line, "an input is a mapping with one of: prompts, captions, images, scene")
                continue
            kinds = [k for k in INPUT_KINDS if k in entry]
            if len(kinds) != 1:
                self.fail(line, "an input needs exactly one of `prompts:`, `captions:`, `images:` or `scene:`")
                continue
            self.keys(entry, (*INPUT_KINDS, *INPUT_KEYS), "an input")
            parse = {"prompts": self.prompt_set, "captions": self.caption_set, "images": self.image_set}
            made = {**parse, "scene": self.scene}[kinds[0]](entry)
            if made is None:
                continue
            if "name" in entry:
                name = self.string(entry, "name")
                if name is None or not NAME_RE.match(name):
                    self.fail(entry.key_lines["name"], f"an input name is letters, digits, '.', '_' or '-': {name!r}")
                    continue
                if name in explicit:
                    self.fail(entry.key_lines["name"], f"two inputs are named {name!r} (lines {explicit[name]} too)")
                    continue
                explicit[name] = entry.key_lines["name"]
            else:
                name = made.name
            taken = {s.name for s in sets} | set(explicit)
            if "name" not in entry:
                base, n = name, 2
                while name in taken:
                    name, n = f"{base}-{n}", n + 1
            made.name = name
            for i, item in enumerate(made.items, start=1):
                item.id, item.set_name = f"{name}/{i:03d}", name
            sets.append(made)
        self.duplicate_inputs(sets)
        return sets

    def limited(self, entry: _Map, items: list) -> list:
        if "limit" not in entry:
            return items
        limit = self.number(entry, "limit", integer=True, low=1)
        return items[:limit] if limit else items

    def prompt_set(self, entry: _Map) -> InputSet | None:
        value, line = entry["prompts"], entry.key_lines["prompts"]
        key = entry.get("key")
        if isinstance(value, _Seq):
            source, prov = "inline", "written in the study file"
            prompts = []
            for text, item_line in zip(value, value.item_lines, strict=True):
                if not isinstance(text, str):
                    self.fail(item_line, f"an inline prompt is a string, got {text!r}")
                    continue
                prompts.append((text, f"line {item_line}", item_line))
            default_name = "prompts"
        else:
            path = self.file(entry, "prompts", "prompt file")
            if path is None:
                return None
            try:
                prompts = [(p.text, f"{path.name} {p.where}", line) for p in read_prompts(path, key)]
            except PromptFileError as exc:
                self.fail(line, str(exc))
                return None
            source, prov, default_name = str(path), provenance(path), path.stem
        reference = self.file(entry, "reference_mesh", "reference mesh") if "reference_mesh" in entry else None
        items = []
        for text, where, item_line in self.limited(entry, prompts):
            try:
                inputs = Inputs.text(text)
            except InvalidInput as exc:
                self.fail(item_line, f"{where}: {exc}")
                continue
            items.append(
                InputItem(
                    "",
                    "",
                    "text",
                    inputs.prompt,
                    prompt=inputs.prompt,
                    reference_mesh=str(reference) if reference else None,
                    line=line,
                    where=where,
                    inputs_hash=inputs.hash(),
                )
            )
        ref = str(reference) if reference else None
        return InputSet(default_name, "text", source, prov, line, items, ref) if items else None

    def caption_set(self, entry: _Map) -> InputSet | None:
        """Captions of the procedural shape set, each with its reference mesh (quality against the caption)."""
        from eval.judging import trilemma
        from methods.families import data
        from methods.families import text as text_words

        value, line = entry["captions"], entry.key_lines["captions"]
        known = set(data.all_captions())
        if isinstance(value, _Seq):
            captions = []
            for text, item_line in zip(value, value.item_lines, strict=True):
                if not isinstance(text, str) or text.strip().lower() not in known:
                    self.fail(
                        item_line,
                        f"{text!r} is not a caption of the procedural shape set: 'a [size] colour category' "
                        f"(e.g. 'a red cube', 'a tall blue lamp'; sizes {', '.join(text_words.SIZES)}; "
                        f"categories {', '.join(text_words.CATEGORIES)})",
                    )
                else:
                    captions.append((text.strip().lower(), f"line {item_line}", item_line))
            split, default_name = "inline", "captions"
        elif value in CAPTION_SPLITS:
            train, held = data.split_captions()
            chosen = {"heldout": trilemma.heldout_captions("plain"), "heldout-all": held, "train": train}[value]
            captions = [(c, f"{value} #{i}", line) for i, c in enumerate(chosen, start=1)]
            split, default_name = value, f"shapes-{value}"
        else:
            self.fail(line, f"captions is one of {', '.join(CAPTION_SPLITS)} or a list of captions, got {value!r}")
            return None
        items = []
        for text, where, item_line in self.limited(entry, captions):
            ref = trilemma.reference_mesh_file(text, outputs_dir() / "references" / "captions")
            inputs = Inputs.text(text)
            items.append(
                InputItem(
                    "",
                    "",
                    "text",
                    text,
                    prompt=text,
                    reference_mesh=str(ref),
                    line=item_line,
                    where=where,
                    inputs_hash=inputs.hash(),
                )
            )
        prov = f"the procedural shape set of methods/families/data.py ({split}); references: draw 0 of each caption"
        return InputSet(default_name, "text", f"shapes:{split}", prov, line, items) if items else None

    def image_set(self, entry: _Map) -> InputSet | None:
        value, line = entry["images"], entry.key_lines["images"]
        if isinstance(value, _Seq):
            files = []
            for raw, item_line in zip(value, value.item_lines, strict=True):
                p = Path(str(raw)).expanduser()
                p = p if p.is_absolute() else self.base / p
                if not p.is_file():
                    self.fail(item_line, f"no such image file: {p}")
                else:
                    files.append(p)
            source, default_name = "inline", "images"
        else:
            folder = self.file(entry, "images", "image folder", folder=True)
            if folder is None:
                return None
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                self.fail(line, f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
                return None
            source, default_name = str(folder), folder.name
        items = []
        for p in self.limited(entry, files):
            item = InputItem("", "", "image", p.name, path=str(p), line=line, where=p.name)
            try:
                item.inputs_hash = item.load().hash()
            except InvalidInput as exc:
                self.fail(line, f"{p.name}: {exc}")
                continue
            items.append(item)
        prov = provenance(Path(source) / "x") if source != "inline" else ""
        return InputSet(default_name, "image", source, prov, line, items) if items else None

    def scene(self, entry: _Map) -> InputSet | None:
        line = entry.key_lines["scene"]
        path = self.file(entry, "scene", "scene", folder=None)
        reference = self.file(entry, "reference_mesh", "reference mesh") if "reference_mesh" in entry else None
        split = self.string(entry, "split") if "split" in entry else "train"
        frames = self.number(entry, "frames", integer=True, low=1) if "frames" in entry else None
        if path is None or split is None:
            return None
        item = InputItem(
            "",
            "",
            "video",
            path.name,
            path=str(path),
            split=split,
            max_frames=frames,
            reference_mesh=str(reference) if reference else None,
            line=line,
            where=path.name,
        )
        try:
            item.inputs_hash = item.load().hash()
        except (InvalidInput, OSError, ValueError, KeyError) as exc:
            self.fail(line, f"scene {path}: {exc}")
            return None
        prov = provenance(path / "x") if path.is_dir() else ""
        return InputSet(path.stem, "video", str(path), prov, line, [item], str(reference) if reference else None)

    def duplicate_inputs(self, sets: list[InputSet]) -> None:
        seen: dict[str, InputItem] = {}
        for item in (i for s in sets for i in s.items):
            first = seen.setdefault(item.inputs_hash, item)
            if first is not item:
                self.fail(
                    item.line,
                    f"duplicated cell: input {item.label!r} ({item.where}) repeats {first.id} "
                    f"({first.where}, line {first.line})",
                )

    # -- methods ---------------------------------------------------------------------------
    def methods(self, node: Any, modalities: set[str], default_budget: float | None) -> list[MethodVariant]:
        if not isinstance(node, _Seq) or not node:
            self.fail(getattr(node, "line", None), "methods must be a non-empty list of {id:, settings:} entries")
            return []
        variants: list[MethodVariant] = []
        pending: list[tuple[MethodVariant, _Map, bool, dict[str, Any]]] = []
        resolved_seen: dict[str, MethodVariant] = {}
        for entry, line in zip(node, node.item_lines, strict=True):
            if isinstance(entry, str):
                entry = _Map(id=entry)
                entry.line, entry.key_lines = line, {"id": line}
            if not isinstance(entry, _Map) or "id" not in entry:
                self.fail(
                    line, "a method entry is a mapping with `id:` (and optional settings, sweep, label, budget_s)"
                )
                continue
            self.keys(entry, METHOD_KEYS, "a method entry")
            mid = self.string(entry, "id")
            if mid is None:
                continue
            try:
                method = methods.get(mid)
            except MethodError as exc:
                self.fail(entry.key_lines["id"], str(exc))
                continue
            usable = [m for m in method.modalities if m in modalities]
            if modalities and not usable:
                self.fail(
                    entry.key_lines["id"],
                    f"{mid} takes {', '.join(method.modalities)} input and the study has only "
                    f"{', '.join(sorted(modalities))} inputs",
                )
                continue
            budget = self.budget(entry) if "budget_s" in entry else default_budget
            expanded = self.expand_settings(entry, method, usable)
            for overrides in expanded:
                variant = MethodVariant(mid, "", overrides, budget, line)
                resolved = [_resolved(method, m, overrides) for m in usable or method.modalities[:1]]
                signature = json.dumps([mid, resolved], sort_keys=True, default=str)
                if signature in resolved_seen:
                    first = resolved_seen[signature]
                    self.fail(line, f"duplicated cell: this {mid} entry repeats the settings of line {first.line}")
                    continue
                resolved_seen[signature] = variant
                pending.append((variant, entry, len(expanded) > 1, resolved[0]))
        for variant, entry, several, _ in pending:
            variant.label = self.label(variant, entry, several, pending)
            clash = next((v for v in variants if v.label == variant.label), None)
            if clash is not None:
                self.fail(
                    variant.line,
                    f"the entries at lines {clash.line} and {variant.line} are both labelled "
                    f"{variant.label!r}; give them distinct `label:`s",
                )
            else:
                variants.append(variant)
        return variants

    def expand_settings(self, entry: _Map, method: methods.Method, modalities: list[str]) -> list[dict[str, Any]]:
        """The settings of each variant of a method entry: ``settings`` (a mapping or a list) times ``sweep``."""
        bases: list[_Map] = []
        raw = entry.get("settings")
        if raw is None:
            bases = [_Map()]
        elif isinstance(raw, _Map):
            bases = [raw]
        elif isinstance(raw, _Seq) and raw and all(isinstance(r, _Map) for r in raw):
            bases = list(raw)
        else:
            self.fail(entry.key_lines.get("settings", entry.line), "settings must be a mapping or a list of mappings")
            return []
        grid: list[dict[str, Any]] = [{}]
        sweep = entry.get("sweep")
        if sweep is not None:
            if not isinstance(sweep, _Map) or not sweep:
                self.fail(entry.key_lines["sweep"], "sweep maps setting names to lists of values")
                return []
            axes = []
            for key, values in sweep.items():
                if not isinstance(values, _Seq) or not values:
                    self.fail(sweep.key_lines[key], f"sweep {key}: give a non-empty list of values")
                    return []
                axes.append([(key, v, sweep.key_lines[key]) for v in values])
            grid = [{k: (v, ln) for k, v, ln in combo} for combo in itertools.product(*axes)]
        out: list[dict[str, Any]] = []
        ok = True
        for base in bases:
            for point in grid:
                values = {k: (v, base.key_lines.get(k, base.line)) for k, v in base.items()}
                values.update(point)
                for key, (value, line) in values.items():
                    ok &= self.check_setting(method, modalities, key, value, line)
                out.append({k: v for k, (v, _) in values.items()})
        return out if ok else []

    def check_setting(self, method: methods.Method, modalities: list[str], key: str, value: Any, line: int) -> bool:
        if key == "seed":
            self.fail(line, "the seed is not a setting here: list the seeds under the study's `seeds:`")
            return False
        for modality in modalities or method.modalities[:1]:
            defaults = method.default_settings(modality)
            try:
                type(defaults).from_dict({key: value}, base=defaults)
            except InvalidSettings as exc:
                self.fail(line, f"{method.id}: {exc}")
                return False
        return True

    @staticmethod
    def label(variant: MethodVariant, entry: _Map, several: bool, pending: list) -> str:
        """The variant's name in tables: its entry's ``label`` (plus the swept settings when the entry has
        several variants), else the method id plus the settings that tell the method's variants apart."""
        explicit = entry.get("label")
        if explicit is not None:
            if not several:
                return str(explicit)
            varying = set(entry.get("sweep") or {})
            if isinstance(entry.get("settings"), _Seq):
                varying |= {k for base in entry["settings"] for k in base}
            shown = {k: v for k, v in variant.overrides.items() if k in varying}
        else:
            peers = [resolved for v, e, _, resolved in pending if v.method == variant.method and "label" not in e]
            mine = next(resolved for v, _, _, resolved in pending if v is variant)
            shown = {k: mine[k] for k in mine if len({json.dumps(p.get(k), default=str) for p in peers}) > 1}
        suffix = " ".join(f"{k}={_short(v)}" for k, v in shown.items())
        return f"{explicit if explicit is not None else variant.method} {suffix}".strip()

    def section(self, node: Any, line: int, name: str, keys: tuple[str, ...]) -> bool:
        """Whether ``node`` is a section to read: absent (None) leaves the defaults, anything but a
        mapping is an error, and an unknown key is one."""
        if node is None:
            return False
        if not isinstance(node, _Map):
            self.fail(line, f"{name} must be a mapping ({', '.join(keys)})")
            return False
        self.keys(node, keys, name)
        return True

    # -- protocol and report ---------------------------------------------------------------
    def protocol(self, node: Any, line: int, inputs: list[InputSet]) -> Protocol:
        proto = Protocol()
        prompts = [i.prompt for s in inputs for i in s.items if i.prompt]
        if prompts:
            proto.captions, proto.captions_source = prompts, "the study's prompts"
        if not self.section(node, line, "protocol", PROTOCOL_KEYS):
            return proto
        if "clip_models" in node:
            models = node["clip_models"]
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
                self.fail(node.key_lines["clip_models"], "clip_models is a list of CLIP model ids or folders")
            else:
                proto.clip_models = [m.strip() for m in models]
        if "views" in node:
            proto.views = self.number(node, "views", integer=True, low=1)
        if "resolution" in node:
            proto.resolution = self.number(node, "resolution", integer=True, low=32)
        if "captions" in node:
            path = self.file(node, "captions", "caption file")
            if path is not None:
                try:
                    proto.captions = [p.text for p in read_prompts(path)]
                    proto.captions_source = f"{path} ({provenance(path) or 'no provenance given'})"
                except PromptFileError as exc:
                    self.fail(node.key_lines["captions"], str(exc))
        if "quality" in node:
            proto.quality = self.string(node, "quality")
        if "options" in node:
            if not isinstance(node["options"], _Map):
                self.fail(node.key_lines["options"], "options is a mapping passed to the scorer")
            else:
                proto.options = _plain(node["options"])
        return proto

    def report(self, node: Any, line: int) -> ReportOptions:
        opts = ReportOptions()
        if not self.section(node, line, "report", REPORT_KEYS):
            return opts
        for key, low in (("renders", 0), ("views", 1), ("bootstrap", 100)):
            if key in node and (value := self.number(node, key, integer=True, low=low)) is not None:
                setattr(opts, key, value)
        if "confidence" in node and (value := self.number(node, "confidence", low=0.5)) is not None:
            if value >= 1:
                self.fail(node.key_lines["confidence"], f"confidence must be below 1, got {value}")
            else:
                opts.confidence = float(value)
        return opts


def _resolved(method: methods.Method, modality: str, overrides: dict[str, Any]) -> dict[str, Any]:
    defaults = method.default_settings(modality)
    settings = type(defaults).from_dict(dict(overrides), base=defaults).to_dict()
    settings.pop("seed", None)
    return settings


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- scenes


def load_scene(path: Path, split: str = "train", max_frames: int | None = None) -> Inputs:
    """A multi-view scene as video Inputs: a NeRF-synthetic folder (transforms_<split>.json: poses and
    intrinsics), a folder of frames, or a video file."""
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InvalidInput(f"{path.name} is not a video ({', '.join(VIDEO_SUFFIXES)}) or a scene folder")
        return Inputs(modality="video", video_path=str(path), name=path.name).validated()
    transforms = next((t for t in (path / f"transforms_{split}.json", path / "transforms.json") if t.exists()), None)
    if transforms is None:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_frames]
        if not files:
            raise InvalidInput(f"{path} holds no transforms_{split}.json and no images")
        return Inputs(modality="video", frames=[load_image(str(p)) for p in files], name=path.name).validated()
    meta = json.loads(transforms.read_text())
    if "camera_angle_x" not in meta:
        # a nerfstudio transforms.json (fl_x / fl_y, a camera model, perhaps distortion): the methods' own
        # scene reader takes the folder, as it does from the CLI
        return Inputs(modality="video", video_path=str(path), name=path.name).validated()
    entries = meta["frames"][:max_frames]
    frames, poses = [], []
    for entry in entries:
        file = path / entry["file_path"]
        file = file if file.suffix else file.with_suffix(".png")
        frames.append(load_image(str(file)))
        poses.append(entry["transform_matrix"])
    import numpy as np

    width, height = frames[0].size
    focal = 0.5 * width / np.tan(0.5 * float(meta["camera_angle_x"]))
    intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=np.float64)
    return Inputs(
        modality="video",
        frames=frames,
        poses=np.asarray(poses, dtype=np.float64),
        intrinsics=intrinsics,
        name=f"{path.name}/{split}",
    ).validated()
