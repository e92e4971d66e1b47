"""The shared pieces of the 3D-latent models (methods.latent3d), on small analytic inputs.

- DINOv2 conditioner: saves and loads transformers-4.x names (attention and SwiGLU), strictly, round trip;
- flow sampler: the update sign, the timestep scale, the guidance batch order and the guidance-embedding
  variant, each against a hand-written loop on a linear denoiser;
- grids: chunking does not change values; the hierarchical decode keeps coarse values, evaluates far fewer
  points than a dense decode and gives the same surface as the dense grid near it (a sphere);
- marching cubes: no surface is a clear error; the vertex transform spans the box (or reproduces a divisor).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from methods.base import MethodError
from methods.latent3d import (
    DinoConditioner,
    FlowConvention,
    dense_grid,
    flow_steps,
    from_v4_names,
    grid_axes,
    hierarchical_grid,
    index_to_world,
    marching_cubes,
    rectified_flow_sigmas,
    sample,
    to_v4_names,
)

TINY_DINO = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 28, "patch_size": 14}


@pytest.mark.parametrize("swiglu", [False, True])
def test_conditioner_saves_and_loads_the_v4_names(swiglu):
    torch.manual_seed(0)
    cond = DinoConditioner({**TINY_DINO, "use_swiglu_ffn": swiglu}).eval()
    state = cond.released_state_dict()
    assert "encoder.layer.0.attention.attention.query.weight" in state
    assert "encoder.layer.1.attention.output.dense.bias" in state
    assert not any("q_proj" in k or "o_proj" in k or "gate_proj" in k for k in state)
    if swiglu:
        hidden = cond.model.encoder.layer[0].mlp.gate_proj.out_features
        assert state["encoder.layer.0.mlp.weights_in.weight"].shape == (2 * hidden, 32)
        assert state["encoder.layer.0.mlp.weights_out.weight"].shape == (32, hidden)
    else:
        assert "encoder.layer.0.mlp.fc1.weight" in state
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        expected = cond(pixels)
    torch.manual_seed(1)
    other = DinoConditioner({**TINY_DINO, "use_swiglu_ffn": swiglu}).eval()
    other.load_released(state)
    with torch.no_grad():
        torch.testing.assert_close(other(pixels), expected, atol=0, rtol=0)
    # nested under another module, the prefix is honoured
    holder = torch.nn.Module()
    holder.main_image_encoder = other
    keys = holder.state_dict().keys()
    assert "main_image_encoder.model.encoder.layer.0.attention.attention.key.weight" in keys
    missing = dict(state)
    missing.pop("layernorm.bias")
    with pytest.raises(RuntimeError, match="layernorm.bias"):
        other.load_released(missing)


def test_name_mapping_round_trip_keeps_tensors():
    state = {
        "p.encoder.layer.3.mlp.weights_in.weight": torch.arange(8.0).view(4, 2),
        "p.encoder.layer.3.attention.attention.query.bias": torch.ones(2),
        "other.x": torch.zeros(1),
    }
    mapped = dict(state)
    from_v4_names(mapped, "p.")
    assert set(mapped) == {
        "p.encoder.layer.3.mlp.gate_proj.weight",
        "p.encoder.layer.3.mlp.up_proj.weight",
        "p.encoder.layer.3.attention.q_proj.bias",
        "other.x",
    }
    torch.testing.assert_close(mapped["p.encoder.layer.3.mlp.gate_proj.weight"], torch.arange(4.0).view(2, 2))
    to_v4_names(mapped, "p.")
    assert set(mapped) == set(state)
    for k in state:
        torch.testing.assert_close(mapped[k], state[k])


class LinearDenoiser:
    """v = a x + b t + c . context (mean over tokens); records the calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, t, context, **extra):
        self.calls.append((x.clone(), t.clone(), context.clone(), extra))
        v = 0.3 * x + 1e-3 * t.view(-1, 1, 1) + context.mean(dim=1, keepdim=True)
        if "guidance" in extra:
            v = v * extra["guidance"].view(-1, 1, 1)
        return v


def _reference(x, cond, uncond, sigmas, sign, scale, g, order):
    model = LinearDenoiser()
    for i in range(len(sigmas) - 1):
        t = torch.full((1,), float(sigmas[i]) * scale)
        vc, vu = model(x, t, cond), model(x, t, uncond)
        v = vu + g * (vc - vu) if g > 1 else vc
        x = x + sign * (sigmas[i + 1] - sigmas[i]) * v
    return x


@pytest.mark.parametrize(
    "convention",
    [
        FlowConvention(sign=-1.0, time_scale=1000.0, batch_order="uncond_first"),
        FlowConvention(sign=1.0, time_scale=1.0, batch_order="cond_first"),
    ],
)
@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_sampler_conventions_match_a_hand_written_loop(convention, guidance):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 3, generator=gen)
    cond, uncond = torch.randn(1, 2, 3, generator=gen), torch.zeros(1, 2, 3)
    sigmas = rectified_flow_sigmas(5) if convention.sign < 0 else torch.linspace(0, 1, 6)
    model = LinearDenoiser()
    out = sample(model, x0, cond, uncond, sigmas, convention, guidance)
    expected = _reference(x0, cond, uncond, sigmas, convention.sign, convention.time_scale, guidance,
                          convention.batch_order)  # fmt: skip
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # one batched call per step; the batch holds the conditions in the convention's order
    assert len(model.calls) == 5
    _, t, context, _ = model.calls[0]
    assert float(t[0]) == pytest.approx(float(sigmas[0]) * convention.time_scale)
    if guidance > 1:
        first = uncond if convention.batch_order == "uncond_first" else cond
        torch.testing.assert_close(context[:1], first)
        assert len(context) == 2
    else:
        assert len(context) == 1


def test_guidance_embedding_variant_runs_once_per_step_with_the_scale():
    x0, cond = torch.ones(1, 2, 3), torch.ones(1, 2, 3)
    model = LinearDenoiser()
    convention = FlowConvention(sign=1.0, time_scale=1.0, batch_order="cond_first", guidance_embed=True)
    steps = list(flow_steps(model, x0, cond, None, torch.linspace(0, 1, 4), convention, 3.5))
    assert len(steps) == 3 and len(model.calls) == 3
    assert all(len(c[2]) == 1 and float(c[3]["guidance"][0]) == 3.5 for c in model.calls)
    with pytest.raises(ValueError, match="unconditional"):
        list(flow_steps(model, x0, cond, None, torch.linspace(0, 1, 4), FlowConvention(), 3.0))


def _sphere(counter):
    def query(points):
        counter.append(len(points))
        return 0.6 - points.norm(dim=-1)  # positive inside a sphere of radius 0.6

    return query


def test_dense_grid_chunking_does_not_change_values():
    counts: list[int] = []
    axes = grid_axes(1.0, 9)
    whole = dense_grid(_sphere(counts), axes, chunk_size=0)
    chunked = dense_grid(_sphere(counts), axes, chunk_size=100)
    assert counts[0] == 9**3 and max(counts[1:]) == 100
    torch.testing.assert_close(whole, chunked, atol=0, rtol=0)
    x = axes[0]
    torch.testing.assert_close(whole[2, 4, 7], 0.6 - torch.stack([x[2], x[4], x[7]]).norm())


def test_hierarchical_grid_evaluates_less_and_agrees_near_the_surface():
    counts: list[int] = []
    grid, levels = hierarchical_grid(_sphere(counts), 1.0, 64, coarse_resolution=16, band=0.05, chunk_size=4096)
    assert grid.shape == (65, 65, 65)
    dense = dense_grid(_sphere([]), grid_axes(1.0, 65))
    assert sum(levels.values()) == sum(counts) < 0.35 * 65**3
    assert levels["level0"] == 17**3
    near = dense.abs() < 0.1
    torch.testing.assert_close(grid[near], dense[near], atol=1e-6, rtol=0)
    torch.testing.assert_close(grid[::4, ::4, ::4], dense[::4, ::4, ::4], atol=1e-6, rtol=0)  # coarse kept
    assert torch.equal(grid > 0, dense > 0)
    with pytest.raises(ValueError, match="power of 2"):
        hierarchical_grid(_sphere([]), 1.0, 48, coarse_resolution=20)


def test_marching_cubes_and_vertex_transform():
    grid = dense_grid(_sphere([]), grid_axes(1.0, 33))
    verts, faces = marching_cubes(grid)
    world = index_to_world(verts, 1.0, 33)
    radius = np.linalg.norm(world, axis=1)
    assert abs(radius.mean() - 0.6) < 0.01 and faces.dtype == np.int64
    shrunk = index_to_world(verts, 1.0, 33, divisor=33)
    np.testing.assert_allclose(shrunk, (world + 1) * 32 / 33 - 1, atol=1e-6)

    # skimage's winding: right-hand normals point inwards; outward=True reverses every face
    def outward_share(f):
        tri = world[f]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        return (np.einsum("ij,ij->i", normals, tri.mean(axis=1)) > 0).mean()

    assert outward_share(faces) == 0.0
    verts_out, faces_out = marching_cubes(grid, outward=True)
    np.testing.assert_array_equal(verts_out, verts)
    np.testing.assert_array_equal(faces_out, faces[:, ::-1])
    assert outward_share(faces_out) == 1.0
    with pytest.raises(MethodError, match="no surface"):
        marching_cubes(torch.full((8, 8, 8), -1.0), what="the model")
