"""Pytest plugin: tiny random-weight Shap-E checkpoints, built once per session (listed in conftest.pytest_plugins)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # two shared cores: one torch thread per test process


@pytest.fixture(scope="session")
def tiny_shap_e_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved ShapEPipeline with tiny random weights (about 0.5 MB)."""
    from tests.tiny_shap_e import build_tiny_shap_e

    _one_thread()
    return build_tiny_shap_e(tmp_path_factory.mktemp("shap-e-text") / "pipeline")


@pytest.fixture(scope="session")
def tiny_shap_e_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved ShapEImg2ImgPipeline with tiny random weights (32 px CLIP vision tower)."""
    from tests.tiny_shap_e import build_tiny_shap_e

    _one_thread()
    return build_tiny_shap_e(tmp_path_factory.mktemp("shap-e-image") / "pipeline", image=True)
