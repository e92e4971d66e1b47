"""PSNR / SSIM against known values and scikit-image; LPIPS architecture with random weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from eval.judging.metrics import image
from eval.judging.metrics.lpips_net import LPIPS_NETS, build_lpips, load_lpips


def test_psnr_known_values_and_mask():
    a = np.full((16, 16, 3), 0.5)
    assert image.psnr(a, a) == math.inf
    assert image.psnr(a, a + 0.1) == pytest.approx(20.0)
    b = a.copy()
    b[:8] += 0.1  # only the top half differs
    mask = np.zeros((16, 16))
    mask[:8] = 1
    assert image.psnr(b, a, mask) == pytest.approx(20.0)
    assert image.psnr(b, a) == pytest.approx(10 * math.log10(1 / 0.005))
    with pytest.raises(ValueError):
        image.psnr(a, a[:8])


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    x = rng.random((40, 48, 3))
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)
    ours = image.ssim(x, y)
    ref = structural_similarity(
        x, y, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert ours == pytest.approx(ref, abs=1e-6)
    assert image.ssim(x, x) == pytest.approx(1.0)
    assert image.ssim(x, y, np.ones((40, 48))) == pytest.approx(ours)


@pytest.fixture(scope="module")
def alex():
    torch.manual_seed(0)
    return build_lpips("alex")


def test_lpips_identity_symmetry_and_shapes(alex):
    rng = np.random.default_rng(1)
    x, y = rng.random((64, 64, 3)), rng.random((64, 64, 3))
    assert image.lpips(alex, x, x) == pytest.approx(0.0, abs=1e-7)
    d = image.lpips(alex, x, y)
    assert d > 0 and image.lpips(alex, y, x) == pytest.approx(d, rel=1e-5)
    with torch.inference_mode():
        t0 = torch.rand(2, 3, 64, 64) * 2 - 1
        t1 = torch.rand(2, 3, 64, 64) * 2 - 1
        assert alex(t0, t1).shape == (2, 1, 1, 1) and alex(t0, t1, spatial=True).shape == (2, 1, 64, 64)
    assert image.lpips(alex, x, y, np.ones((64, 64))) > 0


def test_lpips_loads_torchvision_and_lpips_package_layouts(tmp_path, alex):
    """A trunk file keyed like torchvision (features.I.*) plus a linear file keyed like the lpips package."""
    trunk = {}
    for name, value in alex.state_dict().items():
        if name.startswith("net.slice"):
            index = name.split(".")[2]
            trunk[f"features.{index}.{name.split('.')[-1]}"] = value
    trunk["classifier.1.weight"] = torch.zeros(4, 4)  # present in torchvision files, ignored
    linear = {f"lin{k}.model.1.weight": alex.state_dict()[f"lin{k}.model.1.weight"] for k in range(5)}
    torch.save(trunk, tmp_path / "alexnet.pth")
    torch.save(linear, tmp_path / "alex.pth")
    loaded = load_lpips([tmp_path / "alexnet.pth", tmp_path / "alex.pth"], net="alex")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    y = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(loaded(x, y), alex(x, y))
    with pytest.raises(OSError, match="incomplete"):
        load_lpips([tmp_path / "alex.pth"], net="alex")
    with pytest.raises(OSError):
        load_lpips([tmp_path / "missing.pth"], net="alex")


def test_vgg_trunk_layout():
    model = build_lpips("vgg")
    convs = [k for k in model.state_dict() if k.startswith("net.") and k.endswith(".weight")]
    assert len(convs) == 13 and "net.slice5.28.weight" in convs  # VGG16's 13 convolutions, torchvision indices
    assert LPIPS_NETS["vgg"][0] == (64, 128, 256, 512, 512)
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32)).item() == 0.0


def test_fit_foreground_centres_the_object():
    rgb = np.zeros((50, 80, 3), np.float32)
    alpha = np.zeros((50, 80), np.float32)
    alpha[5:15, 60:70] = 1.0  # a small square in a corner
    out, mask = image.fit_foreground(rgb, alpha, 40)
    ys, xs = np.nonzero(mask > 0.5)
    assert abs(ys.mean() - 19.5) < 1 and abs(xs.mean() - 19.5) < 1
    assert ys.max() - ys.min() + 1 == pytest.approx(32, abs=1)  # 80% of the frame
    assert np.allclose(out[mask == 0], 1.0)  # white around it
    split_rgb, split_alpha = image.split_rgba(np.zeros((4, 4, 3), np.uint8))
    assert split_alpha.min() == 1.0 and split_rgb.shape == (4, 4, 3)


def test_image_quality_accumulator(alex):
    acc = image.ImageQuality(alex)
    x = np.full((32, 32, 3), 0.5)
    acc.update(x, x + 0.1)
    acc.update(x, x + 0.1)
    out = acc.compute()
    assert out["psnr"] == pytest.approx(20.0) and out["ssim"] < 1 and out["lpips"] >= 0
