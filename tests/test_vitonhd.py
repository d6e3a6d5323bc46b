"""The VITON-HD loader on a release-like folder and on ToyVITON, and its errors on bad data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYPOINTS, RELEASE_NAMES
from PIL import Image
from torch.utils.data import DataLoader

from gardiffmini.data import layout
from gardiffmini.data.vitonhd import VitonHD, VitonHDLayoutError, mask_array, read_pairs
from gardiffmini.profiles import get_profile

CI = get_profile("ci")

IMAGE_KEYS = ("person", "agnostic", "cloth", "warped_cloth", "pose", "densepose")
MASK_KEYS = ("agnostic_mask", "cloth_mask", "warped_mask")


def assert_sample(sample: dict, height: int, width: int) -> None:
    for key in IMAGE_KEYS:
        assert sample[key].shape == (3, height, width), key
        assert sample[key].dtype == torch.float32, key
        assert -1 <= sample[key].min() and sample[key].max() <= 1, key
    for key in MASK_KEYS:
        assert sample[key].shape == (1, height, width), key
        assert set(sample[key].unique().tolist()) <= {0.0, 1.0}, key
    assert sample["parse"].shape == (height, width) and sample["parse"].dtype == torch.int64
    assert sample["keypoints"].shape == (25, 3)
    assert isinstance(sample["person_name"], str) and isinstance(sample["cloth_name"], str)


# ---- a folder that looks like the real release ---------------------------------------------


def test_release_unpaired_uses_the_tps_warp_and_resizes(release_root):
    data = VitonHD(release_root, "test", "unpaired", size=CI, pairs_file="test_pairs.txt")
    assert len(data) == len(RELEASE_NAMES) and data.given_warp == [False] * len(data)
    sample = data[0]
    assert_sample(sample, 64, 48)
    assert (sample["person_name"], sample["cloth_name"]) == ("00001_00.jpg", "00002_00.jpg")
    assert sample["tag"] == "unpaired"  # the GP-VTON third column
    assert sample["warped_mask"].sum() > 0.2 * sample["cloth_mask"].sum()
    expected = torch.tensor(RELEASE_KEYPOINTS, dtype=torch.float32) * torch.tensor([0.5, 0.5, 1])
    torch.testing.assert_close(sample["keypoints"], expected)


def test_release_paired_native_size_and_two_column_pairs(release_root):
    data = VitonHD(release_root, "train", "paired", check_images=True)
    sample = data[2]
    assert_sample(sample, 128, 96)
    assert sample["cloth_name"] == sample["person_name"] == "00003_00.jpg"
    assert sample["tag"] == ""
    assert sample["keypoints"][1].tolist() == [48, 36, pytest.approx(0.9)]  # Neck, 2 px lower


def test_paired_takes_the_persons_own_garment_whatever_the_second_column(release_root):
    data = VitonHD(release_root, "test", "paired", pairs_file="test_pairs.txt")
    assert [p.cloth for p in data.pairs] == [p.person for p in data.pairs]


def test_palette_parse_maps_are_read_by_index(release_root):
    path = layout.person_path(release_root, "train", "image-parse-v3", RELEASE_NAMES[0])
    assert Image.open(path).mode == "P"
    parse = VitonHD(release_root, "train")[0]["parse"]
    assert set(parse.unique().tolist()) == {0, *(layout.PARSE[n] for n in ("face", "upper-clothes",
                                                                              "pants"))}


def test_jpeg_mask_noise_is_thresholded(release_root):
    path = layout.cloth_path(release_root, "train", "cloth-mask", RELEASE_NAMES[0])
    raw = np.asarray(Image.open(path))
    assert not set(np.unique(raw).tolist()) <= {0, 255}  # compression noise is there
    mask = VitonHD(release_root, "train")[0]["cloth_mask"][0]
    assert mask.tolist() == (torch.from_numpy(raw.astype(np.float32)) > 127.5).float().tolist()


def test_mask_array_accepts_grey_rgb_and_rejects_colour(tmp_path):
    grey = np.zeros((20, 20, 3), np.uint8)
    grey[5:15, 5:15] = 250
    assert mask_array(Image.fromarray(grey), tmp_path / "m.png").max() == pytest.approx(250 / 255)
    colour = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    with pytest.raises(VitonHDLayoutError, match="colour image in a mask's place"):
        mask_array(Image.fromarray(colour), tmp_path / "m.png")


def test_batches_with_the_default_collate(release_root):
    data = VitonHD(release_root, "test", "unpaired", size=(32, 24), pairs_file="test_pairs.txt")
    batch = next(iter(DataLoader(data, batch_size=2)))
    assert batch["person"].shape == (2, 3, 32, 24) and batch["keypoints"].shape == (2, 25, 3)
    assert batch["cloth_name"] == ["00002_00.jpg", "00003_00.jpg"]


def test_describe_and_repr(release_root):
    data = VitonHD(release_root, "test", "unpaired", size=CI, pairs_file="test_pairs.txt")
    assert "3 pairs" in data.describe() and "3 by TPS" in data.describe()
    assert "pairs=3" in repr(data) and "'unpaired'" in repr(data)


def test_read_pairs_two_and_three_columns(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a.jpg b.jpg\n\nc.jpg d.jpg paired\n")
    assert [(p.person, p.cloth, p.tag) for p in read_pairs(path)] == [
        ("a.jpg", "b.jpg", ""), ("c.jpg", "d.jpg", "paired")
    ]


# ---- bad input: each raises VitonHDLayoutError naming the file -----------------------------


def test_bad_pair_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a.jpg b.jpg\na.jpg\n")
    with pytest.raises(VitonHDLayoutError, match=r"pairs.txt, line 2: expected 2 or 3 columns"):
        read_pairs(path)


def test_missing_root(tmp_path):
    with pytest.raises(VitonHDLayoutError, match="nowhere is not a folder"):
        VitonHD(tmp_path / "nowhere")


def test_missing_folder(release_root):
    for path in (release_root / "test" / "cloth-mask").iterdir():
        path.unlink()
    (release_root / "test" / "cloth-mask").rmdir()
    with pytest.raises(VitonHDLayoutError, match=r"test/cloth-mask is missing"):
        VitonHD(release_root, "test", "unpaired", pairs_file="test_pairs.txt")


def test_missing_pair_file(release_root):
    (release_root / "test_pairs.txt").unlink()
    with pytest.raises(VitonHDLayoutError, match="test_pairs_unpaired.txt not found: expected "
                       "the test unpaired pairs in test_pairs_unpaired.txt or test_pairs.txt"):
        VitonHD(release_root, "test", "unpaired")


def test_given_warp_needs_the_cloth_warp_folder(release_root):
    with pytest.raises(VitonHDLayoutError, match=r"train/cloth-warp is missing"):
        VitonHD(release_root, "train", warp="given")


def test_pair_naming_a_missing_image(release_root):
    path = layout.cloth_path(release_root, "test", "cloth", RELEASE_NAMES[2])
    path.unlink()
    with pytest.raises(VitonHDLayoutError, match=f"{path} not found: .*test_pairs.txt names it"):
        VitonHD(release_root, "test", "unpaired", pairs_file="test_pairs.txt")


def test_unreadable_image(release_root):
    path = layout.person_path(release_root, "train", "agnostic-v3.2", RELEASE_NAMES[1])
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(VitonHDLayoutError, match=f"{path} is unreadable or truncated"):
        VitonHD(release_root, "train")


def test_truncated_image_fails_when_decoded(release_root):
    path = layout.person_path(release_root, "train", "image", RELEASE_NAMES[1])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    data = VitonHD(release_root, "train")  # headers are intact: the default check passes
    with pytest.raises(VitonHDLayoutError, match=f"{path} is unreadable or truncated"):
        data[1]
    with pytest.raises(VitonHDLayoutError, match=f"{path} is unreadable or truncated"):
        VitonHD(release_root, "train", check_images=True)


def test_colour_photo_in_a_masks_place(release_root):
    photo = layout.person_path(release_root, "train", "image", RELEASE_NAMES[1])
    path = layout.cloth_path(release_root, "train", "cloth-mask", RELEASE_NAMES[1])
    path.write_bytes(photo.read_bytes())
    data = VitonHD(release_root, "train")
    with pytest.raises(VitonHDLayoutError, match=f"{path} is a colour image in a mask's place"):
        data[1]
    with pytest.raises(VitonHDLayoutError, match=f"{path} is a colour image in a mask's place"):
        VitonHD(release_root, "train", check_images=True)


def test_grey_photo_in_a_masks_place(release_root):
    path = layout.person_path(release_root, "train", "agnostic-mask", RELEASE_NAMES[0])
    ramp = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (128, 1))
    Image.fromarray(ramp).save(path)
    with pytest.raises(VitonHDLayoutError, match=f"{path} is not near-binary"):
        VitonHD(release_root, "train")


def test_images_of_mismatched_sizes(release_root):
    path = layout.person_path(release_root, "train", "image-densepose", RELEASE_NAMES[2])
    Image.open(path).resize((48, 64)).save(path)
    with pytest.raises(VitonHDLayoutError, match=f"{path} is 48x64 .* expected every image"):
        VitonHD(release_root, "train")


def test_broken_keypoints_json(release_root):
    path = layout.person_path(release_root, "train", "openpose_json", RELEASE_NAMES[1])
    path.write_text('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}')
    with pytest.raises(VitonHDLayoutError,
                       match=f"{path}: people.0. has 3 pose values: expected 75 .BODY_25. or 54"):
        VitonHD(release_root, "train")[1]


def test_bad_arguments(release_root):
    with pytest.raises(ValueError, match="split must be one of"):
        VitonHD(release_root, "val")
    with pytest.raises(ValueError, match="warp must be"):
        VitonHD(release_root, warp="magic")
    with pytest.raises(ValueError, match="size must be"):
        VitonHD(release_root, size=(64,))


# ---- ToyVITON ------------------------------------------------------------------------------


def test_toyviton_paired_reads_the_given_warp(toyviton_root):
    data = VitonHD(toyviton_root, "train", "paired", size=CI, check_images=True)
    assert len(data) == 4 and all(data.given_warp)
    sample = data[0]
    assert_sample(sample, 64, 48)
    path = layout.person_path(toyviton_root, "train", "cloth-warp-mask", sample["person_name"])
    expected = torch.from_numpy(np.array(Image.open(path), np.float32) > 127.5).float()
    torch.testing.assert_close(sample["warped_mask"][0], expected)
    keypoints = json.loads(layout.person_path(toyviton_root, "train", "openpose_json",
                                              sample["person_name"]).read_text())
    flat = torch.tensor(keypoints["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    torch.testing.assert_close(sample["keypoints"], flat)  # ci size: no scaling


def test_toyviton_unpaired_reads_its_exact_warps_or_computes_them_and_resizes(toyviton_root):
    data = VitonHD(toyviton_root, "test", "unpaired", size=(32, 24))
    assert len(data) == 16 and all(data.given_warp)  # written beside the unpaired truth
    assert data.has_truth and data[0]["truth"].shape == (3, 32, 24)
    data = VitonHD(toyviton_root, "test", "unpaired", size=(32, 24), warp="tps")
    assert not any(data.given_warp)
    sample = data[3]
    assert_sample(sample, 32, 24)
    assert sample["person_name"] != sample["cloth_name"]
    assert sample["warped_mask"].sum() > 0


def test_toyviton_three_column_pair_file_and_forced_tps(toyviton_root, tmp_path):
    pairs = tmp_path / "gp_vton_pairs.txt"
    # 00002 wears 00007: not one of the unpaired pairs, whose exact warps ToyVITON writes
    pairs.write_text("00001_00.jpg 00001_00.jpg paired\n00002_00.jpg 00007_00.jpg unpaired\n")
    data = VitonHD(toyviton_root, "test", "unpaired", pairs_file=pairs, warp="tps")
    assert data.given_warp == [False, False]
    assert [data[i]["tag"] for i in range(2)] == ["paired", "unpaired"]
    assert data[1]["cloth_name"] == "00007_00.jpg"
    auto = VitonHD(toyviton_root, "test", "unpaired", pairs_file=pairs)
    assert auto.given_warp == [True, False]  # the person's own garment has a given warp
    with pytest.raises(VitonHDLayoutError, match="00002_00__00007_00.jpg not found: warp='given' "
                       "needs the warp of every pair"):
        VitonHD(toyviton_root, "test", "unpaired", pairs_file=pairs, warp="given")
