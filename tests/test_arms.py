"""The arms drawn from the keypoints, and the warp whose torso lies behind them."""

from __future__ import annotations

import pytest
import torch
from test_warp import KEYPOINTS, tshirt_mask

from gardiffmini import metrics
from gardiffmini.data.arms import ARM_RADIUS, HAND_REACH, arm_mask
from gardiffmini.data.layout import GARMENT_LABELS, KEYPOINT
from gardiffmini.data.vitonhd import VitonHD
from gardiffmini.data.warp import warp_garment


def straight_arms() -> torch.Tensor:
    """Shoulders 50 px apart at y = 10; the right arm hangs straight down x = 10 to y = 50."""
    keypoints = torch.zeros(25, 3)
    for name, x, y in (("RShoulder", 10, 10), ("RElbow", 10, 30), ("RWrist", 10, 50),
                       ("LShoulder", 60, 10), ("Neck", 35, 10), ("MidHip", 35, 70)):
        keypoints[KEYPOINT[name]] = torch.tensor([x, y, 1.0])
    return keypoints


def test_an_arm_is_a_band_along_its_polyline_by_hand() -> None:
    mask = arm_mask(straight_arms(), 80, 80)
    radius, reach = ARM_RADIUS * 50, 40 + HAND_REACH * 50  # 6 px across, 50 px down to y = 60
    assert radius == pytest.approx(6) and reach == pytest.approx(50)
    assert mask[40, 10] and mask[40, 16] and not mask[40, 17] and mask[40, 4] and not mask[40, 3]
    assert mask[60, 10] and not mask[61, 10]  # the hand: 10 px past the wrist
    assert mask[10, 10] and not mask[9, 10]  # from the shoulder joint on, not above it
    # the left arm has no elbow nor wrist: it hangs one pixel down from its shoulder
    assert mask[10, 60] and mask[20, 60] and not mask[22, 60]
    assert mask.shape == (80, 80) and mask.dtype == torch.bool


def test_an_undetected_shoulder_leaves_its_arm_out() -> None:
    keypoints = straight_arms()
    keypoints[KEYPOINT["LShoulder"], 2] = 0
    mask = arm_mask(keypoints, 80, 80)
    assert mask[40, 10] and not mask[15, 60]
    keypoints[KEYPOINT["RShoulder"], 2] = 0
    assert not arm_mask(keypoints, 80, 80).any()
    with pytest.raises(ValueError, match=r"expected keypoints \(25, 3\)"):
        arm_mask(keypoints[:18], 80, 80)


def test_the_torso_goes_behind_the_arms_and_the_sleeves_over_them() -> None:
    mask = tshirt_mask().float()
    cloth = mask.expand(3, -1, -1) * -1.0 + (1 - mask)
    _, plain = warp_garment(cloth, mask, KEYPOINTS)
    warped, carved = warp_garment(cloth, mask, KEYPOINTS, arms_in_front=True)
    plain, carved, arms = plain[0] > 0.5, carved[0] > 0.5, arm_mask(KEYPOINTS, 128, 96)
    assert (carved <= plain).all()  # only taken out
    assert (carved >= plain & ~arms).all()  # ... and only on the arms
    assert (plain & arms & ~carved).sum() > 20  # the torso under an arm is gone
    assert (carved & arms).sum() > 20  # where the t-shirt's sleeves are laid, they stay
    assert bool((warped[:, ~carved] == 1).all())  # white outside m_w


def test_on_toyviton_the_carved_warp_fits_the_visible_garment_and_spares_the_skin(
        toyviton_root) -> None:
    # Measured on these 16 ci pairs: IoU of m_w with the visible garment 0.657 -> 0.667
    # paired; of the 721 pixels of skin the unpaired garments bare, 320 -> 106 lie under m_w
    # (at cpu, benchmarks/warp_iou.py --arms on 200 pairs: 0.691 -> 0.729 and 42 % -> 12 %).
    ious, skin_under = {}, {}
    for warp in ("tps", "tps-arms"):
        paired = VitonHD(toyviton_root, "test", "paired", warp=warp)
        ious[warp] = sum(mask_iou(s["warped_mask"], garment(s["parse"])) for s in paired) / 16
        unpaired = VitonHD(toyviton_root, "test", "unpaired", warp=warp)
        skin_under[warp] = sum(
            int((metrics.newly_bared_skin(s["parse"][None], s["truth_parse"][None])[0].bool()
                 & (s["warped_mask"] > 0.5)).sum()) for s in unpaired)
    assert ious["tps-arms"] > ious["tps"] + 0.005
    assert skin_under["tps-arms"] < skin_under["tps"] / 2


def garment(parse: torch.Tensor) -> torch.Tensor:
    return metrics.label_region(parse[None], GARMENT_LABELS)[0] > 0.5


def mask_iou(mask: torch.Tensor, other: torch.Tensor) -> float:
    mask = mask > 0.5
    return float((mask & other).sum() / (mask | other).sum())
