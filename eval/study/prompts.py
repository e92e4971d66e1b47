"""Prompt sets read from files: plain text (one prompt per line) or JSON, with their provenance.

The project ships only prompts it wrote itself (assets/prompts/); sets from the literature
(Dream Fields' object-centric COCO captions, DreamFusion's gallery, T3Bench, GPTEval3D) are read
from wherever the researcher keeps them, and recognised by file name for the report's citations.

Formats:
- ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped (the
  project's own files say where they come from in a leading ``#`` block).
- ``.json``: a list of strings (or of objects with a ``prompt``, ``text`` or ``caption`` field),
  or an object whose value under ``key`` is such a list (with one list in it, ``key`` may be left out,
  as in threestudio's ``{"dreamfusion": [...]}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PROMPT_SUFFIXES = (".txt", ".json")


class PromptFileError(ValueError):
    """A prompt file that cannot be read as a prompt set; the message says why."""


@dataclass(frozen=True)
class Prompt:
    text: str
    where: str  # "line 7" (text files) or "item 7" (JSON lists), 1-based, for error messages


@dataclass(frozen=True)
class KnownSet:
    title: str
    citation: str


# Recognised by file name (as laid out in the shared prompt folder), for the report's setup section.
KNOWN_SETS: dict[str, KnownSet] = {
    "dreamfields_object_centric_coco_val_153.txt": KnownSet(
        "Dream Fields object-centric COCO captions (153)",
        "Jain et al., Zero-Shot Text-Guided Object Generation with Dream Fields, CVPR 2022",
    ),
    "dreamfields_object_centric_coco_val_153_raw.json": KnownSet(
        "Dream Fields object-centric COCO captions, verbatim (153)",
        "Jain et al., Zero-Shot Text-Guided Object Generation with Dream Fields, CVPR 2022",
    ),
    "dreamfusion_gallery_415.txt": KnownSet(
        "DreamFusion gallery prompts (415)",
        "Poole et al., DreamFusion: Text-to-3D using 2D Diffusion, ICLR 2023",
    ),
    "threestudio_prompt_library_dreamfusion.json": KnownSet(
        "DreamFusion gallery prompts, threestudio's library (415)",
        "Poole et al., DreamFusion: Text-to-3D using 2D Diffusion, ICLR 2023 (list from threestudio)",
    ),
    "t3bench_prompt_single.txt": KnownSet(
        "T3Bench single object (100)",
        "He et al., T3Bench: Benchmarking Current Progress in Text-to-3D Generation, 2023",
    ),
    "t3bench_prompt_surr.txt": KnownSet(
        "T3Bench single object with surroundings (100)",
        "He et al., T3Bench: Benchmarking Current Progress in Text-to-3D Generation, 2023",
    ),
    "t3bench_prompt_multi.txt": KnownSet(
        "T3Bench multiple objects (100)",
        "He et al., T3Bench: Benchmarking Current Progress in Text-to-3D Generation, 2023",
    ),
    "gpteval3d_110.txt": KnownSet(
        "GPTEval3D tournament prompts (110)",
        "Wu et al., GPT-4V(ision) is a Human-Aligned Evaluator for Text-to-3D Generation, CVPR 2024",
    ),
    "gpteval3d_tournament_v0_prompts.json": KnownSet(
        "GPTEval3D tournament prompts (110)",
        "Wu et al., GPT-4V(ision) is a Human-Aligned Evaluator for Text-to-3D Generation, CVPR 2024",
    ),
}


def read_prompts(path: str | Path, key: str | None = None) -> list[Prompt]:
    """The prompts of a ``.txt`` or ``.json`` file, in file order; PromptFileError when unreadable."""
    path = Path(path)
    if path.suffix.lower() not in PROMPT_SUFFIXES:
        raise PromptFileError(
            f"{path.name}: prompt files are .txt (one per line) or .json, not {path.suffix or 'none'}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"no such prompt file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptFileError(f"{path} cannot be read as UTF-8 text: {exc}") from None
    prompts = _read_json(path, text, key) if path.suffix.lower() == ".json" else _read_txt(text)
    if not prompts:
        raise PromptFileError(f"{path} holds no prompts")
    return prompts


def _read_txt(text: str) -> list[Prompt]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append(Prompt(stripped, f"line {number}"))
    return out


def _read_json(path: Path, text: str, key: str | None) -> list[Prompt]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptFileError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if key is not None:
            if key not in lists:
                raise PromptFileError(f"{path} has no list under {key!r}; it has: {', '.join(lists) or 'none'}")
            data = lists[key]
        elif len(lists) == 1:
            data = next(iter(lists.values()))
        else:
            raise PromptFileError(f"{path} holds several lists ({', '.join(lists)}); say which with `key:`")
    elif key is not None:
        raise PromptFileError(f"{path} is a JSON list; `key:` applies only to a JSON object")
    if not isinstance(data, list):
        raise PromptFileError(f"{path} is neither a JSON list of prompts nor an object holding one")
    out = []
    for number, item in enumerate(data, start=1):
        if isinstance(item, dict):
            item = next((item[k] for k in ("prompt", "text", "caption") if isinstance(item.get(k), str)), None)
        if not isinstance(item, str):
            raise PromptFileError(f"{path} item {number} is not a prompt (a string, or an object with 'prompt')")
        if item.strip():
            out.append(Prompt(item.strip(), f"item {number}"))
    return out


def provenance(path: str | Path) -> str:
    """Where a prompt set comes from, in one line: a known set's citation, the file's own ``#`` header,
    and a PROVENANCE.md beside it when there is one."""
    path = Path(path)
    parts = []
    known = KNOWN_SETS.get(path.name)
    if known is not None:
        parts.append(f"{known.title}; {known.citation}")
    elif path.suffix.lower() == ".txt" and path.exists():
        header = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.startswith("#"):
                break
            header.append(line.lstrip("#").strip())
        if any(header):
            parts.append(" ".join(h for h in header if h))
    if (path.parent / "PROVENANCE.md").exists():
        parts.append(f"provenance: {path.parent / 'PROVENANCE.md'}")
    return "; ".join(parts)
