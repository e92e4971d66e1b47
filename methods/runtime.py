"""The one place that probes hardware: device, dtype, seeding, the model cache, peak memory.

torch is imported inside functions so that importing this module stays light.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from typing import Any

_LOCK = threading.RLock()
_MODELS: OrderedDict[str, Any] = OrderedDict()
MAX_CPU_MODELS = int(os.environ.get("TRILEMMA_MAX_CPU_MODELS", "2"))


def has_cuda() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def gpu_present() -> bool:
    """A CUDA GPU is here, without importing torch when nothing has imported it yet (listing stays light)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    if "torch" in sys.modules:
        return has_cuda()
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def device() -> str:
    """'cuda' when a GPU is present, else 'cpu'. TRILEMMA_DEVICE overrides."""
    forced = os.environ.get("TRILEMMA_DEVICE")
    if forced:
        return forced
    return "cuda" if has_cuda() else "cpu"


def dtype(dev: str | None = None):
    """float16 on CUDA, float32 on the CPU (diffusers' 'usability over performance')."""
    import torch

    return torch.float16 if (dev or device()).startswith("cuda") else torch.float32


def generator(seed: int, dev: str | None = None):
    """A torch.Generator seeded for reproducible sampling on the device."""
    import torch

    g = torch.Generator(device=dev or device())
    g.manual_seed(int(seed))
    return g


def get_model(key: str, loader: Callable[[], Any]) -> Any:
    """A loaded model from the cache, or ``loader()``'s result, cached under ``key``.

    On a GPU only one model is kept resident: loading another releases the others first, so
    two pipelines never compete for GPU memory. On a CPU the last few models stay.
    """
    with _LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
        keep = 0 if device().startswith("cuda") else max(MAX_CPU_MODELS - 1, 0)
        while len(_MODELS) > keep:
            _MODELS.popitem(last=False)
        _free_memory()
        model = loader()
        _MODELS[key] = model
        return model


def release_models() -> None:
    with _LOCK:
        _MODELS.clear()
        _free_memory()


def cached_model_keys() -> list[str]:
    return list(_MODELS)


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def hardware() -> dict[str, Any]:
    """What ran this: CPU, cores, GPU name and memory (for run records)."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "device": device(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
    except ImportError:
        pass
    return info


LIBRARIES = (
    "torch",
    "diffusers",
    "transformers",
    "numpy",
    "trimesh",
    "gradio",
    "pycolmap",
    "embreex",
    "fast-simplification",
)


def versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Peak resident memory (MB) and peak CUDA memory (MB) while the ``with`` block runs."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_rss_mb = 0.0
        self.peak_gpu_mb: float | None = None
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        self.peak_rss_mb = _rss_mb()
        self._cuda = False
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
                self._cuda = True
        except ImportError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss_mb = max(self.peak_rss_mb, _rss_mb())
        if self._cuda:
            import torch

            self.peak_gpu_mb = torch.cuda.max_memory_allocated() / 2**20


@contextmanager
def timed(stages: dict[str, float], name: str):
    """Add the seconds spent in the block to ``stages[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
