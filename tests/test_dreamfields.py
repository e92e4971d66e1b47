"""Dream Fields (CLIP-guided radiance field) on a tiny random-weight CLIPModel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import methods
import methods.text_opt  # registers dreamfusion and dreamfields
from methods import CheckpointError, Inputs
from methods.text_opt import CLIP_CHECKPOINT, DreamFields
from tests.generators import drive
from tests.tiny_sd import FAST, skip_without_gpu_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny_sd import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip")


def test_spec_declares_the_clip_it_optimises_against() -> None:
    method = methods.get("dreamfields")
    assert isinstance(method, DreamFields) and method.modalities == ("text",)
    settings = method.default_settings("text")
    assert method.optimises_clip == CLIP_CHECKPOINT == settings.checkpoint == "openai/clip-vit-base-patch16"
    assert settings.guidance_scale == 1.0 and settings.augmentations == 8
    assert "augmentations" in [row["name"] for row in type(settings).describe()]


def test_transmittance_target_is_annealed_exponentially() -> None:
    from methods.text_opt.clip_guidance import target_opacity

    assert target_opacity(0) == pytest.approx(0.5)
    assert target_opacity(250) == pytest.approx(math.sqrt(0.5 * 0.1))
    assert target_opacity(500) == pytest.approx(0.1) and target_opacity(5000) == pytest.approx(0.1)


def test_transmittance_loss_stops_pulling_once_sparse_enough() -> None:
    import torch

    from methods.text_opt.clip_guidance import transmittance_loss

    dense = torch.full((1, 1, 4, 4), 0.6, requires_grad=True)  # transmittance 0.4 < 1 - 0.1
    loss = transmittance_loss(dense, target=0.1)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-0.5 * 0.4)
    assert float(dense.grad.mean()) == pytest.approx(0.5 / 16)  # pushes opacity down
    sparse = torch.full((1, 1, 4, 4), 0.05, requires_grad=True)  # transmittance 0.95 > 0.9: clipped
    loss = transmittance_loss(sparse, target=0.1)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-0.5 * 0.9) and float(sparse.grad.abs().sum()) == 0.0


def test_random_backgrounds() -> None:
    import torch

    from methods.text_opt.clip_guidance import checkerboard, gaussian_blur, random_backgrounds

    g = torch.Generator().manual_seed(0)
    board = checkerboard(32, 8, g, "cpu")
    assert board.shape == (3, 32, 32)
    assert len(torch.unique(board.reshape(3, -1), dim=1).t()) == 2
    assert torch.equal(board[:, 0, 0], board[:, 4, 4]) and not torch.equal(board[:, 0, 0], board[:, 0, 4])
    flat = torch.full((1, 3, 20, 20), 0.3)
    assert torch.allclose(gaussian_blur(flat, 3.0), flat)
    bgs, kinds = random_backgrounds(12, 32, g, "cpu")
    assert bgs.shape == (12, 3, 32, 32) and bgs.min() >= 0 and bgs.max() <= 1
    assert set(kinds) <= {"noise", "checkerboard", "fourier"} and len(set(kinds)) > 1


def test_clip_gradient_reaches_the_field_and_not_clip(tiny_clip: Path) -> None:
    import torch

    from methods.text_opt.clip_guidance import DreamFieldsGuidance, load_clip
    from methods.text_opt.loop import FieldOptimizer
    from methods.text_opt.pipeline import dreamfields_config

    settings = methods.get("dreamfields").default_settings("text").replace(**FAST, checkpoint=str(tiny_clip))
    parts = load_clip(str(tiny_clip), "cpu")
    assert parts.image_size == 32
    guidance = DreamFieldsGuidance(parts, "a red chair", augmentations=3)
    opt = FieldOptimizer(dreamfields_config(settings, "cpu"), guidance)
    assert opt.background_net is None and not opt.config.shading
    stats = opt.step(0, 0.0)
    assert math.isfinite(stats["loss"]) and -1.0 <= stats["clip_similarity"] <= 1.0
    assert stats["target_opacity"] == pytest.approx(0.5)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in opt.field.parameters())
    assert float(opt.field.encoding.planes[0].grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in parts.model.parameters())
    images, kinds = guidance.augment(torch.rand(1, 3, 16, 16), torch.rand(1, 1, 16, 16))
    assert images.shape == (3, 3, 32, 32) and len(kinds) == 3
    opt.close()
    assert guidance.text is None


def test_run_exports_a_mesh(tiny_clip: Path) -> None:
    settings = {"checkpoint": str(tiny_clip), "augmentations": 2, **FAST}
    events, asset = drive(methods.run("dreamfields", Inputs.text("a red chair"), settings))
    optimise = [e for e in events if e.stage == "optimise"]
    assert optimise[-1].fraction == 1.0 and optimise[-1].preview.shape == (16, 16, 3)
    assert math.isfinite(float(optimise[-1].message.rsplit("loss ", 1)[1]))
    assert len(asset.mesh.faces) > 0 and asset.mesh.vertex_colors is not None
    assert any("optimised against CLIP" in note for note in asset.notes)
    assert np.isfinite(asset.mesh.vertices).all()


def test_bad_clip_checkpoint(tmp_path: Path) -> None:
    from methods.text_opt.clip_guidance import load_clip

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        drive(methods.run("dreamfields", Inputs.text("a chair"), {"checkpoint": str(tmp_path / "empty"), **FAST}))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot load CLIP"):
        load_clip(str(tmp_path / "bad"), "cpu")


def test_estimates_match_the_declared_seconds() -> None:
    for mid in ("dreamfusion", "dreamfields"):
        method = methods.get(mid)
        settings = method.default_settings("text")
        assert method.estimate_seconds(settings, gpu=False) == method.seconds_cpu
        assert method.estimate_seconds(settings, gpu=True) == pytest.approx(method.seconds_gpu, abs=1.0)


@pytest.mark.gpu
def test_real_clip_on_a_gpu() -> None:
    """Real CLIP ViT-B/16, a short run: CLIP similarity rises and a mesh comes out (needs CUDA and cached weights)."""
    skip_without_gpu_weights(CLIP_CHECKPOINT)
    events, asset = drive(methods.run("dreamfields", Inputs.text("a bowl of fruit"), {"steps": 300}))
    last = [e for e in events if e.stage == "optimise"][-1]
    assert math.isfinite(float(last.message.rsplit("loss ", 1)[1])) and len(asset.mesh.faces) > 0
