"""ToyVITON garments: attribute vocabularies, textures and the flat in-shop garment.

A garment is described by a few attributes drawn from small fixed vocabularies (so that
captions can be written from them and linear probes can classify them) and drawn flat,
centred, on a white background, like the cloth images of VITON-HD. Its geometry is kept
(:class:`FlatGarment`) so that :mod:`toyviton` can deform it onto a body.

Textures are rich in high frequencies on purpose: stripes down to 1-2 pixels wide, checks,
dots, printed text and small logos are exactly what a try-on model loses first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from gardiffmini.data.bodies import SIDES, Body, box_around, grid, segment_frame

COLORS = {
    "red": (200, 30, 40), "orange": (240, 130, 30), "yellow": (245, 210, 50),
    "green": (40, 150, 60), "teal": (20, 140, 140), "blue": (40, 90, 210),
    "navy": (25, 35, 90), "purple": (120, 50, 160), "pink": (240, 140, 180),
    "brown": (120, 75, 40), "black": (25, 25, 25), "white": (245, 245, 240),
    "grey": (130, 130, 130), "beige": (220, 200, 160),
}
COLOR_NAMES = tuple(COLORS)
PATTERNS = ("plain", "stripes", "checks", "dots", "text", "logo")
SLEEVES = ("sleeveless", "short", "long")
CATEGORIES = ("tank top", "t-shirt", "long-sleeve top")  # one per sleeve length
NECKLINES = ("round", "v", "square")
LENGTHS = ("cropped", "regular", "long")
STRIPE_FREQUENCIES = (3, 5, 8, 12, 16, 24)  # cycles per garment width
STRIPE_ANGLES = (0, 30, 45, 60, 90, 120, 135, 150)  # degrees; 0 = horizontal stripes
TEXT_WORDS = ("LOVE", "NYC", "GO", "SURF", "HELLO", "TOKYO", "ABC", "No.", "RUN", "JOY")
LOGOS = ("circle", "ring", "triangle", "square", "diamond", "star", "cross")

# Where the flat garment sits in the in-shop image, in units of the image height.
FLAT_NECK_Y = 0.14
FLAT_SHOULDER_Y = 0.19
FLAT_HIP_Y = 0.66  # the garment row worn at the hips
FLAT_SHOULDER_HALF = 0.19
FLAT_HIP_HALF = 0.165
FLAT_SLEEVE_HALF = 0.045
FLAT_SLEEVE_ANGLE = 80.0  # degrees below the horizontal
FLAT_LONG_SLEEVE = 0.48
GARMENT_EASE = 1.08  # the worn garment is this much wider than the torso
WRAP_ANGLE = 1.0  # radians of a cylinder seen from the front: texture compresses at the sides
HEM_T = {"cropped": 0.82, "regular": 1.0, "long": 1.22}  # 0 = shoulders, 1 = hips
SLEEVE_FRACTION = {"sleeveless": 0.0, "short": 0.3, "long": 1.0}


@dataclass
class FlatGarment:
    """The in-shop garment: its texture over the whole frame, its parts and its geometry.

    ``texture`` is ``(H, W, 3)`` float32 in 0..255; ``torso`` and ``sleeves`` (right, left:
    the wearer's right sleeve is on the image's left) are float32 masks in 0..1. The
    geometry fields are pixel coordinates of the garment's frame: rows ``shoulder_y`` and
    ``hip_y`` are worn at the shoulders and at the hips; each sleeve is a band of half-width
    ``sleeve_half`` along ``sleeve_origin + s * sleeve_dir`` for ``0 <= s <= long_sleeve``.
    """

    texture: np.ndarray
    torso: np.ndarray
    sleeves: tuple[np.ndarray, np.ndarray]
    cx: float
    shoulder_y: float
    hip_y: float
    shoulder_half: float
    hip_half: float
    sleeve_half: float
    sleeve_origin: tuple[np.ndarray, np.ndarray]
    sleeve_dir: tuple[np.ndarray, np.ndarray]
    long_sleeve: float

    @property
    def mask(self) -> np.ndarray:
        """The whole garment, 0..1."""
        return np.maximum(self.torso, np.maximum(*self.sleeves))

    def image(self) -> np.ndarray:
        """The in-shop image: the garment on white, ``(H, W, 3)`` uint8."""
        mask = self.mask[..., None]
        return (self.texture * mask + 255.0 * (1.0 - mask)).round().astype(np.uint8)


def sample_attributes(rng: np.random.Generator) -> dict:
    """Draw one garment's attributes from the vocabularies of this module."""
    sleeve = str(rng.choice(SLEEVES))
    pattern = str(rng.choice(PATTERNS))
    base = str(rng.choice(COLOR_NAMES))
    colors = [base]
    if pattern != "plain":
        others = [name for name in COLOR_NAMES if _contrast(COLORS[name], COLORS[base]) > 90]
        colors.append(str(rng.choice(others)))
    repeats = pattern in ("stripes", "checks", "dots")
    frequency = int(rng.choice(STRIPE_FREQUENCIES)) if repeats else 0
    angle = 0
    if pattern == "stripes":
        angle = int(rng.choice(STRIPE_ANGLES))
    elif pattern in ("checks", "dots"):
        angle = int(rng.choice((0, 45)))
    text = ""
    if pattern == "text":
        word = str(rng.choice(TEXT_WORDS))
        text = f"{word} {rng.integers(0, 100):02d}" if rng.random() < 0.5 else word
    return {
        "category": CATEGORIES[SLEEVES.index(sleeve)],
        "sleeve": sleeve,
        "neckline": str(rng.choice(NECKLINES)),
        "length": str(rng.choice(LENGTHS)),
        "colors": colors,
        "pattern": pattern,
        "stripe_frequency": frequency,  # also the repeat frequency of checks and dots
        "stripe_angle": angle,
        "text": text,
        "logo": str(rng.choice(LOGOS)) if pattern == "logo" else "",
    }


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    luma = np.array([0.299, 0.587, 0.114])
    return float(abs(luma @ np.subtract(a, b)) + 0.25 * np.abs(np.subtract(a, b)).sum() / 3)


def _jitter(rng: np.random.Generator, name: str) -> np.ndarray:
    return np.clip(np.array(COLORS[name], np.float32) + rng.uniform(-12, 12, 3), 0, 255)


def draw_texture(attributes: dict, rng: np.random.Generator, height: int, width: int,
                 cx: float, top: float, garment_width: float) -> np.ndarray:
    """The garment's pattern over a whole ``(height, width)`` frame, float32 RGB.

    Pattern coordinates are in garment widths, so ``stripe_frequency`` counts cycles
    across the garment whatever the image size.
    """
    colors = [_jitter(rng, name) for name in attributes["colors"]]
    texture = np.broadcast_to(colors[0], (height, width, 3)).copy()
    pattern, frequency = attributes["pattern"], attributes["stripe_frequency"]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = (x - cx) / garment_width, (y - top) / garment_width
    angle = np.deg2rad(attributes["stripe_angle"])
    along = u * np.sin(angle) + v * np.cos(angle)  # constant along a stripe of this angle
    across = u * np.cos(angle) - v * np.sin(angle)
    if pattern == "stripes":
        duty = rng.uniform(0.3, 0.6)
        texture[np.mod(along * frequency, 1.0) < duty] = colors[1]
    elif pattern == "checks":
        bands = (np.mod(along * frequency, 1.0) < 0.5).astype(np.float32)
        bands += np.mod(across * frequency, 1.0) < 0.5
        weight = (bands / 2.0)[..., None]
        texture = texture * (1 - weight) + colors[1] * weight
    elif pattern == "dots":
        du = np.mod(across * frequency, 1.0) - 0.5
        dv = np.mod(along * frequency, 1.0) - 0.5
        texture[du**2 + dv**2 < rng.uniform(0.18, 0.3) ** 2] = colors[1]
    elif pattern in ("text", "logo"):
        canvas = Image.fromarray(texture.round().astype(np.uint8))
        chest = (cx + rng.uniform(-0.08, 0.08) * garment_width, top + 0.3 * garment_width)
        ink = tuple(int(c) for c in colors[1])
        if pattern == "text":
            _draw_text(canvas, attributes["text"], chest, 0.7 * garment_width, ink)
        else:
            size = rng.uniform(0.14, 0.22) * garment_width
            _draw_logo(canvas, attributes["logo"], chest, size, ink)
        texture = np.asarray(canvas, np.float32)
    return texture.astype(np.float32)


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _draw_text(canvas: Image.Image, text: str, centre: tuple[float, float], max_width: float,
               ink: tuple[int, ...]) -> None:
    draw = ImageDraw.Draw(canvas)
    size = max(6, round(canvas.height * 0.11))
    while size > 6 and draw.textlength(text, font=_font(size)) > max_width:
        size -= 1
    draw.text(centre, text, fill=ink, font=_font(size), anchor="mm")


def _draw_logo(canvas: Image.Image, logo: str, centre: tuple[float, float], size: float,
               ink: tuple[int, ...]) -> None:
    draw = ImageDraw.Draw(canvas)
    x, y, r = centre[0], centre[1], max(2.0, size / 2)
    box = (x - r, y - r, x + r, y + r)
    if logo == "circle":
        draw.ellipse(box, fill=ink)
    elif logo == "ring":
        draw.ellipse(box, outline=ink, width=max(1, round(r / 3)))
    elif logo == "square":
        draw.rectangle(box, fill=ink)
    elif logo == "triangle":
        draw.regular_polygon((x, y, r), 3, fill=ink)
    elif logo == "diamond":
        draw.regular_polygon((x, y, r), 4, fill=ink)
    elif logo == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        corners = np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], axis=1)
        draw.polygon([tuple(c) for c in corners], fill=ink)
    elif logo == "cross":
        w = max(1.0, r / 3)
        draw.rectangle((x - w, y - r, x + w, y + r), fill=ink)
        draw.rectangle((x - r, y - w, x + r, y + w), fill=ink)
    else:
        raise ValueError(f"unknown logo {logo!r}; expected one of {LOGOS}")


def draw_flat_garment(attributes: dict, rng: np.random.Generator, height: int,
                      width: int) -> FlatGarment:
    """Draw the in-shop garment described by ``attributes`` in a ``(height, width)`` frame."""
    h = float(height)
    cx = width / 2.0
    neck_y, shoulder_y, hip_y = FLAT_NECK_Y * h, FLAT_SHOULDER_Y * h, FLAT_HIP_Y * h
    shoulder_half, hip_half = FLAT_SHOULDER_HALF * h, FLAT_HIP_HALF * h
    sleeve_half = FLAT_SLEEVE_HALF * h
    hem_y = shoulder_y + HEM_T[attributes["length"]] * (hip_y - shoulder_y)
    hem_half = hip_half * (1 + 0.15 * max(0.0, HEM_T[attributes["length"]] - 1))
    neck_half = 0.075 * h

    torso = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(torso)
    sleeveless = attributes["sleeve"] == "sleeveless"
    strap = 0.7 * shoulder_half if sleeveless else shoulder_half
    armpit = shoulder_y + (3.0 if sleeveless else 1.8) * sleeve_half
    right_side = [(cx - neck_half, neck_y), (cx - strap, shoulder_y),
                  (cx - shoulder_half * (0.88 if sleeveless else 1.0), armpit),
                  (cx - hem_half, hem_y)]
    left_side = [(2 * cx - px, py) for px, py in reversed(right_side)]
    draw.polygon(right_side + left_side, fill=255)
    _cut_neckline(draw, attributes["neckline"], cx, neck_y, neck_half, h)

    angle = np.deg2rad(FLAT_SLEEVE_ANGLE)
    directions = (np.array([-np.cos(angle), np.sin(angle)]),
                  np.array([np.cos(angle), np.sin(angle)]))
    origins = (np.array([cx - shoulder_half + 0.9 * sleeve_half, shoulder_y + 0.6 * sleeve_half]),
               np.array([cx + shoulder_half - 0.9 * sleeve_half, shoulder_y + 0.6 * sleeve_half]))
    long_sleeve = FLAT_LONG_SLEEVE * h
    sleeves = []
    for origin, direction in zip(origins, directions, strict=True):
        sleeve = Image.new("L", (width, height), 0)
        length = SLEEVE_FRACTION[attributes["sleeve"]] * long_sleeve
        if length > 0:
            normal = np.array([-direction[1], direction[0]]) * sleeve_half
            end = origin + direction * length
            corners = [origin + normal, end + normal, end - normal, origin - normal]
            sleeve_draw = ImageDraw.Draw(sleeve)
            sleeve_draw.polygon([tuple(c) for c in corners], fill=255)
            sleeve_draw.ellipse((*(origin - sleeve_half), *(origin + sleeve_half)), fill=255)
        sleeves.append(np.asarray(sleeve, np.float32) / 255.0)

    texture = draw_texture(attributes, rng, height, width, cx, shoulder_y, 2 * shoulder_half)
    return FlatGarment(
        texture=texture, torso=np.asarray(torso, np.float32) / 255.0, sleeves=tuple(sleeves),
        cx=cx, shoulder_y=shoulder_y, hip_y=hip_y, shoulder_half=shoulder_half,
        hip_half=hip_half, sleeve_half=sleeve_half, sleeve_origin=origins,
        sleeve_dir=directions, long_sleeve=long_sleeve,
    )


def _cut_neckline(draw: ImageDraw.ImageDraw, neckline: str, cx: float, neck_y: float,
                  neck_half: float, h: float) -> None:
    if neckline == "round":
        depth = 0.06 * h
        draw.ellipse((cx - neck_half, neck_y - depth, cx + neck_half, neck_y + depth), fill=0)
    elif neckline == "v":
        draw.polygon([(cx - neck_half, neck_y - 1), (cx + neck_half, neck_y - 1),
                      (cx, neck_y + 0.13 * h)], fill=0)
    elif neckline == "square":
        draw.rectangle((cx - 0.8 * neck_half, neck_y - 1, cx + 0.8 * neck_half, neck_y + 0.06 * h),
                       fill=0)
    else:
        raise ValueError(f"unknown neckline {neckline!r}; expected one of {NECKLINES}")


def _wrap(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angle on a cylinder seen from the front (``u`` = +-1 at its visible edges).

    Also returns where ``u`` lies beyond the silhouette (no angle there)."""
    sine = u * np.sin(WRAP_ANGLE)
    return np.arcsin(np.clip(sine, -1, 1)), np.abs(sine) >= 1


class SleeveMap(NamedTuple):
    """One worn sleeve inside the window ``box`` of the person image."""

    side: str
    box: tuple[slice, slice]
    fy: np.ndarray
    fx: np.ndarray
    shade: np.ndarray
    cover: np.ndarray


class GarmentMap(NamedTuple):
    """Where each person pixel takes its colour in the flat garment (torso: whole image)."""

    fy: np.ndarray
    fx: np.ndarray
    shade: np.ndarray
    cover: np.ndarray
    sleeves: list[SleeveMap]


def garment_map(body: Body, flat: FlatGarment, height: int, width: int) -> GarmentMap:
    """Map person pixels back into the flat garment: the ground-truth warp of ToyVITON.

    Torso: a per-row affine map (the row at ``t`` between shoulders and hips goes to the
    flat row at the same ``t``; the worn width of that row goes to the flat width) with a
    cylindrical wrap ``u_flat = asin(u sin a) / a``, so that the texture compresses towards
    the sides like cloth around a body, and shading ``0.7 + 0.3 cos(asin(u sin a))``.
    Sleeves: the arm's polyline (shoulder, elbow, wrist) is unrolled onto the straight flat
    sleeve, distance along it scaled to the flat sleeve's length, distance across it wrapped
    the same way. ``cover`` is the flat part's mask sampled through the map (0..1).
    """
    y, x = grid((slice(0, height), slice(0, width)))
    t = body.row_t(y)
    flare = 1 + 0.15 * np.maximum(t - 1, 0)
    t_body = np.clip(t, 0, 1)
    worn_half = (GARMENT_EASE * body.torso_half(t_body) + 0.5) * flare
    flat_half = (flat.shoulder_half + (flat.hip_half - flat.shoulder_half) * t_body) * flare
    wrapped, beyond = _wrap((x - body.cx) / worn_half)
    fx = flat.cx + flat_half * wrapped / WRAP_ANGLE
    fy = np.broadcast_to(flat.shoulder_y + t * (flat.hip_y - flat.shoulder_y), fx.shape)
    cover = ndimage.map_coordinates(flat.torso, [fy, fx], order=1, cval=0.0)
    cover[beyond] = 0.0

    sleeves = []
    sleeve_half = 1.35 * body.arm_radius + 0.5
    for side in body.arm_order:
        index = SIDES.index(side)
        if not flat.sleeves[index].any():
            continue
        shoulder, elbow, wrist = body.arm(side)
        box = box_around([shoulder, elbow, wrist], 2 * sleeve_half + 2, height, width)
        wy, wx = grid(box)
        upper_len = float(np.hypot(*(elbow - shoulder)))
        fore_len = float(np.hypot(*(wrist - elbow)))
        s_up, t_up, d_up = segment_frame(wx, wy, shoulder, elbow)
        s_fore, t_fore, d_fore = segment_frame(wx, wy, elbow, wrist)
        on_fore = (d_fore < d_up) & (s_fore >= 0)
        along = np.where(on_fore, upper_len + s_fore, s_up) * (
            flat.long_sleeve / (upper_len + fore_len))
        across, beyond = _wrap(np.where(on_fore, t_fore, t_up) / sleeve_half)
        across_flat = flat.sleeve_half * across / WRAP_ANGLE
        (ox, oy), (dx, dy) = flat.sleeve_origin[index], flat.sleeve_dir[index]
        sleeve_fx = ox + along * dx - across_flat * dy
        sleeve_fy = oy + along * dy + across_flat * dx
        sleeve_cover = ndimage.map_coordinates(flat.sleeves[index], [sleeve_fy, sleeve_fx],
                                               order=1, cval=0.0)
        sleeve_cover[beyond] = 0.0
        sleeves.append(SleeveMap(side, box, sleeve_fy, sleeve_fx, 0.7 + 0.3 * np.cos(across),
                                 sleeve_cover))
    return GarmentMap(fy, fx, 0.7 + 0.3 * np.cos(wrapped), cover, sleeves)
