"""The pure-PyTorch splat rasteriser: footprint, gradients, depth order, background, backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from methods.splats.raster import covariances, opengl_to_viewmat, rasterize, resolve_backend
from methods.splats.sh import C0, rgb_to_sh0


def camera(width: int, height: int, focal: float, dtype=torch.float64):
    viewmat = torch.eye(4, dtype=dtype)[None]  # camera at the origin looking down +z (OpenCV)
    K = torch.tensor([[[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]], dtype=dtype)
    return viewmat, K


def gaussians(means, log_scales, quats, opacity, rgb, dtype=torch.float64):
    sh = torch.zeros(len(means), 1, 3, dtype=dtype)
    sh[:, 0] = rgb_to_sh0(torch.as_tensor(rgb, dtype=dtype))
    logits = torch.logit(torch.as_tensor(opacity, dtype=dtype))
    return [torch.as_tensor(x, dtype=dtype) for x in (means, log_scales, quats)] + [logits, sh]


def test_single_gaussian_footprint_matches_the_analytic_2d_gaussian():
    w, h, f = 48, 40, 60.0
    # an anisotropic, turned Gaussian, off the optical axis
    q = np.array([np.cos(0.4), 0.3 * np.sin(0.4), 0.5 * np.sin(0.4), 0.8 * np.sin(0.4)])
    q /= np.linalg.norm(q)
    mean = np.array([[0.4, -0.3, 5.0]])
    g = gaussians(mean, np.log([[0.25, 0.12, 0.05]]), q[None], [0.8], [[1.0, 1.0, 1.0]])
    viewmat, K = camera(w, h, f)
    out = rasterize(*g, viewmat, K, w, h, background=torch.zeros(3, dtype=torch.float64))
    # analytic: the linearised projection at the centre, plus the 0.3 px low-pass
    x, y, z = mean[0]
    J = np.array([[f / z, 0, -f * x / z**2], [0, f / z, -f * y / z**2]])
    cov = J @ covariances(g[1], g[2])[0].numpy() @ J.T + 0.3 * np.eye(2)
    u0, v0 = f * x / z + w / 2, f * y / z + h / 2
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    dxy = np.stack([xx - u0, yy - v0], -1)
    power = -0.5 * np.einsum("hwi,ij,hwj->hw", dxy, np.linalg.inv(cov), dxy)
    expected = 0.8 * np.exp(power)
    inside = expected >= 1 / 255
    alpha = out.alpha[0].numpy()
    np.testing.assert_allclose(alpha[inside], expected[inside], atol=1e-9)
    # outside the 1/255 cut-off (or the 3-sigma box) nothing is drawn
    assert alpha[~inside].max() < 1 / 255 + 1e-12
    np.testing.assert_allclose(out.image[0, ..., 0].numpy(), alpha, atol=1e-9)  # white splat over black
    assert alpha.sum() == pytest.approx(0.8 * 2 * np.pi * np.sqrt(np.linalg.det(cov)), rel=0.02)


def test_near_opaque_gaussian_hides_a_far_one_in_either_input_order():
    w = h = 16
    viewmat, K = camera(w, h, 20.0)
    near = ([0.0, 0.0, 3.0], [1.0, 0.0, 0.0])
    far = ([0.0, 0.0, 6.0], [0.0, 1.0, 0.0])
    for first, second in ((near, far), (far, near)):
        g = gaussians(
            [first[0], second[0]], np.log(np.full((2, 3), 0.6)), [[1, 0, 0, 0]] * 2, [0.99, 0.99], [first[1], second[1]]
        )
        img = rasterize(*g, viewmat, K, w, h, background=torch.ones(3, dtype=torch.float64)).image[0]
        centre = img[h // 2, w // 2].numpy()
        assert centre[0] > 0.95 and centre[1] < 0.05, centre


def test_background_shows_where_nothing_is_and_through_transparency():
    w = h = 12
    viewmat, K = camera(w, h, 15.0)
    bg = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64)
    empty = gaussians([[0.0, 0.0, -3.0]], [[0.0, 0.0, 0.0]], [[1, 0, 0, 0]], [0.5], [[1, 0, 0]])  # behind
    out = rasterize(*empty, viewmat, K, w, h, background=bg)
    np.testing.assert_allclose(out.image.numpy(), np.broadcast_to(bg.numpy(), (1, h, w, 3)))
    assert out.pairs == 0 and not out.visible.any()
    half = gaussians([[0.0, 0.0, 4.0]], np.log([[5.0, 5.0, 5.0]]), [[1, 0, 0, 0]], [0.5], [[1.0, 0.0, 0.0]])
    px = rasterize(*half, viewmat, K, w, h, background=bg).image[0, h // 2, w // 2].numpy()
    np.testing.assert_allclose(px, 0.5 * np.array([1.0, 0, 0]) + 0.5 * bg.numpy(), atol=1e-3)


def test_view_dependent_colour_follows_the_sh_basis():
    w = h = 8
    viewmat, K = camera(w, h, 10.0)
    sh = torch.zeros(1, 4, 3, dtype=torch.float64)
    sh[0, 2, 0] = 0.5  # the +z basis function (C1 * z) on red: brighter seen from -z looking along +z
    g = gaussians([[0.0, 0.0, 4.0]], np.log([[3.0, 3.0, 3.0]]), [[1, 0, 0, 0]], [0.99], [[0.0, 0.0, 0.0]])
    g[4] = torch.cat([g[4], sh[:, 1:]], 1)
    out = rasterize(*g, viewmat, K, w, h, background=torch.zeros(3, dtype=torch.float64))
    red = out.image[0, h // 2, w // 2, 0].item() / out.alpha[0, h // 2, w // 2].item()
    assert red == pytest.approx(0.4886025119029199 * 0.5 + C0 * float(g[4][0, 0, 0]) + 0.5, abs=1e-6)


def _tiny_scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    n = 4
    means = np.c_[rng.uniform(-0.4, 0.4, (n, 2)), rng.uniform(3.0, 4.0, n)]
    params = {
        "means": torch.tensor(means),
        "log_scales": torch.tensor(np.log(rng.uniform(0.15, 0.35, (n, 3)))),
        "quats": torch.tensor(rng.normal(size=(n, 4))),
        "opacity_logits": torch.tensor(rng.normal(size=n) * 0.5),
        "sh": torch.tensor(rng.normal(size=(n, 4, 3)) * 0.3),
    }
    return params


@pytest.mark.parametrize("name", ["means", "log_scales", "quats", "opacity_logits", "sh"])
def test_gradients_match_finite_differences(name):
    w, h = 12, 10
    viewmat, K = camera(w, h, 14.0)
    params = _tiny_scene()
    bg = torch.tensor([0.3, 0.1, 0.2], dtype=torch.float64)
    weights = torch.tensor(np.random.default_rng(1).normal(size=(1, h, w, 3)))

    def loss(p):
        out = rasterize(p["means"], p["log_scales"], p["quats"], p["opacity_logits"], p["sh"], viewmat, K, w, h, bg)
        return (out.image * weights).sum() + out.alpha.sum() * 0.1

    p = {k: v.clone().requires_grad_(k == name) for k, v in params.items()}
    loss(p).backward()
    grad = p[name].grad.numpy().ravel()
    eps = 1e-6
    numeric = np.zeros_like(grad)
    for i in range(grad.size):
        plus = {k: v.clone() for k, v in params.items()}
        minus = {k: v.clone() for k, v in params.items()}
        plus[name].view(-1)[i] += eps
        minus[name].view(-1)[i] -= eps
        numeric[i] = (loss(plus).item() - loss(minus).item()) / (2 * eps)
    assert np.abs(grad).max() > 1e-3  # the loss does depend on these parameters
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def test_projected_centres_carry_the_view_space_gradient():
    w, h = 12, 10
    viewmat, K = camera(w, h, 14.0)
    p = {k: v.clone().requires_grad_(True) for k, v in _tiny_scene(2).items()}
    out = rasterize(p["means"], p["log_scales"], p["quats"], p["opacity_logits"], p["sh"], viewmat, K, w, h)
    out.image.sum().backward()
    assert out.means2d.grad is not None and out.means2d.grad.shape == (1, 4, 2)
    assert out.means2d.grad[out.visible].abs().sum() > 0


def test_several_views_in_one_call_equal_one_at_a_time():
    params = _tiny_scene(3)
    c2w = np.stack([np.eye(4), np.eye(4)])
    c2w[1, :3, 3] = [0.3, -0.2, 0.5]
    viewmats = opengl_to_viewmat(c2w)
    # OpenGL cameras look down -z: put the scene there
    means = params["means"] * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    K = torch.tensor([[14.0, 0, 6], [0, 14.0, 5], [0, 0, 1]], dtype=torch.float64).expand(2, 3, 3)
    args = (means, params["log_scales"], params["quats"], params["opacity_logits"], params["sh"])
    both = rasterize(*args, viewmats, K, 12, 10).image
    for i in range(2):
        one = rasterize(*args, viewmats[i : i + 1], K[i : i + 1], 12, 10).image
        np.testing.assert_allclose(both[i].numpy(), one[0].numpy(), atol=1e-12)
    assert both.abs().sum() > 0


def test_backend_choice():
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(RuntimeError, match="gsplat"):
        resolve_backend("gsplat", "cpu")
    with pytest.raises(ValueError):
        resolve_backend("vulkan", "cpu")


@pytest.mark.gpu
def test_gsplat_agrees_with_the_torch_rasteriser_on_a_fixed_scene():
    from methods.splats.raster import gsplat_available, rasterize_gsplat

    if not gsplat_available():
        pytest.skip("gsplat or CUDA is missing")
    rng = np.random.default_rng(0)
    n, w, h = 200, 64, 48
    means = torch.tensor(np.c_[rng.uniform(-1, 1, (n, 2)), rng.uniform(3, 5, n)], dtype=torch.float32).cuda()
    args = (
        means,
        torch.tensor(np.log(rng.uniform(0.03, 0.15, (n, 3))), dtype=torch.float32).cuda(),
        torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32).cuda(),
        torch.tensor(rng.normal(size=n), dtype=torch.float32).cuda(),
        torch.tensor(rng.normal(size=(n, 4, 3)) * 0.3, dtype=torch.float32).cuda(),
    )
    viewmat = torch.eye(4).cuda()[None]
    K = torch.tensor([[[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]]]).cuda()
    bg = torch.tensor([0.2, 0.3, 0.4]).cuda()
    ours = rasterize(*args, viewmat, K, w, h, bg).image
    theirs = rasterize_gsplat(*args, viewmat, K, w, h, bg).image
    assert (ours - theirs).abs().mean().item() < 0.01  # stated tolerance: mean abs colour difference 1%
    assert math.isfinite(theirs.sum().item())


def _random_cloud(n: int, log_scale: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = np.c_[rng.uniform(-1, 1, (n, 2)), rng.uniform(3, 6, n)]
    q = rng.normal(size=(n, 4))
    return gaussians(means, np.full((n, 3), log_scale), q / np.linalg.norm(q, axis=1, keepdims=True),
                     np.full(n, 0.5), rng.uniform(0, 1, (n, 3)), dtype=torch.float32)  # fmt: skip


@pytest.mark.parametrize("log_scale", [math.log(0.05), math.log(20.0)], ids=["small", "huge"])
def test_the_work_of_a_render_is_bounded_whatever_the_splats_look_like(log_scale):
    """Pairs composited <= pairs_per_pixel per pixel (+ one splat's tile per tile): huge splats that each cover the
    whole view (400 x 64 x 48 pairs uncapped) are cut to the cap, nearest first; small ones never reach it."""
    from methods.splats.raster import TILE

    w, h = 64, 48
    cap = 8 if log_scale > 0 else 64
    viewmat, K = camera(w, h, 40.0, dtype=torch.float32)
    g = _random_cloud(400, log_scale)
    for p in g:
        p.requires_grad_(True)
    out = rasterize(*g, viewmat, K, w, h, background=torch.zeros(3), pairs_per_pixel=cap)
    tiles = math.ceil(w / TILE) * math.ceil(h / TILE)
    assert out.pairs <= cap * w * h + tiles * TILE * TILE
    if log_scale > 0:
        assert out.tile_entries == 400 * tiles and out.dropped > 0.8 * out.tile_entries
        assert out.alpha.min() > 0.9  # the nearest splats kept still cover every pixel
    else:
        assert out.dropped == 0 and out.pairs < 400 * 30  # each covers a few pixels
    out.image.sum().backward()  # still differentiable through what was kept
    assert all(torch.isfinite(p.grad).all() for p in g)


def test_a_footprint_is_cut_at_the_screen_radius_cap():
    w = h = 64
    viewmat, K = camera(w, h, 40.0)
    g = gaussians([[0.0, 0.0, 4.0]], np.log([[30.0, 30.0, 30.0]]), [[1.0, 0, 0, 0]], [0.9], [[1.0, 1.0, 1.0]])
    out = rasterize(*g, viewmat, K, w, h, background=torch.zeros(3, dtype=torch.float64), radius_cap=0.25)
    alpha = out.alpha[0].numpy()
    # centred at (32, 32): drawn within 16 px of the centre, nothing beyond
    assert alpha[32, 32] > 0.8 and alpha[32, 17] > 0.8 and alpha[32, 50] == 0 and alpha[5, 5] == 0
    assert out.pairs <= 33 * 33
