"""Shared pieces of the 3D-latent flow models (TripoSG, Hunyuan3D-2mini, and the next of that family).

An image encoder gives condition tokens, a flow-matching denoiser turns noise into shape latents, and a VAE
decoder answers "how far inside is this point" for a grid, which marching cubes turns into a mesh. The
model-specific networks live in each model's package; what they share is here, with no model's names.

Public API (stable; models import these names from ``methods.latent3d``):

``conditioner``
    ``DinoConditioner(config_dict, attn_implementation="sdpa")``: transformers ``Dinov2Model`` whose
    state_dict uses the transformers-4.x key names of the released checkpoints (attention and SwiGLU mapped
    both ways by hooks); ``forward(pixels) -> last_hidden_state``; ``load_released(state)`` /
    ``released_state_dict()`` for a file's own keys. ``to_v4_names`` / ``from_v4_names`` (in place, by prefix).
    ``bit_image_pixels(image, shortest_edge, crop, mean, std)``: transformers 4.x ``BitImageProcessor`` (PIL).
``sampler``
    ``FlowConvention(sign, time_scale, batch_order, guidance_embed)``; ``TRIPOSG``;
    ``rectified_flow_sigmas(steps, shift)``; ``timesteps_of``; ``euler_step``; ``guided``; ``uses_cfg``;
    ``flow_steps(denoiser, latents, cond, uncond, sigmas, convention, guidance_scale, **extra)`` yielding
    ``FlowStep(index, total, latents, velocity, raw)``; ``sample(...)`` -> final latents.
    A denoiser is ``(latents, timestep (B,), context, **extra) -> velocity``.
``grid``
    ``grid_axes(bounds, points, dtype)``; ``decode_points(query, points, chunk_size)``;
    ``dense_grid(query, axes, chunk_size)``; ``hierarchical_grid(query, bounds, resolution,
    coarse_resolution, band, margin, chunk_size)`` -> (grid, evaluated counts); ``refine_once``;
    ``coarse_cells(resolution, hierarchical, smallest)``; ``field_grid(query, bounds, resolution, coarse, chunk_size,
    band, device, level)`` (coarse-to-fine when ``coarse < resolution``, else dense).
    A query is ``(P, 3) float32 -> (P,)`` logits, positive inside.
``mesh``
    ``marching_cubes(grid, level, inside, what, outward=False)`` -> (grid-index vertices, faces; skimage's
    winding, inward right-hand normals, unless ``outward``);
    ``index_to_world(vertices, bounds, points, divisor=None)``.
``stages``
    ``denoise_stage(flow, latents, steps, guidance, clock)`` and ``mesh_stage(decode, grid_of, extract_mesh,
    field, resolution, coarse, clock)``: the run's denoise and grid-to-mesh stages as Progress generators, each
    stage's seconds added by ``clock`` (``methods.image_to_3d.Clock``).

Everything takes explicit ``device`` / ``dtype`` from its tensors; nothing here probes hardware.
"""

from methods.latent3d.conditioner import DinoConditioner, bit_image_pixels, from_v4_names, to_v4_names
from methods.latent3d.grid import as_bounds, decode_points, dense_grid, grid_axes, hierarchical_grid, refine_once
from methods.latent3d.mesh import index_to_world, marching_cubes
from methods.latent3d.sampler import (
    TRIPOSG,
    FlowConvention,
    FlowStep,
    euler_step,
    flow_steps,
    guided,
    rectified_flow_sigmas,
    sample,
    timesteps_of,
    uses_cfg,
)
from methods.latent3d.stages import denoise_stage, mesh_stage

__all__ = [
    "DinoConditioner",
    "bit_image_pixels",
    "from_v4_names",
    "to_v4_names",
    "as_bounds",
    "decode_points",
    "dense_grid",
    "grid_axes",
    "hierarchical_grid",
    "refine_once",
    "index_to_world",
    "marching_cubes",
    "TRIPOSG",
    "FlowConvention",
    "FlowStep",
    "euler_step",
    "flow_steps",
    "guided",
    "rectified_flow_sigmas",
    "sample",
    "timesteps_of",
    "uses_cfg",
    "denoise_stage",
    "mesh_stage",
]
