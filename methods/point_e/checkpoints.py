"""Point-E checkpoints: where they are, downloading them once, and loading them into our modules.

``checkpoint`` is either ``"official"`` (the official URLs, downloaded on first use into
``$TRILEMMA_CACHE/point_e`` or ``~/.cache/trilemma3d/point_e``) or a directory that holds the
official ``.pt`` files under their official names (``base_40m_textvec.pt``, ``upsample_40m.pt``, ...).

A download streams into ``<file>.tmp`` (with a tqdm bar and Progress), checks the length the server
announced and the sha256 (against :data:`configs.CHECKPOINT_SHA256` where pinned), then renames
and records ``<file>.sha256``; a later load checks the recorded size.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from methods.base import CheckpointError, MethodUnavailable, Progress
from methods.point_e import configs

OFFICIAL = configs.OFFICIAL
CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$TRILEMMA_CACHE/point_e``, else ``~/.cache/trilemma3d/point_e``."""
    root = os.environ.get("TRILEMMA_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "trilemma3d") / "point_e"


def offline() -> bool:
    flags = (os.environ.get(name, "0").strip().lower() for name in ("HF_HUB_OFFLINE", "TRILEMMA_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


def _check_name(name: str) -> None:
    if name not in configs.CHECKPOINT_FILES:
        raise CheckpointError(f"unknown Point-E checkpoint {name!r}; known: {', '.join(configs.CHECKPOINT_FILES)}")


def local_path(name: str, checkpoint: str = OFFICIAL) -> Path:
    """Where the checkpoint file of config ``name`` is (or will be, once downloaded)."""
    _check_name(name)
    folder = cache_dir() if checkpoint == OFFICIAL else Path(checkpoint).expanduser().resolve()
    return folder / configs.CHECKPOINT_FILES[name]


def is_cached(name: str, checkpoint: str = OFFICIAL) -> bool:
    return local_path(name, checkpoint).is_file()


def locate(name: str, checkpoint: str = OFFICIAL) -> str:
    """For availability: the local file when present (or when ``checkpoint`` is a directory), else the URL."""
    path = local_path(name, checkpoint)
    if checkpoint != OFFICIAL or path.is_file():
        return str(path)
    return configs.CHECKPOINT_URLS[name]


def ensure(name: str, checkpoint: str = OFFICIAL) -> Iterator[Progress]:
    """Make the checkpoint file present locally, downloading it if needed; yields download Progress.

    ``path = yield from ensure(...)`` returns the local path.
    """
    path = local_path(name, checkpoint)
    if path.is_file():
        _check_recorded_size(path)
        return path
    if checkpoint != OFFICIAL:
        raise CheckpointError(
            f"{path.name} (the {name} checkpoint) is not in {path.parent}; put the official file there "
            f"or use checkpoint='official' to download it"
        )
    if offline():
        raise MethodUnavailable(
            f"the Point-E {name} checkpoint is not cached ({path}) and downloads are off "
            "(HF_HUB_OFFLINE or TRILEMMA_OFFLINE is set)"
        )
    yield from download(
        configs.CHECKPOINT_URLS[name], path, configs.CHECKPOINT_SHA256.get(name), stage=f"download {name}"
    )
    return path


def download(url: str, dest: Path, sha256: str | None = None, stage: str = "download") -> Iterator[Progress]:
    """Stream ``url`` into ``dest`` (atomically, under a file lock) with a progress bar; verify size and sha256."""
    from filelock import FileLock
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_file():  # another process finished it while we waited
            return
        tmp = dest.with_name(dest.name + ".tmp")
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                with open(tmp, "wb") as fh, tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name) as bar:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        fh.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        bar.update(len(chunk))
                        if done % (16 * CHUNK) < len(chunk):
                            fraction = done / total if total else None
                            yield Progress(stage, fraction, f"{dest.name}: {done / 2**20:.0f} MB")
        except (urllib.error.URLError, OSError) as err:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(
                f"could not download {url}: {err}; download it by hand into a directory and set checkpoint to it"
            ) from None
        if total and done != total:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"the download of {url} stopped at {done} of {total} bytes; try again")
        actual = digest.hexdigest()
        if sha256 and actual != sha256:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"the download of {url} has sha256 {actual}, expected {sha256}; try again")
        tmp.replace(dest)
        _record(dest, url, done, actual)


def _record(path: Path, url: str, size: int, sha256: str) -> None:
    record = {"url": url, "size": size, "sha256": sha256}
    path.with_name(path.name + ".sha256").write_text(json.dumps(record, indent=1) + "\n")


def _check_recorded_size(path: Path) -> None:
    record_path = path.with_name(path.name + ".sha256")
    if not record_path.is_file():
        return
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return
    size = path.stat().st_size
    if record.get("size") not in (None, size):
        raise CheckpointError(
            f"{path} has {size} bytes but {record['size']} were downloaded; it was changed or truncated: delete it "
            f"to download it again"
        )


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- loading


def read_state_dict(path: str | Path) -> dict:
    """The tensors of an official ``.pt`` file (a plain state dict; loaded with ``weights_only``)."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {path} does not exist") from None
    except Exception as err:  # torch raises several types for a truncated or foreign file
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint ({type(err).__name__}: {_first_line(err)}); "
            f"it may be truncated or corrupt: delete it to download it again"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def _expected(name: str, config: dict | None = None) -> dict[str, tuple[int, ...]]:
    from methods.point_e.models import build_model

    model = build_model(config or configs.MODEL_CONFIGS[name], "meta")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def mismatches(expected: dict[str, tuple[int, ...]], state: dict) -> tuple[list[str], list[str], list[str]]:
    """Missing keys, unexpected keys, and ``key: shape != expected`` lines."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: {list(state[k].shape)} != {list(shape)}"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    return missing, unexpected, wrong


def check_state_dict(name: str, state: dict, source: str = "", config: dict | None = None) -> None:
    """Raise CheckpointError naming the keys when ``state`` does not fit config ``name`` exactly."""
    missing, unexpected, wrong = mismatches(_expected(name, config), state)
    if not (missing or unexpected or wrong):
        return
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:5])}{more}")
    hint = ""
    if config is None:
        other = [n for n in configs.MODEL_CONFIGS if n != name and not any(mismatches(_expected(n), state))]
        if other:
            hint = f"; it is a checkpoint of {' / '.join(other)}"
    where = f" {source}" if source else ""
    raise CheckpointError(f"the checkpoint{where} does not fit Point-E {name}: {'; '.join(parts)}{hint}")


def load_model(name: str, path: str | Path, device: str = "cpu", dtype=None, config: dict | None = None):
    """Build config ``name`` (or ``config``) without allocating, check and assign the file's tensors, move."""
    import torch

    from methods.point_e.models import build_model

    state = read_state_dict(path)
    check_state_dict(name, state, str(path), config)
    model = build_model(config or configs.MODEL_CONFIGS[name], "meta")
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device=device, dtype=dtype or torch.float32).eval().requires_grad_(False)
