"""The caption vocabulary and tokeniser of the family models (no torch: the UI can validate prompts).

Captions are bags of words ("a tall blue lamp"): the models embed each known word and pool, so word
order does not matter. Unknown words are reported, never silently guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from methods.base import InvalidInput

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.12, 0.12),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (0.98, 0.50, 0.08),
    "purple": (0.50, 0.18, 0.70),
    "pink": (0.98, 0.55, 0.75),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
    "grey": (0.50, 0.50, 0.50),
    "brown": (0.50, 0.30, 0.12),
    "cyan": (0.10, 0.80, 0.85),
}
CATEGORIES: tuple[str, ...] = (
    "cube",
    "sphere",
    "cylinder",
    "cone",
    "torus",
    "pyramid",
    "capsule",
    "ring",
    "table",
    "chair",
    "mug",
    "lamp",
)
SIZES: tuple[str, ...] = ("small", "large", "tall", "wide")
VOCABULARY: tuple[str, ...] = (*CATEGORIES, *COLOURS, *SIZES)
WORD_ID: dict[str, int] = {w: i for i, w in enumerate(VOCABULARY)}
STOPWORDS = frozenset({"a", "an", "the", "one", "of", "some", "please", "make", "me", "3d", "model"})
SYNONYMS: dict[str, str] = {
    "big": "large",
    "gray": "grey",
    "box": "cube",
    "ball": "sphere",
    "donut": "torus",
    "doughnut": "torus",
    "cup": "mug",
    "violet": "purple",
    "cubes": "cube",
    "spheres": "sphere",
}


@dataclass(frozen=True)
class Tokens:
    """A tokenised prompt: the known words (canonical spelling), their ids and the unknown words."""

    words: tuple[str, ...]
    ids: tuple[int, ...]
    unknown: tuple[str, ...]

    def note(self) -> str:
        """A line for Asset.notes naming the ignored words, or '' when every word was known."""
        if not self.unknown:
            return ""
        names = ", ".join(repr(w) for w in self.unknown)
        return f"ignored word(s) outside the vocabulary: {names} (known: shapes, colours, sizes; see the method card)"


def tokenize(prompt: str) -> Tokens:
    """Split a prompt into known and unknown words. Stopwords ('a', 'the', ...) are dropped."""
    words, ids, unknown = [], [], []
    for raw in re.findall(r"[a-z0-9]+", prompt.lower()):
        if raw in STOPWORDS:
            continue
        word = SYNONYMS.get(raw, raw)
        if word in WORD_ID:
            words.append(word)
            ids.append(WORD_ID[word])
        elif raw not in unknown:
            unknown.append(raw)
    return Tokens(tuple(words), tuple(ids), tuple(unknown))


def tokenize_or_refuse(prompt: str) -> Tokens:
    """:func:`tokenize`, but an InvalidInput when no word of the prompt is in the vocabulary."""
    tokens = tokenize(prompt)
    if not tokens.ids:
        shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        raise InvalidInput(
            f"no word of {shown!r} is in the vocabulary of the trained family models; use a shape "
            f"({', '.join(CATEGORIES)}), a colour ({', '.join(COLOURS)}) and optionally a size ({', '.join(SIZES)}), "
            "e.g. 'a small red mug'"
        )
    return tokens


def caption(category: str, colour: str, size: str = "") -> str:
    """The template caption: 'a red cube', 'a tall blue lamp'."""
    return " ".join(w for w in ("a", size, colour, category) if w)
