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


PRECISIONS = ("auto", "float32", "bfloat16")
PRECISION_ENV = "TRILEMMA_PRECISION"  # auto | float32 | bfloat16: what "auto" means for every run in this process


def cpu_bfloat16() -> str | None:
    """The CPU's native bfloat16 matmul unit as torch reports it ("AMX", "AVX512-BF16"), or None.

    torch's own probes (``torch.cpu._is_*_supported``, cpuinfo underneath); a torch without them gives None.
    """
    import torch

    probes = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    for name, probe in probes:
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return name
    return None


def dtype(dev: str | None = None, precision: str = "auto"):
    """The dtype a model's weights and matmuls run in on ``dev``: the one precision decision of the project.

    ``precision`` is a run's ``precision`` setting: "float32" or "bfloat16" is used as given; "auto" takes
    TRILEMMA_PRECISION when it is set, else the hardware's choice: float16 on CUDA (as the official GPU
    pipelines run), bfloat16 on a CPU with AMX or AVX512-BF16 (matmuls about 2x float32's rate with
    AVX512-BF16, measured here; more with AMX), float32 on any other CPU. Samplers, schedules and grids
    stay float32 whatever this returns.
    """
    import torch

    return getattr(torch, _precision_name(dev or device(), precision))


def precision_record(precision: str | None = "auto", dev: str | None = None) -> dict[str, str | None]:
    """What a run records and shows: the setting, the dtype it resolved to on ``dev`` and why.

    ``precision`` None is a method without the setting (it loads no weights): float32 throughout.
    """
    dev = dev or device()
    if precision is None:
        return {"setting": None, "dtype": "float32", "device": dev, "why": "the method loads no weights"}
    name = _precision_name(dev, precision)
    if precision != "auto":
        why = "the run's precision setting"
    elif os.environ.get(PRECISION_ENV, "auto").strip().lower() != "auto":
        why = PRECISION_ENV
    elif dev.startswith("cuda"):
        why = "CUDA"
    else:
        unit = cpu_bfloat16()
        why = f"CPU with {unit}" if unit else "CPU without native bfloat16"
    return {"setting": precision, "dtype": name, "device": dev, "why": why}


def _precision_name(dev: str, precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        precision = os.environ.get(PRECISION_ENV, "auto").strip().lower() or "auto"
        if precision not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV}={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if dev.startswith("cuda"):
        return "float16"
    return "bfloat16" if cpu_bfloat16() else "float32"


def run_in(module: Any, dtype: Any) -> Any:
    """``module`` with its weights in ``dtype`` that takes and returns float32: callers keep float32 state.

    Floating inputs of two or more dimensions are cast to ``dtype`` on the way in; scalars and vectors
    (timesteps, which the modules embed in float32 themselves) are left alone; floating outputs come back
    float32. For models (diffusers pipelines' priors, encoders) whose callers hold sampler state.
    """
    import torch

    module.to(dtype)
    if dtype == torch.float32 or getattr(module, "_trilemma_float32_io", False):
        return module

    def cast(value: Any, to: Any, min_dim: int) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(to) if value.is_floating_point() and value.dim() >= min_dim else value
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(cast(v, to, min_dim) for v in value)
        if isinstance(value, list):
            return [cast(v, to, min_dim) for v in value]
        if isinstance(value, dict):  # also diffusers' BaseOutput / transformers' ModelOutput, updated in place
            for key in list(value.keys()):
                value[key] = cast(value[key], to, min_dim)
        return value

    def before(_module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return cast(args, dtype, 2), {k: cast(v, dtype, 2) for k, v in kwargs.items()}

    def after(_module: Any, _args: tuple, _kwargs: dict, output: Any) -> Any:
        return cast(output, torch.float32, 0)

    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True)
    module._trilemma_float32_io = True
    return module


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
