"""Helpers for the ratings tests: a store with finished runs of several methods on shared inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from eval.ratings import Policy
from eval.runs.store import Store

OPEN = Policy(min_view_seconds=0.0, votes_per_minute=0, pairs_per_minute=0, ratings_per_minute=0)
ALL = ("geometry", "appearance", "alignment", "overall")


def answers(value: str = "left", **overrides: str) -> dict[str, str]:
    return {c: overrides.get(c, value) for c in ALL}


def add_run(store: Store, root: Path, method: str, prompt: str, *, status: str = "done", seed: int = 0) -> str:
    """Record a finished run of ``method`` on ``prompt`` with a small file as its asset (no method code)."""
    h = hashlib.sha256(prompt.encode()).hexdigest()[:16]
    run_id = f"{method}-{h[:6]}-{seed}"
    folder = root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    asset = folder / "asset.glb"
    asset.write_bytes(b"glTF" + json.dumps({"method": method}).encode())
    store.start_run(
        {
            "id": run_id,
            "method": method,
            "modality": "text",
            "inputs_hash": h,
            "inputs": {"modality": "text", "hash": h, "prompt": prompt},
            "seed": seed,
        }
    )
    store.finish_run(run_id, status, asset_path=str(asset) if status == "done" else None)
    return run_id


def make_store(root: Path, methods: tuple[str, ...] = ("m-a", "m-b", "m-c"), prompts: tuple[str, ...] = ("a chair",)):
    """A store with one finished run per method and prompt; returns (store, {(method, prompt): run id})."""
    store = Store(root / "study.db")
    runs = {(m, p): add_run(store, root, m, p) for m in methods for p in prompts}
    return store, runs
