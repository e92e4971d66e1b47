"""What a person uploads or types, as validated ``methods.Inputs``; InvalidInput says what is wrong.

Uploads arrive as file paths (gr.File with type="filepath"), so every file, however odd, reaches
``methods.base.load_image`` and its clear messages instead of failing inside a gradio component.

Images are measured from their header before anything decodes them: at most ``MAX_IMAGE_PIXELS``
(4096 x 4096 = 16.8 Mpx: the largest side any method's settings allow is 4096 px, and such an image
decodes to 64 MB of RGBA) each and ``MAX_VIEWS_PIXELS`` (100 Mpx, 400 MB decoded) for a set of views;
a video's frames are held to the same cap and its length to ``MAX_VIDEO_SECONDS``, from its header.
A PNG of a few hundred kilobytes can claim 12000 x 12000 pixels (576 MB decoded, seconds of CPU);
PIL's own bomb check only stops images above 178 Mpx. Previews decode at most ``PREVIEW_SIDE`` px
thumbnails and read only the headers of a set of views. Messages name files, never folders.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from PIL import Image

from methods.base import IMAGE_SUFFIXES, Inputs, InvalidInput, load_image

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
MIN_VIEWS = 2
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_VIEWS = 400  # the most views a set may have (max_frames' top)
MAX_VIEWS_PIXELS = 100_000_000
PREVIEW_SIDE = 512
MAX_VIDEO_SECONDS = 180  # every frame of a video is decoded to pick the sharpest; three minutes bound that
PREVIEW_VIEWS = 8  # thumbnails shown for a set of views


def image_size(path: str) -> tuple[int, int]:
    """An image file's (width, height) from its header, without decoding its pixels; InvalidInput if it is
    missing, not an image, or above ``MAX_IMAGE_PIXELS``."""
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no such file: {file.name}; upload it again")
    if file.stat().st_size == 0:
        raise InvalidInput(f"the file {file.name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # PIL warns above 89 Mpx; the cap below is the project's own, and lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        width = height = MAX_IMAGE_PIXELS  # far above the cap: PIL refused to open it
    except Exception:
        raise InvalidInput(f"{file.name} is not an image that can be read (PNG, JPEG, WebP, ...)") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(
            f"{file.name} is {width}x{height} pixels ({width * height / 1e6:.0f} Mpx); at most "
            f"{MAX_IMAGE_PIXELS / 1e6:.1f} Mpx (4096x4096) is accepted: downscale it first"
        )
    return width, height


def checked_image(path: str) -> Image.Image:
    """The image at ``path`` as RGBA, measured before it is decoded."""
    image_size(path)
    return load_image(path)


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
    prompt = prompt if prompt is not None else ""
    try:
        str(prompt).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the prompt holds characters that are not text (a lone surrogate)") from None
    return Inputs.text(prompt)


def image_inputs(upload: Any) -> Inputs:
    path = file_path(upload)
    if path is None:
        raise InvalidInput("no image was given: upload an image (PNG, JPEG or WebP; transparent backgrounds work best)")
    return Inputs(modality="image", image=checked_image(path), name=Path(path).name).validated()


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
    if len(paths) > MAX_VIEWS:
        raise InvalidInput(f"{len(paths)} images were given; at most {MAX_VIEWS} views are accepted")
    ordered = sorted(paths, key=lambda p: Path(p).name)
    total = sum(w * h for w, h in (image_size(p) for p in ordered))
    if total > MAX_VIEWS_PIXELS:
        raise InvalidInput(
            f"the views hold {total / 1e6:.0f} Mpx in all; at most {MAX_VIEWS_PIXELS / 1e6:.0f} Mpx is accepted: "
            "give fewer or smaller images"
        )
    frames = [load_image(p) for p in ordered]
    name = f"{len(frames)} views"
    return Inputs(modality="video", frames=frames, name=name).validated()


def _video_file(path: str) -> Inputs:
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"no such file: {file.name}")
    if file.stat().st_size == 0:
        raise InvalidInput(f"the file {file.name} is empty (0 bytes)")
    video_header(file)
    return Inputs(modality="video", video_path=str(file), name=file.name).validated()


def video_header(file: Path) -> None:
    """Refuse a video whose frames are above ``MAX_IMAGE_PIXELS`` or that lasts more than ``MAX_VIDEO_SECONDS``,
    from its container's header (nothing decoded); a file the header cannot be read from is left to the
    method's reader and its message."""
    import av

    try:
        with av.open(str(file)) as container:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            seconds = float(container.duration) / av.time_base if container.duration else 0.0
    except (av.FFmpegError, OSError, ValueError):
        return
    if width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(
            f"{file.name} has {width}x{height} frames; at most {MAX_IMAGE_PIXELS / 1e6:.1f} Mpx (4096x4096) a frame "
            "is accepted: downscale it first"
        )
    if seconds > MAX_VIDEO_SECONDS:
        raise InvalidInput(
            f"{file.name} lasts {seconds:.0f} s; at most {MAX_VIDEO_SECONDS} s is accepted (every frame is decoded)"
        )


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
        if modality == "image":
            return preview_image(file_path(value))[1]
        if modality == "video":
            return preview_views(value)[1]
        make_inputs(modality, value)
    except InvalidInput as exc:
        return f"⚠️ {exc}"
    return ""


def preview_image(path: str | None) -> tuple[Image.Image | None, str]:
    """A thumbnail (at most ``PREVIEW_SIDE`` px) and a note; the image is measured before it is decoded."""
    if not path:
        return None, ""
    try:
        width, height = image_size(path)
        with Image.open(path) as img:
            img.draft("RGB", (PREVIEW_SIDE, PREVIEW_SIDE))  # JPEG: decode at a reduced scale
            thumb = img.convert("RGBA")
    except InvalidInput as exc:
        return None, f"⚠️ {exc}"
    except Exception:
        return None, f"⚠️ {Path(path).name} is not an image that can be read (PNG, JPEG, WebP, ...)"
    thumb.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    alpha = thumb.getchannel("A").getextrema()[0] < 255
    note = f"{Path(path).name}: {width}×{height} px" + (", transparent background" if alpha else "")
    if min(width, height) < 8:
        note = f"⚠️ the image is {width}x{height} pixels; at least 8x8 is needed"
    return thumb, note


def preview_views(uploads: Any) -> tuple[list[str], str]:
    """The first ``PREVIEW_VIEWS`` images (as they are: the browser shows them) and a note from the headers."""
    if uploads is None or isinstance(uploads, (str, Path, dict)):
        uploads = [] if uploads in (None, "") else [uploads]
    paths = [p for p in (file_path(u) for u in uploads) if p]
    if not paths:
        return [], ""
    videos = [p for p in paths if Path(p).suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        if len(paths) > 1:
            return [], "⚠️ give either one video file or several images, not both"
        return [], f"video {Path(videos[0]).name}"
    images = sorted(paths, key=lambda p: Path(p).name)
    try:
        if len(images) > MAX_VIEWS:
            raise InvalidInput(f"{len(images)} images were given; at most {MAX_VIEWS} views are accepted")
        sizes = [image_size(p) for p in images]
    except InvalidInput as exc:
        return images[:PREVIEW_VIEWS], f"⚠️ {exc}"
    if len(images) < MIN_VIEWS:
        return images, "⚠️ one image is not enough views: give at least 2 images, or use the Image → 3D tab"
    return images[:PREVIEW_VIEWS], f"{len(images)} views, {sizes[0][0]}×{sizes[0][1]} px"
