"""ToyVITON's unpaired truth, its loading, the warp protocol, and the skin metric."""

from pathlib import Path

import numpy as np
import pytest
import torch
from imaging import IdentityVAE

from gardiffmini import get_profile, metrics
from gardiffmini.baselines import vae_round_trip
from gardiffmini.data import toyviton
from gardiffmini.data.datasets import (
    WARPS,
    default_warp,
    is_toyviton,
    loader_warp,
    open_dataset,
)
from gardiffmini.data.layout import PARSE, TRUTH_FILES, WARP_FILES, pair_stem, truth_path
from gardiffmini.data.vitonhd import VitonHD

CI = get_profile("ci")


def _render(person: int, garment: int | None = None) -> dict:
    rng = toyviton.sample_rng(0, "test", person)
    other = None if garment is None else toyviton.sample_rng(0, "test", garment)
    return toyviton.render_sample(rng, CI.height, CI.width, garment_rng=other)


def test_the_truth_is_the_person_wearing_the_other_garment() -> None:
    for person, garment in ((0, 1), (2, 5), (3, 4)):
        own, truth, other = _render(person), _render(person, garment), _render(garment)
        # the requested garment: its in-shop image and attributes are the other pair's
        np.testing.assert_array_equal(truth["cloth"], other["cloth"])
        assert truth["attributes"] == other["attributes"]
        # the same person: keypoints, and every pixel that neither garment nor arm touches
        np.testing.assert_array_equal(truth["keypoints"], own["keypoints"])
        dressed = np.isin(own["parse"], [PARSE["upper-clothes"], PARSE["left-arm"],
                                         PARSE["right-arm"], PARSE["neck"]])
        dressed |= np.isin(truth["parse"], [PARSE["upper-clothes"], PARSE["left-arm"],
                                            PARSE["right-arm"], PARSE["neck"]])
        untouched = ~dressed
        assert untouched.mean() > 0.5
        np.testing.assert_array_equal(truth["person"][untouched], own["person"][untouched])
        # and not the person's own picture
        assert (truth["person"] != own["person"]).any()


def test_without_another_garment_the_render_is_unchanged() -> None:
    first, again = _render(1), _render(1)
    for key in ("person", "cloth", "parse", "warped_cloth"):
        np.testing.assert_array_equal(first[key], again[key])


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("truth") / "toyviton"
    return toyviton.generate(root, CI, seed=0, n_train=2, n_test=5, workers=1, progress=False)


def test_generate_writes_the_truth_of_every_unpaired_pair(toy: Path) -> None:
    unpaired = [line.split() for line in (toy / "test_pairs_unpaired.txt").read_text().splitlines()]
    assert len(unpaired) == 5
    for person, cloth in unpaired:
        for folder in TRUTH_FILES:
            assert truth_path(toy, "test", folder, person, cloth).is_file()
        for folder in WARP_FILES:
            assert (toy / "test" / folder / WARP_FILES[folder].format(
                stem=pair_stem(person, cloth))).is_file()
    # what the generator wrote is what it renders
    person, cloth = unpaired[0]
    expected = _render(int(person[:5]), int(cloth[:5]))
    data = open_dataset(toy, "test", "unpaired", size=CI.image_size)
    item = data[0]
    parse = item["truth_parse"].numpy()
    np.testing.assert_array_equal(parse, expected["parse"])
    pixels = (item["truth"].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(pixels - expected["person"]).mean() < 3  # JPEG at quality 95


def test_a_toyviton_without_the_truth_is_written_again(toy: Path, tmp_path: Path) -> None:
    root = tmp_path / "toy"
    toyviton.generate(root, CI, seed=0, n_train=2, n_test=3, workers=1, progress=False)
    victim = next((root / "test" / "image-tryon").iterdir())
    victim.unlink()
    toyviton.generate(root, CI, seed=0, n_train=2, n_test=3, workers=1, progress=False)
    assert victim.is_file()


def test_paired_truth_is_the_photo_and_a_release_has_no_unpaired_truth(
        toy: Path, release_root: Path) -> None:
    paired = open_dataset(toy, "test", "paired", size=CI.image_size)[1]
    torch.testing.assert_close(paired["truth"], paired["person"])
    torch.testing.assert_close(paired["truth_parse"], paired["parse"])
    release = VitonHD(release_root, "test", "unpaired")
    assert not release.has_truth
    assert "truth" not in release[0]


def test_the_warp_protocols(toy: Path, release_root: Path) -> None:
    assert WARPS == ("computed", "carved", "oracle")
    assert is_toyviton(toy) and not is_toyviton(release_root)
    assert loader_warp(toy, "computed") == "tps"  # ToyVITON's cloth-warp is the oracle
    assert loader_warp(release_root, "computed") == "auto"  # a release's are computed ones
    assert default_warp(toy) == "carved"  # the book's protocol
    assert default_warp(release_root) == "computed"  # a release's written warps come first
    assert loader_warp(toy, "oracle") == "given"
    assert loader_warp(toy, "carved") == loader_warp(release_root, "carved") == "tps-arms"
    with pytest.raises(ValueError, match="warp must be one of"):
        loader_warp(toy, "exact")
    computed = open_dataset(toy, "test", "unpaired", size=CI.image_size, warp="computed")
    oracle = open_dataset(toy, "test", "unpaired", size=CI.image_size, warp="oracle")
    carved = open_dataset(toy, "test", "unpaired", size=CI.image_size)  # the default
    assert carved.warp == "tps-arms" and computed.warp == "tps"
    assert not any(computed.given_warp) and all(oracle.given_warp)
    a, b = computed[0], oracle[0]
    assert (a["warped_mask"] != b["warped_mask"]).any()  # the spline is not the truth
    iou = (a["warped_mask"] * b["warped_mask"]).sum() / (a["warped_mask"] + b["warped_mask"]
                                                         ).clamp(max=1).sum()
    assert iou > 0.4  # but it lies on the same body


def test_newly_bared_skin_and_its_error_by_hand() -> None:
    own = torch.full((2, 4, 4), PARSE["upper-clothes"])
    own[:, :, 3] = PARSE["background"]
    truth_parse = own.clone()
    truth_parse[0, 0, :] = PARSE["left-arm"]  # 3 pixels covered before (the 4th is background)
    truth_parse[1, 1, 1] = PARSE["neck"]  # one pixel of bare torso
    bared = metrics.newly_bared_skin(own, truth_parse)
    assert bared.shape == (2, 1, 4, 4)
    assert bared[0, 0, 0].tolist() == [1, 1, 1, 0] and bared[0].sum() == 3
    assert bared[1].sum() == 1
    truth = torch.full((2, 3, 4, 4), 0.5)
    pred = truth.clone()
    pred[0, 0, 0, :2] = 0.8  # red off by 0.3 on two of the three bared pixels
    error = metrics.skin_error(pred, truth, bared, min_pixels=2)
    assert error[0].item() == pytest.approx(0.3 * 2 / 3 / 3)
    assert error[1].isnan()  # one pixel is below min_pixels: no case
    with pytest.raises(ValueError, match="same shape"):
        metrics.newly_bared_skin(own, truth_parse[:, :3])
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        metrics.label_region(own[0], (PARSE["neck"],))


def test_vae_round_trip_reconstructs_the_truth() -> None:

    person = torch.zeros(1, 3, 8, 8)
    truth = torch.full((1, 3, 8, 8), 0.5)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    batch = {"person": person, "truth": truth, "agnostic_mask": mask}
    out = vae_round_trip(IdentityVAE(), batch)
    torch.testing.assert_close(out, truth.add(1).div(2))
