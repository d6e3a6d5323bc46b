"""The sleeves of the warp: found on the flat garment, laid along the arm."""

from __future__ import annotations

import pytest
import torch
from conftest import RELEASE_KEYPOINTS
from test_warp import tshirt_mask

from gardiffmini.data.layout import KEYPOINT
from gardiffmini.data.sleeves import (
    SHORT_SLEEVE,
    SLEEVE_ARM_RATIO,
    SLEEVE_EASE,
    Sleeve,
    garment_sleeves,
    largest_part,
    polyline_frame,
    sleeve_grid,
    visible_sleeves,
)
from gardiffmini.data.warp import garment_landmarks, warp_garment

KEYPOINTS = torch.tensor(RELEASE_KEYPOINTS, dtype=torch.float32)


def test_largest_part_keeps_the_biggest_blob_and_drops_slivers():
    pixels = torch.zeros(20, 20, dtype=torch.bool)
    pixels[2:4, 2:4] = True  # 4 pixels
    pixels[10:15, 10:16] = True  # 30 pixels
    kept = largest_part(pixels, min_pixels=10)
    assert kept.sum() == 30 and bool(kept[12, 12]) and not bool(kept[2, 2])
    assert not largest_part(pixels, min_pixels=31).any()
    assert not largest_part(torch.zeros(5, 5, dtype=torch.bool), 1).any()


def test_polyline_frame_of_a_bent_arm():
    arm = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]], dtype=torch.float64)
    points = torch.tensor([[5.0, 2.0], [13.0, 5.0], [-4.0, 1.0], [10.0, 14.0]],
                          dtype=torch.float64)
    along, across = polyline_frame(points, arm)
    # beside the upper arm; beside the forearm (the quarter turn of "down" points left, so a
    # point to the right is negative); behind the shoulder; past the wrist
    torch.testing.assert_close(along, torch.tensor([5.0, 15.0, -4.0, 24.0], dtype=torch.float64))
    torch.testing.assert_close(across, torch.tensor([2.0, -3.0, 1.0, 0.0], dtype=torch.float64))


def test_sleeve_grid_lays_a_straight_sleeve_along_a_horizontal_arm():
    height, width = 100, 100
    # A sleeve hanging straight down from (10, 20), 30 px long; an arm 30 px long to the right.
    sleeve = Sleeve(torch.tensor([10.0, 20.0], dtype=torch.float64),
                    torch.tensor([0.0, 1.0], dtype=torch.float64), 30.0, 4.0)
    arm = torch.tensor([[50.0, 60.0], [80.0, 60.0]])
    garment_shoulders = 30.0 / SLEEVE_ARM_RATIO  # the sleeve covers the whole arm
    person_shoulders = garment_shoulders / SLEEVE_EASE  # across the arm at the garment's scale
    grid = sleeve_grid(sleeve, arm, garment_shoulders, person_shoulders, height, width)
    assert grid.shape == (height, width, 2)

    def pixel(x: int, y: int) -> list[float]:  # where the grid reads, in garment pixels
        return ((grid[y, x].double() + 1) * torch.tensor([width, height]) / 2 - 0.5).tolist()

    assert pixel(65, 60) == pytest.approx([10.0, 35.0], abs=1e-4)  # halfway down the sleeve
    # two pixels below the arm (its left, walking along it) -> two to the sleeve's left (+x)
    assert pixel(65, 62) == pytest.approx([8.0, 35.0], abs=1e-4)
    assert pixel(50, 60) == pytest.approx([10.0, 20.0], abs=1e-4)  # the shoulder: the start


def test_visible_sleeves_of_a_tshirt_and_of_a_top_without_them():
    mask = tshirt_mask()[0]
    landmarks = garment_landmarks(mask)
    visible = visible_sleeves(mask, landmarks[1], landmarks[2])
    assert set(visible) == {"R", "L"}
    assert bool(visible["R"][44, 13]) and bool(visible["L"][44, 83])  # the sleeves' tips
    assert not bool(visible["R"][60, 48])  # not the torso
    box = torch.zeros(128, 96, dtype=torch.bool)
    box[30:100, 28:68] = True
    assert visible_sleeves(box, torch.tensor([28.0, 30.0]), torch.tensor([67.0, 30.0])) == {}


def sleeves_of(mask: torch.Tensor) -> dict:
    landmarks = garment_landmarks(mask)
    return garment_sleeves(visible_sleeves(mask, landmarks[1], landmarks[2]), landmarks)


def test_garment_sleeves_visible_short_or_none():
    tshirt = sleeves_of(tshirt_mask()[0])
    assert set(tshirt) == {"R", "L"}
    right, left = tshirt["R"], tshirt["L"]
    assert right.axis[0] < 0 < left.axis[0]  # spread outward, away from the shoulders
    assert right.length > 10 and right.half_width > 0
    # a box: shoulders as wide as the hem, no sleeve shows -> short sleeves lying over it
    box = torch.zeros(128, 96, dtype=torch.bool)
    box[30:100, 28:68] = True
    short = sleeves_of(box)
    shoulders = 67 - 28
    assert set(short) == {"R", "L"}
    assert short["R"].length == pytest.approx(SHORT_SLEEVE * shoulders)
    assert short["R"].axis.tolist() == [0.0, 1.0] and short["R"].start[0] > 28
    # a top whose straps are much narrower than its hem: sleeveless
    tank = box.clone()
    tank[30:45, 28:36] = False
    tank[30:45, 60:68] = False
    assert sleeves_of(tank) == {}


def test_warp_puts_the_sleeve_on_the_upper_arm():
    mask = tshirt_mask().float()
    cloth = mask.expand(3, -1, -1) * -1.0 + (1 - mask) * 1.0
    _, warped_mask = warp_garment(cloth, mask, KEYPOINTS)
    for side in ("R", "L"):
        shoulder = KEYPOINTS[KEYPOINT[f"{side}Shoulder"], :2]
        elbow = KEYPOINTS[KEYPOINT[f"{side}Elbow"], :2]
        x, y = (shoulder + 0.3 * (elbow - shoulder)).round().long().tolist()
        assert warped_mask[0, y, x] == 1, side
