"""TripoSR parity: our implementation against outputs of the official code (tiny random weights, CPU, float32).

The fixture folder is ``$TRIPOSR_FIXTURES`` or ``../shared/fixtures/triposr/`` beside the repository; every
``*_meta.json`` in it is a case (its ``*_weights.safetensors`` and ``*_tensors.safetensors`` beside it), so
another fixture set made the same way can be dropped in. Its README describes the official commit and quirks.

Tolerances (float32; the fixture README measured an independent float64 re-implementation at ~1e-5 on
features, 3e-5 relative on density, 1e-6 on colour, 3e-7 on renders):
- position embeddings, ViT embeddings, rays, upsampled scene codes from the recorded backbone output, plane
  features and marching cubes on the recorded grid: the same operations in the same order, so 1e-6 (rounding);
- image tokens 1e-5 and backbone 1e-5 (+1e-5 relative): SDPA and LayerNorm reduce in another order than
  transformers 4.35's eager attention, a few ulps per layer over values of order 1-10;
- density (activated, up to ~60): 1e-4 relative, since exp turns the raw output's ~1e-6 absolute error into
  relative error; colour 1e-5 (sigmoid contracts);
- renders 1e-5: a sum of 128 weighted colours per ray;
- the end-to-end forward (image -> scene codes) 1e-4, the accumulation of the stages above.
Meshes are compared exactly on the recorded grid (same marching-cubes table), and up to vertex order on our
own grid (the README notes the official vertex order is not deterministic).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from methods.triposr import mesh, preprocess, render
from methods.triposr.config import DINO_VITB16_CONFIG, parse_config
from methods.triposr.model import TripoSR, interpolate_pos_embed_435

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TRIPOSR_FIXTURES") or REPO.parent / "shared" / "fixtures" / "triposr")
CASES = sorted(p.name.removesuffix("_meta.json") for p in FIXTURES.glob("*_meta.json")) if FIXTURES.is_dir() else []

pytestmark = pytest.mark.skipif(not CASES, reason=f"no TripoSR fixtures (*_meta.json) in {FIXTURES}")


def _close(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray, atol: float, rtol: float = 0.0):
    actual, expected = torch.as_tensor(np.asarray(actual)), torch.as_tensor(np.asarray(expected))
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


class Case:
    def __init__(self, name: str):
        from safetensors.torch import load_file

        self.name = name
        self.meta = json.loads((FIXTURES / f"{name}_meta.json").read_text())
        self.tensors = load_file(FIXTURES / f"{name}_tensors.safetensors")
        vit = json.loads((FIXTURES / "tiny_vit_config.json").read_text())
        self.config = parse_config((FIXTURES / "tiny_config.yaml").read_text(), vit)
        torch.manual_seed(0)
        self.model = TripoSR(self.config).eval()
        self.model.load_state_dict(load_file(FIXTURES / f"{name}_weights.safetensors"), strict=True)

    @property
    def planes(self) -> torch.Tensor:
        return self.tensors["scene_codes"][0]


@pytest.fixture(scope="module", params=CASES)
def case(request) -> Case:
    torch.set_num_threads(1)
    return Case(request.param)


def test_real_config_on_meta_device_has_exactly_the_manifest_keys_and_shapes():
    manifest = json.loads((FIXTURES / "real_manifest.json").read_text())
    dino = json.loads((FIXTURES / "real_dino_vitb16_config.json").read_text())
    assert {k: dino[k] for k in DINO_VITB16_CONFIG if k in dino} == {
        k: v for k, v in DINO_VITB16_CONFIG.items() if k in dino
    }
    config = parse_config((FIXTURES / "real_config.yaml").read_text(), DINO_VITB16_CONFIG)
    with torch.device("meta"):
        model = TripoSR(config)
    state = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert state == manifest["keys"]
    assert sum(int(np.prod(s)) for s in state.values()) == manifest["num_parameters"] == 419_275_628


def test_fixture_weights_load_strictly_and_save_back_the_same_names(case):
    from safetensors.torch import load_file

    saved = case.model.state_dict()
    weights = load_file(FIXTURES / f"{case.name}_weights.safetensors")
    assert set(saved) == set(weights)
    for key, value in weights.items():
        assert torch.equal(saved[key], value), key


def test_preprocessed_input(case):
    t = case.tensors
    if case.meta.get("composited_input_png"):
        expected = np.asarray(Image.open(FIXTURES / case.meta["composited_input_png"]))
        pixels = torch.from_numpy(expected.astype(np.float32) / 255.0)[None]
        _close(case.model.preprocess(pixels).permute(0, 2, 3, 1), t["rgb_cond"][:, 0], atol=1e-6)
        source = _find_image(case.meta)
        if source is None:
            pytest.skip(f"{case.meta['image']} not found beside the fixtures")
        rgba, how = preprocess.cut_out(Image.open(source))
        assert how == "alpha"
        ours = np.asarray(preprocess.composite_grey(preprocess.resize_foreground(rgba, case.meta["foreground_ratio"])))
        np.testing.assert_array_equal(ours, expected)  # the official uint8 image, exactly
    else:
        source = _find_image(case.meta)
        if source is None:
            pytest.skip(f"{case.meta['image']} not found beside the fixtures")
        pixels = torch.from_numpy(np.asarray(Image.open(source).convert("RGB"), dtype=np.float32) / 255.0)[None]
        _close(case.model.preprocess(pixels).permute(0, 2, 3, 1), t["rgb_cond"][:, 0], atol=1e-6)


def _find_image(meta: dict) -> Path | None:
    rel = meta["image"]
    for candidate in (REPO / rel, FIXTURES.parents[1] / rel.removeprefix("../shared/")):
        if candidate.is_file() and hashlib.sha256(candidate.read_bytes()).hexdigest() == meta["image_sha256"]:
            return candidate
    return None


@torch.no_grad()
def test_image_tokenizer(case):
    t = case.tensors
    tok = case.model.image_tokenizer
    images = t["rgb_cond"][:, 0].permute(0, 3, 1, 2)
    size = images.shape[-1]
    pos = interpolate_pos_embed_435(tok.model.embeddings.position_embeddings, size, size, tok.patch_size)
    _close(pos, t["vit_pos_embed_interp"], atol=1e-6)
    _close(tok.embeddings(images), t["vit_embeddings"], atol=1e-6)
    _close(case.model.image_tokens(images), t["image_tokens"], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_position_embeddings_differ_from_todays_transformers(case):
    """Guard the 4.35 quirk: today's size=(h0, w0) interpolation would not match the fixture."""
    tok = case.model.image_tokenizer
    pos = tok.model.embeddings.position_embeddings
    expected = case.tensors["vit_pos_embed_interp"]
    size = case.tensors["rgb_cond"].shape[2]
    todays = tok.model.embeddings.interpolate_pos_encoding(torch.zeros_like(expected), size, size)
    assert pos.shape[1] != expected.shape[1]
    diff = (todays - expected).abs().max().item()
    assert diff == pytest.approx(case.meta["vit_pos_embed_interp_maxabs_vs_size_style"], rel=1e-3)


@torch.no_grad()
def test_backbone_and_scene_codes(case):
    t = case.tensors
    _close(case.model.backbone_tokens(t["image_tokens"]), t["backbone_out"], atol=1e-5, rtol=1e-5)
    _close(case.model.scene_codes_from_tokens(t["backbone_out"]), t["scene_codes"], atol=1e-6)


@torch.no_grad()
def test_forward_end_to_end(case):
    t = case.tensors
    _close(case.model(t["rgb_cond"][:, 0]), t["scene_codes"], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_decoder_at_query_points(case):
    t = case.tensors
    points = t["query_points"]
    assert (points.abs() > case.config.radius).any(dim=1).sum() == case.meta["n_query_points_outside_box"]
    _close(case.model.plane_features(case.planes, points), t["query_triplane_features"], atol=1e-6)
    out = case.model.query(case.planes, points, chunk_size=500)  # chunking must not change anything
    _close(out["density_raw"], t["query_density_raw"], atol=1e-5)
    _close(out["density"], t["query_density_act"], atol=1e-5, rtol=1e-4)
    _close(out["features"], t["query_features_raw"], atol=1e-5)
    _close(out["color"], t["query_color"], atol=1e-5)


@torch.no_grad()
def test_rendered_fixed_cameras(case):
    r, t = case.meta["render"], case.tensors
    args = (r["n_views"], r["elevation_deg"], r["camera_distance"], r["fovy_deg"], r["height"], r["width"])
    rays_o, rays_d = render.spherical_cameras(*args)
    _close(rays_o, t["render_rays_o"], atol=1e-6)
    _close(rays_d, t["render_rays_d"], atol=1e-6)
    images = render.render_views(case.model, case.planes, *args, chunk_size=case.meta["chunk_size"])
    _close(images, t["render_rgb"], atol=1e-5)


@torch.no_grad()
def test_rays_that_miss_the_box_render_white(case):
    """The official renderer raises here; ours composites the background (white) for those rays."""
    rays_o, rays_d = render.spherical_cameras(2, 0.0, 1.9, 90.0, 16, 16)  # a wide view: the corners miss
    _, _, valid = render.ray_box(rays_o.reshape(-1, 3), rays_d.reshape(-1, 3), case.config.radius)
    assert 0 < valid.sum() < valid.numel()
    image = render.render_rays(case.model, case.planes, rays_o[0], rays_d[0]).reshape(-1, 3)
    np.testing.assert_array_equal(image[~valid[: 16 * 16]].numpy(), 1.0)
    assert (image[valid[: 16 * 16]] < 1.0).any()


@torch.no_grad()
def test_extracted_mesh(case):
    m, t = case.meta["mesh"], case.tensors
    res, threshold, radius = m["resolution"], m["threshold"], case.config.radius
    grid = mesh.density_grid(case.model, case.planes, res, chunk_size=1000)
    _close(grid, t["mesh_grid_density_act"], atol=1e-5, rtol=1e-4)
    # on the recorded grid, the classic (torchmcubes') case table gives the official mesh exactly
    verts, faces = mesh.marching_cubes(t["mesh_grid_density_act"].numpy(), radius, threshold, method="lorensen")
    _close(verts, t["mesh_raw_vertices"], atol=1e-6)
    np.testing.assert_array_equal(faces, t["mesh_raw_faces"].numpy())
    colors = case.model.query(case.planes, torch.from_numpy(verts))["color"]
    _close(colors, t["mesh_raw_vertex_colors"], atol=1e-5)
    rgba8 = t["mesh_vertex_colors_rgba8"].numpy()
    assert np.abs(np.round(colors.numpy() * 255) - rgba8[:, :3]).max() <= 1
    # on our own grid: the same surface up to vertex order
    ours, our_faces = mesh.marching_cubes(grid, radius, threshold, method="lorensen")
    assert (len(ours), len(our_faces)) == (m["raw_vertex_count"], m["raw_face_count"])
    _close(np.sort(ours, axis=0), np.sort(t["mesh_raw_vertices"].numpy(), axis=0), atol=1e-4)
    # the default (lewiner) table: the counts the fixture records for it
    lew, lew_faces = mesh.marching_cubes(grid, radius, threshold)
    assert (len(lew), len(lew_faces)) == (m["skimage_lewiner_vertex_count"], m["skimage_lewiner_face_count"])
