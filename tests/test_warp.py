"""The warp: TPS interpolation, identity, landmarks, and closeness to ToyVITON's warp."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import RELEASE_KEYPOINTS, tshirt_polygon
from PIL import Image, ImageDraw

from gardiffmini.data.grids import normalised, pixel_grid
from gardiffmini.data.layout import KEYPOINT
from gardiffmini.data.vitonhd import VitonHD
from gardiffmini.data.warp import (
    GARMENT_LANDMARKS,
    SHOULDER_EASE,
    garment_landmarks,
    paste_warped_garment,
    person_landmarks,
    tps_fit,
    tps_grid,
    tps_kernel,
    warp_garment,
)

KEYPOINTS = torch.tensor(RELEASE_KEYPOINTS, dtype=torch.float32)


def tshirt_mask() -> torch.Tensor:
    mask = Image.new("L", (96, 128), 0)
    ImageDraw.Draw(mask).polygon(tshirt_polygon(), fill=255)
    return (torch.tensor(list(mask.getdata()), dtype=torch.float32).reshape(1, 128, 96) > 127)


def test_kernel_is_r2_log_r2_and_zero_at_zero():
    distance = torch.tensor([0.0, 1.0, 2.0, 0.5])
    expected = torch.tensor([0.0, 0.0, 4 * math.log(4), 0.25 * math.log(0.25)])
    torch.testing.assert_close(tps_kernel(distance), expected)


def test_fit_interpolates_the_landmarks_exactly():
    generator = torch.Generator().manual_seed(0)
    src = torch.rand(2, 8, 2, generator=generator) * 90
    dst = src + torch.randn(2, 8, 2, generator=generator) * 5
    spline = tps_fit(src, dst)
    torch.testing.assert_close(spline(src), dst.double(), atol=1e-6, rtol=0)
    smooth = tps_fit(src, dst, regularization=1e4)  # regularized: no longer exact
    assert (smooth(src) - dst).abs().max() > 1e-3


def test_fit_reproduces_an_affine_map_with_zero_bending():
    src = torch.tensor([[0.0, 0.0], [10, 0], [0, 10], [10, 10], [5, 3]])
    matrix, shift = torch.tensor([[1.2, 0.3], [-0.1, 0.9]]), torch.tensor([4.0, -2.0])
    spline = tps_fit(src, src @ matrix + shift)
    torch.testing.assert_close(spline.weights, torch.zeros(5, 2, dtype=torch.float64), atol=1e-7,
                               rtol=0)
    points = torch.rand(20, 2, generator=torch.Generator().manual_seed(0)) * 10
    torch.testing.assert_close(spline(points).float(), points @ matrix + shift, atol=1e-4, rtol=0)


def test_identity_landmarks_give_the_identity_warp():
    src = torch.tensor([[3.0, 4.0], [40, 8], [20, 50], [44, 60], [10, 30]])
    grid = tps_grid(tps_fit(src, src), 64, 48)
    identity = F.affine_grid(torch.eye(2, 3)[None], [1, 1, 64, 48], align_corners=False)[0]
    torch.testing.assert_close(grid, identity, atol=1e-5, rtol=0)
    image = torch.rand(1, 3, 64, 48)
    torch.testing.assert_close(F.grid_sample(image, grid[None], align_corners=False), image,
                               atol=1e-4, rtol=0)


def test_fit_rejects_bad_landmarks():
    with pytest.raises(ValueError, match="K >= 3"):
        tps_fit(torch.zeros(2, 2), torch.zeros(2, 2))
    line = torch.tensor([[0.0, 0.0], [1, 1], [2, 2], [3, 3]])
    with pytest.raises(ValueError, match="singular"):
        tps_fit(line, line)


def test_garment_landmarks_of_a_tshirt():
    points = garment_landmarks(tshirt_mask())
    assert points.shape == (len(GARMENT_LANDMARKS), 2)
    neck, right_shoulder, left_shoulder, right_sleeve, left_sleeve, right_hem, left_hem, hem = (
        points.tolist()
    )
    assert hem == [48, 102] and right_hem == [30, 102] and left_hem == [66, 102]  # bottom row
    assert neck == [48, right_shoulder[1]] and right_shoulder[1] == left_shoulder[1]
    assert 22 <= neck[1] <= 42  # the shoulder line: below the collar, above the armpits
    assert right_shoulder[0] < 30 and left_shoulder[0] > 66  # the shoulders carry the sleeves
    assert right_sleeve[0] < right_shoulder[0] and right_sleeve[1] > right_shoulder[1]
    assert left_sleeve[0] > left_shoulder[0] and left_sleeve[1] > left_shoulder[1]
    batched = garment_landmarks(tshirt_mask()[None].repeat(2, 1, 1, 1))
    torch.testing.assert_close(batched, points.expand(2, -1, -1))
    with pytest.raises(ValueError, match="cloth_mask is empty"):
        garment_landmarks(torch.zeros(1, 8, 8))


def test_a_sleeveless_garment_repeats_its_shoulder_corners():
    mask = torch.zeros(1, 128, 96)
    mask[0, 30:100, 28:68] = 1
    points = garment_landmarks(mask)
    torch.testing.assert_close(points[3:5], points[1:3])
    assert points[1].tolist() == [28, 30] and points[7].tolist() == [47.5, 99]


def test_person_landmarks_sit_on_the_keypoints():
    garment = garment_landmarks(tshirt_mask())
    person = person_landmarks(KEYPOINTS, garment)
    assert person.shape == garment.shape
    neck = KEYPOINTS[KEYPOINT["Neck"], :2]
    torch.testing.assert_close(person[0], neck)
    for row, name in ((1, "RShoulder"), (2, "LShoulder")):
        eased = neck + (KEYPOINTS[KEYPOINT[name], :2] - neck) * (1 + SHOULDER_EASE)
        torch.testing.assert_close(person[row], eased)
    assert person[5, 0] < person[7, 0] < person[6, 0]  # hem corners either side of its centre
    assert person[7, 1] > neck[1] and person[3, 1] > person[1, 1]  # hem and sleeve below
    missing = KEYPOINTS.clone()
    missing[KEYPOINT["Neck"]] = 0
    with pytest.raises(ValueError, match="Neck"):
        person_landmarks(missing, garment)


def test_warp_garment_single_and_batched():
    mask = tshirt_mask().float()
    cloth = mask.expand(3, -1, -1) * -1.0 + (1 - mask) * 1.0  # black garment on white
    warped, warped_mask = warp_garment(cloth, mask, KEYPOINTS)
    assert warped.shape == (3, 128, 96) and warped_mask.shape == (1, 128, 96)
    assert set(warped_mask.unique().tolist()) == {0.0, 1.0}
    assert bool((warped[:, warped_mask[0] == 0] == 1).all())  # white outside m_w
    neck = KEYPOINTS[KEYPOINT["Neck"], :2].long()
    assert warped_mask[0, neck[1] + 5, neck[0]] == 1  # the garment covers the chest
    batch = warp_garment(cloth[None].repeat(2, 1, 1, 1), mask[None].repeat(2, 1, 1, 1),
                         KEYPOINTS[None].repeat(2, 1, 1))
    torch.testing.assert_close(batch[1][0], warped_mask)
    with pytest.raises(ValueError, match="keypoints"):
        warp_garment(cloth, mask, KEYPOINTS[:18])


def test_tps_warp_comes_close_to_toyviton_ground_truth(toyviton_root):
    # Measured with benchmarks/warp_iou.py: mean IoU 0.751 (median 0.757, min 0.623) on 200
    # cpu-size test pairs; 0.729 (median 0.764, min 0.505) on these 16 ci-size pairs.
    # Bounds a margin below: 0.65 on the mean, 0.45 on the worst pair.
    data = VitonHD(toyviton_root, "test", "paired", warp="given")
    ious = []
    for sample in data:
        _, mask = warp_garment(sample["cloth"], sample["cloth_mask"], sample["keypoints"])
        truth = sample["warped_mask"] > 0.5
        ious.append(float(((mask > 0.5) & truth).sum() / ((mask > 0.5) | truth).sum()))
    assert sum(ious) / len(ious) > 0.65
    assert min(ious) > 0.45


# ---- speed: the same warp, computed faster --------------------------------------------------


def test_separable_opening_equals_the_square_opening():
    from gardiffmini.data.warp import _opening

    mask = tshirt_mask()[0]
    for radius in (1, 4, 9):
        size = 2 * radius + 1
        image = mask[None, None].float()
        eroded = -F.max_pool2d(-image, size, stride=1, padding=radius)
        square = F.max_pool2d(eroded, size, stride=1, padding=radius)[0, 0] > 0.5
        assert torch.equal(_opening(mask, radius), square)


def test_lattice_grid_is_within_a_tenth_of_a_pixel_of_the_exact_grid():
    from gardiffmini.data.warp import grid_step

    garment = garment_landmarks(tshirt_mask())
    person, garment = person_landmarks(KEYPOINTS, garment), garment
    spline = tps_fit(person * 4, garment * 4, regularization=0.1 * 512 * 384)
    exact, lattice = tps_grid(spline, 512, 384), tps_grid(spline, 512, 384, grid_step(512, 384))
    assert grid_step(512, 384) == 4 and grid_step(128, 96) == 1
    pixels = (lattice - exact).abs() * torch.tensor([384, 512]) / 2
    assert pixels.max() < 0.1
    with pytest.raises(ValueError, match="step must be >= 1"):
        tps_grid(spline, 8, 8, step=0)


def test_nan_keypoints_are_named_as_such():
    mask = tshirt_mask().float()
    keypoints = KEYPOINTS.clone()
    keypoints[2, 0] = float("nan")
    with pytest.raises(ValueError, match="keypoints hold NaN or infinite values"):
        warp_garment(mask.expand(3, -1, -1), mask, keypoints)
    src = torch.tensor([[0.0, 0.0], [1, 0], [0, 1], [float("nan"), 2]])
    with pytest.raises(ValueError, match="tps_fit: src and dst must be finite"):
        tps_fit(src, src)


def test_pixel_grid_and_its_normalisation_for_grid_sample():
    points = pixel_grid(2, 3)
    assert points.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    grid = normalised(points, 2, 3).reshape(1, 2, 3, 2)
    # reading every pixel at its own centre returns the image: the identity map
    image = torch.arange(6.0).reshape(1, 1, 2, 3)
    torch.testing.assert_close(F.grid_sample(image, grid, align_corners=False), image)
    assert normalised(torch.tensor([[0.0, 0.0]]), 2, 3).tolist() == [[pytest.approx(-2 / 3), -0.5]]


def test_paste_warped_garment_takes_the_warp_inside_its_mask_and_the_image_outside():
    image = torch.zeros(2, 3, 4, 4)
    warped = torch.full((2, 3, 4, 4), -1.0)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2] = 1
    mask[1, :, :, 3] = 0.5  # a soft edge blends the two
    pasted = paste_warped_garment(image, warped, mask)
    assert pasted[0, :, :2].eq(-1).all() and pasted[0, :, 2:].eq(0).all()
    assert pasted[1, :, :, 3].eq(-0.5).all() and pasted[1, :, :, :3].eq(0).all()
    with pytest.raises(ValueError, match=r"paste_warped_garment: expected image and "
                                         r"warped_cloth \(B, 3, H, W\)"):
        paste_warped_garment(image, warped, mask[:, :, :2])
    with pytest.raises(ValueError, match="paste_warped_garment"):
        paste_warped_garment(image, warped[:1], mask)
