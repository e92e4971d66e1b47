"""Trilemma3D methods: the contract, the registry and the run entry point.

Public API::

    from methods import Inputs, Settings, Asset, Mesh, PointCloud, Progress, Method
    from methods import register, get, ids, listing, availability, run
    from methods.raycast import RayScene, decimate             # Embree ray casting, quadric decimation (wheels)
"""

import os

# OpenMP threads that spin while another process holds the cores slow torch tenfold or more on
# small CPUs (measured 45x on 2 cores); set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from methods.base import (  # noqa: E402
    MODALITIES,
    Asset,
    CheckpointError,
    Inputs,
    InvalidInput,
    InvalidSettings,
    Mesh,
    Method,
    MethodError,
    MethodUnavailable,
    PointCloud,
    Progress,
    RunGenerator,
    Settings,
    UnknownMethod,
    load_image,
    normalize,
    setting,
)
from methods.registry import Availability, availability, get, ids, listing, register, require_available  # noqa: E402


def run(method_id: str, inputs: Inputs, settings: Settings | dict | None = None) -> RunGenerator:
    """Run a registered method: yields Progress, returns the Asset (``asset = yield from run(...)``).

    ``settings`` may be a Settings instance or a dict of overrides on the modality's defaults.
    """
    method = get(method_id)
    if inputs.modality not in method.modalities:
        raise InvalidInput(
            f"{method_id} does not take {inputs.modality} input (it takes {', '.join(method.modalities)})"
        )
    defaults = method.default_settings(inputs.modality)
    if settings is None:
        settings = defaults
    elif isinstance(settings, dict):
        settings = type(defaults).from_dict(settings, base=defaults)
    settings.validate()
    require_available(method, inputs.modality, settings)
    asset = yield from method.run(inputs, settings)
    return asset


__all__ = [
    "MODALITIES",
    "Asset",
    "Availability",
    "CheckpointError",
    "InvalidInput",
    "InvalidSettings",
    "Inputs",
    "Mesh",
    "Method",
    "MethodError",
    "MethodUnavailable",
    "PointCloud",
    "Progress",
    "RunGenerator",
    "Settings",
    "UnknownMethod",
    "availability",
    "get",
    "ids",
    "listing",
    "load_image",
    "normalize",
    "register",
    "require_available",
    "run",
    "setting",
]
