"""Every shipped example works with every method of its tab that can run here, through the app's API.

The methods come from the registry (whatever is registered for the tab, so methods added later
are picked up); those that need weights get tiny random-weight checkpoints built here and loaded
through their real loading path, the chapter-2 families run with their shipped weights, and the
per-scene methods get small budgets. A method that is not available here even with those settings
is reported, not run. Any failed run fails the test with the method's own message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gradio_client import handle_file

from methods import registry

pytest_plugins = ["tests.conftest_app"]

ROOT = Path(__file__).resolve().parents[1]
TEST_METHOD_PREFIX = "app-test-"  # the procedural stand-ins of tests/conftest_app.py
API = {"text": "/text_to_3d", "image": "/image_to_3d", "video": "/video_to_3d"}
EXPECTED = {  # methods that must be runnable here with the settings below (others join when registered)
    "text": {"shap-e", "point-e", "dreamfusion", "dreamfields", "vae", "gan", "ddpm", "score-sde", "triposr"},
    "image": {"shap-e", "point-e", "triposr"},
    "video": {"nerf", "gaussian-splatting"},
}
PER_REQUEST = 4  # ui.jobs.MAX_METHODS
SMALL = {  # settings that make a method quick on a CPU (budgets, steps, resolutions); merged with tiny checkpoints
    "nerf": {"budget_seconds": 60, "steps": 100, "resolution": 32, "mesh_resolution": 48},
    "gaussian-splatting": {"budget_seconds": 60, "steps": 100, "init_points": 1000, "mesh_resolution": 48},
    "triposr": {"mc_resolution": 32},
    "shap-e": {"num_inference_steps": 2, "frame_size": 32},
    "dreamfusion": {"steps": 3, "resolution": 16, "grid_resolution": 16, "mesh_resolution": 32, "budget_seconds": 60},
    "dreamfields": {
        "steps": 3,
        "resolution": 16,
        "grid_resolution": 16,
        "mesh_resolution": 32,
        "budget_seconds": 60,
        "augmentations": 2,
    },
}


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory, tiny_shap_e_text, tiny_shap_e_image, app_server):
    """{(method, modality): settings} pointing at tiny random-weight checkpoints in the official layouts."""
    from tests.test_point_e_pipeline import build_tiny_clip_dir, build_tiny_point_e
    from tests.tiny_sd import build_stable_diffusion, build_tiny_clip
    from tests.tiny_triposr import build_tiny_triposr

    registry.discover()  # before Point-E's fixture marks discovery done
    patch = pytest.MonkeyPatch()
    point_e = build_tiny_point_e(
        tmp_path_factory.mktemp("point-e"), patch, build_tiny_clip_dir(tmp_path_factory.mktemp("point-e-clip"))
    )
    sd = build_stable_diffusion(tmp_path_factory.mktemp("tiny-sd") / "sd")
    clip = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "clip")
    triposr = build_tiny_triposr(tmp_path_factory.mktemp("tiny-triposr") / "triposr")
    yield {
        ("shap-e", "text"): {"checkpoint": str(tiny_shap_e_text)},
        ("shap-e", "image"): {"checkpoint": str(tiny_shap_e_image)},
        ("point-e", "text"): point_e,
        ("point-e", "image"): point_e,
        ("dreamfusion", "text"): {"checkpoint": str(sd)},
        ("dreamfields", "text"): {"checkpoint": str(clip)},
        ("triposr", "image"): {"checkpoint": str(triposr)},
        ("triposr", "text"): {"checkpoint": str(triposr), "image_model": str(sd), "image_steps": 2},
    }
    patch.undo()
    from methods import runtime

    runtime.release_models()


def shipped_examples(modality: str) -> list:
    from ui.generate import example_images, example_prompts, example_view_sets

    if modality == "text":
        return example_prompts()
    if modality == "image":
        return [str(p) for p in example_images()]
    return [[str(p) for p in views] for views in example_view_sets()]


def runnable(modality: str, tiny: dict) -> tuple[dict[str, dict], dict[str, str]]:
    """The tab's methods that can run here with their test settings, and the others with the reason."""
    run, not_here = {}, {}
    for mid in registry.ids(modality):
        if mid.startswith(TEST_METHOD_PREFIX):
            continue
        method = registry.get(mid)
        settings = {**SMALL.get(mid, {}), **tiny.get((mid, modality), {})}
        resolved = type(method.default_settings(modality)).from_dict(settings, base=method.default_settings(modality))
        status = registry.availability(method, modality, resolved)
        if status.ok:
            run[mid] = settings
        else:
            not_here[mid] = status.reason
    return run, not_here


def _as_input(modality: str, example):
    if modality == "text":
        return example
    if modality == "image":
        return handle_file(example)
    return [handle_file(p) for p in example]


@pytest.mark.parametrize("modality", ["video", "image", "text"])
def test_every_example_with_every_method_of_its_tab(modality, app_client, tiny_checkpoints):
    examples = shipped_examples(modality)
    assert examples, f"the {modality} tab ships no example"
    methods, not_here = runnable(modality, tiny_checkpoints)
    assert EXPECTED[modality] <= set(methods), f"not runnable here: {not_here}"
    failures = []
    for example in examples:
        ids = sorted(methods)
        for start in range(0, len(ids), PER_REQUEST):
            chosen = ids[start : start + PER_REQUEST]
            settings = json.dumps({mid: methods[mid] for mid in chosen})
            try:
                files, report = app_client.predict(
                    _as_input(modality, example), chosen, 0, False, settings, api_name=API[modality]
                )
            except Exception as exc:  # the API raises when every method of the request failed
                failures.append(f"{chosen} on {example!r}: {exc}")
                continue
            for run in report["runs"]:
                if run["status"] != "done":
                    failures.append(f"{run['method']} on {example!r}: {run['status']}: {run['error']}")
            assert all(Path(f).stat().st_size > 0 for f in files)
            if modality == "video":  # nerf and splats are scored on the same held-out frames of the example
                psnr = {m["method"]: m["settings"]["frames"] for m in report["metrics"] if m["metric"] == "psnr"}
                video_methods = {"nerf", "gaussian-splatting"} & set(chosen)
                assert set(psnr) >= video_methods and len({psnr[m] for m in video_methods}) == 1, psnr
    assert not failures, "\n".join(failures)


def test_the_video_example_ships_its_known_cameras():
    """The turntable folder is also a posed scene (nerfstudio transforms.json): the CLI trains on it without SfM."""
    import numpy as np

    from methods.nerf.io import load_transforms
    from ui.generate import example_view_sets

    folder = ROOT / "assets" / "examples" / "turntable"
    scene = load_transforms(folder)
    views = example_view_sets()[0]
    assert len(scene.images) == len(views) == 24 and scene.source == "transforms.json"
    centres = scene.cameras.c2w[:, :3, 3]
    assert np.allclose(np.linalg.norm(centres, axis=1), 2.6, atol=1e-4)  # the orbit of assets/make_examples.py
    assert np.allclose(scene.cameras.c2w[:, :3, :3] @ np.array([0, 0, -1.0]), -centres / 2.6, atol=1e-4)
