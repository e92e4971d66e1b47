"""LPIPS weights: the official files, fetched once into the project's cache, or a local folder.

LPIPS v0.1 needs two files: the ImageNet trunk as torchvision publishes it, and the learned
linear layers as the ``lpips`` package (Zhang et al. 2018) publishes them. ``source`` is
``"official"`` (downloaded on first use into ``$TRILEMMA_CACHE/lpips`` or
``~/.cache/trilemma3d/lpips``, as Point-E's checkpoints are: a progress bar, the size and sha256
recorded beside each file) or a folder that holds the same files under their official names.
Offline (``HF_HUB_OFFLINE`` / ``TRILEMMA_OFFLINE``) nothing is downloaded: :class:`LpipsUnavailable`
says which file is missing where, and the protocol reports a skipped row with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from methods.base import CheckpointError, Progress

OFFICIAL = "official"
TRUNK_URLS = {
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
}
LINEAR_URLS = {
    net: f"https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{net}.pth"
    for net in ("vgg", "alex")
}


class LpipsUnavailable(OSError):
    """The weights are not here and cannot be fetched (offline, or a download failed)."""


def cache_dir() -> Path:
    """``$TRILEMMA_CACHE/lpips``, else ``~/.cache/trilemma3d/lpips``."""
    root = os.environ.get("TRILEMMA_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "trilemma3d") / "lpips"


def file_names(net: str) -> list[str]:
    """The official file names: the trunk (torchvision's, its sha256 prefix in the name) and the linear layers."""
    if net not in TRUNK_URLS:
        raise ValueError(f"LPIPS net must be one of {', '.join(TRUNK_URLS)}, got {net!r}")
    return [TRUNK_URLS[net].rsplit("/", 1)[-1], f"{net}.pth"]


def _offline() -> bool:
    flags = (os.environ.get(name, "0").strip().lower() for name in ("HF_HUB_OFFLINE", "TRILEMMA_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags)


def _trunk_prefix(name: str) -> str | None:
    """torchvision names its files ``<arch>-<first 8 hex digits of the sha256>.pth``."""
    tail = Path(name).stem.rsplit("-", 1)[-1]
    return tail if len(tail) == 8 and all(c in "0123456789abcdef" for c in tail) else None


def ensure(net: str = "vgg", source: str = OFFICIAL) -> Iterator[Progress]:
    """Make both files present; ``paths = yield from ensure(...)`` returns them (trunk, linear layers)."""
    from methods.point_e.checkpoints import download, sha256_of

    names = file_names(net)
    folder = cache_dir() if source == OFFICIAL else Path(source).expanduser()
    paths = [folder / name for name in names]
    if source != OFFICIAL:
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise LpipsUnavailable(f"the LPIPS folder {folder.name} lacks {', '.join(missing)} (the official names)")
        return paths
    for path, url in zip(paths, (TRUNK_URLS[net], LINEAR_URLS[net]), strict=True):
        if path.is_file():
            continue
        if _offline():
            raise LpipsUnavailable(
                f"LPIPS ({net}) weights {path.name} are not in the cache and downloads are off "
                f"(HF_HUB_OFFLINE or TRILEMMA_OFFLINE is set); they come from {url}"
            )
        try:
            yield from download(url, path, None, stage=f"download LPIPS {path.name}")
        except CheckpointError as exc:
            raise LpipsUnavailable(str(exc)) from None
        prefix = _trunk_prefix(path.name)
        if prefix and not sha256_of(path).startswith(prefix):
            path.unlink(missing_ok=True)
            raise LpipsUnavailable(f"the download of {url} does not match the sha256 prefix {prefix} in its name")
    return paths


def resolve(net: str = "vgg", source: str = OFFICIAL) -> list[Path]:
    """:func:`ensure` run to its end, the download progress shown only by its tqdm bar."""
    gen = ensure(net, source)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
