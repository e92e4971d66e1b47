"""Draw the example inputs the app ships: object images on transparent backgrounds and turntable views.

Run ``python assets/make_examples.py`` to rewrite ``assets/examples/``; the output is deterministic
(seeded noise, no downloads) and each file stays well under 100 KB.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent / "examples"
SIZE = 256
SUPERSAMPLE = 4  # draw large, then downsample: smooth edges without an anti-aliasing renderer


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    s = SIZE * SUPERSAMPLE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    return img, ImageDraw.Draw(img), SUPERSAMPLE


def _finish(img: Image.Image) -> Image.Image:
    return img.resize((SIZE, SIZE), Image.Resampling.LANCZOS)


def _shade_horizontal(img: Image.Image, box: tuple[int, int, int, int], light: float = 0.35) -> None:
    """Darken the drawn pixels inside ``box`` towards its right edge: a cylinder lit from the left."""
    arr = np.asarray(img).astype(np.float32)
    x0, y0, x1, y1 = box
    xs = np.linspace(-1.0, 1.0, x1 - x0)
    shade = np.clip(1.0 + light * 0.6 - light * (xs + 1.0) ** 1.3, 0.45, 1.25)
    region = arr[y0:y1, x0:x1, :3] * shade[None, :, None]
    arr[y0:y1, x0:x1, :3] = np.clip(region, 0, 255)
    img.paste(Image.fromarray(arr.astype(np.uint8), "RGBA"))


def red_mug() -> Image.Image:
    img, d, k = _canvas()
    red, dark = (205, 32, 38, 255), (150, 18, 24, 255)
    d.ellipse((180 * k, 88 * k, 236 * k, 184 * k), outline=red, width=16 * k)  # handle
    d.rounded_rectangle((56 * k, 64 * k, 196 * k, 212 * k), radius=18 * k, fill=red)  # body
    _shade_horizontal(img, (56 * k, 64 * k, 196 * k, 212 * k))
    d = ImageDraw.Draw(img)
    d.ellipse((56 * k, 52 * k, 196 * k, 80 * k), fill=(230, 70, 70, 255))  # rim
    d.ellipse((64 * k, 56 * k, 188 * k, 76 * k), fill=dark)  # opening
    d.ellipse((62 * k, 200 * k, 190 * k, 222 * k), fill=(170, 24, 30, 255))  # base
    return _finish(img)


def blue_chair() -> Image.Image:
    img, d, k = _canvas()
    blue, dark, light = (38, 84, 196, 255), (24, 52, 130, 255), (78, 126, 230, 255)
    d.rounded_rectangle((78 * k, 24 * k, 186 * k, 128 * k), radius=10 * k, fill=blue)  # back
    for x in (92, 120, 148):  # back slats
        d.rectangle((x * k, 44 * k, (x + 14) * k, 120 * k), fill=light)
    d.polygon([(60 * k, 132 * k), (196 * k, 132 * k), (212 * k, 156 * k), (44 * k, 156 * k)], fill=light)  # seat
    d.rectangle((44 * k, 156 * k, 212 * k, 166 * k), fill=dark)
    for x0, x1 in ((50, 64), (192, 206), (76, 86), (170, 180)):  # legs, back pair thinner
        d.rectangle((x0 * k, 166 * k, x1 * k, 236 * k), fill=dark if x1 - x0 > 10 else blue)
    return _finish(img)


def golden_lamp() -> Image.Image:
    img, d, k = _canvas()
    gold, shade_col = (214, 160, 40, 255), (250, 226, 150, 255)
    d.polygon([(84 * k, 36 * k), (172 * k, 36 * k), (204 * k, 116 * k), (52 * k, 116 * k)], fill=shade_col)
    _shade_horizontal(img, (52 * k, 36 * k, 204 * k, 116 * k), light=0.25)
    d = ImageDraw.Draw(img)
    d.rectangle((120 * k, 116 * k, 136 * k, 206 * k), fill=gold)  # stem
    d.ellipse((76 * k, 196 * k, 180 * k, 228 * k), fill=(180, 128, 24, 255))  # base
    d.ellipse((112 * k, 140 * k, 144 * k, 164 * k), fill=gold)  # knob
    return _finish(img)


# ----------------------------------------------------------------------------- turntable views
# A textured toy (a box with a ball on top) seen by a camera orbiting it like a hand-held video:
# multi-scale colour noise on every surface gives structure from motion features to match, the
# 24 views overlap by 15 degrees, and transforms.json records the known cameras (nerfstudio
# format) so that the scene also loads with its poses (``python -m methods run nerf --video
# assets/examples/turntable``).

TURNTABLE_VIEWS = 24
TURNTABLE_SIZE = 224
TURNTABLE_FOV = 45.0
TURNTABLE_DISTANCE = 2.6
TURNTABLE_BACKGROUND = (0.5, 0.5, 0.5)


def turntable_mesh() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices, faces and a per-face base colour: a 1.2 x 0.7 x 0.9 box with a ball of radius 0.32 on top."""
    import trimesh

    box = trimesh.creation.box(extents=(1.2, 0.7, 0.9))
    box.apply_translation((0.0, -0.2, 0.0))
    ball = trimesh.creation.icosphere(subdivisions=3, radius=0.32)
    ball.apply_translation((0.25, 0.45, 0.0))
    vertices = np.concatenate([box.vertices, ball.vertices])
    faces = np.concatenate([box.faces, ball.faces + len(box.vertices)])
    colours = np.concatenate(
        [np.tile([[0.85, 0.45, 0.25]], (len(box.faces), 1)), np.tile([[0.3, 0.5, 0.9]], (len(ball.faces), 1))]
    )
    return vertices, faces, colours


def _value_noise(points: np.ndarray, scale: float, table: np.ndarray) -> np.ndarray:
    """Smooth 3D value noise: hashed lattice values, smoothstep-interpolated."""
    p = points * scale
    cell = np.floor(p).astype(np.int64)
    f = p - cell
    f = f * f * (3.0 - 2.0 * f)
    out = np.zeros((len(points), table.shape[1]))
    for corner in range(8):
        offset = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        c = cell + offset
        h = ((c[:, 0] * 73856093) ^ (c[:, 1] * 19349663) ^ (c[:, 2] * 83492791)) % len(table)
        out += np.prod(np.where(offset == 1, f, 1.0 - f), axis=1)[:, None] * table[h]
    return out


def turntable_poses(n: int = TURNTABLE_VIEWS, elevation_deg: float = 25.0, wobble_deg: float = 12.0) -> np.ndarray:
    """(n, 4, 4) OpenGL camera-to-world poses orbiting +Y, the elevation wobbling like a hand-held camera."""
    from methods.nerf.cameras import look_at

    poses = []
    for i in range(n):
        az = 2 * math.pi * i / n
        el = math.radians(elevation_deg + wobble_deg * math.sin(3 * az))
        eye = TURNTABLE_DISTANCE * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        poses.append(look_at(eye, np.zeros(3), np.array([0.0, 1.0, 0.0])))
    return np.stack(poses)


def turntable_views() -> tuple[list[Image.Image], np.ndarray, float]:
    """The orbit's RGB views (ray cast with Embree, 2x2 supersampled), their poses and the focal length."""
    from methods.raycast import RayScene

    vertices, faces, base = turntable_mesh()
    scene = RayScene(vertices, faces)
    tables = [np.random.default_rng(seed).uniform(0.0, 1.0, size=(8192, 3)) for seed in range(3)]
    size, s = TURNTABLE_SIZE, 2
    focal = 0.5 * size / math.tan(math.radians(TURNTABLE_FOV) / 2)
    v, u = np.meshgrid(np.arange(size * s), np.arange(size * s), indexing="ij")
    dirs = np.stack([((u + 0.5) / s - size / 2) / focal, -((v + 0.5) / s - size / 2) / focal, -np.ones(u.shape)], -1)
    dirs = dirs.reshape(-1, 3) / np.linalg.norm(dirs.reshape(-1, 3), axis=1, keepdims=True)
    poses = turntable_poses()
    views = []
    for c2w in poses:
        d = dirs @ c2w[:3, :3].T
        o = np.broadcast_to(c2w[:3, 3], d.shape)
        t, prim = scene.first_hits(o, d)
        hit = np.isfinite(t)
        rgb = np.tile(np.asarray(TURNTABLE_BACKGROUND), (len(d), 1))
        points = o[hit] + t[hit, None] * d[hit]
        noise = sum(
            amp * _value_noise(points, scale, table)
            for amp, scale, table in zip((0.4, 0.35, 0.25), (6.0, 14.0, 30.0), tables, strict=True)
        )
        texture = np.clip((noise - 0.5) * 2.2 + 0.5, 0.0, 1.0)
        rgb[hit] = 0.55 * base[prim[hit]] + 0.45 * texture
        image = rgb.reshape(size, s, size, s, 3).mean(axis=(1, 3))
        views.append(Image.fromarray((image * 255).round().astype(np.uint8)))
    return views, poses, focal


def write_turntable(folder: Path) -> None:
    """The views as JPEG (noise does not compress as PNG) and a nerfstudio transforms.json with their poses."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("view_*"):
        old.unlink()
    views, poses, focal = turntable_views()
    frames = []
    for i, (view, c2w) in enumerate(zip(views, poses, strict=True)):
        name = f"view_{i:02d}.jpg"
        view.save(folder / name, quality=92)
        frames.append({"file_path": name, "transform_matrix": np.round(c2w, 6).tolist()})
    meta = {
        "camera_model": "OPENCV",
        "w": TURNTABLE_SIZE,
        "h": TURNTABLE_SIZE,
        "fl_x": round(focal, 6),
        "fl_y": round(focal, 6),
        "cx": TURNTABLE_SIZE / 2,
        "cy": TURNTABLE_SIZE / 2,
        "frames": frames,
    }
    (folder / "transforms.json").write_text(json.dumps(meta, indent=1) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in (("red_mug", red_mug), ("blue_chair", blue_chair), ("golden_lamp", golden_lamp)):
        draw().save(OUT / f"{name}.png", optimize=True)
    write_turntable(OUT / "turntable")
    for path in sorted(p for p in OUT.rglob("*") if p.is_file()):
        print(f"{path.relative_to(OUT.parent)}  {path.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # methods/ when run as a script
    main()
