"""Class catalogue and drawing primitives of the synthetic dataset (:mod:`detpipe.data.synth`).

Every class is a shape with its own colours and surface pattern, so a detector can tell
classes apart by outline *and* appearance, even when small. The first eight classes differ
in both shape and colour; classes 9-16 reuse the shapes with other colours and a striped or
checkered pattern. Drawing works on float32 ``(H, W, 3)`` RGB canvases and boolean masks::

    rng = np.random.default_rng(0)
    canvas = background(rng, 240, 320)
    mask = rasterize(outline("star", 160, 120, 60, 50, 0.2), 320, 240)
    paint(canvas, mask, CLASSES[3], rng)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

SHAPES = ("disc", "square", "triangle", "star", "cross", "ring", "diamond", "hexagon")


@dataclass(frozen=True)
class ShapeClass:
    """One object class: an outline, a primary and secondary colour, and a surface pattern."""

    name: str
    shape: str
    color: RGB
    color2: RGB
    texture: str  # "solid" | "stripes" | "checker"


CLASSES: tuple[ShapeClass, ...] = (
    ShapeClass("disc", "disc", (225, 35, 35), (150, 20, 20), "solid"),
    ShapeClass("square", "square", (35, 85, 230), (20, 50, 150), "solid"),
    ShapeClass("triangle", "triangle", (40, 190, 60), (20, 120, 35), "solid"),
    ShapeClass("star", "star", (250, 215, 30), (180, 150, 10), "solid"),
    ShapeClass("cross", "cross", (220, 45, 210), (140, 25, 135), "solid"),
    ShapeClass("ring", "ring", (30, 210, 220), (15, 140, 150), "solid"),
    ShapeClass("diamond", "diamond", (250, 140, 20), (180, 90, 10), "solid"),
    ShapeClass("hexagon", "hexagon", (125, 45, 185), (80, 25, 120), "solid"),
    ShapeClass("striped_disc", "disc", (250, 230, 40), (20, 20, 20), "stripes"),
    ShapeClass("checkered_square", "square", (240, 240, 240), (220, 30, 30), "checker"),
    ShapeClass("striped_triangle", "triangle", (40, 90, 240), (245, 245, 245), "stripes"),
    ShapeClass("checkered_star", "star", (30, 200, 70), (15, 15, 15), "checker"),
    ShapeClass("striped_cross", "cross", (250, 140, 20), (30, 30, 160), "stripes"),
    ShapeClass("checkered_ring", "ring", (230, 40, 200), (245, 245, 245), "checker"),
    ShapeClass("striped_diamond", "diamond", (30, 210, 220), (200, 20, 60), "stripes"),
    ShapeClass("checkered_hexagon", "hexagon", (250, 215, 30), (110, 40, 180), "checker"),
)
"""All classes, in category-id order; a dataset with K classes uses the first K."""

MAX_CLASSES = len(CLASSES)


def _regular(n: int, phase: float = -np.pi / 2, radius: float = 1.0) -> np.ndarray:
    t = phase + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(t), np.sin(t)], axis=1)


def _unit_outline(shape: str) -> list[np.ndarray]:
    """Polygons in [-1, 1]^2: the first is filled, any further ones are holes."""
    if shape == "disc":
        return [_regular(48)]
    if shape == "ring":
        return [_regular(48), _regular(40, radius=0.55)]
    if shape == "square":
        return [np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], float)]
    if shape == "triangle":
        return [np.array([(0, -1), (1, 1), (-1, 1)], float)]
    if shape == "diamond":
        return [np.array([(0, -1), (1, 0), (0, 1), (-1, 0)], float)]
    if shape == "hexagon":
        return [_regular(6, phase=0.0)]
    if shape == "star":
        outer, inner = _regular(5), _regular(5, phase=-np.pi / 2 + np.pi / 5, radius=0.45)
        return [np.stack([outer, inner], axis=1).reshape(-1, 2)]
    if shape == "cross":
        a = 0.33
        pts = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a)]
        return [np.array([*pts, (-1, -a), (-a, -a)], float)]
    raise ValueError(f"unknown shape {shape!r}")


def outline(shape: str, cx: float, cy: float, w: float, h: float, angle: float) -> list[np.ndarray]:
    """Pixel-space polygons of ``shape`` centred at (cx, cy), ``w`` x ``h`` before rotation.

    Args:
        shape: one of :data:`SHAPES`.
        cx: centre x in pixels.
        cy: centre y in pixels.
        w: width in pixels.
        h: height in pixels.
        angle: rotation in radians.

    Returns:
        ``(N, 2)`` float arrays: the outline first, then holes (the ring's centre).
    """
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return [(p * (w / 2, h / 2)) @ rot.T + (cx, cy) for p in _unit_outline(shape)]


def rasterize(polygons: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the first polygon minus the others."""
    im = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(im)
    for i, poly in enumerate(polygons):
        draw.polygon([tuple(p) for p in poly.tolist()], fill=0 if i else 1)
    return np.asarray(im, dtype=bool)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """(H, W, 3) float32 noise in [-1, 1], smooth at a scale of ``cells`` blobs per side."""
    grid = rng.uniform(-1, 1, size=(cells, cells, 3)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted, textured background: tinted grey, a light gradient and noise at two scales."""
    base = (rng.uniform(70, 190) + rng.uniform(-22, 22, size=3)).astype(np.float32)
    theta, amp = rng.uniform(0, 2 * np.pi), rng.uniform(-30, 30)
    ramp_x = (amp * np.cos(theta) * np.linspace(-0.5, 0.5, width, dtype=np.float32))[None, :, None]
    ramp_y = (amp * np.sin(theta) * np.linspace(-0.5, 0.5, height, dtype=np.float32))[:, None, None]
    canvas = base + ramp_x + ramp_y
    canvas += rng.uniform(15, 35) * _smooth_noise(rng, height, width, int(rng.integers(3, 7)))
    canvas += rng.uniform(5, 15) * _smooth_noise(rng, height, width, int(rng.integers(16, 40)))
    return canvas


def _box(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def paint(canvas: np.ndarray, mask: np.ndarray, cls: ShapeClass, rng: np.random.Generator) -> None:
    """Fill ``mask`` on ``canvas`` with the class's colours and pattern, lightly shaded."""
    box = _box(mask)
    if box is None:
        return
    ys, xs = box
    m = mask[ys, xs]
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    jitter = rng.uniform(0.85, 1.1, size=3).astype(np.float32)
    c1 = np.array(cls.color, np.float32) * jitter
    c2 = np.array(cls.color2, np.float32) * jitter
    if cls.texture == "solid":
        pattern = np.zeros((h, w), bool)
    else:
        period = max(3.0, max(h, w) / rng.uniform(3.0, 5.0))
        theta = rng.uniform(0, np.pi)
        u = (np.cos(theta) * xx + np.sin(theta) * yy) / period
        if cls.texture == "stripes":
            pattern = np.floor(u).astype(int) % 2 == 1
        else:
            v = (-np.sin(theta) * xx + np.cos(theta) * yy) / period
            pattern = (np.floor(u).astype(int) + np.floor(v).astype(int)) % 2 == 1
    fill = np.where(pattern[..., None], c2, c1)
    theta = rng.uniform(0, 2 * np.pi)
    shade = 1.0 + rng.uniform(0.05, 0.2) * (np.cos(theta) * (xx / max(w, 1) - 0.5) * 2)
    fill = fill * shade[..., None]
    region = canvas[ys, xs]
    region[m] = fill[m]


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation colour: clutter must not look like any object class."""
    return rng.uniform(40, 210) + rng.uniform(-18, 18, size=3)


def clutter(rng: np.random.Generator, canvas: np.ndarray, count: int, max_size: float) -> np.ndarray:
    """Draw ``count`` distractors (lines, scribbles, blobs, outlines) in muted colours.

    Returns:
        The boolean mask of all pixels drawn.
    """
    height, width = canvas.shape[:2]
    paint_im = Image.new("RGB", (width, height))
    alpha_im = Image.new("L", (width, height), 0)
    draws = ImageDraw.Draw(paint_im), ImageDraw.Draw(alpha_im)
    for _ in range(count):
        color = tuple(int(v) for v in np.clip(_muted(rng), 0, 255))
        fills = color, int(rng.uniform(0.45, 0.9) * 255)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(8, max_size)
        kind = rng.integers(4)
        line_width = int(rng.integers(1, 4))
        if kind == 0:  # a straight line
            d = rng.uniform(-1, 1, size=2) * size
            for draw, fill in zip(draws, fills, strict=True):
                draw.line([(cx, cy), (cx + d[0], cy + d[1])], fill=fill, width=line_width)
        elif kind == 1:  # a scribble
            steps = rng.normal(0, size / 4, size=(int(rng.integers(3, 8)), 2))
            pts = np.cumsum(steps, axis=0) + np.array([cx, cy])
            for draw, fill in zip(draws, fills, strict=True):
                draw.line([tuple(p) for p in pts.tolist()], fill=fill, width=line_width)
        elif kind == 2:  # an irregular blob
            n = int(rng.integers(5, 10))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = size / 2 * rng.uniform(0.4, 1.0, n)
            pts = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
            for draw, fill in zip(draws, fills, strict=True):
                draw.polygon([tuple(p) for p in pts.tolist()], fill=fill)
        else:  # an ellipse outline
            a, b = size / 2, size / 2 * rng.uniform(0.4, 1.0)
            for draw, fill in zip(draws, fills, strict=True):
                draw.ellipse([cx - a, cy - b, cx + a, cy + b], outline=fill, width=line_width)
    union = np.zeros((height, width), bool)
    box = alpha_im.getbbox()
    if box is not None:  # blend only where something was drawn
        x0, y0, x1, y1 = box
        alpha = np.asarray(alpha_im.crop(box), np.float32)[..., None] / 255.0
        region = canvas[y0:y1, x0:x1]
        region += alpha * (np.asarray(paint_im.crop(box), np.float32) - region)
        union[y0:y1, x0:x1] = alpha[..., 0] > 0
    return union


def finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise over everything, then clip to uint8."""
    amp = int(rng.integers(3, 11))
    canvas += rng.integers(-amp, amp + 1, size=canvas.shape, dtype=np.int16)
    return np.clip(canvas, 0, 255).astype(np.uint8)
