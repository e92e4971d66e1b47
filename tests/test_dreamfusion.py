"""DreamFusion (SDS through Stable Diffusion) on a tiny random-weight checkpoint; the shared loop; the run cache."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import methods
import methods.text_opt  # registers dreamfusion and dreamfields
from methods import CheckpointError, Inputs
from methods.text_opt import CPU_BUDGET_SECONDS, SD_CHECKPOINT, DreamFusion
from tests.generators import drive
from tests.tiny_sd import FAST, skip_without_gpu_weights

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_sd import build_stable_diffusion

    return build_stable_diffusion(tmp_path_factory.mktemp("tiny-sd") / "sd")


def tiny_loop(**changes):
    from methods.text_opt.loop import LoopConfig

    sizes = {"render_size": 16, "preview_size": 16, "grid_resolution": 16}
    return LoopConfig(**{**sizes, "albedo_fraction": 0.0, **changes})


# ----------------------------------------------------------------------------- spec and settings


def test_importing_the_package_imports_no_torch() -> None:
    code = (
        "import sys, methods.text_opt, eval.runs.cache, methods.text_opt.cameras; "
        "print(sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_settings_and_estimates() -> None:
    method = methods.get("dreamfusion")
    assert isinstance(method, DreamFusion) and method.modalities == ("text",)
    settings = method.default_settings("text")
    assert settings.checkpoint == SD_CHECKPOINT and settings.guidance_scale == 100.0
    assert (settings.resolution, settings.budget_seconds) == (64, 0.0)
    names = [row["name"] for row in type(settings).describe()]
    for name in ("seed", "steps", "budget_seconds", "resolution", "guidance_scale", "learning_rate", "checkpoint"):
        assert name in names
    per_step, overhead = method.step_seconds_cpu, method.overhead_cpu
    assert method.estimate_seconds(settings, gpu=False) == CPU_BUDGET_SECONDS + per_step + overhead
    assert method.estimate_seconds(settings, gpu=False) == method.seconds_cpu
    assert method.estimate_seconds(settings.replace(budget_seconds=600), gpu=False) == 600 + per_step + overhead
    assert method.estimate_seconds(settings.replace(steps=1), gpu=False) == per_step + overhead
    with pytest.raises(methods.InvalidSettings, match="checkpoint"):
        settings.replace(checkpoint=" ")


# ----------------------------------------------------------------------------- cameras and prompts


@pytest.mark.parametrize(
    ("azimuth", "elevation", "expected"),
    [
        (0, 0, "front"),
        (29, 10, "front"),
        (-29, 10, "front"),
        (31, 10, "side"),
        (-90, 0, "side"),
        (149, 0, "side"),
        (151, 0, "back"),
        (180, 0, "back"),
        (-170, 30, "back"),
        (360, 0, "front"),
        (0, 60, "overhead"),
        (180, 85, "overhead"),
        (90, 59.9, "side"),
    ],
)
def test_view_direction(azimuth: float, elevation: float, expected: str) -> None:
    from methods.text_opt.cameras import view_direction

    assert view_direction(azimuth, elevation) == expected


def test_view_prompts_and_camera_sampling() -> None:
    from methods.text_opt.cameras import CameraRange, sample_cameras, view_prompt

    assert view_prompt("a corgi", "back") == "a corgi, back view"
    with pytest.raises(ValueError):
        view_prompt("a corgi", "bottom")
    cams = sample_cameras(np.random.default_rng(0), 64, CameraRange())
    assert cams.c2w.shape == (64, 4, 4) and cams.elevation.min() >= -10 and cams.elevation.max() <= 90
    centres = cams.c2w[:, :3, 3]
    assert np.allclose(np.linalg.norm(centres, axis=1), cams.radius)
    # every camera looks at the origin (OpenGL: along -Z of its frame)
    looking = -cams.c2w[:, :3, 2]
    assert np.allclose(looking, -centres / cams.radius[:, None], atol=1e-9)
    # azimuth 0 is on +Z, azimuth 90 on +X
    from methods.text_opt.cameras import orbit_position

    assert np.allclose(orbit_position(0, 0, 2), [0, 0, 2]) and np.allclose(orbit_position(90, 0, 2), [2, 0, 0])


# ----------------------------------------------------------------------------- the SDS maths


def test_sds_gradient_matches_a_hand_computed_case() -> None:
    import torch

    from methods.text_opt.sds import sds_grad, sds_loss, sds_weight

    alphas_cumprod = torch.tensor([0.9, 0.64, 0.25])
    t = torch.tensor([1, 2])
    uncond = torch.tensor([[0.1, 0.2], [0.0, -0.1]]).view(2, 1, 1, 2)
    text = torch.tensor([[0.3, 0.1], [0.2, 0.0]]).view(2, 1, 1, 2)
    noise = torch.tensor([[0.05, -0.05], [0.1, 0.1]]).view(2, 1, 1, 2)
    assert torch.allclose(sds_weight(alphas_cumprod, t), torch.tensor([0.36, 0.75]))
    # eps_hat = uncond + 100 (text - uncond): [20.1, -9.8] and [20.0, 9.9]; times w(t) after subtracting the noise
    expected = torch.tensor([[0.36 * 20.05, 0.36 * -9.75], [0.75 * 19.9, 0.75 * 9.8]]).view(2, 1, 1, 2)
    grad = sds_grad(uncond, text, noise, alphas_cumprod, t, 100.0)
    assert torch.allclose(grad, expected, atol=1e-4)

    latents = torch.zeros(2, 1, 1, 2, requires_grad=True)
    loss = sds_loss(latents, grad)
    loss.backward()
    assert torch.allclose(latents.grad, grad / 2)  # d loss / d latents = grad / B
    assert math.isclose(float(loss.detach()), 0.5 * float((grad**2).sum()) / 2, rel_tol=1e-6)
    # a NaN from a float16 overflow becomes no gradient rather than a NaN field
    bad = sds_grad(uncond * float("nan"), text, noise, alphas_cumprod, t, 100.0)
    assert torch.isfinite(bad).all() and float(bad.abs().sum()) == 0.0


def test_timesteps_and_v_prediction() -> None:
    import torch

    from methods.text_opt.sds import timestep_bounds, v_to_epsilon

    assert timestep_bounds(1000) == (20, 980)
    alphas_cumprod = torch.linspace(0.99, 0.01, 10)
    t = torch.tensor([2, 7])
    a = alphas_cumprod[t].view(2, 1)
    x0, eps = torch.randn(2, 3), torch.randn(2, 3)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert torch.allclose(v_to_epsilon(v, noisy, alphas_cumprod, t), eps, atol=1e-5)


# ----------------------------------------------------------------------------- rendering


def test_density_normals_and_shading() -> None:
    import torch

    from methods.text_opt.render import Shading, density_normals, shade

    def density(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(x**2).sum(-1))

    x = torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.3, 0.4]])
    normals = density_normals(density, x, 1e-3)
    assert torch.allclose(normals, x / x.norm(dim=-1, keepdim=True), atol=1e-4)  # outwards, away from density
    albedo = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]])
    light = torch.tensor([1.0, 0.0, 0.0])
    lit = shade(albedo, normals, Shading("lambertian", light, ambient=0.1))
    assert torch.allclose(lit[0], albedo[0])  # facing the light: ambient + diffuse = 1
    assert torch.allclose(lit[1], albedo[1] * 0.1)  # perpendicular to it: ambient only
    grey = shade(albedo, normals, Shading("textureless", light, ambient=0.1))
    assert torch.allclose(grey, torch.tensor([[1.0] * 3, [0.1] * 3]))
    with pytest.raises(ValueError):
        Shading("lambertian")


def test_blob_initialisation_and_orientation_loss() -> None:
    import torch

    from methods.text_opt.loop import FieldOptimizer

    class Mean:
        name = "mean"

        def loss(self, batch, step):
            return batch.composite().mean(), {}

        def close(self) -> None:
            pass

    opt = FieldOptimizer(tiny_loop(grid_resolution=17, blob_density=20.0, blob_radius=0.35), Mean())  # 0 on the lattice
    grid = opt.field.density_grid
    with torch.no_grad():
        centre = float(grid(torch.zeros(1, 3)))
        corner = float(grid(torch.full((1, 3), 0.95)))
    assert abs(centre - (20.0 + 0.0010005 / grid.voxel)) < 0.1 and corner < 0.1
    stats = opt.step(0, 0.5)  # past albedo_fraction: shaded, so normals and an orientation loss
    assert stats["orientation"] >= 0.0 and math.isfinite(stats["loss"])
    view = opt.preview()
    assert view.shape == (16, 16, 3) and view.dtype == np.uint8
    # the blob is opaque at the centre of the image, the corners show the white background
    assert view[8, 8].max() < 200 and view[0, 0].min() > 240


# ----------------------------------------------------------------------------- the guidance on a tiny SD


def test_sds_gradient_reaches_the_field_and_not_the_unet(tiny_sd: Path) -> None:
    import torch

    from methods.text_opt.loop import FieldOptimizer
    from methods.text_opt.sds import StableDiffusionGuidance, load_stable_diffusion

    parts = load_stable_diffusion(str(tiny_sd), "cpu")
    assert parts.image_size == 16 and parts.vae.decoder is None
    guidance = StableDiffusionGuidance(parts, "a red chair", seed=0)
    opt = FieldOptimizer(tiny_loop(), guidance)
    before = opt.field.density_grid.raw.detach().clone()
    stats = opt.step(0, 0.5)
    assert math.isfinite(stats["loss"]) and math.isfinite(stats["sds"]) and 20 <= stats["t"] <= 980
    grads = [p.grad for p in opt.field.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(opt.field.density_grid.raw.grad.abs().sum()) > 0
    assert not torch.equal(before, opt.field.density_grid.raw.detach())
    for module in (parts.unet, parts.vae, parts.text_encoder):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
    assert guidance.calls == 1
    opt.close()
    assert opt.field is None and opt.optimizer is None and guidance.uncond is None


def test_view_dependent_conditioning(tiny_sd: Path) -> None:
    import torch

    from methods.text_opt.sds import StableDiffusionGuidance, load_stable_diffusion

    guidance = StableDiffusionGuidance(load_stable_diffusion(str(tiny_sd), "cpu"), "a red chair")
    assert guidance.prompts["front"] == "a red chair, front view"
    cond = guidance.conditioning(["front", "back"])
    assert cond.shape[0] == 4
    assert torch.equal(cond[0], guidance.uncond[0]) and torch.equal(cond[1], guidance.uncond[0])
    assert torch.equal(cond[2], guidance.text["front"][0]) and torch.equal(cond[3], guidance.text["back"][0])
    assert not torch.equal(guidance.text["front"], guidance.text["back"])


def test_run_exports_a_coloured_mesh_with_previews(tiny_sd: Path) -> None:
    events, asset = drive(methods.run("dreamfusion", Inputs.text("a red chair"), {"checkpoint": str(tiny_sd), **FAST}))
    stages = [e.stage for e in events]
    assert stages[0] == "load" and "optimise" in stages and stages[-1] == "turntable"
    last = [e for e in events if e.stage == "optimise"][-1]
    assert last.fraction == 1.0 and "step 3" in last.message
    assert last.preview is not None and last.preview.shape == (16, 16, 3) and last.preview.dtype == np.uint8
    loss = float(last.message.rsplit("loss ", 1)[1])
    assert math.isfinite(loss)
    mesh = asset.mesh
    assert len(mesh.faces) > 0 and mesh.vertex_colors is not None and mesh.vertex_colors.shape == mesh.vertices.shape
    assert np.abs(mesh.vertices).max() <= 1.0 and asset.up == "+Y"
    assert set(asset.stage_seconds) == {"load", "optimise", "mesh", "turntable"}
    assert asset.views["turntable"].shape == (12, 16, 16, 3) and asset.views["optimisation"]["steps"] == 3


def test_cancelling_stops_within_one_step_and_frees_the_field(tiny_sd: Path, monkeypatch) -> None:
    from methods.text_opt import loop
    from methods.text_opt.sds import StableDiffusionGuidance

    monkeypatch.setattr(loop, "REPORT_SECONDS", 0.0)  # report after every step
    calls = {"loss": 0, "closed": 0}
    loss, close = StableDiffusionGuidance.loss, loop.FieldOptimizer.close

    def counting_loss(self, batch, step):
        calls["loss"] += 1
        return loss(self, batch, step)

    def counting_close(self):
        calls["closed"] += 1
        close(self)

    monkeypatch.setattr(StableDiffusionGuidance, "loss", counting_loss)
    monkeypatch.setattr(loop.FieldOptimizer, "close", counting_close)
    settings = {"checkpoint": str(tiny_sd), **FAST, "steps": 1000, "budget_seconds": 600}
    gen = methods.run("dreamfusion", Inputs.text("a red chair"), settings)
    for event in gen:
        if event.stage == "optimise" and event.fraction:
            break
    assert "step 1," in event.message and calls["loss"] == 1
    gen.close()
    assert calls == {"loss": 1, "closed": 1}


def test_bad_checkpoints_raise_checkpoint_errors(tiny_sd: Path, tmp_path: Path) -> None:
    from methods.text_opt.sds import load_stable_diffusion

    with pytest.raises(CheckpointError, match="does not exist"):
        load_stable_diffusion(str(tmp_path / "missing"), "cpu")
    half = tmp_path / "half"
    (half / "unet").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="vae, text_encoder, tokenizer, scheduler"):
        drive(methods.run("dreamfusion", Inputs.text("a chair"), {"checkpoint": str(half), **FAST}))
    broken = tmp_path / "broken"
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (broken / name).mkdir(parents=True)
    with pytest.raises(CheckpointError, match="cannot load Stable Diffusion"):
        load_stable_diffusion(str(broken), "cpu")


# ----------------------------------------------------------------------------- the run cache


def _record(store, run_id: str, settings: dict, asset: Path | None, *, status="done", device="cpu", version="1"):
    store.start_run(
        {
            "id": run_id,
            "method": "dreamfusion",
            "method_version": version,
            "modality": "text",
            "inputs_hash": Inputs.text("a red chair").hash(),
            "settings": settings,
            "seed": settings["seed"],
            "hardware": {"device": device, **({"gpu": "NVIDIA H100"} if device == "cuda" else {})},
            "created": 1_700_000_000.0 + len(run_id),
        }
    )
    store.finish_run(
        run_id,
        status,
        asset_path=str(asset) if asset else None,
        stage_seconds={"load": 40.0, "optimise": 1800.0, "mesh": 10.0},
        peak_gpu_mb=9000.0 if device == "cuda" else None,
    )


def test_find_cached_run(tmp_path: Path) -> None:
    from eval.runs.cache import find_cached_run
    from eval.runs.store import Store

    store = Store(tmp_path / "runs.db")
    settings = methods.get("dreamfusion").default_settings("text").to_dict()
    asset = tmp_path / "asset.glb"
    asset.write_bytes(b"glTF")
    key = Inputs.text("a red chair").hash()
    assert find_cached_run(store, "dreamfusion", key, settings) is None
    _record(store, "r-cpu", settings, asset)
    _record(store, "r-gpu-newer", settings, asset, device="cuda")
    _record(store, "r-failed-newest", settings, asset, status="failed")
    _record(store, "r-gone", {**settings, "steps": 5}, tmp_path / "deleted.glb")
    _record(store, "r-old-version", {**settings, "steps": 6}, asset, version="0")

    hit = find_cached_run(store, "dreamfusion", key, {}, seed=0)  # defaults as overrides, seed given apart
    assert hit is not None and hit.run_id == "r-gpu-newer" and hit.on_gpu and hit.seconds == 1850.0
    assert "31 min on NVIDIA H100" in hit.describe() and "8.8 GB" in hit.describe()
    assert find_cached_run(store, "dreamfusion", key, settings, device="cpu").run_id == "r-cpu"
    assert find_cached_run(store, "dreamfusion", key, {"budget_seconds": 0}, seed=1) is None  # another seed
    assert find_cached_run(store, "dreamfusion", key, {"guidance_scale": 50}) is None  # other settings
    assert find_cached_run(store, "dreamfusion", Inputs.text("a blue chair").hash(), settings) is None
    assert find_cached_run(store, "dreamfields", key, settings) is None
    assert find_cached_run(store, "dreamfusion", key, {"steps": 5}) is None  # its asset file is gone
    assert find_cached_run(store, "dreamfusion", key, {"steps": 6}) is None  # an older method version


def test_expected_time_message() -> None:
    from eval.runs.cache import expected_seconds, expected_time_message, format_seconds

    assert expected_seconds("dreamfusion", {}, gpu=False) == methods.get("dreamfusion").seconds_cpu
    assert expected_time_message("dreamfusion", {"budget_seconds": 600}, gpu=False) == (
        "expected time on this CPU: about 12 min"  # 600 s + one 60 s step past it + 90 s to load and mesh
    )
    assert format_seconds(45) == "45 s" and format_seconds(7200) == "2.0 h"


def test_a_finished_run_is_found_again(tiny_sd: Path, tmp_path: Path) -> None:
    from eval.runs.cache import find_cached_run
    from eval.runs.runner import run_to_completion
    from eval.runs.store import Store

    store = Store(tmp_path / "runs.db")
    settings = {"checkpoint": str(tiny_sd), **FAST}
    inputs = Inputs.text("a red chair")
    done = run_to_completion("dreamfusion", inputs, settings, store=store, out_root=tmp_path)
    hit = find_cached_run(store, "dreamfusion", inputs.hash(), settings, seed=0)
    assert hit is not None and hit.run_id == done.run_id and Path(hit.asset_path).is_file()
    assert hit.seconds == pytest.approx(sum(done.record["stage_seconds"].values()))
    assert hit.device == "cpu" and "on a CPU" in hit.describe()
    assert find_cached_run(store, "dreamfusion", inputs.hash(), settings, seed=1) is None


@pytest.mark.gpu
def test_real_stable_diffusion_on_a_gpu() -> None:
    """Real weights, a short run: the loss stays finite and a mesh comes out (needs CUDA and cached weights)."""
    skip_without_gpu_weights(SD_CHECKPOINT)
    settings = {"steps": 300, "budget_seconds": 300}
    events, asset = drive(methods.run("dreamfusion", Inputs.text("a DSLR photo of a hamburger"), settings))
    last = [e for e in events if e.stage == "optimise"][-1]
    assert math.isfinite(float(last.message.rsplit("loss ", 1)[1])) and len(asset.mesh.faces) > 0
