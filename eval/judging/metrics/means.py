"""What every metric accumulator shares: per-metric lists of values and their means."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class Means:
    """Mixin for an accumulator with a ``values`` dict: ``add`` a row of numbers, ``compute`` the means."""

    values: dict[str, list[float]]

    def add(self, row: Mapping[str, float]) -> None:
        for key, value in row.items():
            self.values.setdefault(key, []).append(value)

    def compute(self) -> dict[str, float]:
        return {key: float(np.mean(vals)) for key, vals in self.values.items()}

    def reset(self) -> None:
        self.values.clear()
