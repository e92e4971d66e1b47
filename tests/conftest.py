"""Test-wide settings: no network, one torch thread, a private store and outputs folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports torch or huggingface_hub: offline, and one thread (server + client share 2 cores).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The suite proves architectures, not precisions: float32 wherever "auto" would pick bfloat16 (a test of
# bfloat16 asks for it by name, tests/test_precision.py).
os.environ["TRILEMMA_PRECISION"] = "float32"

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins: list[str] = ["tests.conftest_shap_e"]

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_outputs(tmp_path_factory: pytest.TempPathFactory):
    """Every test session writes its store and assets under a temp folder, never into the repo."""
    out = tmp_path_factory.mktemp("outputs")
    os.environ.setdefault("TRILEMMA_OUTPUTS", str(out))
    os.environ.setdefault("TRILEMMA_DB", str(out / "trilemma.db"))
    yield out


@pytest.fixture(scope="module")
def one_torch_thread() -> None:
    """Torch on one thread for the module's tests (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    model tests on a 2-core machine shared with other jobs are faster and steadier so."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.exists():
        pytest.skip(f"shared test data not found at {path}")
    return path
