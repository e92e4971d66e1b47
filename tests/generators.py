"""Drive a method's run generator to its end in tests."""

from __future__ import annotations

from collections.abc import Generator

from methods.base import Asset, Progress


def drive(gen: Generator[Progress, None, Asset]) -> tuple[list[Progress], Asset]:
    """All Progress events a run yields, and the Asset it returns."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value
