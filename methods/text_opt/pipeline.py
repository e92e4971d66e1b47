"""The runs of ``dreamfusion`` and ``dreamfields``: load the guidance, optimise the field, export a mesh.

These are the heavy halves of the methods in :mod:`methods.text_opt`: they yield
:class:`methods.base.Progress` (a preview render and the loss every few seconds) and return the
:class:`methods.base.Asset` (+Y up, in the field's cube). Closing the generator stops the loop
after the current step and frees the field and optimiser state (``finally``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from methods import runtime
from methods.base import Asset, Inputs, InvalidInput, Mesh, Progress
from methods.nerf.mesh import MeshOptions
from methods.nerf.train import Budget
from methods.text_opt import CPU_BUDGET_SECONDS, GPU_BUDGET_SECONDS
from methods.text_opt.cameras import CameraRange
from methods.text_opt.loop import FieldOptimizer, Guidance, LoopConfig

TURNTABLE_FRAMES = 12


def budget_seconds(settings, device: str) -> float:
    """The settings' budget, or the default for the device when it is 0."""
    cuda = device.startswith("cuda")
    return float(settings.budget_seconds or (GPU_BUDGET_SECONDS if cuda else CPU_BUDGET_SECONDS))


def _loop_settings(settings, device: str) -> dict[str, Any]:
    """The loop's knobs both methods take from their settings as they are."""
    return {
        "steps": int(settings.steps),
        "budget_seconds": budget_seconds(settings, device),
        "render_size": int(settings.resolution),
        "grid_resolution": int(settings.grid_resolution),
        "learning_rate": float(settings.learning_rate),
        "seed": int(settings.seed),
        "preview_size": min(int(settings.resolution), 128),
    }


def dreamfusion_config(settings, device: str) -> LoopConfig:
    """Stable DreamFusion's loop: random cameras all around, shading augmentation, learned / random background."""
    return LoopConfig(cameras=CameraRange(), shading=True, background="mixed", **_loop_settings(settings, device))


def dreamfields_config(settings, device: str) -> LoopConfig:
    """Dream Fields' loop: cameras at radius 4 and 30 degrees of elevation, albedo, no regularisers but sparsity."""
    from methods.text_opt.clip_guidance import DREAM_FIELDS_FOV

    return LoopConfig(
        cameras=CameraRange(elevation=(30.0, 30.0), radius=(4.0, 4.0), fov=(DREAM_FIELDS_FOV, DREAM_FIELDS_FOV)),
        shading=False,
        background="none",  # the guidance composites its own random backgrounds
        lambda_orientation=0.0,
        lambda_opacity=0.0,
        lambda_entropy=0.0,
        bound=1.0,
        **_loop_settings(settings, device),
    )


def run_dreamfusion(inputs: Inputs, settings) -> Generator[Progress, None, Asset]:
    def guidance(device: str) -> Guidance:
        from methods.text_opt.sds import StableDiffusionGuidance, load_stable_diffusion

        parts = load_stable_diffusion(settings.checkpoint, device, settings.precision)
        return StableDiffusionGuidance(parts, inputs.prompt, float(settings.guidance_scale), seed=int(settings.seed))

    notes = [
        "DreamFusion with Stable Diffusion in place of Imagen (as Stable DreamFusion), on this project's "
        "density-grid radiance field"
    ]
    asset = yield from _run(inputs, settings, guidance, dreamfusion_config, notes)
    return asset


def run_dreamfields(inputs: Inputs, settings) -> Generator[Progress, None, Asset]:
    def guidance(device: str) -> Guidance:
        from methods.text_opt.clip_guidance import DreamFieldsGuidance, load_clip

        parts = load_clip(settings.checkpoint, device, settings.precision)
        return DreamFieldsGuidance(
            parts,
            inputs.prompt,
            clip_weight=float(settings.guidance_scale),
            augmentations=int(settings.augmentations),
            seed=int(settings.seed),
        )

    notes = [
        f"optimised against CLIP {settings.checkpoint}: alignment is scored with another CLIP",
        "Dream Fields on this project's density-grid radiance field (the paper uses mip-NeRF)",
    ]
    asset = yield from _run(inputs, settings, guidance, dreamfields_config, notes)
    return asset


def _run(
    inputs: Inputs,
    settings,
    make_guidance: Callable[[str], Guidance],
    make_config: Callable[..., LoopConfig],
    notes: list[str],
) -> Generator[Progress, None, Asset]:
    if inputs.modality != "text" or not inputs.prompt or not inputs.prompt.strip():
        raise InvalidInput("a text prompt is needed: describe the object to generate")
    stages: dict[str, float] = {}
    device = runtime.device()
    notes = list(notes)
    yield Progress("load", 0.0, f"loading {settings.checkpoint}")
    with runtime.timed(stages, "load"):
        guidance = make_guidance(device)
    notes.extend(getattr(guidance, "notes", []))
    config = make_config(settings, device)
    with runtime.timed(stages, "load"):
        optimiser = FieldOptimizer(config, guidance, device)
    try:
        yield Progress(
            "optimise",
            0.0,
            f"optimising a {config.grid_resolution}^3 field from {config.render_size} px renders, "
            f"budget {config.budget_seconds:.0f} s or {config.steps} steps on {device}",
        )
        started = time.perf_counter()
        steps = 0
        for event in optimiser.fit(Budget(config.budget_seconds, config.steps)):
            steps = event.step
            loss = event.stats.get("loss", float("nan"))
            optimiser.curve.append((round(event.seconds, 2), event.step, round(loss, 6)))
            yield Progress(
                "optimise",
                event.fraction,
                f"step {event.step}, {event.seconds:.0f} of {config.budget_seconds:.0f} s, loss {loss:.4g}",
                event.preview,
            )
        stages["optimise"] = time.perf_counter() - started
        notes.append(
            f"optimised {steps} steps in {stages['optimise']:.0f} s on {device} "
            f"(budget {config.budget_seconds:.0f} s, {config.steps} steps)"
        )
        if optimiser.nonfinite_steps:
            notes.append(f"{optimiser.nonfinite_steps} step(s) had a non-finite loss and were skipped")
        if not device.startswith("cuda"):
            notes.append("ran on a CPU: a few steps only, far from a converged object (a GPU run takes 30 min)")

        yield Progress("mesh", None, f"marching cubes at {settings.mesh_resolution}^3")
        target_faces = int(settings.decimate_faces)
        with runtime.timed(stages, "mesh"):
            extracted = optimiser.extract(
                MeshOptions(
                    resolution=int(settings.mesh_resolution),
                    threshold=float(settings.threshold),
                    target_faces=target_faces,
                )
            )
        if extracted["faces_before_decimation"] > len(extracted["faces"]):
            notes.append(
                f"mesh decimated from {extracted['faces_before_decimation']} to {len(extracted['faces'])} faces"
            )
        if extracted["components_removed"]:
            notes.append(f"removed {extracted['components_removed']} small disconnected part(s)")
        yield Progress("turntable", None, "rendering a turntable from the field")
        with runtime.timed(stages, "turntable"):
            turntable = optimiser.turntable(TURNTABLE_FRAMES)
        views = {
            "turntable": turntable,
            "train_curve": list(optimiser.curve),
            "optimisation": {"steps": steps, "device": device, "budget_seconds": config.budget_seconds},
        }
        mesh = Mesh(extracted["vertices"], extracted["faces"], np.asarray(extracted["colors"], dtype=np.float32))
        return Asset(mesh=mesh, up="+Y", notes=notes, stage_seconds=stages, views=views)
    finally:
        optimiser.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = ["budget_seconds", "dreamfields_config", "dreamfusion_config", "run_dreamfields", "run_dreamfusion"]
