"""The radiance-field engine's parts: encodings, occupancy, rendering, the budgeted loop."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from methods.nerf.field import FieldConfig, HashEncoding, PlaneEncoding, RadianceField, _HashGather, sh_encode
from methods.nerf.occupancy import OccupancyGrid, sample_cell_density
from methods.nerf.render import RenderOptions, ray_box, render_rays
from methods.nerf.train import Budget, train_loop


def test_hash_gather_gradient_matches_autograd():
    torch.manual_seed(0)
    table = torch.randn(50, 2, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 50, (7, 3, 8))
    weight = torch.rand(7, 3, 8, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: _HashGather.apply(t, index, weight), (table,))
    reference = (table[index] * weight[..., None]).sum(2)
    torch.testing.assert_close(_HashGather.apply(table, index, weight), reference)


def test_hash_encoding_levels_and_shapes():
    enc = HashEncoding(levels=4, log2_size=12, features=2, base_resolution=8, max_resolution=64)
    assert enc.dense.tolist() == [True, False, False, False]  # 9^3 fits 4096 entries; 17^3 does not
    x = torch.rand(100, 3) * 2 - 1
    out = enc(x)
    assert out.shape == (100, 8)
    out.sum().backward()
    assert enc.table.grad is not None and enc.table.grad.abs().sum() > 0
    # the dense level indexes without collisions: distinct lattice points, distinct rows
    ijk = torch.stack(torch.meshgrid(*[torch.arange(9)] * 3, indexing="ij"), -1).view(-1, 3)
    flat = ijk @ enc.strides[0]
    assert len(torch.unique(flat)) == 9**3


@pytest.mark.parametrize("encoding", ["planes", "hash"])
def test_field_outputs_and_occupancy_bound(encoding: str):
    torch.manual_seed(0)
    field = RadianceField(FieldConfig(start_resolution=16, resolution=16, encoding=encoding, hash_log2_size=12))
    x = torch.rand(64, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(64, 3), dim=-1)
    sigma, rgb = field.density(x), field.color(x, d)
    assert sigma.shape == (64,) and (sigma > 0).all()
    assert rgb.shape == (64, 3) and ((rgb >= 0) & (rgb <= 1)).all()
    with torch.no_grad():
        field.density_grid.raw.normal_(0, 3)
    bound = field.cell_max_density()  # [x, y, z] cells
    pts = torch.rand(5000, 3) * 2 - 1
    cell = ((pts + 1) * 0.5 * 15).long().clamp(0, 14)
    assert (field.density(pts) <= bound[cell[:, 0], cell[:, 1], cell[:, 2]] + 1e-4).all()
    assert isinstance(field.encoding, PlaneEncoding if encoding == "planes" else HashEncoding)


def test_spherical_harmonics_are_orthonormal():
    d = torch.nn.functional.normalize(torch.randn(200000, 3, dtype=torch.float64), dim=-1)
    Y = sh_encode(d, 4)
    gram = Y.T @ Y * (4 * np.pi / len(d))
    torch.testing.assert_close(gram, torch.eye(16, dtype=torch.float64), atol=0.03, rtol=0)


def test_occupancy_query_bbox_and_sampled_update():
    occ = OccupancyGrid(8)
    mask = torch.zeros(8, 8, 8, dtype=torch.bool)
    mask[2:4, 3:5, 4:6] = True
    occ.set_from_density(mask.float() * 1000.0, step=0.01)
    assert occ.occupied.sum() == mask.sum()
    inside = torch.tensor([[-0.4, -0.1, 0.1]])  # cell (2, 3, 4)
    outside = torch.tensor([[0.9, 0.9, 0.9], [1.5, 0.0, 0.0]])
    assert occ.query(inside).tolist() == [True] and occ.query(outside).tolist() == [False, False]
    assert (occ.bbox[0] <= torch.tensor([-0.5, -0.25, 0.0])).all() and (
        occ.bbox[1] >= torch.tensor([0.0, 0.25, 0.5])
    ).all()
    ball = OccupancyGrid(16)
    ball.update_sampled(lambda p: (p.norm(dim=-1) < 0.5).float() * 1000.0, step=0.01)
    assert 0.02 < ball.fraction < 0.15
    centres = sample_cell_density(lambda p: p.norm(dim=-1), 4)
    assert centres.shape == (4, 4, 4) and centres.min() > 0


class _Ball(torch.nn.Module):
    """A solid ball of radius 0.5, red, as a field (for exact rendering checks)."""

    def density(self, x):
        return (x.norm(dim=-1) < 0.5).float() * 500.0

    def color(self, x, d):
        return torch.tensor([1.0, 0.0, 0.0]).expand(len(x), 3)


def test_render_rays_composites_over_the_background():
    occ = OccupancyGrid(16)
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.9, -3.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    out = render_rays(_Ball(), occ, o, d, torch.tensor([0.0, 0.0, 1.0]), RenderOptions(step=0.01))
    torch.testing.assert_close(out["rgb"][0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(out["rgb"][1], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6, rtol=0)
    assert out["depth"][0] == pytest.approx(2.5, abs=0.02)
    near, far = ray_box(o, d, occ.bbox)
    assert near[0] == pytest.approx(2.0) and far[0] == pytest.approx(4.0)


def test_train_loop_respects_step_and_time_budgets_and_stop():
    calls = []

    def step(i, progress):
        calls.append(progress)
        return {"loss": 1.0 / (i + 1)}

    events = list(
        train_loop(step, Budget(seconds=0, steps=7), report_every=0.0, preview_fn=lambda: np.zeros((2, 2, 3)))
    )
    assert len(calls) == 7 and events[-1].done and events[-1].step == 7 and events[-1].preview is not None
    assert calls[0] == 0.0 and calls[-1] == pytest.approx(6 / 7)

    def slow(i, progress):
        time.sleep(0.01)
        return {}

    started = time.perf_counter()
    list(train_loop(slow, Budget(seconds=0.2, steps=10**9)))
    assert time.perf_counter() - started < 2.0
    stopped = list(train_loop(step, Budget(seconds=0, steps=10**9), should_stop=lambda: len(calls) >= 10))
    assert stopped[-1].done and len(calls) == 10
