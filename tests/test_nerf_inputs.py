"""Bad multi-view input gets a clear InvalidInput (and the app keeps serving); long videos stay bounded."""

from __future__ import annotations

import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import methods
import methods.nerf.method  # noqa: F401  (registers "nerf")
from eval.runs.runner import execute
from eval.runs.store import Store
from methods.base import Inputs, InvalidInput
from methods.nerf.video import check_motion, read_video, write_video
from tests.generators import drive


def _run(inputs: Inputs, **settings) -> methods.Asset:
    return drive(methods.run("nerf", inputs, settings or None))[1]


def _video(path: Path, frames: np.ndarray) -> Inputs:
    write_video(frames, path, fps=10)
    return Inputs(modality="video", video_path=str(path), name=path.name)


def _textured(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_corrupt_and_empty_videos(tmp_path: Path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        _run(Inputs(modality="video", video_path=str(empty)))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidInput, match="not a video that can be read"):
        _run(Inputs(modality="video", video_path=str(corrupt)))
    good = tmp_path / "good.mp4"
    write_video(_textured(30), good)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(InvalidInput, match="video"):
        _run(Inputs(modality="video", video_path=str(truncated)))
    with pytest.raises(InvalidInput, match="no such"):
        _run(Inputs(modality="video", video_path=str(tmp_path / "nothing.mp4")))


def test_video_of_one_repeated_frame(tmp_path: Path):
    still = np.repeat(_textured(1), 40, axis=0)
    with pytest.raises(InvalidInput, match="one still image"):
        _run(_video(tmp_path / "still.mp4", still))
    check_motion(_textured(5))  # frames that differ pass


def test_too_few_and_mixed_size_images(tmp_path: Path):
    two = tmp_path / "two"
    two.mkdir()
    for i, img in enumerate(_textured(2)):
        Image.fromarray(img).save(two / f"{i}.png")
    with pytest.raises(InvalidInput, match=r"2 image\(s\) were given without camera poses.*at least 5"):
        _run(Inputs(modality="video", video_path=str(two)))
    frames = [Image.fromarray(img) for img in _textured(2)]
    with pytest.raises(InvalidInput, match="at least 5"):
        _run(Inputs(modality="video", frames=frames))
    with pytest.raises(InvalidInput, match=r"2 posed view\(s\).*at least 3"):
        _run(Inputs(modality="video", frames=frames, poses=np.stack([np.eye(4)] * 2), intrinsics=np.eye(3)))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, img in enumerate(_textured(6)):
        Image.fromarray(img).resize((48, 48) if i % 2 else (64, 40)).save(mixed / f"{i}.png")
    with pytest.raises(InvalidInput, match=r"different sizes \(64x40: 3 image\(s\).*48x48: 3 image\(s\)"):
        _run(Inputs(modality="video", video_path=str(mixed)))
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(mixed.iterdir()):
            zf.write(p, f"views/{p.name}")
    with pytest.raises(InvalidInput, match="different sizes"):
        _run(Inputs(modality="video", video_path=str(archive)))
    not_zip = tmp_path / "fake.zip"
    not_zip.write_bytes(b"PK no zip")
    with pytest.raises(InvalidInput, match="not a zip archive"):
        _run(Inputs(modality="video", video_path=str(not_zip)))


def test_bad_poses_and_settings(tmp_path: Path):
    frames = [Image.fromarray(img) for img in _textured(6)]
    with pytest.raises(InvalidInput, match="without intrinsics"):
        _run(Inputs(modality="video", frames=frames, poses=np.stack([np.eye(4)] * 6)))
    with pytest.raises(InvalidInput, match=r"poses must be \(6, 4, 4\)"):
        _run(Inputs(modality="video", frames=frames, poses=np.eye(4), intrinsics=np.eye(3)))
    with pytest.raises(methods.InvalidSettings, match="background"):
        _run(Inputs(modality="video", frames=frames), background="green")


def test_ten_thousand_frame_video_is_sampled_with_bounded_memory(tmp_path: Path):
    import av

    path = tmp_path / "long.mp4"
    base = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(10_000):
            frame = av.VideoFrame.from_ndarray(np.roll(base, i % 64, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tracemalloc.start()
    try:
        video = read_video(path, max_frames=20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert video.decoded == 10_000
    assert len(video.frames) <= 20 and video.frames.shape[1:] == (64, 64, 3)
    indices = [int(n.split("_")[1]) for n in video.names]
    assert indices == sorted(indices) and indices[0] < 600 and indices[-1] > 9_400  # spread over the whole video
    # all 10,000 frames would be 123 MB; the sampler holds at most 2 * max_frames of them
    assert peak < 8 * 2**20


def test_bad_input_is_recorded_and_the_app_keeps_serving(tmp_path: Path):
    store = Store(tmp_path / "runs.db")
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        for _ in execute("nerf", Inputs(modality="video", video_path=str(empty)), store=store, out_root=tmp_path):
            pass
    runs = store.runs()
    assert [r["status"] for r in runs] == ["failed"] and "empty" in runs[0]["error"]
    # the next request on the same store and process is served normally
    assert "nerf" in methods.ids("video")
    assert methods.availability("nerf", "video").ok
