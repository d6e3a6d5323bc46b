"""The sleeves of the warp: each sleeve of the in-shop garment laid along the person's arm.

A thin-plate spline (:mod:`gardiffmini.data.warp`) bends the whole garment smoothly through
a handful of landmarks. That suits the torso, not a sleeve: an arm bends at the elbow and
hangs, reaches or crosses the torso; a spline held by a sleeve's end alone folds the sleeve
or cuts it short, and a short sleeve that lies over the torso in-shop has no landmark at
all. On ToyVITON the spline alone warped long sleeves with a mask IoU of 0.68 against the
ground truth, lost short sleeves, and a t-shirt tried on unpaired read as a tank top. So
each sleeve is warped on its own, as a straight band laid along the arm, the way a sleeve
is sewn and worn:

- **on the garment** (:func:`garment_sleeves`): where a sleeve shows beside the torso
  (:func:`visible_sleeves`), its axis ``u`` is the principal direction of its pixels,
  pointing away from the shoulder corner, and it runs from the corner to its farthest pixel
  (:func:`sleeve_band`); a sleeve folded over the torso hangs from the corner,
  ``SHORT_SLEEVE`` shoulder widths long; shoulders much narrower than the hem are straps;
- **on the person**: the arm's polyline (shoulder, elbow, wrist keypoints) from the shoulder
  joint, down which the sleeve reaches ``L_p = L_g / (SLEEVE_ARM_RATIO * S_g)`` arm lengths
  (``L_g`` its length, ``S_g`` the garment's shoulder width);
- every person pixel ``p`` at distance ``s`` along the polyline and ``d`` across it
  (:func:`polyline_frame`) reads the garment at
  ``start + (s L_g / L_p) u + (d S_g / (SLEEVE_EASE S_p)) n`` (:func:`sleeve_grid`), ``n``
  the axis turned a quarter and ``S_p`` the person's eased shoulder width. Like the spline,
  the map runs backwards, person to garment.

The sleeve is read through its band (:meth:`Sleeve.mask`), so a person pixel is sleeve only
where its garment point is; the sleeves are laid over the torso, as the arms are in front
of it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from gardiffmini.data.grids import normalised, pixel_grid

# In shoulder widths S. Fitted to ToyVITON with benchmarks/warp_iou.py (long sleeves: mask
# IoU 0.68 -> 0.73); the lengths are also those of real clothes (a long sleeve about 1.2-1.3
# S, a short one about 0.4 S, straps well inside the hem's width).
SLEEVE_MIN = 0.15  # a visible sleeve has at least (SLEEVE_MIN * S) ** 2 pixels
SLEEVE_REACH = 0.15  # ... and reaches this far sideways beyond its shoulder corner
SLEEVELESS_SHOULDERS = 0.95  # shoulders narrower than this times the hem: straps, no sleeves
SHORT_SLEEVE = 0.4  # the length of a sleeve that lies over the torso in-shop
SLEEVE_HALF_WIDTH = 0.12
SLEEVE_ARM_RATIO = 1.2  # a sleeve this long covers the whole arm
SLEEVE_EASE = 1.8  # a worn sleeve is this much wider than the flat one scaled like the shoulders
MAX_ARM_FRACTION = 1.1  # a sleeve ends at most this many arm lengths down the arm


class Sleeve(NamedTuple):
    """One sleeve of the flat garment, a straight band: ``start`` and unit ``axis`` ``(x, y)``
    of its centre line, its ``length`` and ``half_width``, in pixels."""

    start: torch.Tensor
    axis: torch.Tensor
    length: float
    half_width: float

    def mask(self, garment: torch.Tensor) -> torch.Tensor:
        """The band's pixels of the boolean garment mask ``garment`` (H, W)."""
        offsets = pixel_grid(*garment.shape).reshape(*garment.shape, 2) - self.start
        along = offsets @ self.axis
        across = offsets @ _quarter_turn(self.axis)
        return (garment & (along >= 0) & (along <= self.length)
                & (across.abs() <= self.half_width))


def _quarter_turn(vector: torch.Tensor) -> torch.Tensor:
    """``(x, y) -> (-y, x)``: the across direction of a band along ``vector``."""
    return torch.stack([-vector[..., 1], vector[..., 0]], dim=-1)


def largest_part(pixels: torch.Tensor, min_pixels: float) -> torch.Tensor:
    """The largest 8-connected part of the boolean mask ``pixels`` (H, W); all ``False`` if
    it has fewer than ``min_pixels`` pixels (the slivers a garment's neckline leaves)."""
    labels, count = ndimage.label(pixels.numpy(), structure=np.ones((3, 3)))
    if count == 0:
        return torch.zeros_like(pixels)
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.max() < min_pixels:
        return torch.zeros_like(pixels)
    return torch.from_numpy(labels == sizes.argmax() + 1)


def visible_sleeves(mask: torch.Tensor, right_shoulder: torch.Tensor,
                    left_shoulder: torch.Tensor) -> dict[str, torch.Tensor]:
    """The pixels (H, W) of each sleeve of the boolean garment ``mask`` that shows beside the
    torso, by the wearer's side (``"R"``: the image's left), given its shoulder corners.

    A sleeve hangs or spreads outward from its shoulder corner while the torso stays inside
    the shoulders, so a sleeve shows as the largest 8-connected part of the mask below the
    shoulder line and outside the vertical through that corner, with at least
    ``(SLEEVE_MIN * S) ** 2`` pixels, that starts at the shoulder line and reaches at least
    ``SLEEVE_REACH * S`` beyond the corner (:func:`_is_sleeve`): a sleeveless top is wider
    at the armpits than between its straps, but not by that much, and a short sleeve that
    lies over the torso does not show at all.
    """
    rows = torch.arange(mask.shape[0])[:, None]
    columns = torch.arange(mask.shape[1])[None, :]
    shoulders = float(left_shoulder[0] - right_shoulder[0])
    sides = {
        "R": mask & (columns < right_shoulder[0]) & (rows >= right_shoulder[1]),
        "L": mask & (columns > left_shoulder[0]) & (rows >= left_shoulder[1]),
    }
    corners = {"R": right_shoulder, "L": left_shoulder}
    parts = {side: largest_part(pixels, (SLEEVE_MIN * shoulders) ** 2)
             for side, pixels in sides.items()}
    return {side: pixels for side, pixels in parts.items()
            if bool(pixels.any()) and _is_sleeve(pixels, corners[side], shoulders)}


def _is_sleeve(pixels: torch.Tensor, corner: torch.Tensor, shoulders: float) -> bool:
    """Whether the part ``pixels`` (H, W) beside the shoulder ``corner`` is a sleeve: it starts
    within ``SLEEVE_MIN * S`` below the shoulder line (a sleeve is sewn on there, a torso's
    side below straps starts lower) and reaches ``SLEEVE_REACH * S`` beyond the corner."""
    ys, xs = torch.nonzero(pixels, as_tuple=True)
    starts_at_shoulder = float(ys.min() - corner[1]) <= SLEEVE_MIN * shoulders
    return starts_at_shoulder and float((xs - corner[0]).abs().max()) >= SLEEVE_REACH * shoulders


def garment_sleeves(visible: dict[str, torch.Tensor], landmarks: torch.Tensor
                    ) -> dict[str, Sleeve]:
    """The sleeves of a garment, by the wearer's side, given the parts of them that show
    beside its torso, ``visible`` (:func:`visible_sleeves`), and its landmarks
    (:func:`~gardiffmini.data.warp.garment_landmarks`).

    None where the shoulders are narrower than ``SLEEVELESS_SHOULDERS`` times the hem (the
    straps of a sleeveless top). Otherwise each side's sleeve is :func:`sleeve_band` of its
    visible part where it shows, and else a short sleeve lying over the torso: a band
    ``SHORT_SLEEVE * S`` long hanging straight down from its shoulder corner, just inside it.
    """
    neck, right_shoulder, left_shoulder, _, _, right_hem, left_hem, _ = landmarks.double()
    shoulders = float(left_shoulder[0] - right_shoulder[0])
    if shoulders < SLEEVELESS_SHOULDERS * float(left_hem[0] - right_hem[0]):
        return {}
    half_width = SLEEVE_HALF_WIDTH * shoulders
    down = torch.tensor([0.0, 1.0], dtype=torch.float64)
    sleeves = {}
    for side, corner in (("R", right_shoulder), ("L", left_shoulder)):
        if side in visible:
            sleeves[side] = sleeve_band(visible[side], corner, neck, shoulders)
        else:
            inward = torch.sign(neck[0] - corner[0])
            start = corner + torch.stack([inward * half_width, torch.zeros_like(inward)])
            sleeves[side] = Sleeve(start, down, SHORT_SLEEVE * shoulders, half_width)
    return sleeves


def sleeve_band(outside: torch.Tensor, shoulder: torch.Tensor, neck: torch.Tensor,
                shoulder_width: float) -> Sleeve:
    """The band of one sleeve from the part of it that shows outside the torso, ``outside``
    (H, W), its shoulder corner and the neck ``(x, y)``, and the shoulder width ``S``.

    In-shop, a sleeve lies partly over the torso, so only its outer edge is seen for sure.
    The axis is the principal direction of the ``outside`` pixels (the eigenvector of their
    covariance with the larger eigenvalue), turned to point away from ``shoulder``. The band
    is ``SLEEVE_HALF_WIDTH * S`` wide on either side of its centre line, which runs that far
    inside the outermost pixel (away from the neck); it starts at ``shoulder`` projected
    onto the centre line and ends at the farthest pixel along it, plus half a pixel.
    """
    ys, xs = torch.nonzero(outside, as_tuple=True)
    points = torch.stack([xs, ys], dim=-1).double()
    centre = points.mean(dim=0)
    offsets = points - centre
    _, vectors = torch.linalg.eigh(offsets.T @ offsets)
    axis = vectors[:, -1]
    shoulder = shoulder.double()
    if torch.dot(centre - shoulder, axis) < 0:
        axis = -axis
    normal = _quarter_turn(axis)
    inward = 1.0 if torch.dot(neck.double() - centre, normal) > 0 else -1.0
    half_width = SLEEVE_HALF_WIDTH * shoulder_width
    outermost = (offsets @ normal * inward).min() * inward
    line = centre + (outermost + inward * half_width) * normal
    start = line + torch.dot(shoulder - line, axis) * axis
    return Sleeve(start, axis, float(((points - start) @ axis).max()) + 0.5, half_width)


def polyline_frame(points: torch.Tensor, polyline: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance along and signed distance across ``polyline`` (M + 1, 2) of ``points`` (N, 2).

    Each point belongs to its nearest segment; ``along`` is the arc length to its foot there
    and ``across`` its distance from the foot, signed by the side of the segment it is on
    (positive along the segment's quarter-turned direction). The first
    segment runs on backwards and the last forwards (``along`` below 0 or past the end), so
    that what lies beyond the ends is not folded onto them.
    """
    starts, ends = polyline[:-1], polyline[1:]
    vectors = ends - starts
    lengths = vectors.norm(dim=-1).clamp_min(1e-6)
    directions = vectors / lengths[:, None]
    offsets = points[:, None, :] - starts[None]  # (N, M, 2)
    foot = (offsets * directions).sum(-1)  # (N, M)
    low = torch.zeros_like(lengths)
    high = lengths.clone()
    low[0], high[-1] = -float("inf"), float("inf")
    foot = torch.maximum(torch.minimum(foot, high), low)
    distance = (offsets - foot[..., None] * directions).norm(dim=-1)
    nearest = distance.argmin(dim=-1, keepdim=True)
    before = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)[:-1]])
    along = (before + foot).gather(-1, nearest)[:, 0]
    side = torch.sign((offsets * _quarter_turn(directions)).sum(-1))
    across = (side * distance).gather(-1, nearest)[:, 0]
    return along, across


def arm_length_of(arm: torch.Tensor) -> torch.Tensor:
    """The length of the polyline ``arm`` (M + 1, 2)."""
    return (arm[1:] - arm[:-1]).norm(dim=-1).sum()


def sleeve_grid(sleeve: Sleeve, arm: torch.Tensor, garment_shoulders: float,
                person_shoulders: float, height: int, width: int) -> torch.Tensor:
    """The ``grid_sample`` grid (H, W, 2) that lays ``sleeve`` along ``arm`` (M + 1, 2), the
    polyline from the shoulder joint, with the shoulder widths ``S_g`` and ``S_p`` in pixels.

    ``p -> start + (s L_g / L_p) u + (d S_g / S_p) n`` with ``s, d`` from
    :func:`polyline_frame`; see the module's docstring. Normalised for ``align_corners=False``
    like :func:`~gardiffmini.data.warp.tps_grid`.
    """
    arm = arm.double()
    fraction = min(sleeve.length / (SLEEVE_ARM_RATIO * garment_shoulders), MAX_ARM_FRACTION)
    worn_length = max(fraction * float(arm_length_of(arm)), 1.0)
    widen = garment_shoulders / (person_shoulders * SLEEVE_EASE)
    along, across = polyline_frame(pixel_grid(height, width), arm)
    source = (sleeve.start + (along * sleeve.length / worn_length)[:, None] * sleeve.axis
              + (across * widen)[:, None] * _quarter_turn(sleeve.axis))
    return normalised(source, height, width).reshape(height, width, 2)
