"""The arms in front of the garment: where the computed warp's torso is hidden.

A worn garment's torso lies behind the arms: an arm hangs beside it or a forearm crosses in
front of it. The spline of :mod:`gardiffmini.data.warp` spreads the torso over the body's
width whatever the arms do, so the warp hands the model garment where the photo shows an
arm, often bare skin: on ToyVITON's cpu test pairs, 41 % of the skin that an unpaired garment
bares lay under the computed warp's mask (``benchmarks/skin_under_warp.py``).

The arms are drawn from the keypoints the warp already reads (:func:`arm_mask`): each is a
band of half-width ``ARM_RADIUS`` shoulder widths along its polyline, shoulder -> elbow ->
wrist (:func:`arm_polyline`), running on ``HAND_REACH`` shoulder widths past the wrist for
the hand. ``warp_garment(..., arms_in_front=True)`` takes them out of the torso's mask before
the sleeves are laid along them.
"""

from __future__ import annotations

import torch

from gardiffmini.data.grids import pixel_grid
from gardiffmini.data.layout import KEYPOINT
from gardiffmini.data.sleeves import arm_length_of, polyline_frame

# In shoulder widths S (between the shoulder keypoints). ToyVITON draws arms 0.10-0.14 S
# across half (real upper arms: about 0.13 S); fitted with benchmarks/warp_iou.py --arms
# (IoU of m_w with the visible garment on 200 cpu test pairs: 0.691 -> 0.729 paired, newly
# bared skin under m_w: 42 % -> 12 %; book/results/warp-arms-cpu.json). A real hand reaches about 0.5 S past the wrist, but is
# narrower than the band.
ARM_RADIUS = 0.12
HAND_REACH = 0.2


def arm_polyline(keypoints: torch.Tensor, side: str) -> torch.Tensor:
    """Shoulder, elbow, wrist of one ``side`` (``"R"``, ``"L"``) of BODY_25 ``keypoints``,
    skipping undetected joints, (M + 1, 2); with neither elbow nor wrist, the arm hangs one
    pixel down the torso axis (``Neck -> MidHip``) from the shoulder."""
    joints = [f"{side}Shoulder", f"{side}Elbow", f"{side}Wrist"]
    arm = [keypoints[KEYPOINT[j], :2].float() for j in joints if keypoints[KEYPOINT[j], 2] > 0]
    if len(arm) == 1:
        torso = (keypoints[KEYPOINT["MidHip"], :2] - keypoints[KEYPOINT["Neck"], :2]).float()
        arm.append(arm[0] + torso / torso.norm().clamp_min(1e-6))
    return torch.stack(arm)


def arm_mask(keypoints: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The pixels of both arms, boolean ``(H, W)``, from BODY_25 ``keypoints`` (25, 3) in
    pixels: within ``ARM_RADIUS * S`` across each arm's polyline and from its shoulder to
    ``HAND_REACH * S`` past its end, ``S`` the distance between the shoulder keypoints. An arm
    whose shoulder is undetected is left out."""
    if keypoints.shape != (25, 3):
        raise ValueError(f"expected keypoints (25, 3), got {tuple(keypoints.shape)}")
    shoulders = keypoints[[KEYPOINT["RShoulder"], KEYPOINT["LShoulder"]]]
    if not bool((shoulders[:, 2] > 0).any()):
        return torch.zeros(height, width, dtype=torch.bool)
    shoulder_width = float((shoulders[1, :2] - shoulders[0, :2]).norm())
    points = pixel_grid(height, width)
    mask = torch.zeros(height * width, dtype=torch.bool)
    for side in ("R", "L"):
        if keypoints[KEYPOINT[f"{side}Shoulder"], 2] <= 0:
            continue
        arm = arm_polyline(keypoints, side).double()
        along, across = polyline_frame(points, arm)
        reach = float(arm_length_of(arm)) + HAND_REACH * shoulder_width
        mask |= (along >= 0) & (along <= reach) & (across.abs() <= ARM_RADIUS * shoulder_width)
    return mask.reshape(height, width)
