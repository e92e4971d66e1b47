"""LPIPS weights: a local folder of official files, the first-use fetch into the cache, offline a skipped row.

The weights are random but shaped and saved as the official files are: torchvision's VGG16
state dict (``features.I.weight`` / ``.bias``) under its official name, and the ``lpips``
package's v0.1 linear layers (``linK.model.1.weight``). The fetch reads them from ``file://``
URLs through the same download path as the real URLs: no network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.judging.metrics import lpips_weights
from eval.judging.metrics.lpips_net import LPIPS_NETS, trunk_layers
from eval.judging.protocol import score
from methods.base import Asset, Inputs, Mesh

TRUNK_NAME = "vgg16-397923af.pth"


def save_official_vgg(folder: Path, trunk_name: str = TRUNK_NAME, seed: int = 0) -> tuple[Path, Path]:
    """Random VGG16 conv weights as torchvision's ``vgg16().state_dict()`` names them, and v0.1 linear layers."""
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    trunk = {}
    for i, layer in enumerate(trunk_layers("vgg")):
        if isinstance(layer, torch.nn.Conv2d):
            trunk[f"features.{i}.weight"] = layer.weight.detach().clone() * 0.5
            trunk[f"features.{i}.bias"] = layer.bias.detach().clone()
    torch.save(trunk, folder / trunk_name)
    linear = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(LPIPS_NETS["vgg"][0])}
    torch.save(linear, folder / "vgg.pth")
    return folder / trunk_name, folder / "vgg.pth"


def heldout_asset() -> Asset:
    rng = np.random.default_rng(0)
    gt = rng.random((2, 32, 32, 3)).astype(np.float32)
    pred = np.clip(gt + rng.normal(0, 0.1, gt.shape), 0, 1).astype(np.float32)
    box = Mesh(
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]]), np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    )
    return Asset(mesh=box, views={"heldout_gt": gt, "heldout_pred": pred, "split": "test"})


def lpips_rows(context: dict) -> dict:
    rows = score(heldout_asset(), Inputs(modality="video", video_path="scene.mp4", name="scene.mp4"), context)
    return {r.name: r for r in rows if r.name.startswith("lpips")}


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRILEMMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRILEMMA_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("TRILEMMA_LPIPS_SOURCE", raising=False)
    from methods import runtime

    runtime.release_models()
    yield
    runtime.release_models()


def test_a_local_folder_of_official_files_gives_a_row(tmp_path):
    save_official_vgg(tmp_path / "lpips")
    rows = lpips_rows({"lpips_source": str(tmp_path / "lpips")})
    assert "lpips_skipped" not in rows and 0 < rows["lpips"].value < 1
    assert rows["lpips"].settings["lpips"] == "v0.1 vgg"
    assert rows["lpips"].settings["lpips_weights"] == [TRUNK_NAME, "vgg.pth"]


def test_offline_without_the_files_is_a_skipped_row_with_the_reason(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = lpips_rows({})
    reason = rows["lpips_skipped"].value
    assert "lpips" not in rows and TRUNK_NAME in reason and "downloads are off" in reason
    assert str(lpips_weights.cache_dir()) not in reason, "no server path in the message"


def test_a_folder_missing_a_file_says_which(tmp_path):
    trunk, _ = save_official_vgg(tmp_path / "lpips")
    trunk.unlink()
    assert "lacks vgg16-397923af.pth" in lpips_rows({"lpips_source": str(tmp_path / "lpips")})["lpips_skipped"].value


def test_first_use_fetches_into_the_cache_through_the_download_path(tmp_path, monkeypatch):
    staged = tmp_path / "server"
    trunk, linear = save_official_vgg(staged, "staged.pth")
    prefix = hashlib.sha256(trunk.read_bytes()).hexdigest()[:8]
    named = trunk.rename(staged / f"vgg16-{prefix}.pth")  # torchvision names its files by their sha256
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(lpips_weights.TRUNK_URLS, "vgg", named.as_uri())
    monkeypatch.setitem(lpips_weights.LINEAR_URLS, "vgg", linear.as_uri())
    fetched = lpips_rows({})["lpips"]
    cached = lpips_weights.cache_dir()
    assert sorted(p.name for p in cached.glob("*.pth")) == sorted([named.name, "vgg.pth"])
    record = json.loads((cached / f"{named.name}.sha256").read_text())
    assert record["size"] == named.stat().st_size and record["sha256"].startswith(prefix)
    from methods import runtime

    runtime.release_models()
    local = lpips_rows({"lpips_source": str(staged)})["lpips"]
    assert fetched.value == pytest.approx(local.value, rel=1e-6), "the same weights either way"
    # a second use reads the cache: no URL is opened
    monkeypatch.setitem(lpips_weights.TRUNK_URLS, "vgg", (tmp_path / "nowhere" / named.name).as_uri())
    runtime.release_models()
    assert lpips_rows({})["lpips"].value == pytest.approx(fetched.value, rel=1e-6)


def test_a_download_that_does_not_match_its_sha256_prefix_is_refused(tmp_path, monkeypatch):
    staged = tmp_path / "server"
    trunk, linear = save_official_vgg(staged, "vgg16-00000000.pth")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setitem(lpips_weights.TRUNK_URLS, "vgg", trunk.as_uri())
    monkeypatch.setitem(lpips_weights.LINEAR_URLS, "vgg", linear.as_uri())
    reason = lpips_rows({})["lpips_skipped"].value
    assert "sha256 prefix 00000000" in reason
    assert not (lpips_weights.cache_dir() / trunk.name).exists()
