"""Video -> a bounded set of sharp, evenly spread frames (PyAV), and checks that the frames can be posed.

Decoding streams through the file once. Frames are grouped into windows of ``stride`` frames
and each window keeps only its sharpest frame (variance of the Laplacian); when there are more
than ``2 * max_frames`` windows, neighbouring windows merge and the stride doubles. Memory is
therefore bounded by ``2 * max_frames`` frames whatever the video's length, and the length need
not be known in advance (many containers do not say). Up to ``CANDIDATES`` frames a window are
scored, so a long video costs little more than its decoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from methods.base import InvalidInput

SCORE_SIDE = 160  # sharpness is measured on a copy this many pixels on its longer side
CANDIDATES = 4  # frames scored per window (evenly spaced in it); the others are decoded and dropped
BLURRY_FRACTION = 0.35  # frames sharper than this fraction of the median survive


@dataclass
class VideoFrames:
    frames: np.ndarray  # (N, H, W, 3) uint8
    names: list[str]  # "frame_000123"
    sharpness: np.ndarray  # (N,)
    decoded: int  # frames decoded
    fps: float
    notes: list[str] = field(default_factory=list)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (higher: sharper)."""
    g = gray.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def _small_gray(frame, side: int = SCORE_SIDE) -> np.ndarray:
    w, h = frame.width, frame.height
    s = min(1.0, side / max(w, h))
    return frame.to_ndarray(format="gray", width=max(8, round(w * s)), height=max(8, round(h * s)))


def _rgb(frame, max_size: int) -> np.ndarray:
    w, h = frame.width, frame.height
    if max_size > 0 and max(w, h) > max_size:
        s = max_size / max(w, h)
        return frame.to_ndarray(format="rgb24", width=max(8, round(w * s)), height=max(8, round(h * s)))
    return frame.to_ndarray(format="rgb24")


def read_video(path: str | os.PathLike, max_frames: int = 60, max_size: int = 0) -> VideoFrames:
    """Up to ``max_frames`` sharp frames spread evenly over the video; InvalidInput when it cannot be used."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"no such video file: {path.name}")
    if path.stat().st_size == 0:
        raise InvalidInput(f"the video {path.name} is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InvalidInput(f"{path.name} is not a video that can be read ({_reason(exc)})") from None
    windows: list[tuple[float, int, np.ndarray]] = []  # (score, frame index, rgb) of each window's sharpest frame
    stride, decoded, errors = 1, 0, 0
    with container:
        if not container.streams.video:
            raise InvalidInput(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        current: tuple[float, int, object] | None = None  # best (score, index, frame) in the open window
        try:
            for frame in container.decode(stream):
                index = decoded
                decoded += 1
                if index % max(1, stride // CANDIDATES) == 0:
                    score = sharpness(_small_gray(frame))
                    if current is None or score > current[0]:
                        current = (score, index, frame)
                if decoded % stride == 0 and current is not None:
                    windows.append((current[0], current[1], _rgb(current[2], max_size)))
                    current = None
                    if len(windows) >= 2 * max_frames:  # merge neighbours, keep the sharper: memory stays bounded
                        windows = [max(windows[i : i + 2], key=lambda w: w[0]) for i in range(0, len(windows), 2)]
                        stride *= 2
        except (av.FFmpegError, ValueError) as exc:
            errors += 1
            if decoded == 0:
                raise InvalidInput(f"{path.name} is not a video that can be read ({_reason(exc)})") from None
        if current is not None:
            windows.append((current[0], current[1], _rgb(current[2], max_size)))
    if decoded == 0:
        raise InvalidInput(f"{path.name} holds no video frames")
    notes = []
    if errors:
        notes.append(f"the video is damaged after frame {decoded}; used the frames before it")
    pick = np.unique(np.round(np.linspace(0, len(windows) - 1, min(max_frames, len(windows)))).astype(int))
    chosen = [windows[i] for i in pick]
    scores = np.array([c[0] for c in chosen])
    keep = scores >= BLURRY_FRACTION * np.median(scores)
    if keep.sum() >= max(3, len(chosen) // 2) and not keep.all():
        notes.append(f"skipped {int((~keep).sum())} blurry frame(s)")
        chosen = [c for c, k in zip(chosen, keep, strict=True) if k]
    sizes = {c[2].shape for c in chosen}
    if len(sizes) > 1:
        raise InvalidInput(f"{path.name} changes resolution mid-stream; re-encode it at one size")
    return VideoFrames(
        frames=np.stack([c[2] for c in chosen]),
        names=[f"frame_{c[1]:06d}" for c in chosen],
        sharpness=np.array([c[0] for c in chosen]),
        decoded=decoded,
        fps=fps,
        notes=notes,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).split(":")[-1].strip() if str(exc) else type(exc).__name__
    return text or type(exc).__name__


def check_motion(frames: np.ndarray, label: str = "the frames") -> None:
    """InvalidInput when the frames are (nearly) one repeated image: nothing to triangulate."""
    if len(frames) < 2:
        return
    # block means over an ~8x8 grid: codec noise averages out, any camera motion does not
    n, h, w = frames.shape[:3]
    k = max(1, max(h, w) // 8)
    blocks = frames[:, : h // k * k, : w // k * k, :3].astype(np.float32)
    blocks = blocks.reshape(n, h // k, k, w // k, k, 3).mean(axis=(2, 4))
    spread = np.abs(blocks - blocks[0]).mean(axis=(1, 2, 3)).max()
    if spread < 1.5:
        raise InvalidInput(
            f"{label} show one still image ({len(frames)} nearly identical frames): "
            "film while moving around the object so that it is seen from several sides"
        )


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 12.0) -> Path:
    """(N, H, W, 3) uint8 frames -> an H.264 .mp4 (even sizes padded); used for turntables and tests."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    h, w = frames.shape[1:3]
    ph, pw = h + h % 2, w + w % 2
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for f in frames:
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[..., :3]), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
