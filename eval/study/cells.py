"""Cells: one (input, method settings, seed) run of a study, named by a key that says what it computes.

The key hashes the method id and version, the resolved settings (defaults filled in), the seed, the
inputs hash, the reference mesh and the metric protocol. A cell already in the store under the same
study and key is done: a study run skips it, so a study resumes where it stopped, and changing a
setting, the protocol or the method's version makes new cells instead of reusing stale ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Cell:
    key: str
    method: str
    method_version: str
    variant: str  # the method variant's label (method and the settings that tell it apart)
    settings: dict[str, Any]  # resolved, seed included
    seed: int
    input_id: str
    input_label: str
    modality: str
    inputs_hash: str
    budget_s: float | None = None

    @property
    def title(self) -> str:
        return f"{self.variant} | {self.input_id} | seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DuplicateCell(ValueError):
    """Two cells of a study compute the same thing; ``line`` is the study line of the second."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def cell_key(
    method: str,
    method_version: str,
    settings: dict[str, Any],
    seed: int,
    inputs_hash: str,
    protocol: dict[str, Any],
    reference: str | None = None,
) -> str:
    """A stable 20-hex-digit key of everything that determines a cell's asset and its numbers."""
    payload = {
        "method": method,
        "method_version": str(method_version),
        "settings": {k: v for k, v in settings.items() if k != "seed"},
        "seed": int(seed),
        "inputs_hash": inputs_hash,
        "reference": reference,
        "protocol": protocol,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
