"""The baselines beside every result, the occluded subset and the unpaired colour match."""

import pytest
import torch
from imaging import IdentityVAE

from gardiffmini import baselines, metrics
from gardiffmini.data.layout import PARSE


def _batch():
    person = torch.full((1, 3, 4, 4), 0.5)
    agnostic = torch.zeros(1, 3, 4, 4)
    warped = torch.full((1, 3, 4, 4), -1.0)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    return {"person": person, "agnostic": agnostic, "warped_cloth": warped,
            "warped_mask": mask, "agnostic_mask": torch.ones(1, 1, 4, 4)}


def test_agnostic_and_warp_and_paste_by_hand():
    batch = _batch()
    torch.testing.assert_close(baselines.agnostic(batch), torch.full((1, 3, 4, 4), 0.5))
    pasted = baselines.warp_and_paste(batch)
    torch.testing.assert_close(pasted[..., :2, :], torch.zeros(1, 3, 2, 4))  # I_w = -1 -> 0
    torch.testing.assert_close(pasted[..., 2:, :], torch.full((1, 3, 2, 4), 0.5))  # I_a


def test_vae_round_trip_of_a_perfect_vae_is_the_photo():

    batch = _batch()
    torch.testing.assert_close(baselines.vae_round_trip(IdentityVAE(), batch),
                               batch["person"].add(1).div(2))


def test_occlusion_fraction_counts_garment_mask_pixels_showing_no_garment():
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1  # 8 pixels
    parse = torch.full((2, 4, 4), PARSE["upper-clothes"])
    parse[1, 0, :2] = PARSE["left-arm"]  # an arm over 2 of the 8
    fraction = baselines.occlusion_fraction(mask, parse)
    torch.testing.assert_close(fraction, torch.tensor([0.0, 0.25]))
    batch = {"warped_mask": mask, "parse": parse}
    assert baselines.occluded(batch).tolist() == [False, True]
    with pytest.raises(ValueError, match="parse"):
        baselines.occlusion_fraction(mask, parse[:, 0])


def test_colour_match_rate_by_hand():
    red, blue = torch.tensor([1.0, 0, 0]), torch.tensor([0, 0, 1.0])
    ones = torch.ones(2, 1, 2, 2)

    def flat(*colours):
        return torch.stack([c.view(3, 1, 1).expand(3, 2, 2) for c in colours])

    requested, original = flat(red, red), flat(blue, blue)
    results = flat(torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.1, 0.1, 0.8]))
    rate = metrics.colour_match_rate(results, ones, requested, ones, original, ones)
    assert rate == pytest.approx(0.5)  # the first result took the red, the second kept blue
    with pytest.raises(ValueError, match="results"):
        metrics.colour_match_rate(results * 2, ones, requested, ones, original, ones)
