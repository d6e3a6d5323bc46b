"""OpenPose keypoints of the person in a try-on photo, read, converted and checked.

Both layouts of OpenPose's ``pose_keypoints_2d`` are read: BODY_25 (VITON-HD; 75 values)
and COCO-18 (DressCode-style data; 54 values), converted to BODY_25 with ``MidHip`` the
middle of the two hips (where both are detected) and the feet undetected. Every keypoint
is ``(x, y, confidence)`` in pixels of the photo; confidence 0 means undetected.

**Which person.** OpenPose lists everyone it sees in ``people[]``, in no meaningful order.
The person tried on is the one whose detected keypoints span the largest box (the subject
of a try-on photo fills the frame; a bystander is smaller), ties going to the higher total
confidence, then to the one listed first.

**Checks.** Values must be numbers (not strings), finite, confidences in [0, 1], detected
keypoints inside the photo, and the torso upright (``Neck -> MidHip`` more vertical than
horizontal, which catches x and y swapped). Each failure names the file.
"""

from __future__ import annotations

import json
import math
from numbers import Real
from pathlib import Path

import torch

from gardiffmini.data.layout import BODY_25, COCO_18, KEYPOINT, VitonHDLayoutError

LAYOUTS = {3 * len(BODY_25): "BODY_25", 3 * len(COCO_18): "COCO-18"}
# how far (pixels) a detected keypoint may lie outside the photo: OpenPose's rounding
OUTSIDE_TOLERANCE = 1.0


def coco18_to_body25(points: torch.Tensor) -> torch.Tensor:
    """COCO-18 keypoints (18, 3) as BODY_25 (25, 3): ``MidHip`` is the middle of the hips
    where both are detected (with the lower confidence), the feet are undetected."""
    body = torch.zeros(len(BODY_25), 3, dtype=points.dtype)
    for index, name in enumerate(COCO_18):
        body[KEYPOINT[name]] = points[index]
    right, left = points[COCO_18.index("RHip")], points[COCO_18.index("LHip")]
    if right[2] > 0 and left[2] > 0:
        body[KEYPOINT["MidHip"], :2] = (right[:2] + left[:2]) / 2
        body[KEYPOINT["MidHip"], 2] = torch.minimum(right[2], left[2])
    return body


def _numbers(flat: object, path: Path, person: int) -> list[float]:
    if not isinstance(flat, list):
        raise VitonHDLayoutError(
            f"{path}: people[{person}].pose_keypoints_2d is a {type(flat).__name__}: "
            "expected a list of numbers x, y, confidence"
        )
    bad = [value for value in flat if isinstance(value, bool) or not isinstance(value, Real)]
    if bad:
        raise VitonHDLayoutError(
            f"{path}: people[{person}].pose_keypoints_2d holds {type(bad[0]).__name__} "
            f"{bad[0]!r}: expected numbers x, y, confidence"
        )
    if len(flat) not in LAYOUTS:
        raise VitonHDLayoutError(
            f"{path}: people[{person}] has {len(flat)} pose values: expected 75 (BODY_25) "
            "or 54 (COCO-18), x, y, confidence per keypoint"
        )
    if not all(math.isfinite(value) for value in flat):
        raise VitonHDLayoutError(
            f"{path}: people[{person}] has non-finite keypoint values (NaN or infinity): "
            "expected finite numbers; an undetected keypoint is 0, 0, 0"
        )
    return [float(value) for value in flat]


def _span(points: torch.Tensor) -> tuple[float, float]:
    detected = points[points[:, 2] > 0]
    if len(detected) == 0:
        return (0.0, 0.0)
    extent = detected[:, :2].max(dim=0).values - detected[:, :2].min(dim=0).values
    return (float(extent[0] * extent[1]), float(detected[:, 2].sum()))


def choose_person(people: list[torch.Tensor]) -> int:
    """The index of the person tried on: largest box of detected keypoints, then the higher
    total confidence, then the first listed."""
    spans = [_span(points) for points in people]
    return max(range(len(people)), key=lambda i: (spans[i], -i))


def check_keypoints(points: torch.Tensor, path: Path, size: tuple[int, int]) -> None:
    """Check BODY_25 ``points`` (25, 3) of a photo of ``size`` ``(width, height)``."""
    width, height = size
    confidence = points[:, 2]
    if bool((confidence < 0).any() or (confidence > 1).any()):
        raise VitonHDLayoutError(
            f"{path}: keypoint confidences span [{float(confidence.min()):g}, "
            f"{float(confidence.max()):g}]: expected values in [0, 1]"
        )
    detected = points[confidence > 0]
    low, high = -OUTSIDE_TOLERANCE, torch.tensor([width, height]) + OUTSIDE_TOLERANCE
    outside = ((detected[:, :2] < low) | (detected[:, :2] > high)).any(dim=1)
    if bool(outside.any()):
        x, y = detected[outside][0, :2].tolist()
        raise VitonHDLayoutError(
            f"{path}: keypoint ({x:g}, {y:g}) lies outside the {width}x{height} (WxH) photo: "
            "expected x in [0, width] and y in [0, height] (are x and y swapped, or the "
            "keypoints of a photo of another size?)"
        )
    neck, hip = points[KEYPOINT["Neck"]], points[KEYPOINT["MidHip"]]
    if neck[2] > 0 and hip[2] > 0:
        dx, dy = (hip[:2] - neck[:2]).abs().tolist()
        if dx > dy:
            raise VitonHDLayoutError(
                f"{path}: the torso (Neck -> MidHip) runs sideways ({dx:g} px across, {dy:g} "
                "down): expected an upright person; are x and y swapped?"
            )


def read_keypoints(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """BODY_25 keypoints (25, 3) of the person tried on in an OpenPose JSON; zeros if none.

    ``size``: the photo's ``(width, height)``; with it, the keypoints are checked
    (:func:`check_keypoints`).
    """
    try:
        document = json.loads(path.read_bytes().decode("utf-8-sig"))
        people = document["people"]
    except FileNotFoundError:
        raise VitonHDLayoutError(f"{path} not found: the pair file names it") from None
    except (ValueError, KeyError, TypeError) as error:
        raise VitonHDLayoutError(
            f"{path} is not an OpenPose JSON: expected people[].pose_keypoints_2d ({error})"
        ) from error
    if not isinstance(people, list):
        raise VitonHDLayoutError(f"{path}: 'people' is not a list: expected OpenPose's people[]")
    candidates = []
    for index, person in enumerate(people):
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            raise VitonHDLayoutError(
                f"{path}: people[{index}] has no pose_keypoints_2d: expected an OpenPose JSON"
            )
        flat = _numbers(person["pose_keypoints_2d"], path, index)
        points = torch.tensor(flat, dtype=torch.float32).reshape(-1, 3)
        candidates.append(coco18_to_body25(points) if len(points) == len(COCO_18) else points)
    if not candidates:
        return torch.zeros(len(BODY_25), 3)
    points = candidates[choose_person(candidates)]
    if size is not None:
        check_keypoints(points, path, size)
    return points
