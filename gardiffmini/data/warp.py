"""The thin-plate-spline (TPS) warp of the in-shop garment onto the person: I_w and m_w.

GarDiff conditions on the garment already warped onto the body, ``I_w``, and its mask
``m_w`` (the paper takes them from a GP-VTON-style warping module). The classical warp is a
thin-plate spline fitted to a few correspondences: landmarks of the garment, read from the
geometry of its mask, and the same landmarks placed on the person from the OpenPose
keypoints. Every point is ``(x, y)`` in pixels, ``x`` to the right and ``y`` down, and the
person's right side (``RShoulder``) is on the left of a front-facing photo.

The warp runs *backwards*: for every pixel ``p`` of the output (the person's frame) the
spline ``f`` says where in the garment image to read, ``I_w(p) = I_c(f(p))``; so ``f`` is
fitted from person landmarks to garment landmarks, and ``grid_sample`` does the reading.

The spline warps the torso only. Held by a sleeve's end alone, it folds a sleeve or cuts it
short, and a short sleeve that lies over the torso in-shop has no landmark at all: the
sleeves are laid along the arms on their own (:mod:`gardiffmini.data.sleeves`), over the
torso, as the arms are in front of it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from gardiffmini.data.arms import arm_mask, arm_polyline
from gardiffmini.data.grids import normalised, pixel_grid
from gardiffmini.data.layout import KEYPOINT
from gardiffmini.data.sleeves import arm_length_of, garment_sleeves, sleeve_grid, visible_sleeves

GARMENT_LANDMARKS = (
    "neck", "right shoulder", "left shoulder", "right sleeve end", "left sleeve end",
    "right hem", "left hem", "hem centre",
)
# Garment geometry (fractions of the garment) and body proportions (see person_landmarks).
# Tuned on ToyVITON with benchmarks/warp_iou.py (mean mask IoU 0.723 on 200 cpu test pairs,
# 0.751 since the sleeves are laid along the arms: long sleeves 0.677 -> 0.728, short 0.761
# -> 0.785);
# SHOULDER_EASE, HIP_EASE and GARMENT_TORSO_RATIO are also plausible for real clothes;
# SLEEVE_RATIO (real sleeves: about 1.3) and SMOOTHING are fitted to ToyVITON.
SHOULDER_BAND = 0.12
SLEEVE_WIDTH = 0.1
SHOULDER_EASE = 0.25
HIP_EASE = 0.5
GARMENT_TORSO_RATIO = 1.25
SLEEVE_RATIO = 1.8
SMOOTHING = 0.1
GRID_POINTS = 96  # lattice points across the short side where tps_grid interpolates


class ThinPlateSpline(NamedTuple):
    """``f(p) = a_0 + a_x x + a_y y + sum_k w_k U(|p - c_k|)``, one per batch element.

    ``control``: the points ``c_k`` (..., K, 2); ``weights``: ``w_k`` (..., K, 2);
    ``affine``: the rows ``a_0, a_x, a_y`` (..., 3, 2).
    """

    control: torch.Tensor
    weights: torch.Tensor
    affine: torch.Tensor

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """Evaluate ``f`` at ``points`` (..., N, 2) -> (..., N, 2)."""
        points = points.to(self.control.dtype)
        radial = tps_kernel(torch.cdist(points, self.control)) @ self.weights
        return homogeneous(points) @ self.affine + radial


def tps_kernel(distance: torch.Tensor) -> torch.Tensor:
    """The TPS radial basis ``U(r) = r^2 log r^2``, with ``U(0) = 0``."""
    r2 = distance.square()
    return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-30)), torch.zeros_like(r2))


def homogeneous(points: torch.Tensor) -> torch.Tensor:
    """``(x, y) -> (1, x, y)``: the affine part's basis, (..., N, 2) -> (..., N, 3)."""
    return torch.cat([torch.ones_like(points[..., :1]), points], dim=-1)


def tps_fit(
    src: torch.Tensor, dst: torch.Tensor, regularization: float = 0.0
) -> ThinPlateSpline:
    """Fit the thin-plate spline ``f`` with ``f(src_k) = dst_k``.

    With ``K_ij = U(|src_i - src_j|)`` and ``P = [1, x, y]`` of ``src``, the weights ``W``
    and the affine part ``A`` solve the linear system (Bookstein 1989)::

        [ K + lambda I   P ] [ W ]   [ dst ]
        [ P^T            0 ] [ A ] = [  0  ]

    The second row keeps ``f`` affine at infinity. ``lambda = 0`` interpolates exactly;
    ``lambda > 0`` trades exactness for smoothness. ``src``, ``dst``: (..., K, 2), K >= 3
    points not all on one line. Solved in float64 (pixel coordinates make ``U`` large).
    """
    if src.shape != dst.shape or src.shape[-1] != 2 or src.shape[-2] < 3:
        raise ValueError(
            f"tps_fit expects src and dst of one shape (..., K, 2) with K >= 3, "
            f"got {tuple(src.shape)} and {tuple(dst.shape)}"
        )
    if not (bool(torch.isfinite(src).all()) and bool(torch.isfinite(dst).all())):
        raise ValueError("tps_fit: src and dst must be finite (no NaN or infinite points)")
    src, dst = src.double(), dst.double()
    n = src.shape[-2]
    kernel = tps_kernel(torch.cdist(src, src)) + regularization * torch.eye(n, dtype=src.dtype)
    basis = homogeneous(src)
    zeros = torch.zeros(*src.shape[:-2], 3, 3, dtype=src.dtype)
    system = torch.cat(
        [torch.cat([kernel, basis], dim=-1), torch.cat([basis.transpose(-1, -2), zeros], -1)],
        dim=-2,
    )
    rhs = torch.cat([dst, torch.zeros(*dst.shape[:-2], 3, 2, dtype=dst.dtype)], dim=-2)
    solution, info = torch.linalg.solve_ex(system, rhs)
    if bool((info != 0).any()) or not bool(torch.isfinite(solution).all()):
        raise ValueError("tps_fit: singular system; are the src points distinct and not collinear?")
    return ThinPlateSpline(src, solution[..., :n, :], solution[..., n:, :])


def tps_grid(spline: ThinPlateSpline, height: int, width: int, step: int = 1) -> torch.Tensor:
    """The sampling grid of ``grid_sample``: ``f`` at every output pixel, normalised.

    ``f(p)`` is in pixels of a source image of the same ``height x width``; ``grid_sample``
    (``align_corners=False``) wants ``2 (x + 1/2) / width - 1`` and likewise for ``y``.
    With ``step > 1``, ``f`` is evaluated on a lattice about ``step`` pixels apart that
    includes the first and last row and column, and interpolated bilinearly in between:
    exact for the affine part, and ``f`` is smooth, so the error is a small fraction of a
    pixel (see :func:`grid_step`). Returns (..., height, width, 2) float32.
    """
    if step < 1:
        raise ValueError(f"tps_grid: step must be >= 1, got {step}")
    if step == 1:
        rows, columns = height, width
        source = spline(pixel_grid(height, width))
    else:
        rows, columns = math.ceil((height - 1) / step) + 1, math.ceil((width - 1) / step) + 1
        ys, xs = torch.meshgrid(
            torch.linspace(0, height - 1, rows, dtype=torch.float64),
            torch.linspace(0, width - 1, columns, dtype=torch.float64),
            indexing="ij",
        )
        source = spline(torch.stack([xs, ys], dim=-1).reshape(-1, 2))
    batch = source.shape[:-2]
    source = source.reshape(-1, rows, columns, 2)
    if step > 1:
        source = F.interpolate(source.permute(0, 3, 1, 2), size=(height, width),
                               mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
    return normalised(source, height, width).reshape(*batch, height, width, 2)


def grid_step(height: int, width: int) -> int:
    """The lattice step of :func:`tps_grid` for a warp of ``height x width``: exact (1) up to
    a short side of 2 * ``GRID_POINTS``, then about ``GRID_POINTS`` lattice points across
    the short side (measured error of the warp's grid: under 0.05 px at 512x384 and
    under 0.1 px at 1024x768, against ``step = 1``)."""
    return max(1, min(height, width) // GRID_POINTS)


def _single_mask(cloth_mask: torch.Tensor) -> torch.Tensor:
    mask = cloth_mask[0] if cloth_mask.dim() == 3 else cloth_mask
    if mask.dim() != 2:
        raise ValueError(f"cloth_mask must be (H, W) or (1, H, W), got {tuple(cloth_mask.shape)}")
    if not bool((mask > 0.5).any()):
        raise ValueError("cloth_mask is empty: expected the garment's pixels set to 1")
    return mask > 0.5


def _run_around(row: torch.Tensor, x: int) -> tuple[int, int]:
    """First and last column of the run of ``True`` in ``row`` that contains column ``x``."""
    left = right = x
    while left > 0 and row[left - 1]:
        left -= 1
    while right < len(row) - 1 and row[right + 1]:
        right += 1
    return left, right


def _square_max(image: torch.Tensor, radius: int) -> torch.Tensor:
    """Maximum over a square of side ``2 radius + 1`` (pixels outside ignored), as a row
    maximum then a column maximum: the square is separable, so this is exact and costs
    ``2 (2 radius + 1)`` comparisons per pixel instead of ``(2 radius + 1) ** 2``."""
    size = 2 * radius + 1
    rows = F.max_pool2d(image, (1, size), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, (size, 1), stride=1, padding=(radius, 0))


def _opening(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Morphological opening by a square of side ``2 radius + 1``: removes every part of the
    mask thinner than the square (the sleeves) and keeps the rest (the torso)."""
    image = mask[None, None].float()
    eroded = -_square_max(-image, radius)
    return _square_max(eroded, radius)[0, 0] > 0.5


def _sleeve_end(sleeve: torch.Tensor | None, shoulder: torch.Tensor) -> torch.Tensor:
    """The pixel of ``sleeve`` farthest from ``shoulder``; the shoulder itself if no sleeve."""
    if sleeve is None:
        return shoulder
    ys, xs = torch.nonzero(sleeve, as_tuple=True)
    pixels = torch.stack([xs, ys], dim=-1).float()
    return pixels[(pixels - shoulder).norm(dim=-1).argmax()]


def _torso(mask: torch.Tensor) -> torch.Tensor:
    """The garment's torso: its boolean ``mask`` (H, W) opened by a square a fraction
    ``SLEEVE_WIDTH`` of its width, which removes the thin sleeves."""
    xs = torch.nonzero(mask, as_tuple=True)[1]
    torso = _opening(mask, max(1, round(SLEEVE_WIDTH * float(xs.max() - xs.min() + 1))))
    if not bool(torso.any()):
        raise ValueError("cloth_mask has no torso: expected a garment, not a thin strip")
    return torso


def garment_landmarks(cloth_mask: torch.Tensor) -> torch.Tensor:
    """The garment's landmarks (:data:`GARMENT_LANDMARKS`) from its mask's rows and columns.

    An opening of the mask by a square a fraction ``SLEEVE_WIDTH`` of the garment's width
    removes thin parts and keeps the torso. On the torso: the shoulder line is the run of
    columns whose top edge stays within ``SHOULDER_BAND`` (of the garment's height) of the
    highest point; its ends are the shoulder corners, its middle the centre line, and the
    neck sits on the centre line at the shoulders' height (where OpenPose puts ``Neck``).
    The hem is the bottom of the centre line, its corners the ends of the run there of the
    mask without its visible sleeves (:func:`~gardiffmini.data.sleeves.visible_sleeves`: a
    sleeve that hangs against the torso survives the opening). A sleeve end is the visible
    sleeve's pixel farthest from its shoulder corner; a garment without visible sleeves gets
    its shoulder corner again.
    ``cloth_mask``: (H, W) or (1, H, W) -> (K, 2) ``(x, y)`` pixels; (B, 1, H, W) -> (B, K, 2).
    """
    if cloth_mask.dim() == 4:
        return torch.stack([garment_landmarks(mask) for mask in cloth_mask])
    return _garment_geometry(_single_mask(cloth_mask))[0]


def _garment_geometry(mask: torch.Tensor
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """:func:`garment_landmarks` of the boolean ``mask`` (H, W), with what it finds on the
    way: the visible sleeves (:func:`~gardiffmini.data.sleeves.visible_sleeves`) and the
    mask without them."""
    height = mask.shape[0]
    torso = _torso(mask)
    rows = torch.arange(height)[:, None].expand_as(torso)
    top = torch.where(torso, rows, height).min(dim=0).values  # first torso row per column
    torso_rows = torch.nonzero(torso)[:, 0]
    rise = SHOULDER_BAND * float(torso_rows.max() - torso_rows.min() + 1)
    band = torch.nonzero(top <= top.min() + rise)[:, 0]
    right_x, left_x = int(band.min()), int(band.max())
    centre = (right_x + left_x) // 2
    right_shoulder = torch.tensor([right_x, top[right_x]], dtype=torch.float32)
    left_shoulder = torch.tensor([left_x, top[left_x]], dtype=torch.float32)
    hem_y = int(torch.nonzero(torso[:, centre])[-1, 0])
    sleeves = visible_sleeves(mask, right_shoulder, left_shoulder)
    body = mask & ~torch.stack([*sleeves.values(), torch.zeros_like(mask)]).any(dim=0)
    hem_left, hem_right = _run_around(body[hem_y], centre)
    landmarks = torch.stack([
        torch.tensor([(right_x + left_x) / 2, (right_shoulder[1] + left_shoulder[1]) / 2]),
        right_shoulder,
        left_shoulder,
        _sleeve_end(sleeves.get("R"), right_shoulder),
        _sleeve_end(sleeves.get("L"), left_shoulder),
        torch.tensor([hem_left, hem_y], dtype=torch.float32),
        torch.tensor([hem_right, hem_y], dtype=torch.float32),
        torch.tensor([(right_x + left_x) / 2, hem_y], dtype=torch.float32),
    ])
    return landmarks, sleeves, body


def _along(polyline: list[torch.Tensor], length: torch.Tensor) -> torch.Tensor:
    """The point ``length`` pixels along ``polyline``, continuing past its last point."""
    for start, end in zip(polyline[:-1], polyline[1:], strict=True):
        segment = (end - start).norm()
        if length <= segment or end is polyline[-1]:
            return start + (end - start) / segment.clamp_min(1e-6) * length
        length = length - segment
    return polyline[-1]


def person_landmarks(keypoints: torch.Tensor, garment: torch.Tensor) -> torch.Tensor:
    """The garment's landmarks placed on the person, from BODY_25 ``keypoints`` (25, 3).

    With ``S`` the garment's shoulder width (from ``garment``, the output of
    :func:`garment_landmarks`) and body proportions that hold for real clothes too:

    - neck -> ``Neck``; shoulder corners -> ``RShoulder``/``LShoulder`` moved outward from
      ``Neck`` by ``SHOULDER_EASE`` (a seam sits outside the joint);
    - hem centre -> down the torso axis ``Neck -> MidHip`` at ``t = (hem depth) /
      (GARMENT_TORSO_RATIO * S)`` torso lengths (``t = 1``: the hips);
    - hem corners -> across that axis by the body's half-width at ``t``, interpolated
      between the eased shoulders (``t = 0``) and the hips widened by ``HIP_EASE`` (``t = 1``);
    - sleeve ends -> along the arm (shoulder -> elbow -> wrist) by the fraction
      ``sleeve length / (SLEEVE_RATIO * S)`` of its length.

    (B, 25, 3) keypoints and (B, K, 2) garment landmarks give (B, K, 2).
    """
    if keypoints.dim() == 3:
        pairs = zip(keypoints, garment, strict=True)
        return torch.stack([person_landmarks(k, g) for k, g in pairs])
    if keypoints.shape != (25, 3) or garment.shape != (len(GARMENT_LANDMARKS), 2):
        raise ValueError(
            f"expected keypoints (25, 3) and garment landmarks ({len(GARMENT_LANDMARKS)}, 2), "
            f"got {tuple(keypoints.shape)} and {tuple(garment.shape)}"
        )
    needed = ("Neck", "RShoulder", "LShoulder", "MidHip", "RHip", "LHip")
    missing = [name for name in needed if keypoints[KEYPOINT[name], 2] <= 0]
    if missing:
        raise ValueError(f"keypoints {missing} are undetected (confidence 0): expected {needed}")
    point = {name: keypoints[KEYPOINT[name], :2].float() for name in needed}
    g_neck, g_rshoulder, g_lshoulder, g_rsleeve, g_lsleeve, _, _, g_hem = garment.float()
    shoulder_width = (g_lshoulder - g_rshoulder).norm()
    neck = point["Neck"]
    right_shoulder = neck + (point["RShoulder"] - neck) * (1 + SHOULDER_EASE)
    left_shoulder = neck + (point["LShoulder"] - neck) * (1 + SHOULDER_EASE)
    torso = point["MidHip"] - neck
    down = torso / torso.norm().clamp_min(1e-6)
    across = torch.stack([down[1], -down[0]])  # image left -> right when upright
    t = (g_hem[1] - g_neck[1]) / (GARMENT_TORSO_RATIO * shoulder_width)
    shoulder_half = (left_shoulder - right_shoulder).norm() / 2
    hip_half = (point["LHip"] - point["RHip"]).norm() / 2 * (1 + HIP_EASE)
    hem_half = shoulder_half + t * (hip_half - shoulder_half)
    hem = neck + t * torso

    def sleeve_end(side: str, g_sleeve: torch.Tensor, g_shoulder: torch.Tensor):
        arm = arm_polyline(keypoints, side)
        fraction = (g_sleeve - g_shoulder).norm() / (SLEEVE_RATIO * shoulder_width)
        return _along(list(arm), fraction * arm_length_of(arm))

    return torch.stack([
        neck,
        right_shoulder,
        left_shoulder,
        sleeve_end("R", g_rsleeve, g_rshoulder),
        sleeve_end("L", g_lsleeve, g_lshoulder),
        hem - across * hem_half,
        hem + across * hem_half,
        hem,
    ])


def _distinct(person: torch.Tensor, garment: torch.Tensor, min_distance: float = 1.0):
    """Drop landmark pairs whose person point repeats an earlier one (a sleeveless garment's
    sleeve end sits on its shoulder corner): TPS needs distinct control points."""
    keep = [0]
    for k in range(1, len(person)):
        if bool(((person[keep] - person[k]).norm(dim=-1) >= min_distance).all()):
            keep.append(k)
    return person[keep], garment[keep]


def _read(image: torch.Tensor, mask: torch.Tensor, grid: torch.Tensor
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (C, H, W) and the boolean ``mask`` (H, W) read through ``grid`` (H, W, 2)."""
    read = F.grid_sample(image[None], grid[None].to(image.dtype), align_corners=False)[0]
    inside = F.grid_sample(mask[None, None].to(image.dtype), grid[None].to(image.dtype),
                           align_corners=False)[0] > 0.5
    return read, inside


def _warp_one(cloth: torch.Tensor, cloth_mask: torch.Tensor, keypoints: torch.Tensor,
              regularization: float, arms_in_front: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`warp_garment` of one garment: the torso by TPS (behind the arms where
    ``arms_in_front``), each sleeve laid over it along its arm
    (:mod:`gardiffmini.data.sleeves`); the image and the boolean mask (1, H, W)."""
    height, width = cloth.shape[-2:]
    mask = _single_mask(cloth_mask)
    garment, visible, torso = _garment_geometry(mask)
    person = person_landmarks(keypoints, garment)
    spline = tps_fit(*_distinct(person, garment), regularization)
    warped, warped_mask = _read(cloth, torso, tps_grid(spline, height, width,
                                                       grid_step(height, width)))
    if arms_in_front:
        warped_mask = warped_mask & ~arm_mask(keypoints, height, width)
    shoulders = {"garment": float((garment[2] - garment[1]).norm()),
                 "person": float((person[2] - person[1]).norm())}
    for side, sleeve in garment_sleeves(visible, garment).items():
        grid = sleeve_grid(sleeve, arm_polyline(keypoints, side), shoulders["garment"],
                           shoulders["person"], height, width)
        read, inside = _read(cloth, sleeve.mask(mask), grid)
        warped = torch.where(inside, read, warped)
        warped_mask = warped_mask | inside
    return warped, warped_mask


def warp_garment(
    cloth: torch.Tensor,
    cloth_mask: torch.Tensor,
    keypoints: torch.Tensor,
    smoothing: float | None = None,
    background: float = 1.0,
    arms_in_front: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp the in-shop garment onto the person: ``I_w, m_w``.

    The torso: fit the TPS ``f`` from the garment's landmarks on the person
    (:func:`person_landmarks`) to its landmarks on the garment (:func:`garment_landmarks`),
    then read ``I_w(p) = I_c(f(p))`` and ``m_w(p) = [m_c(f(p)) > 0.5]`` with
    ``grid_sample``, ``m_c`` the garment's mask without its sleeves. The spline is
    regularized with ``lambda = smoothing * H * W`` (default ``SMOOTHING``): a few
    landmarks from keypoints are approximate, and an exact interpolant folds the garment
    when an arm crosses the torso. The sleeves
    (:func:`~gardiffmini.data.sleeves.garment_sleeves`): each unrolled along
    its arm (:func:`~gardiffmini.data.sleeves.sleeve_grid`) and laid over the torso. Outside
    ``m_w`` the warped garment is ``background`` (white).
    ``cloth``: (3, H, W) or (B, 3, H, W); ``cloth_mask``: (1, H, W) or (B, 1, H, W);
    ``keypoints``: BODY_25 (25, 3) or (B, 25, 3) in pixels of the same ``H x W``.
    """
    single = cloth.dim() == 3
    if single:
        cloth, cloth_mask, keypoints = cloth[None], cloth_mask[None], keypoints[None]
    if cloth.dim() != 4 or cloth_mask.shape != (cloth.shape[0], 1, *cloth.shape[2:]):
        raise ValueError(
            f"expected cloth (B, 3, H, W) and cloth_mask (B, 1, H, W) of one size, "
            f"got {tuple(cloth.shape)} and {tuple(cloth_mask.shape)}"
        )
    if keypoints.shape != (cloth.shape[0], 25, 3):
        raise ValueError(f"expected keypoints (B, 25, 3), got {tuple(keypoints.shape)}")
    if not bool(torch.isfinite(keypoints).all()):
        raise ValueError("keypoints hold NaN or infinite values: expected finite (x, y, "
                         "confidence), an undetected keypoint being (0, 0, 0)")
    height, width = cloth.shape[-2:]
    regularization = (SMOOTHING if smoothing is None else smoothing) * height * width
    parts = [_warp_one(*item, regularization, arms_in_front)
             for item in zip(cloth, cloth_mask, keypoints, strict=True)]
    warped = torch.stack([image for image, _ in parts])
    warped_mask = torch.stack([mask for _, mask in parts]).to(cloth.dtype)
    warped = warped * warped_mask + background * (1 - warped_mask)
    return (warped[0], warped_mask[0]) if single else (warped, warped_mask)


def paste_warped_garment(image: torch.Tensor, warped_cloth: torch.Tensor,
                         warped_mask: torch.Tensor) -> torch.Tensor:
    """``m_w * I_w + (1 - m_w) * image``: the warped garment pasted into ``image`` (the agnostic
    image, for warp + paste; the skin-primed one, for the recipe's ``paste_warp``), in the
    range of its inputs. ``image`` and ``warped_cloth`` (B, 3, H, W), ``warped_mask``
    (B, 1, H, W)."""
    if image.shape != warped_cloth.shape or warped_mask.shape != (image.shape[0], 1,
                                                                   *image.shape[2:]):
        raise ValueError(f"paste_warped_garment: expected image and warped_cloth (B, 3, H, W) "
                         f"and warped_mask (B, 1, H, W) of one size, got {tuple(image.shape)}, "
                         f"{tuple(warped_cloth.shape)} and {tuple(warped_mask.shape)}")
    return warped_mask * warped_cloth + (1 - warped_mask) * image
