"""The real VITON-HD release as it is, and every way a hand-made copy of it goes wrong.

Each test starts from a folder shaped like the release (``conftest.write_release_like``:
JPEG photos and masks, palette parse maps, BODY_25 JSON, no warped garments), here with
stray whitespace and Windows line ends in its pair files, and breaks one thing. Every
case is either read correctly or rejected with an error naming the file.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYPOINTS, RELEASE_NAMES
from PIL import Image

from gardiffmini.data import layout
from gardiffmini.data.keypoints import coco18_to_body25, read_keypoints
from gardiffmini.data.vitonhd import VitonHD, VitonHDLayoutError, check_layout, read_pairs
from gardiffmini.profiles import get_profile

CI = get_profile("ci")

NAMES = [f"{name}.jpg" for name in RELEASE_NAMES]


@pytest.fixture
def release(release_root):
    """The release-like folder, its pair files with stray whitespace and CRLF line ends."""
    shifted = NAMES[1:] + NAMES[:1]
    (release_root / "train_pairs.txt").write_bytes(
        "".join(f"  {n}\t{n}  \r\n\r\n" for n in NAMES).encode()
    )
    (release_root / "test_pairs.txt").write_bytes(
        "".join(f"{p}   {c}\r\n" for p, c in zip(NAMES, shifted, strict=True)).encode() + b"\n"
    )
    return release_root


def keypoints_path(root, name=RELEASE_NAMES[0], split="train"):
    return layout.person_path(root, split, "openpose_json", name)


def write_people(root, people, name=RELEASE_NAMES[0], split="train"):
    document = {"version": 1.3, "people": [{"pose_keypoints_2d": flat} for flat in people]}
    keypoints_path(root, name, split).write_text(json.dumps(document))


def flat(points):
    return [float(v) for point in points for v in point]


# ---- the release as it is ------------------------------------------------------------------


def test_unpaired_test_reads_the_releases_test_pairs(release):
    assert not (release / "test_pairs_unpaired.txt").exists()
    data = VitonHD(release, "test", "unpaired", size=CI)
    assert data.pairs_file == release / "test_pairs.txt"
    assert [(p.person, p.cloth) for p in data.pairs] == list(zip(NAMES, NAMES[1:] + NAMES[:1],
                                                                 strict=True))
    assert data[0]["cloth_name"] == NAMES[1]
    paired = VitonHD(release, "test", "paired", size=CI)
    assert [p.cloth for p in paired.pairs] == NAMES


def test_unpaired_on_a_pair_file_of_own_garments_is_an_error(release):
    (release / "test_pairs.txt").write_text("".join(f"{n} {n}\n" for n in NAMES))
    with pytest.raises(VitonHDLayoutError, match="test_pairs.txt pairs every person with "
                       "their own garment, but pairing='unpaired'"):
        VitonHD(release, "test", "unpaired")


def test_fixture_is_release_shaped_with_stray_whitespace_and_crlf(release):
    for split in layout.SPLITS:
        assert not (release / split / "cloth-warp").exists()
    cloth_mask = layout.cloth_path(release, "test", "cloth-mask", RELEASE_NAMES[0])
    assert Image.open(cloth_mask).format == "JPEG"
    assert [(p.person, p.cloth) for p in read_pairs(release / "train_pairs.txt")] == [
        (n, n) for n in NAMES]
    assert len(VitonHD(release, "train", check_images=True)) == 3


def test_check_layout_finds_the_pair_file_without_reading_images(release):
    assert check_layout(release, "test", "unpaired") == release / "test_pairs.txt"
    with pytest.raises(VitonHDLayoutError, match="nowhere is not a folder"):
        check_layout(release / "nowhere")


def test_coco18_keypoints_are_read_as_body25(release):
    body = torch.tensor(RELEASE_KEYPOINTS, dtype=torch.float32)
    coco = body[[layout.KEYPOINT[name] for name in layout.COCO_18]]
    write_people(release, [flat(coco.tolist())])
    points = read_keypoints(keypoints_path(release), (96, 128))
    expected = body.clone()
    expected[layout.KEYPOINT["MidHip"], :2] = (body[layout.KEYPOINT["RHip"], :2]
                                              + body[layout.KEYPOINT["LHip"], :2]) / 2
    torch.testing.assert_close(points, expected)
    torch.testing.assert_close(coco18_to_body25(coco), expected)
    assert VitonHD(release, "train")[0]["warped_mask"].sum() > 0


def test_the_subject_is_chosen_over_a_bystander_listed_first(release):
    subject = [list(point) for point in RELEASE_KEYPOINTS]
    bystander = [[x / 4 + 70, y / 4, c] if c else [0, 0, 0] for x, y, c in subject]
    write_people(release, [flat(bystander), flat(subject)])
    points = read_keypoints(keypoints_path(release), (96, 128))
    torch.testing.assert_close(points, torch.tensor(subject, dtype=torch.float32))


# ---- images and masks that used to load silently wrong ---------------------------------


def test_16_bit_photo_is_scaled_not_saturated(release):
    path = layout.person_path(release, "train", "image", RELEASE_NAMES[0])
    grey = np.full((128, 96), 0x4000, dtype=np.uint16)  # a quarter of full scale
    Image.fromarray(grey).save(path, format="PNG")
    assert Image.open(path).mode == "I;16"
    person = VitonHD(release, "train")[0]["person"]
    expected = round(0x4000 / 65535 * 255) / 127.5 - 1
    torch.testing.assert_close(person, torch.full_like(person, expected))


def test_transparent_photo_is_laid_on_white(release):
    path = layout.cloth_path(release, "train", "cloth", RELEASE_NAMES[0])
    rgba = np.zeros((128, 96, 4), dtype=np.uint8)  # black where transparent
    rgba[30:100, 30:66] = (200, 0, 0, 255)
    Image.fromarray(rgba, mode="RGBA").save(path, format="PNG")
    cloth = VitonHD(release, "train")[0]["cloth"]
    assert cloth[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # white, not black
    assert cloth[0, 60, 48] == pytest.approx(200 / 127.5 - 1)


def _agnostic_mask_region() -> np.ndarray:
    mask = np.zeros((128, 96), dtype=bool)
    mask[30:87, 30:67] = True
    return mask


def test_mask_in_the_alpha_channel_is_read_from_it(release):
    path = layout.person_path(release, "train", "agnostic-mask", RELEASE_NAMES[0])
    rgba = np.zeros((128, 96, 4), dtype=np.uint8)
    rgba[..., 3] = _agnostic_mask_region() * 255
    Image.fromarray(rgba, mode="RGBA").save(path)
    mask = VitonHD(release, "train")[0]["agnostic_mask"][0].numpy().astype(bool)
    assert (mask == _agnostic_mask_region()).all()


def test_alpha_and_grey_that_disagree_are_rejected(release):
    path = layout.person_path(release, "train", "agnostic-mask", RELEASE_NAMES[0])
    rgba = np.zeros((128, 96, 4), dtype=np.uint8)
    rgba[..., 3] = _agnostic_mask_region() * 255
    rgba[:64, :, :3] = 255
    Image.fromarray(rgba, mode="RGBA").save(path)
    with pytest.raises(VitonHDLayoutError, match=f"{path} has a varying alpha channel"):
        VitonHD(release, "train")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_mask_stored_as_0_and_1_is_read_as_0_and_1(release, dtype):
    path = layout.person_path(release, "train", "agnostic-mask", RELEASE_NAMES[0])
    Image.fromarray(_agnostic_mask_region().astype(dtype)).save(path)
    mask = VitonHD(release, "train")[0]["agnostic_mask"][0].numpy().astype(bool)
    assert (mask == _agnostic_mask_region()).all()


def test_16_bit_mask_is_scaled(release):
    path = layout.cloth_path(release, "train", "cloth-mask", RELEASE_NAMES[0])
    mask = np.zeros((128, 96), dtype=np.uint16)
    mask[40:90, 30:66] = 65535
    Image.fromarray(mask).save(path, format="PNG")
    loaded = VitonHD(release, "train")[0]["cloth_mask"][0].numpy().astype(bool)
    assert (loaded == (mask > 0)).all()


def test_float_image_is_rejected_naming_the_file(release):
    path = layout.person_path(release, "train", "image-densepose", RELEASE_NAMES[0])
    Image.fromarray(np.zeros((128, 96), np.float32)).save(path, format="TIFF")
    with pytest.raises(VitonHDLayoutError, match=f"{path} has mode F: expected an 8- or 16-bit"):
        VitonHD(release, "train")


def test_grey_parse_map_with_labels_outside_the_label_set(release):
    path = layout.person_path(release, "train", "image-parse-v3", RELEASE_NAMES[1])
    labels = np.zeros((128, 96), dtype=np.uint8)
    labels[30:80, 30:60] = 255  # a mask saved in the parse map's place
    Image.fromarray(labels).save(path)
    data = VitonHD(release, "train")
    with pytest.raises(VitonHDLayoutError, match=rf"{path} has labels \[255\] outside the label "
                       "set: expected indices 0..19"):
        data[1]


def test_palette_parse_map_with_an_index_outside_the_label_set(release):
    path = layout.person_path(release, "train", "image-parse-v3", RELEASE_NAMES[0])
    parse = Image.open(path)
    labels = np.array(parse)
    labels[0, 0] = 21
    bad = Image.fromarray(labels, mode="P")
    bad.putpalette(parse.getpalette())
    bad.save(path)
    with pytest.raises(VitonHDLayoutError, match=rf"{path} has labels \[21\]"):
        VitonHD(release, "train")


# ---- keypoints ------------------------------------------------------------------------------


def test_keypoints_outside_the_image_are_rejected(release):
    points = [list(point) for point in RELEASE_KEYPOINTS]
    points[4][0] = 140  # RWrist beyond the 96 px width
    write_people(release, [flat(points)])
    path = keypoints_path(release)
    with pytest.raises(VitonHDLayoutError, match=rf"{path}: keypoint \(140, 78\) lies outside "
                       r"the 96x128 \(WxH\) photo"):
        VitonHD(release, "train")


def test_keypoints_with_x_and_y_swapped_are_rejected(release):
    swapped = [[y, x, c] for x, y, c in RELEASE_KEYPOINTS]
    write_people(release, [flat(swapped)])
    with pytest.raises(VitonHDLayoutError, match="are x and y swapped"):
        VitonHD(release, "train")
    # swapped inside a square photo: caught by the torso's direction
    with pytest.raises(VitonHDLayoutError, match="runs sideways.*are x and y swapped"):
        read_keypoints(keypoints_path(release), (128, 128))


def test_keypoints_stored_as_strings_are_rejected(release):
    write_people(release, [[str(v) for v in flat(RELEASE_KEYPOINTS)]])
    path = keypoints_path(release)
    with pytest.raises(VitonHDLayoutError, match=f"{path}: people.0..pose_keypoints_2d holds "
                       "str '48.0': expected numbers"):
        VitonHD(release, "train")


def test_nan_keypoints_are_rejected(release):
    values = flat(RELEASE_KEYPOINTS)
    values[3] = math.nan
    write_people(release, [values])
    path = keypoints_path(release)
    with pytest.raises(VitonHDLayoutError, match=f"{path}: people.0. has non-finite keypoint"):
        VitonHD(release, "train")


def test_confidence_above_one_is_rejected(release):
    points = [list(point) for point in RELEASE_KEYPOINTS]
    points[0][2] = 90.0  # a percentage
    write_people(release, [flat(points)])
    with pytest.raises(VitonHDLayoutError, match=r"confidences span \[0, 90\]: expected values "
                       r"in \[0, 1\]"):
        VitonHD(release, "train")


# ---- pair files -----------------------------------------------------------------------------


def test_binary_pair_file_names_the_file(release):
    path = release / "train_pairs.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(VitonHDLayoutError, match=f"pair file {path} is binary"):
        VitonHD(release, "train")


def test_latin1_pair_file_names_the_file_and_line(release):
    path = release / "train_pairs.txt"
    path.write_bytes(b"00001_00.jpg 00001_00.jpg\n00002_00.jpg caf\xe9.jpg\n")
    with pytest.raises(VitonHDLayoutError, match=f"pair file {path}, line 2: byte 0xe9 is not "
                       "UTF-8"):
        read_pairs(path)


def test_byte_order_mark_is_dropped(release):
    path = release / "train_pairs.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(f"{n} {n}\n" for n in NAMES).encode())
    assert read_pairs(path)[0].person == NAMES[0]
    assert len(VitonHD(release, "train")) == 3


def test_invisible_character_in_a_name_is_rejected(release):
    path = release / "train_pairs.txt"
    path.write_text(f"{NAMES[0]} {NAMES[0]}\n{NAMES[1]}\u200b {NAMES[1]}\n")
    with pytest.raises(VitonHDLayoutError, match=f"{path}, line 2: .* holds an invisible"):
        read_pairs(path)
