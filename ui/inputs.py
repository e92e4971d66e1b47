"""What a person uploads or types, as validated ``methods.Inputs``; InvalidInput says what is wrong.

Uploads arrive as file paths (gr.File with type="filepath"), so every file, however odd, reaches
``methods.base.load_image`` and its clear messages instead of failing inside a gradio component.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from methods.base import IMAGE_SUFFIXES, Inputs, InvalidInput, load_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
MIN_VIEWS = 2


def file_path(value: Any) -> str | None:
    """A path from what gradio hands over: a str, a dict with "path", or an object with ``.path``/``.name``."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, Path)):
        return str(value)
    if isinstance(value, dict):
        return value.get("path") or value.get("name")
    return getattr(value, "path", None) or getattr(value, "name", None)


def text_inputs(prompt: str | None) -> Inputs:
    return Inputs.text(prompt if prompt is not None else "")


def image_inputs(upload: Any) -> Inputs:
    path = file_path(upload)
    if path is None:
        raise InvalidInput("no image was given: upload an image (PNG, JPEG or WebP; transparent backgrounds work best)")
    return Inputs(modality="image", image=load_image(path), name=Path(path).name).validated()


def video_inputs(uploads: Any) -> Inputs:
    """One video file, or several images of the same object from different views."""
    if uploads is None or isinstance(uploads, (str, Path, dict)):
        uploads = [] if uploads in (None, "") else [uploads]
    paths = [p for p in (file_path(u) for u in uploads) if p]
    if not paths:
        raise InvalidInput("no video or images were given: upload one video file or several views of the object")
    videos = [p for p in paths if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        if len(paths) > 1:
            raise InvalidInput("give either one video file or several images, not both")
        return _video_file(paths[0])
    others = [Path(p).name for p in paths if Path(p).suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        raise InvalidInput(
            f"{', '.join(others)} is neither a video ({', '.join(VIDEO_SUFFIXES)}) nor an image "
            f"({', '.join(IMAGE_SUFFIXES)})"
        )
    if len(paths) < MIN_VIEWS:
        raise InvalidInput("one image is not enough views: give at least 2 images, or use the Image → 3D tab")
    frames = [load_image(p) for p in sorted(paths, key=lambda p: Path(p).name)]
    name = f"{len(frames)} views"
    return Inputs(modality="video", frames=frames, name=name).validated()


def _video_file(path: str) -> Inputs:
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no such file: {file.name}")
    if file.stat().st_size == 0:
        raise InvalidInput(f"the file {file.name} is empty (0 bytes)")
    return Inputs(modality="video", video_path=str(file), name=file.name).validated()


def make_inputs(modality: str, value: Any) -> Inputs:
    """The validated Inputs of a modality tab from its raw input value."""
    if modality == "text":
        return text_inputs(value)
    if modality == "image":
        return image_inputs(value)
    if modality == "video":
        return video_inputs(value)
    raise InvalidInput(f"unknown modality {modality!r}")


def describe_upload(modality: str, value: Any) -> str:
    """A one-line note about an upload for the input panel ('' when nothing is uploaded)."""
    if value in (None, "", []):
        return ""
    try:
        inputs = make_inputs(modality, value)
    except InvalidInput as exc:
        return f"⚠️ {exc}"
    if inputs.image is not None:
        w, h = inputs.image.size
        alpha = inputs.image.getchannel("A").getextrema()[0] < 255
        return f"{inputs.name}: {w}×{h} px" + (", transparent background" if alpha else "")
    if inputs.frames:
        return f"{len(inputs.frames)} views, {inputs.frames[0].width}×{inputs.frames[0].height} px"
    return f"video {inputs.name}"
