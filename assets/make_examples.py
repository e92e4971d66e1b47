"""Draw the example inputs the app ships: object images on transparent backgrounds and turntable views.

Run ``python assets/make_examples.py`` to rewrite ``assets/examples/``; the output is deterministic
(no randomness, no downloads) and each file stays well under 100 KB.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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

CUBE_VERTS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
CUBE_FACES = (  # vertex indices per face (counter-clockwise from outside) and face colour
    ((0, 1, 3, 2), (220, 60, 60)),  # -x
    ((4, 6, 7, 5), (60, 170, 80)),  # +x
    ((0, 4, 5, 1), (70, 110, 220)),  # -y
    ((2, 3, 7, 6), (240, 200, 60)),  # +y
    ((0, 2, 6, 4), (230, 130, 40)),  # -z
    ((1, 5, 7, 3), (150, 80, 200)),  # +z
)


def turntable_view(azimuth_deg: float, size: int = 160, elevation_deg: float = 25.0) -> Image.Image:
    """A colour cube seen from a camera circling it: painter's algorithm, Lambert shading, grey floor."""
    k = SUPERSAMPLE
    s = size * k
    img = Image.new("RGB", (s, s), (236, 238, 242))
    d = ImageDraw.Draw(img)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    rot_y = np.array([[math.cos(az), 0, math.sin(az)], [0, 1, 0], [-math.sin(az), 0, math.cos(az)]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(el), -math.sin(el)], [0, math.sin(el), math.cos(el)]])
    cam = (rot_x @ rot_y @ (CUBE_VERTS * [0.8, 0.8, 0.8]).T).T
    dist = 4.5
    depth = dist - cam[:, 2]
    proj = np.stack([cam[:, 0] / depth, -cam[:, 1] / depth], axis=1) * s * 1.05 + s / 2
    d.ellipse((s * 0.26, s * 0.7, s * 0.74, s * 0.8), fill=(210, 212, 218))  # contact shadow
    light = np.array([0.4, 0.7, 0.6]) / np.linalg.norm([0.4, 0.7, 0.6])
    faces = []
    for idx, colour in CUBE_FACES:
        p = cam[list(idx)]
        normal = np.cross(p[1] - p[0], p[2] - p[0])
        normal /= np.linalg.norm(normal)
        if normal[2] <= 0:  # facing away from the camera (+z towards the viewer)
            continue
        lit = 0.62 + 0.45 * max(float(normal @ light), 0.0)
        faces.append((float(depth[list(idx)].mean()), [tuple(proj[i]) for i in idx], colour, lit))
    for _, poly, colour, lit in sorted(faces, key=lambda f: -f[0]):
        d.polygon(poly, fill=tuple(int(min(255, c * lit)) for c in colour), outline=(40, 40, 48), width=k)
    return img.filter(ImageFilter.SMOOTH).resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in (("red_mug", red_mug), ("blue_chair", blue_chair), ("golden_lamp", golden_lamp)):
        draw().save(OUT / f"{name}.png", optimize=True)
    views = OUT / "turntable"
    views.mkdir(exist_ok=True)
    for i in range(8):
        turntable_view(i * 45.0).save(views / f"view_{i:02d}.png", optimize=True)
    for path in sorted(OUT.rglob("*.png")):
        print(f"{path.relative_to(OUT.parent)}  {path.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()
