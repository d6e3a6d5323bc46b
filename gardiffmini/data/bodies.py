"""ToyVITON bodies: a front-facing 2D figure, its skeleton and its parts.

A :class:`Body` is a skeleton (BODY_25 keypoints, exact by construction) plus the widths
that give it a silhouette. Parts are capsules (limbs), a per-row torso and ellipses (head),
computed for every pixel with numpy: each part gives a mask and local ``(u, v)`` coordinates,
which the try-on renderer uses for sleeves and shading and the DensePose rendering uses as
its U/V. A :class:`Canvas` paints parts back to front into the person image, its LIP labels
and its DensePose maps at once. The wearer's right side is on the image's left, as in a photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gardiffmini.data.layout import BODY_25, KEYPOINT, PARSE

SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 90),
              (160, 102, 66), (122, 78, 50), (90, 58, 38))
HAIR_COLORS = ((20, 15, 12), (60, 40, 25), (110, 70, 35), (190, 150, 90), (150, 60, 30),
               (120, 120, 120))
PANTS_COLORS = ((30, 40, 70), (40, 40, 45), (90, 70, 50), (60, 90, 130), (180, 170, 150),
                (70, 80, 60))
ARM_POSES = ("down", "out", "hip", "crossing")
SIDES = ("right", "left")
CROSSING_PROBABILITY = 0.3  # samples with at least one forearm in front of the torso
DENSEPOSE_PARTS = (
    "background", "torso", "head", "right upper arm", "left upper arm", "right lower arm",
    "left lower arm", "right hand", "left hand", "right upper leg", "left upper leg",
    "right lower leg", "left lower leg",
)


@dataclass
class Body:
    """One figure: keypoints (pixels), widths (pixels) and colours."""

    points: dict[str, np.ndarray]
    cx: float
    head: tuple[float, float, float, float]  # centre x, centre y, radius x, radius y
    shoulder_y: float
    hip_y: float
    shoulder_half: float
    waist_half: float
    hip_half: float
    arm_radius: float
    leg_radius: float
    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    pants: np.ndarray
    shorts: bool
    arm_poses: dict[str, str]
    arm_order: tuple[str, str] = field(default=SIDES)  # drawn first, drawn last

    def arm(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shoulder, elbow and wrist of one arm (``'right'`` or ``'left'``)."""
        prefix = side[0].upper()
        p = self.points
        return p[f"{prefix}Shoulder"], p[f"{prefix}Elbow"], p[f"{prefix}Wrist"]

    def leg(self, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hip, knee and ankle of one leg."""
        prefix = side[0].upper()
        p = self.points
        return p[f"{prefix}Hip"], p[f"{prefix}Knee"], p[f"{prefix}Ankle"]

    def torso_half(self, t: np.ndarray) -> np.ndarray:
        """Half-width of the torso at ``t`` (0 = shoulder row, 1 = hip row; extrapolated)."""
        halves = (self.shoulder_half, self.waist_half, self.hip_half)
        return np.interp(t, (0.0, 0.6, 1.0), halves).astype(np.float32)

    def row_t(self, y: np.ndarray) -> np.ndarray:
        """Rows as torso coordinates: 0 at the shoulders, 1 at the hips."""
        return (y - self.shoulder_y) / (self.hip_y - self.shoulder_y)


def _direction(side: str, angle_deg: float) -> np.ndarray:
    """Unit vector pointing down, turned outward by ``angle_deg`` (negative: inward)."""
    a = np.deg2rad(angle_deg)
    outward = -1.0 if side == "right" else 1.0
    return np.array([outward * np.sin(a), np.cos(a)])


def _arm_angles(rng: np.random.Generator, pose: str) -> tuple[float, float]:
    """Upper-arm and forearm angles from straight down (degrees, positive outward)."""
    if pose == "down":
        upper = rng.uniform(4, 20)
        return upper, upper + rng.uniform(-8, 15)
    if pose == "out":
        upper = rng.uniform(22, 45)
        return upper, upper + rng.uniform(-10, 40)
    if pose == "hip":
        return rng.uniform(25, 40), rng.uniform(-95, -60)
    if pose == "crossing":
        return rng.uniform(0, 15), rng.uniform(-115, -75)
    raise ValueError(f"unknown arm pose {pose!r}; expected one of {ARM_POSES}")


def sample_body(rng: np.random.Generator, height: int, width: int) -> Body:
    """Draw a figure with random shape, pose, skin, hair and trousers."""
    unit = height * rng.uniform(0.92, 1.04)
    cx = width / 2 + rng.uniform(-0.04, 0.04) * width
    top = rng.uniform(0.0, 0.03) * height
    head = (cx, top + 0.11 * unit, rng.uniform(0.055, 0.065) * unit,
            rng.uniform(0.072, 0.082) * unit)
    shoulder_y = top + 0.245 * unit
    hip_y = shoulder_y + rng.uniform(0.31, 0.38) * unit
    shoulder_half = rng.uniform(0.13, 0.17) * unit
    waist_half = rng.uniform(0.095, 0.125) * unit
    hip_half = rng.uniform(0.11, 0.15) * unit
    arm_radius = rng.uniform(0.026, 0.034) * unit
    leg_radius = rng.uniform(0.045, 0.055) * unit

    if rng.random() < CROSSING_PROBABILITY:
        crossing = rng.choice(("right", "left", "both"), p=(0.35, 0.35, 0.3))
        poses = {side: "crossing" if crossing in (side, "both") else str(rng.choice(ARM_POSES[:3]))
                 for side in SIDES}
    else:
        poses = {side: str(rng.choice(ARM_POSES[:3], p=(0.5, 0.3, 0.2))) for side in SIDES}

    p: dict[str, np.ndarray] = {}
    p["Neck"] = np.array([cx, shoulder_y])
    p["MidHip"] = np.array([cx, hip_y])
    upper_len, fore_len = rng.uniform(0.17, 0.2) * unit, rng.uniform(0.15, 0.175) * unit
    for side in SIDES:
        outward = -1.0 if side == "right" else 1.0
        prefix = side[0].upper()
        shoulder = np.array([cx + outward * (shoulder_half - 0.8 * arm_radius),
                             shoulder_y + 0.3 * arm_radius])
        upper_angle, fore_angle = _arm_angles(rng, poses[side])
        elbow = shoulder + upper_len * _direction(side, upper_angle)
        wrist = elbow + fore_len * _direction(side, fore_angle)
        hip = np.array([cx + outward * 0.6 * hip_half, hip_y])
        knee = hip + np.array([outward * rng.uniform(0.0, 0.04), 1.0]) * 0.24 * unit
        ankle = knee + np.array([0.0, 0.24 * unit])
        p[f"{prefix}Shoulder"], p[f"{prefix}Elbow"], p[f"{prefix}Wrist"] = shoulder, elbow, wrist
        p[f"{prefix}Hip"], p[f"{prefix}Knee"], p[f"{prefix}Ankle"] = hip, knee, ankle
        p[f"{prefix}BigToe"] = ankle + np.array([-outward * 0.02 * unit, 0.05 * unit])
        p[f"{prefix}SmallToe"] = ankle + np.array([outward * 0.03 * unit, 0.045 * unit])
        p[f"{prefix}Heel"] = ankle + np.array([0.0, 0.02 * unit])
        p[f"{prefix}Eye"] = np.array([cx + outward * 0.38 * head[2], head[1] - 0.1 * head[3]])
        p[f"{prefix}Ear"] = np.array([cx + outward * head[2], head[1] + 0.05 * head[3]])
    p["Nose"] = np.array([cx, head[1] + 0.25 * head[3]])
    crossing_sides = [side for side in SIDES if poses[side] == "crossing"]
    order = tuple(side for side in SIDES if side not in crossing_sides) + tuple(crossing_sides)

    skin, hair, pants = (
        np.clip(np.array(palette[rng.integers(len(palette))], np.float32)
                + rng.uniform(-8, 8, 3), 0, 255)
        for palette in (SKIN_TONES, HAIR_COLORS, PANTS_COLORS))
    return Body(
        points=p, cx=cx, head=head, shoulder_y=shoulder_y, hip_y=hip_y,
        shoulder_half=shoulder_half, waist_half=waist_half, hip_half=hip_half,
        arm_radius=arm_radius, leg_radius=leg_radius, skin=skin,
        hair=hair, hair_style=str(rng.choice(("short", "long", "bun"))),
        pants=pants, shorts=bool(rng.random() < 0.3), arm_poses=poses,
        arm_order=order,
    )


def keypoints(body: Body, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """BODY_25 keypoints ``(25, 3)``: x, y, confidence; ``0, 0, 0`` outside the image."""
    result = np.zeros((len(BODY_25), 3), np.float32)
    for name, index in KEYPOINT.items():
        x, y = body.points[name]
        if 0 <= x < width and 0 <= y < height:
            result[index] = (x, y, rng.uniform(0.6, 0.95))
    return result


def box_around(points: list[np.ndarray], margin: float, height: int, width: int
               ) -> tuple[slice, slice]:
    """The window ``(rows, columns)`` of the image holding ``points`` grown by ``margin``."""
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    def span(low: float, high: float, size: int) -> slice:
        return slice(int(np.clip(low - margin, 0, size)), int(np.clip(high + margin + 1, 0, size)))

    return span(min(ys), max(ys), height), span(min(xs), max(xs), width)


def grid(box: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of a window: ``y`` as a column, ``x`` as a row (they broadcast)."""
    rows, columns = box
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None]
    x = np.arange(columns.start, columns.stop, dtype=np.float32)[None, :]
    return y, x


def segment_frame(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel coordinates in the frame of segment ``a -> b``.

    Returns ``s`` (distance along the segment from ``a``, unclamped), ``t`` (signed distance
    across it; positive on the side of ``direction`` turned by +90 degrees) and the
    Euclidean distance to the segment itself.
    """
    ax, ay = float(a[0]), float(a[1])
    length = max(float(np.hypot(b[0] - ax, b[1] - ay)), 1e-6)
    dx, dy = float(b[0] - ax) / length, float(b[1] - ay) / length
    rx, ry = x - ax, y - ay
    s = rx * dx + ry * dy
    t = ry * dx - rx * dy
    s_clamped = np.clip(s, 0.0, length)
    distance = np.hypot(rx - s_clamped * dx, ry - s_clamped * dy)
    return s, t, distance


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float
            ) -> np.ndarray:
    """Pixels inside an axis-aligned ellipse."""
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _limb_shade(t: np.ndarray, radius: float) -> np.ndarray:
    return (1 - 0.25 * np.clip(t / radius, -1, 1) ** 2)[..., None]


class Canvas:
    """The person being painted back to front, with its LIP labels and DensePose I/U/V."""

    def __init__(self, background: np.ndarray):
        self.height, self.width = background.shape[:2]
        self.person = background
        self.parse = np.zeros((self.height, self.width), np.uint8)
        self.part = np.zeros((self.height, self.width), np.uint8)
        self.uv = np.zeros((self.height, self.width, 2), np.float32)

    def paint(self, box, mask, colour, label: int, part: str | None = None, u=None, v=None):
        """Paint ``mask`` of window ``box`` with ``colour`` (RGB or per pixel), LIP ``label``
        and, for body surface, DensePose ``part`` with coordinates ``u``, ``v``."""
        region = self.person[box]
        region[mask] = np.broadcast_to(colour, region.shape)[mask]
        self.parse[box][mask] = label
        if part is not None:
            self.part[box][mask] = DENSEPOSE_PARTS.index(part)
            self.uv[box][..., 0][mask] = np.broadcast_to(u, mask.shape)[mask]
            self.uv[box][..., 1][mask] = np.broadcast_to(v, mask.shape)[mask]

    def capsule(self, a, b, radius: float, colour, label: int, part: str) -> None:
        """A limb: the pixels within ``radius`` of segment ``a -> b``, shaded round."""
        box = box_around([a, b], radius + 1, self.height, self.width)
        y, x = grid(box)
        s, t, distance = segment_frame(x, y, a, b)
        length = max(float(np.hypot(*(b - a))), 1e-6)
        self.paint(box, distance <= radius, colour * _limb_shade(t, radius), label, part,
                   s / length, t / radius / 2 + 0.5)

    def ellipse(self, centre, rx: float, ry: float, colour, label: int, part: str | None = None):
        """An axis-aligned ellipse (head, hands, eyes, hair)."""
        box = box_around([centre], max(rx, ry) + 1, self.height, self.width)
        y, x = grid(box)
        u, v = (x - centre[0]) / rx / 2 + 0.5, (y - centre[1]) / ry / 2 + 0.5
        self.paint(box, ellipse(x, y, centre[0], centre[1], rx, ry), colour, label, part, u, v)


def paint_body(canvas: Canvas, body: Body) -> None:
    """Everything behind the garment: hair, torso, trousers, legs, neck, head."""
    height, width = canvas.height, canvas.width
    hx, hy, hrx, hry = body.head
    if body.hair_style == "long":
        canvas.ellipse((hx, hy + 0.6 * hry), 1.3 * hrx, 1.6 * hry, body.hair, PARSE["hair"])
    box = (slice(0, height), slice(0, width))
    y, x = grid(box)
    t = body.row_t(y)
    half = body.torso_half(t)
    torso = (t >= -0.02) & (t <= 1.05) & (np.abs(x - body.cx) <= half)
    u = (x - body.cx) / (2 * half) + 0.5
    canvas.paint(box, torso, body.skin * _limb_shade(x - body.cx, 2 * half), PARSE["neck"],
                 "torso", u, t)
    pelvis = (t >= 0.72) & (y <= body.hip_y + body.leg_radius) & (
        np.abs(x - body.cx) <= body.hip_half)
    canvas.paint(box, pelvis, body.pants, PARSE["pants"], "torso", u, t)
    for side in SIDES:
        hip, knee, ankle = body.leg(side)
        canvas.capsule(hip, knee, body.leg_radius, body.pants, PARSE["pants"], f"{side} upper leg")
        colour, label = body.pants, PARSE["pants"]
        if body.shorts:
            colour, label = body.skin, PARSE[f"{side}-leg"]
        canvas.capsule(knee, ankle, body.leg_radius, colour, label, f"{side} lower leg")
    canvas.capsule(np.array([hx, hy + 0.8 * hry]), np.array([hx, body.shoulder_y]), 0.5 * hrx,
                   body.skin, PARSE["neck"], "torso")
    canvas.ellipse((hx, hy), hrx, hry, body.skin, PARSE["face"], "head")
    box = box_around([(hx, hy)], 1.5 * hry + 1, height, width)
    y, x = grid(box)
    hair = ellipse(x, y, hx, hy - 0.12 * hry, 1.1 * hrx, hry) & (y < hy - 0.35 * hry)
    if body.hair_style == "bun":
        hair |= ellipse(x, y, hx, hy - 1.1 * hry, 0.5 * hrx, 0.4 * hry)
    canvas.paint(box, hair, body.hair, PARSE["hair"])
    if hrx >= 4:
        for side in SIDES:
            eye = body.points[f"{side[0].upper()}Eye"]
            canvas.ellipse(eye, 0.15 * hrx + 0.3, 0.15 * hry + 0.3, np.array([40.0, 30, 30]),
                           PARSE["face"])
