"""The renders the metrics saw are kept beside the asset: ring strip, turntable GIF, input | front, held-out pair."""

from __future__ import annotations

import json

import numpy as np
import trimesh
from PIL import Image

from eval.judging.protocol import score
from eval.judging.renders import gallery
from methods.base import Asset, Inputs, Mesh, normalize


def _asset(**views) -> Asset:
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    colours = np.tile([0.9, 0.2, 0.2], (len(box.vertices), 1))
    return normalize(Asset(mesh=Mesh(box.vertices, box.faces, colours), views=views))


def test_image_input_keeps_the_input_beside_the_front_render(tmp_path):
    image = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    image.paste((200, 30, 30, 255), (16, 24, 48, 40))
    inputs = Inputs(modality="image", image=image, name="box.png")
    rows = list(score(_asset(), inputs, {"renders_dir": str(tmp_path / "renders"), "clip_models": []}))
    assert rows, "scoring still yields its rows"
    items, gif = gallery(tmp_path)
    captions = [c for _, c in items]
    assert captions[:2] == ["input", "front render"] and len(captions) == 2 + 16
    assert Image.open(items[0][0]).getpixel((0, 0)) == (255, 255, 255), "transparent input shown on white"
    front = np.asarray(Image.open(items[1][0]).convert("RGB"), dtype=float)
    assert (np.abs(front - [229, 51, 51]).sum(-1) < 60).mean() > 0.05, "the red box is in the front render"
    frames = Image.open(gif)
    assert frames.n_frames == 16 and max(frames.size) == 128
    manifest = json.loads((tmp_path / "renders" / "renders.json").read_text())
    assert [v["azimuth"] for v in manifest["ring"]] == [0, 45, 90, 135, 180, 225, 270, 315]


def test_video_input_keeps_a_heldout_frame_beside_its_rendering(tmp_path):
    gt = np.zeros((2, 40, 40, 3), np.float32)
    gt[0, 10:30, 10:30] = (0.0, 0.0, 1.0)
    pred = gt * 0.9
    asset = _asset(heldout_gt=gt, heldout_pred=pred)
    inputs = Inputs(modality="video", video_path=str(tmp_path / "clip.mp4"), name="clip.mp4")
    rows = {r.name: r for r in score(asset, inputs, {"renders_dir": str(tmp_path / "renders")})}
    assert "psnr" in rows
    items, _ = gallery(tmp_path)
    assert [c for _, c in items[:2]] == ["held-out frame", "its rendering"]
    held = np.asarray(Image.open(items[0][0]).convert("RGB"))
    assert tuple(held[held.shape[0] // 2, held.shape[1] // 2]) == (0, 0, 255)


def test_no_renders_folder_means_an_empty_gallery(tmp_path):
    assert gallery(tmp_path) == ([], None)


def test_the_arena_shows_the_kept_input_not_its_name(tmp_path):
    from eval.judging.renders import save_input
    from ui.arena import input_image

    (tmp_path / "asset.glb").write_bytes(b"glb")
    run = {"asset_path": str(tmp_path / "asset.glb")}
    assert input_image(run) is None, "a prompt keeps no input"
    frames = [Image.new("RGB", (32, 32), (10 * i, 0, 0)) for i in range(12)]
    save_input(Inputs(modality="video", frames=frames, name="views"), tmp_path)
    first = input_image(run)
    assert first is not None and Image.open(first).getpixel((0, 0))[0] == 0, "the first of the kept views"
