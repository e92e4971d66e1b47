"""Point-E parity with the official implementation, on the golden fixtures it produced.

The fixture directory comes from ``POINT_E_FIXTURES`` (default ../shared/fixtures/point_e); every
size, seed, shape and sampler setting is read from its files, so another fixture set of the same
layout can be swapped in. Tolerances are the fixtures' documented ones (README section 7).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from methods.point_e import configs
from methods.point_e.diffusion import GaussianDiffusion
from methods.point_e.mesh import marching_cubes, nearest_point_indices, sdf_mesh, sdf_volume
from methods.point_e.models import build_model, timestep_embedding
from methods.point_e.sampler import (
    Stage,
    draw_noise,
    guided_denoiser,
    heun_sample,
    karras_denoise,
    karras_schedule,
    sample_stages,
    sigma_to_t,
    sigmas_to_timesteps,
)

FIXTURES = Path(
    os.environ.get("POINT_E_FIXTURES") or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "point_e"
)
FORWARD_ATOL = 1e-5  # forward passes and intermediates
# Summation order differs between CPUs' kernels (AVX2 vs AVX-512): a relative 1e-5 on top of the absolute bound
# (measured: 1.04e-5 on an activation of the upsampler on one Xeon where the fixtures' machine gave < 1e-5).
FORWARD_RTOL = 1e-5
# sin/cos(t * f) at t up to 1024: exp() of the frequencies may differ by an ulp between vector math libraries,
# which moves the argument by t * 6e-8 = 6e-5 (measured 3.0e-5).
TIMESTEP_ATOL = 1e-4
TRAJ_ATOL = 1e-3  # trajectories (diffusion space)
FINAL_XYZ_ATOL = 1e-4
FINAL_RGB_ATOL = 1e-2  # 0..255 units
NOCLIP_RTOL = 1e-3

pytestmark = pytest.mark.skipif(not (FIXTURES / "index.json").is_file(), reason=f"no Point-E fixtures at {FIXTURES}")


def _json(rel: str) -> dict:
    return json.loads((FIXTURES / rel).read_text())


def _tensors(rel: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / rel))


def _model_keys() -> list[str]:
    folder = FIXTURES / "models"
    return sorted(p.name for p in folder.iterdir() if (p / "config.json").is_file()) if folder.is_dir() else []


def _manifest_names() -> list[str]:
    path = FIXTURES / "manifest_full_configs.json"
    return sorted(json.loads(path.read_text())) if path.is_file() else []


def _sampler_runs() -> list[str]:
    folder = FIXTURES / "sampler"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if (folder / f"{p.stem}.safetensors").is_file())


_MODELS: dict[str, torch.nn.Module] = {}


def fixture_model(key: str) -> torch.nn.Module:
    """The small official-config model of ``models/<key>``, with the fixture's weights (strict)."""
    if key not in _MODELS:
        config = _json(f"models/{key}/config.json")["model_from_config_arg"]
        model = build_model(config)
        model.load_state_dict(_tensors(f"models/{key}/state_dict.safetensors"), strict=True)
        _MODELS[key] = model
    return _MODELS[key]


def model_key_for(official_name: str) -> str:
    """The fixture model built from the official config ``official_name``."""
    for key in _model_keys():
        if _json(f"models/{key}/config.json")["official_config_name"] == official_name:
            return key
    raise LookupError(official_name)


def diffusion_for(name: str) -> GaussianDiffusion:
    return GaussianDiffusion.from_config(_json("diffusion/diffusion_configs.json")["DIFFUSION_CONFIGS"][name])


def to_diffusion_space(diffusion: GaussianDiffusion, trajectory: torch.Tensor) -> torch.Tensor:
    """``[T, B, C, P]`` data space -> diffusion space."""
    return diffusion.scale_channels(trajectory.flatten(0, 1)).view_as(trajectory)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, what: str = "") -> float:
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    assert actual.shape == expected.shape, f"{what}: shape {list(actual.shape)} != {list(expected.shape)}"
    err = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    worst = float((err - bound).max()) if err.numel() else 0.0
    assert worst <= 0, f"{what}: max abs error {float(err.max()):.3g} exceeds atol={atol} rtol={rtol}"
    return float(err.max()) if err.numel() else 0.0


# ----------------------------------------------------------------------------- checkpoint manifest


@pytest.mark.parametrize("name", _manifest_names())
def test_full_config_state_dict_matches_official_manifest(name):
    entry = _json("manifest_full_configs.json")[name]
    assert configs.MODEL_CONFIGS[name] == entry["config"], "our copy of the official config differs"
    model = build_model(entry["config"], "meta")
    state = model.state_dict()
    assert {k: list(v.shape) for k, v in state.items()} == entry["keys"]
    assert list(state) == entry["key_order"]
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"]
    assert sorted(name for name, _ in model.named_buffers()) == sorted(entry["buffers"])


def test_diffusion_and_sampler_configs_match_official():
    fixture = _json("diffusion/diffusion_configs.json")
    assert fixture["DIFFUSION_CONFIGS"] == {k: configs.DIFFUSION_CONFIGS[k] for k in fixture["DIFFUSION_CONFIGS"]}
    for stage, values in fixture["karras_sampler_defaults"].items():
        assert configs.KARRAS_DEFAULTS[stage] == pytest.approx(values)


# ----------------------------------------------------------------------------- forward passes


def _forward_calls(key: str, model, inputs: dict) -> dict[str, torch.Tensor]:
    """The calls of the fixture README for this model (chosen by which inputs exist)."""
    if "point_clouds" in inputs:
        return {
            "latents": model.encode_point_clouds(inputs["point_clouds"]),
            "sdf": model(inputs["x"], point_clouds=inputs["point_clouds"]),
        }
    kwargs = {k: inputs[k] for k in ("embeddings", "low_res") if k in inputs}
    out = {f"out_{t}": model(inputs["x"], inputs[t], **kwargs) for t in ("t_long", "t_float")}
    if "low_res" in inputs:
        out["out_t_long_no_embeddings"] = model(inputs["x"], inputs["t_long"], low_res=inputs["low_res"])
    return out


@pytest.mark.parametrize("key", _model_keys())
def test_forward_outputs_match_official(key):
    model = fixture_model(key)
    inputs = _tensors(f"models/{key}/inputs.safetensors")
    expected = _tensors(f"models/{key}/outputs.safetensors")
    with torch.no_grad():
        actual = _forward_calls(key, model, inputs)
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert_close(actual[name], value, FORWARD_ATOL, what=f"{key}.{name}")


@pytest.mark.parametrize("key", _model_keys())
def test_intermediates_match_official(key):
    model = fixture_model(key)
    inputs = _tensors(f"models/{key}/inputs.safetensors")
    expected = _tensors(f"models/{key}/intermediates.safetensors")
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(name.removesuffix(".out")).register_forward_hook(
            lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().clone())
        )
        for name in expected
        if name.endswith(".out")
    ]
    try:
        with torch.no_grad():
            if "point_clouds" in inputs:
                model(inputs["x"], point_clouds=inputs["point_clouds"])
            else:
                kwargs = {k: inputs[k] for k in ("embeddings", "low_res") if k in inputs}
                model(inputs["x"], inputs["t_long"], **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    for name, value in expected.items():
        if name.startswith("timestep_embedding_"):
            t = inputs[name.removeprefix("timestep_embedding_")]
            assert_close(timestep_embedding(t, value.shape[1]), value, TIMESTEP_ATOL, what=name)
        else:
            assert_close(captured[name], value, FORWARD_ATOL, FORWARD_RTOL, what=f"{key}.{name}")


# ----------------------------------------------------------------------------- diffusion


def _schedule_names() -> list[str]:
    return sorted(p.stem.removeprefix("schedule_") for p in (FIXTURES / "diffusion").glob("schedule_*.safetensors"))


@pytest.mark.parametrize("stage", _schedule_names())
def test_schedule_and_karras_sigmas_match_official(stage):
    fixture = _tensors(f"diffusion/schedule_{stage}.safetensors")
    config_name = "upsample" if stage == "upsample" else "base40M"
    diffusion = diffusion_for(config_name)
    tables = [k for k in fixture if hasattr(diffusion, k)]
    assert len(tables) >= 13
    for name in tables:
        assert_close(torch.from_numpy(np.asarray(getattr(diffusion, name))), fixture[name], 1e-12, 1e-12, what=name)
    karras = _json("diffusion/diffusion_configs.json")["karras_sampler_defaults"][stage]
    schedule = karras_schedule(diffusion, karras["steps"], karras["sigma_min"], karras["sigma_max"], karras["s_churn"])
    assert torch.equal(schedule.sigmas, fixture["karras_sigmas"])
    assert torch.equal(schedule.sigma_hats, fixture["karras_sigma_hat"])
    for sigmas, key in ((fixture["karras_sigmas"], "karras_sigmas"), (fixture["karras_sigma_hat"], "karras_sigma_hat")):
        t_float = torch.tensor([sigma_to_t(diffusion, float(s)) for s in sigmas], dtype=torch.float64)
        assert_close(t_float, fixture[f"sigma_to_t_of_{key}"], 1e-9, what=key)
        assert torch.equal(sigmas_to_timesteps(diffusion, sigmas), fixture[f"sigma_to_t_of_{key}"].trunc().long())
    assert torch.equal(schedule.t_hat, fixture["sigma_to_t_of_karras_sigma_hat"].trunc().long())
    assert torch.equal(schedule.t_next, fixture["sigma_to_t_of_karras_sigmas"][1:].trunc().long())


def test_single_steps_match_official():
    f = _tensors("diffusion/single_steps.safetensors")
    base = diffusion_for("base40M")
    assert torch.equal(base.scale_channels(f["x_start"]), f["scaled_x_start"])
    assert torch.equal(base.unscale_channels(f["scaled_x_start"]), f["unscaled_back"])
    assert_close(base.q_sample(f["scaled_x_start"], f["t"], f["noise"]), f["q_sample"], 1e-6, what="q_sample")

    text_model = fixture_model(model_key_for("base40M-textvec"))
    with torch.no_grad():
        output = text_model(f["q_sample"], f["t"], embeddings=f["embeddings"])
    assert_close(output, f["model_output"], FORWARD_ATOL, what="model_output")
    for clip in (0, 1):
        out = base.p_mean_variance(f["model_output"], f["q_sample"], f["t"], clip_denoised=bool(clip))
        for name, value in out.items():
            assert_close(value, f[f"p_mean_variance_clip{clip}.{name}"], FORWARD_ATOL, what=f"p_mean_variance.{name}")

    def denoise_check(model, diffusion, prefix: str, kwargs: dict, clips=(0, 1)):
        sigmas = f[f"{prefix}_sigmas"]
        t = sigmas_to_timesteps(diffusion, sigmas)
        assert torch.equal(t, f[f"{prefix}_t"])
        t_float = torch.tensor([sigma_to_t(diffusion, float(s)) for s in sigmas], dtype=torch.float64)
        assert_close(t_float, f[f"{prefix}_t_float"], 1e-9)
        # x0 = a * x_in - b * eps: the forward tolerance, amplified by b
        gain = float(diffusion.extract(diffusion.sqrt_recipm1_alphas_cumprod, t, 1).max())
        for clip in clips:
            with torch.no_grad():
                x0 = karras_denoise(model, diffusion, f[f"{prefix}_x_t"], sigmas, t, bool(clip), kwargs)
            suffix = f"clip{clip}"
            name = f"karras_denoised_{suffix}" if prefix == "karras" else f"up_denoised_{suffix}"
            assert_close(x0, f[name], FORWARD_ATOL * max(1.0, gain), what=name)

    denoise_check(text_model, base, "karras", {"embeddings": f["embeddings"]})
    upsampler = fixture_model(model_key_for("upsample"))
    zero_grid = torch.zeros(len(f["up_x_t"]), upsampler.grid_dim, upsampler.grid_tokens)
    up_kwargs = {"low_res": f["up_low_res"], "embeddings": zero_grid}
    denoise_check(upsampler, diffusion_for("upsample"), "up", up_kwargs, clips=(1,))


# ----------------------------------------------------------------------------- the sampler, end to end


def _stages_for(run: str, record: dict, f: dict, recorder) -> list[Stage]:
    attrs = record["sampler_attributes"]
    text = run.startswith("text")
    base_key = model_key_for("base40M-textvec" if text else "base40M")
    upsampler = fixture_model(model_key_for("upsample"))
    if text:
        kwargs = [{"embeddings": f["input_embeddings"]}, {}]
    else:
        kwargs = [{"embeddings": f["input_clip_grids"]}, {"embeddings": f["input_clip_grids"]}]
    if "embeddings" not in kwargs[1]:  # key filter '': the upsampler gets a zero CLIP grid
        kwargs[1]["embeddings"] = torch.zeros(record["batch_size"], upsampler.grid_dim, upsampler.grid_tokens)
    models = [fixture_model(base_key), upsampler]
    return [
        Stage(
            recorder(models[s], s),
            diffusion_for("upsample" if s == 1 else "base40M"),
            attrs["num_points"][s],
            attrs["guidance_scale"][s],
            attrs["karras_steps"][s],
            attrs["sigma_min"][s],
            attrs["sigma_max"][s],
            attrs["s_churn"][s],
            kwargs[s],
        )
        for s in range(2)
    ]


@pytest.mark.parametrize("run", _sampler_runs())
def test_sampler_run_matches_official(run):
    record = _json(f"sampler/{run}.json")
    f = _tensors(f"sampler/{run}.safetensors")
    attrs = record["sampler_attributes"]
    batch = record["batch_size"]
    noclip = not attrs["clip_denoised"]
    calls: list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [[], []]

    def recorder(model, stage):
        def call(x, t, **kwargs):
            out = model(x, t, **kwargs)
            calls[stage].append((x.clone(), t.clone(), out.clone()))
            return out

        return call

    stages = _stages_for(run, record, f, recorder)
    generator = torch.Generator().manual_seed(record["seed_torch_manual_seed"])

    # the noise replays the official RNG order exactly
    replay = torch.Generator().manual_seed(record["seed_torch_manual_seed"])
    for s, stage in enumerate(stages):
        x_T, per_step = draw_noise(replay, (batch, 6, stage.num_points), stage.steps)
        assert torch.equal(x_T, f[f"stage{s}.noise_x_T"]) and torch.equal(per_step, f[f"stage{s}.noise_heun_eps"])

    trajectories: list[list[torch.Tensor]] = [[], []]
    steps = sample_stages(stages, batch, generator, clip_denoised=attrs["clip_denoised"])
    with torch.no_grad():
        while True:
            try:
                step = next(steps)
            except StopIteration as done:
                final = done.value
                break
            trajectories[step.stage].append(step.samples(stages[step.stage].diffusion, batch))

    rtol = NOCLIP_RTOL if noclip else 0.0
    ref = f["final_samples"]
    assert_close(final[:, :3], ref[:, :3], FINAL_XYZ_ATOL, rtol, what="final xyz")
    assert_close(final[:, 3:], ref[:, 3:], FINAL_RGB_ATOL, rtol, what="final RGB")

    for s, stage in enumerate(stages):
        assert len(calls[s]) == record["num_model_calls"][s] == stage.model_calls()
        assert torch.equal(torch.stack([t for _, t, _ in calls[s]]), f[f"stage{s}.model_call_t"])
        for i in (0, 1, len(calls[s]) - 1):
            x, _, out = calls[s][i]
            assert_close(x, f[f"stage{s}.model_call{i}.x"], FORWARD_ATOL, rtol, what=f"stage{s} call {i} x")
            # the model output, through a few steps of the sampler; it is clamped later only when clip_denoised
            assert_close(out, f[f"stage{s}.model_call{i}.out"], 1e-4, max(rtol, 1e-4), what=f"stage{s} call {i} out")
        scaled = to_diffusion_space(stage.diffusion, torch.stack(trajectories[s]))
        expected = to_diffusion_space(stage.diffusion, f[f"stage{s}.trajectory"])
        assert_close(scaled, expected, TRAJ_ATOL, rtol, what=f"stage{s} trajectory (diffusion space)")

    for i in range(batch):
        assert_close(final[i, :3].t(), f[f"point_cloud{i}.coords"], FINAL_XYZ_ATOL, rtol)
        for c, channel in enumerate("RGB"):
            rgb = final[i, 3 + c].clamp(0, 255).round() / 255.0
            assert_close(rgb, f[f"point_cloud{i}.{channel}"], 1 / 255 + 1e-6, what=f"point_cloud{i}.{channel}")


def test_stage0_karras_record_matches_official():
    record_path = FIXTURES / "sampler" / "text2pointcloud_stage0_karras.safetensors"
    if not record_path.is_file():
        pytest.skip("no stage-0 Karras record")
    run = _json("sampler/text2pointcloud.json")
    f = _tensors("sampler/text2pointcloud.safetensors")
    rec = _tensors("sampler/text2pointcloud_stage0_karras.safetensors")
    attrs = run["sampler_attributes"]
    base = diffusion_for("base40M")
    model = fixture_model(model_key_for("base40M-textvec"))
    emb = f["input_embeddings"]
    schedule = karras_schedule(
        base, attrs["karras_steps"][0], attrs["sigma_min"][0], attrs["sigma_max"][0], attrs["s_churn"][0]
    )
    denoiser = guided_denoiser(
        model, base, attrs["guidance_scale"][0], {"embeddings": torch.cat([emb, torch.zeros_like(emb)])}
    )
    noise = f["stage0.noise_heun_eps"]
    with torch.no_grad():
        outs = list(heun_sample(denoiser, schedule, f["stage0.noise_x_T"] * attrs["sigma_max"][0], noise))
    xs = torch.stack([o["x"] for o in outs])
    x0s = torch.stack([o["pred_xstart"] for o in outs])
    # the record is unscaled; compare in diffusion space (x reaches |x| ~ sigma_max)
    assert_close(xs, to_diffusion_space(base, rec["x"]), TRAJ_ATOL, 1e-5, what="x")
    assert_close(x0s, to_diffusion_space(base, rec["pred_xstart"]), TRAJ_ATOL, what="pred_xstart")


# ----------------------------------------------------------------------------- SDF -> mesh


def test_sdf_mesh_matches_official():
    record = _json("mesh/pc_to_mesh.json")
    f = {k: v.numpy() for k, v in _tensors("mesh/pc_to_mesh.safetensors").items()}
    model = fixture_model(model_key_for("sdf"))
    grid = f["sdf_volume_raw"].shape[0]
    side = float(re.search(r"side_length=([0-9.]+)", record["call"]).group(1))
    volume = sdf_volume(model, f["pc_coords"], grid, side)
    assert_close(torch.from_numpy(volume), torch.from_numpy(f["sdf_volume_raw"]), FORWARD_ATOL, what="sdf volume")

    # same marching cubes (scikit-image) on the official volume: the same mesh, exactly
    verts, faces, notes = marching_cubes(f["sdf_volume_raw"], side)
    assert bool(notes) == record["volume_was_all_one_sign_and_mean_centered"]
    assert np.array_equal(faces, f["faces"]) and np.allclose(verts, f["verts"], atol=1e-6, rtol=0)
    colors = np.stack([f["pc_R"], f["pc_G"], f["pc_B"]], axis=1)
    expected_colors = np.stack([f["vertex_R"], f["vertex_G"], f["vertex_B"]], axis=1)
    assert np.array_equal(colors[nearest_point_indices(f["pc_coords"], f["verts"])], expected_colors)

    # our whole path: the same surface (compared as a point set: tiny volume differences may move vertices)
    mesh = sdf_mesh(model, f["pc_coords"], colors, grid, side)
    assert abs(len(mesh.vertices) - record["n_verts"]) <= max(2, record["n_verts"] // 100)
    voxel = side / (grid - 1)
    to_ref = np.linalg.norm(mesh.vertices[:, None] - f["verts"][None], axis=-1).min(1)
    assert to_ref.max() < 1e-3 * voxel
    if len(mesh.faces) == len(f["faces"]):
        assert np.array_equal(mesh.faces, f["faces"])
        assert np.array_equal(mesh.vertex_colors, expected_colors)
