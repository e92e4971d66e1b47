"""TripoSG parity: our implementation against outputs of the official code (tiny random weights, CPU, float32).

The fixture folder is ``$TRIPOSG_FIXTURES`` or ``../shared/fixtures/triposg/`` beside the repository; every
``*_meta.json`` in it is a case (its ``*_weights.safetensors`` and ``*_tensors.safetensors`` beside it, the tiny
``tiny_*_config.json`` files and ``real_*`` configs + ``real_manifest.json`` of the released model), so another
set made the same way can be dropped in. The weights are loaded through the same folder layout and loader as
the app (``methods.triposg.checkpoints``): the tests write a pipeline folder from the fixture files.

Tolerances (float32; the fixture README measured an independent float64 re-implementation at <= 6e-6 on the
networks and grids, <= 1.3e-7 on a scheduler step):
- exact (0): the prepared image (same float32 arithmetic, uint8 truncation), the DINOv2 pixels (same PIL resize
  and float64 rescale), sigmas and timesteps (same float64 -> float32 formula), the initial latents (same
  generator), the float16 grid axis, marching cubes on the recorded float16 grid (same skimage);
- 1e-6: one scheduler step (one multiply-add in float32) and the trajectory rebuilt from the recorded model
  outputs (a few float32 additions);
- 1e-4 absolute and relative: network tensors (DINOv2, DiT blocks, VAE, logits, grids): SDPA and LayerNorm
  reduce in another order than the official diffusers/transformers code, a few ulps per layer over values of
  order 1-10; measured <= 4e-6 here. The sampled trajectory: 1e-4 too (measured 1.3e-5: guidance 7 amplifies
  the network's ulps seven-fold per step over 6 steps);
- the official float16 grid: 1e-4 absolute plus one float16 ulp (2**-10 relative): a float32 value within a
  few ulps of a float16 rounding boundary may round the other way (27 and 98 of 32768 values here);
  the mesh from it has the recorded counts and faces, vertices within 1e-4 (one float16 ulp of a logit moves a
  vertex by under 1e-3 of a cell of 0.065).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from methods.latent3d import (
    TRIPOSG,
    dense_grid,
    euler_step,
    grid_axes,
    guided,
    rectified_flow_sigmas,
    timesteps_of,
)
from methods.triposg import checkpoints, pipeline, preprocess

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TRIPOSG_FIXTURES") or REPO.parent / "shared" / "fixtures" / "triposg")
CASES = sorted(p.name.removesuffix("_meta.json") for p in FIXTURES.glob("*_meta.json")) if FIXTURES.is_dir() else []

pytestmark = pytest.mark.skipif(not CASES, reason=f"no TripoSG fixtures (*_meta.json) in {FIXTURES}")

CONFIG_SOURCES = {
    "image_encoder_dinov2": "image_encoder_dinov2_config.json",
    "transformer": "transformer_config.json",
    "vae": "vae_config.json",
    "scheduler": "scheduler_config.json",
    "feature_extractor_dinov2": "feature_extractor_dinov2_preprocessor_config.json",
}
NET = {"atol": 1e-4, "rtol": 1e-4}


def _close(actual, expected, atol: float, rtol: float = 0.0):
    actual, expected = torch.as_tensor(np.asarray(actual)), torch.as_tensor(np.asarray(expected))
    assert tuple(actual.shape) == tuple(expected.shape)
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


def write_folder(folder: Path, kind: str, weights: Path | None = None) -> Path:
    """A pipeline folder from the fixture's ``{kind}_*`` configs (and a case's weights, split per component)."""
    for component, source in CONFIG_SOURCES.items():
        (folder / component).mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / f"{kind}_{source}", folder / component / checkpoints.CONFIG_FILES[component])
    shutil.copy(FIXTURES / "real_model_index.json", folder / checkpoints.INDEX)
    if weights is not None:
        from safetensors.torch import load_file, save_file

        state = load_file(weights)
        for component, name in checkpoints.WEIGHT_FILES.items():
            prefix = component + "."
            save_file(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, folder / component / name
            )
    return folder


class Case:
    def __init__(self, name: str, folder: Path):
        from safetensors.torch import load_file

        self.name = name
        self.meta = json.loads((FIXTURES / f"{name}_meta.json").read_text())
        self.t = load_file(FIXTURES / f"{name}_tensors.safetensors")
        write_folder(folder, "tiny", FIXTURES / f"{name}_weights.safetensors")
        self.model = checkpoints.load_model(str(folder), "cpu", torch.float32)
        self.bounds = tuple(self.meta["pipeline_call"]["bounds"])

    def image(self) -> Image.Image:
        return Image.fromarray(self.t["prep_image_uint8"].numpy())


@pytest.fixture(scope="module", params=CASES)
def case(request, tmp_path_factory):
    torch.set_num_threads(1)
    return Case(request.param, tmp_path_factory.mktemp(request.param))


def _hooked(module: torch.nn.Module, run) -> list:
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        run()
    finally:
        handle.remove()
    return seen


# ----------------------------------------------------------------------------- released architecture


def test_released_configuration_has_exactly_the_manifest_keys_and_shapes(tmp_path):
    manifest = json.loads((FIXTURES / "real_manifest.json").read_text())["components"]
    config = checkpoints.load_config(write_folder(tmp_path, "real"))
    shapes = checkpoints.released_shapes(config)
    assert set(shapes) == set(manifest)
    for component, ours in shapes.items():
        expected = {k: tuple(v) for k, v in manifest[component]["keys"].items()}
        assert ours == expected, component
        assert sum(int(np.prod(s)) for s in ours.values()) == manifest[component]["num_parameters"]
    assert config.image.shortest_edge == 256 and config.image.crop == (224, 224)
    assert config.scheduler.shift == 1


# ----------------------------------------------------------------------------- input and conditioner


def test_prepared_image_is_the_official_one_exactly(case):
    source = (REPO / case.meta["image"]).resolve()
    prepared, _ = preprocess.prepare(str(source))
    assert prepared.size == tuple(case.meta["prepared_size_wh"])
    np.testing.assert_array_equal(np.asarray(prepared), case.t["prep_image_uint8"].numpy())


def test_dinov2_pixels_tokens_and_position_embeddings(case):
    pixels = pipeline.pixel_values(case.model, case.image())
    _close(pixels, case.t["dino_pixel_values"], atol=0)
    dino = case.model.dino
    with torch.no_grad():
        emb = dino.model.embeddings
        pos = emb.interpolate_pos_encoding(case.t["dino_embeddings_out"], *pixels.shape[-2:])
        _close(pos, case.t["dino_pos_embed_interp"], **NET)
        out = _hooked(emb, lambda: dino(pixels))[0]
    _close(out, case.t["dino_embeddings_out"], **NET)
    cond, uncond = pipeline.encode(case.model, case.image())
    _close(cond, case.t["image_embeds"], **NET)
    assert not uncond.any() and uncond.shape == cond.shape


# ----------------------------------------------------------------------------- denoiser


def test_denoiser_intermediates_and_outputs_with_and_without_guidance(case):
    t, dit = case.t, case.model.dit
    x, step, cond = t["dit_in_latents"], t["dit_in_timestep"], t["image_embeds"]
    with torch.no_grad():
        temb = _hooked(dit.time_proj, lambda: dit(x, step, cond))[0]
        _close(temb, t["dit_time_embedding"], **NET)
        _close(_hooked(dit.proj_in, lambda: dit(x, step, cond))[0], t["dit_proj_in_out"], **NET)
        for i, block in enumerate(dit.blocks):
            _close(_hooked(block, lambda: dit(x, step, cond))[0], t[f"dit_block{i}_out"], **NET)
        _close(_hooked(dit.norm_out, lambda: dit(x, step, cond))[0], t["dit_norm_out"], **NET)
        _close(dit(x, step, cond), t["dit_out_cond"], **NET)
        _close(dit(x, step, torch.zeros_like(cond)), t["dit_out_uncond"], **NET)
        batch = dit(torch.cat([x, x]), step.expand(2), torch.cat([torch.zeros_like(cond), cond]))
    _close(batch, t["dit_cfg_batch_out"], **NET)
    scale = case.meta["pipeline_call"]["guidance_scale"]
    _close(guided(batch, scale, TRIPOSG.batch_order), t["dit_cfg_guided"], **NET)
    _close(guided(t["dit_cfg_batch_out"], scale, "uncond_first"), t["dit_cfg_guided"], atol=1e-6)


# ----------------------------------------------------------------------------- scheduler and sampling


def test_scheduler_sigmas_timesteps_and_one_step(case):
    t = case.t
    steps = case.meta["pipeline_call"]["num_inference_steps"]
    sigmas = rectified_flow_sigmas(steps, 1.0)
    _close(sigmas, t["sched_sigmas"], atol=0)
    _close(timesteps_of(sigmas, TRIPOSG), t["sched_timesteps"], atol=0)
    shifted = rectified_flow_sigmas(steps, 3.0)
    _close(shifted, t["sched_shift3_sigmas"], atol=0)
    _close(timesteps_of(shifted, TRIPOSG), t["sched_shift3_timesteps"], atol=0)
    k = case.meta["sched_step_index"]
    assert float(timesteps_of(sigmas, TRIPOSG)[k]) == float(t["sched_step_timestep"])
    out = euler_step(t["sched_step_in_sample"], t["sched_step_in_model_output"], sigmas[k], sigmas[k + 1], TRIPOSG.sign)
    _close(out, t["sched_step_out"], atol=1e-6)


def test_full_sampling_run(case):
    t, call = case.t, case.meta["pipeline_call"]
    seed = int(call["generator"].rsplit("(", 1)[1].rstrip(")"))
    cond, uncond = pipeline.encode(case.model, case.image())
    latents = pipeline.initial_latents(case.model, seed, call["num_tokens"])
    _close(latents, t["sample_latents_init"], atol=0)
    steps = list(
        pipeline.denoise(case.model, cond, uncond, latents, call["num_inference_steps"], call["guidance_scale"])
    )
    assert len(steps) == call["num_inference_steps"] == len(t["sample_latents_traj"])
    for i, step in enumerate(steps):
        _close(step.raw, t["sample_model_out_traj"][i], **NET)
        _close(step.latents, t["sample_latents_traj"][i], **NET)
    # the update alone, fed the recorded model outputs, rebuilds the recorded trajectory
    sigmas = rectified_flow_sigmas(call["num_inference_steps"])
    x = t["sample_latents_init"]
    for i, raw in enumerate(t["sample_model_out_traj"]):
        x = euler_step(x, guided(raw, call["guidance_scale"], "uncond_first"), sigmas[i], sigmas[i + 1], -1.0)
        _close(x, t["sample_latents_traj"][i], atol=1e-6)


# ----------------------------------------------------------------------------- VAE, grids and meshes


def test_vae_decoder_outputs_and_query_logits(case):
    t, vae = case.t, case.model.vae
    latents = t["vae_in_latents"]
    _close(latents, t["sample_latents_traj"][-1], atol=0)
    with torch.no_grad():
        _close(vae.post_quant(latents), t["vae_post_quant"], **NET)
        _close(vae.kv(latents), t["vae_kv_cache"], **NET)
        _close(vae.embedder(t["vae_query_points"][None, :64]), t["vae_query_embed_first64"], atol=1e-6)
        _close(vae.decode(latents, t["vae_query_points"][None]), t["vae_query_logits"], **NET)
        _close(vae.decode(latents, t["vae_query_points"][None], chunk_size=1000), t["vae_query_logits"], **NET)
    query = pipeline.field_query(case.model, latents)
    _close(query(t["vae_query_points"]), t["vae_query_logits"].reshape(-1), **NET)


def test_dense_and_flash_grids(case):
    t, meta = case.t, case.meta
    depth = meta["pipeline_call"]["dense_octree_depth"]
    query = pipeline.field_query(case.model, t["vae_in_latents"])
    axis = grid_axes(case.bounds, 2**depth, torch.float16)
    _close(axis[0], t["grid_dense_axis"], atol=0)
    _close(dense_grid(query, axis, chunk_size=5000), t["grid_dense_logits_fp32"], **NET)
    ours16 = pipeline.official_grid(query, depth, case.bounds)
    _close(ours16, t["grid_dense_logits_fp16"], atol=1e-4, rtol=2**-10)
    # the flash decoder's first level: float32 axis with r0 + 1 points, handed to DiffDMC as -logits / D
    flash = meta["flash_pipeline_call"]
    expected = -t["flash_dmc_input_sdf"] * flash["dmc_sdf_divisor"]
    _close(dense_grid(query, grid_axes(case.bounds, flash["resolutions"][0] + 1)), expected, **NET)
    # its refinement levels evaluate only some points (NaN elsewhere): each equals the field there
    refine, call = t["flash_refine_dmc_input_sdf"], meta["flash_refine_call"]
    known = ~torch.isnan(refine)
    ours = dense_grid(query, grid_axes(case.bounds, refine.shape[0]))
    _close(ours[known], -refine[known] * call["dmc_sdf_divisor"], **NET)


def test_meshes(case):
    t = case.t
    depth = case.meta["pipeline_call"]["dense_octree_depth"]
    # marching cubes and the official vertex transform on the recorded float16 grid: exact
    vertices, faces = pipeline.extract_mesh(t["grid_dense_logits_fp16"], official_depth=depth, bounds=case.bounds)
    _close(vertices, t["mesh_dense_vertices"], atol=1e-6)
    np.testing.assert_array_equal(faces, t["mesh_dense_faces"].numpy())
    # end to end from the sampled latents through our float16 grid
    query = pipeline.field_query(case.model, t["vae_in_latents"])
    vertices, faces = pipeline.extract_mesh(pipeline.official_grid(query, depth, case.bounds), depth, case.bounds)
    assert len(vertices) == case.meta["e2e"]["samples_vertex_count"]
    assert len(faces) == case.meta["e2e"]["samples_face_count"]
    np.testing.assert_array_equal(faces, t["mesh_dense_faces"].numpy())
    _close(vertices, t["mesh_dense_vertices"], atol=1e-4)
    # our transform spans the box: the official one is ours shrunk by (n - 1) / n towards the min corner
    ours, _ = pipeline.extract_mesh(t["grid_dense_logits_fp16"], bounds=case.bounds)
    lo = np.asarray(case.bounds[:3], np.float32)
    n = 2**depth
    _close((ours - lo) * (n - 1) / n + lo, t["mesh_dense_vertices"], atol=1e-5)
