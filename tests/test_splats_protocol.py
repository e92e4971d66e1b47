"""The protocol on splat assets: splat rows, the mesh's provenance, colour renders through the splat rasteriser."""

from __future__ import annotations

import numpy as np

from eval.judging.protocol import score
from eval.judging.render import Camera, render, render_modes
from methods.base import Asset, Gaussians, Inputs, Mesh, normalize
from methods.export import gaussian_centres
from methods.splats.sh import rgb_to_sh0


def red_ball(n: int = 2000, seed: int = 0) -> Gaussians:
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    means = d / np.linalg.norm(d, axis=1, keepdims=True) * 0.5
    sh = np.zeros((n, 4, 3), np.float32)
    sh[:, 0] = rgb_to_sh0(np.array([0.9, 0.1, 0.1]))
    opacity = np.where(np.arange(n) % 4 == 0, -6.0, 3.0)  # a quarter nearly transparent
    return Gaussians(means, np.full((n, 3), np.log(0.03)), np.tile([1.0, 0, 0, 0], (n, 1)), opacity, sh)


def test_splat_rows_say_what_they_measure_and_the_mesh_says_where_it_came_from():
    g = red_ball()
    mesh = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), [[0, 1, 2]])
    asset = Asset(
        mesh=mesh,
        points=gaussian_centres(g),
        gaussians=g,
        views={"mesh": {"method": "opacity-field marching cubes", "level": 0.5, "resolution": 64}},
    )
    rng = np.random.default_rng(0)
    asset.views["heldout_pred"] = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
    asset.views["heldout_gt"] = asset.views["heldout_pred"] * 0.9
    rows = {r.name: r for r in score(normalize(asset), Inputs(modality="video", frames=[]), {})}
    assert rows["splats"].value == 2000 and rows["splat_sh_degree"].value == 1
    assert rows["splat_opaque_fraction"].value == 0.75
    hist = rows["splat_opacity_histogram"].value
    assert "0-0.005: 500" in hist and "0.9-1: 1500" in hist
    assert "opacity-field marching cubes" in rows["watertight"].settings["mesh_from_splats"]
    assert rows["points"].value == 1500 and "splat centres" in rows["nn_spacing_mean"].settings["points_from_splats"]
    assert rows["psnr"].value > 15 and rows["psnr"].settings["frames"] == 2


def test_a_splat_asset_renders_in_colour_through_the_splat_rasteriser():
    asset = normalize(Asset(gaussians=red_ball()))
    shot = render(asset, [Camera(0.0, 0.0)], resolution=48, supersample=1)
    rgb, alpha = shot.rgb[0], shot.alpha[0]
    assert alpha[24, 24] > 0.99 and alpha[2, 2] < 0.01
    np.testing.assert_allclose(rgb[24, 24], [0.9, 0.1, 0.1], atol=0.02)
    np.testing.assert_allclose(rgb[1, 1], [1.0, 1.0, 1.0], atol=1e-6)  # the protocol's white background
    assert np.isfinite(shot.depth[0, 24, 24]) and np.isinf(shot.depth[0, 1, 1])
    assert "splats" in shot.settings
    # geometry mode of a splats-only asset falls back to the centres; colour and geometry cover alike
    both = render_modes(asset, [Camera(30.0, 20.0)], resolution=32, supersample=1)
    cover_color = both["color"].alpha[0] > 0.5
    cover_geometry = both["geometry"].alpha[0] > 0.5
    assert cover_geometry.sum() > 0 and (cover_geometry & ~cover_color).sum() <= 0.05 * cover_geometry.sum()
    # deterministic
    again = render(asset, [Camera(0.0, 0.0)], resolution=48, supersample=1)
    np.testing.assert_array_equal(again.rgb, shot.rgb)
