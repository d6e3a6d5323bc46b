"""The DressCode layout: each category read, its agnostic built from labels and keypoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import RELEASE_KEYPOINTS, tshirt_polygon
from PIL import Image, ImageDraw

from gardiffmini.data import layout
from gardiffmini.data.datasets import check_data, open_dataset
from gardiffmini.data.dresscode import ATR, CATEGORIES, DressCode, garment_mask
from gardiffmini.data.fingerprint import data_fingerprint
from gardiffmini.data.vitonhd import VitonHDLayoutError
from gardiffmini.evaluate import evaluation_sets
from gardiffmini.profiles import get_profile

CI = get_profile("ci")

WIDTH, HEIGHT = 96, 128
NAMES = ("013563", "013564")
# rows, columns of each body part in the 96x128 photo (the keypoints of conftest)
HEAD, TORSO, LEGS = (slice(8, 28), slice(40, 56)), (slice(32, 84), slice(33, 64)), \
    (slice(84, 128), slice(38, 58))
RIGHT_ARM, LEFT_ARM = (slice(36, 80), slice(22, 32)), (slice(36, 80), slice(65, 75))


def label_map(category: str) -> np.ndarray:
    parse = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    parse[slice(4, 8), slice(40, 56)] = ATR["hair"]
    parse[HEAD] = ATR["head"]
    parse[RIGHT_ARM] = ATR["right_arm"]
    parse[LEFT_ARM] = ATR["left_arm"]
    parse[TORSO] = ATR["dress" if category == "dresses" else "upper_clothes"]
    parse[LEGS] = ATR["pants"]
    if category == "dresses":
        parse[84:104, 38:58] = ATR["dress"]
        parse[104:, 38:58] = ATR["left_leg"]
    parse[122:, 38:58] = ATR["left_shoe"]
    return parse


def coco_keypoints() -> list[list[float]]:
    """COCO-18 rows [x, y, score, id] in DressCode's 384x512 frame (4x the photo)."""
    body = [RELEASE_KEYPOINTS[layout.KEYPOINT[name]] for name in layout.COCO_18]
    return [[x * 4, y * 4, c, i] if c else [-1, -1, 0, -1] for i, (x, y, c) in enumerate(body)]


def write_dresscode(root: Path) -> Path:
    """A tiny DressCode: two persons per category, JPEG photos, grey label maps."""
    rng = np.random.default_rng(0)
    for category in CATEGORIES:
        folder = root / category
        for sub in ("images", "keypoints", "label_maps", "skeletons", "dense"):
            (folder / sub).mkdir(parents=True)
        for name in NAMES:
            parse = label_map(category)
            colours = rng.integers(0, 256, (len(ATR), 3), dtype=np.uint8)
            Image.fromarray(colours[parse]).save(folder / "images" / f"{name}_0.jpg", quality=95)
            cloth = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
            ImageDraw.Draw(cloth).polygon(tshirt_polygon(), fill=(250, 250, 250),
                                          outline=(20, 20, 20))  # a white shirt, outlined
            cloth.save(folder / "images" / f"{name}_1.jpg", quality=95)
            (folder / "keypoints" / f"{name}_2.json").write_text(
                json.dumps({"keypoints": coco_keypoints()}))
            Image.fromarray(parse).save(folder / "label_maps" / f"{name}_4.png")
            Image.new("RGB", (WIDTH, HEIGHT)).save(folder / "skeletons" / f"{name}_5.jpg")
            Image.fromarray((parse > 0).astype(np.uint8) * 2).save(
                folder / "dense" / f"{name}_5.png")
        (folder / "train_pairs.txt").write_text(
            "".join(f"{n}_0.jpg {n}_1.jpg\n" for n in NAMES))
        (folder / "test_pairs_paired.txt").write_text(
            "".join(f"{n}_0.jpg {n}_1.jpg\n" for n in NAMES))
        (folder / "test_pairs_unpaired.txt").write_text(
            f"{NAMES[0]}_0.jpg {NAMES[1]}_1.jpg\n{NAMES[1]}_0.jpg {NAMES[0]}_1.jpg\n")
    return root


@pytest.fixture
def dresscode(tmp_path) -> Path:
    return write_dresscode(tmp_path / "DressCode")


def covered(mask: torch.Tensor, part: tuple[slice, slice]) -> float:
    return float(mask[0][part].mean())


def test_upper_body(dresscode):
    data = DressCode(dresscode, "train", categories="upper_body")
    assert len(data) == 2
    sample = data[0]
    assert sample["tag"] == "upper_body" and sample["cloth_name"] == f"{NAMES[0]}_1.jpg"
    for key in ("person", "agnostic", "cloth", "warped_cloth", "pose", "densepose"):
        assert sample[key].shape == (3, HEIGHT, WIDTH), key
    mask = sample["agnostic_mask"]
    assert covered(mask, TORSO) == 1 and covered(mask, RIGHT_ARM) > 0.9
    assert covered(mask, HEAD) == 0 and covered(mask, LEGS) == 0
    grey = sample["agnostic"][:, mask[0] > 0]
    torch.testing.assert_close(grey, torch.full_like(grey, 128 / 127.5 - 1))
    expected = torch.tensor(RELEASE_KEYPOINTS, dtype=torch.float32)
    torch.testing.assert_close(sample["keypoints"][:8], expected[:8])  # COCO-18 -> BODY_25
    assert sample["parse"][50, 48] == layout.PARSE["upper-clothes"]  # ATR -> LIP
    assert sample["warped_mask"].sum() > 0.2 * sample["cloth_mask"].sum()


def test_lower_body_and_dresses(dresscode):
    lower = DressCode(dresscode, "test", categories="lower_body", warped=False)[0]
    mask = lower["agnostic_mask"]
    assert covered(mask, (slice(84, 120), LEGS[1])) == 1
    assert covered(mask, TORSO) == 0 and covered(mask, RIGHT_ARM) == 0
    assert "warped_cloth" not in lower
    dress = DressCode(dresscode, "test", categories="dresses", warped=False)[1]["agnostic_mask"]
    assert covered(dress, TORSO) == 1 and covered(dress, (slice(84, 120), LEGS[1])) == 1
    assert covered(dress, RIGHT_ARM) > 0.9 and covered(dress, HEAD) == 0


def test_other_categories_need_written_warps(dresscode):
    with pytest.raises(VitonHDLayoutError, match="013563_0.jpg not found: the TPS warp is a "
                       "top's, so lower_body needs its warped garments written"):
        DressCode(dresscode, "train", categories="lower_body")


def test_all_categories_unpaired(dresscode):
    data = DressCode(dresscode, "test", "unpaired", size=(64, 48), warped=False)
    assert [p.tag for p in data.pairs] == ["upper_body"] * 2 + ["lower_body"] * 2 + \
        ["dresses"] * 2
    assert data[0]["cloth_name"] == f"{NAMES[1]}_1.jpg" and data[0]["person"].shape[-2:] == (
        64, 48)


def test_a_white_garments_mask_is_filled(dresscode):
    cloth = np.array(Image.open(dresscode / "upper_body" / "images" / f"{NAMES[0]}_1.jpg"))
    mask = garment_mask(cloth)
    assert mask[60, 48] and not mask[5, 5]  # inside the white shirt; the background


def test_bad_keypoints_name_the_file(dresscode):
    path = dresscode / "upper_body" / "keypoints" / f"{NAMES[0]}_2.json"
    rows = coco_keypoints()
    rows[4][0] = 9000.0
    path.write_text(json.dumps({"keypoints": rows}))
    with pytest.raises(VitonHDLayoutError, match=f"{path}: keypoint .* lies outside"):
        DressCode(dresscode, categories="upper_body")
    path.write_text(json.dumps({"pose_keypoints_2d": []}))
    with pytest.raises(VitonHDLayoutError, match=f"{path} is not a DressCode keypoints JSON"):
        DressCode(dresscode, categories="upper_body")


def test_bad_arguments(dresscode):
    with pytest.raises(ValueError, match="categories must be among"):
        DressCode(dresscode, categories="shoes")
    with pytest.raises(ValueError, match="no train unpaired pairs"):
        DressCode(dresscode, "train", "unpaired")
    with pytest.raises(VitonHDLayoutError, match="upper_body/label_maps/ is missing|"
                       "label_maps is missing"):
        for path in (dresscode / "upper_body" / "label_maps").iterdir():
            path.unlink()
        (dresscode / "upper_body" / "label_maps").rmdir()
        DressCode(dresscode, categories="upper_body")


def test_written_warps_are_read_for_any_category(dresscode):
    for folder, image in (("cloth-warp", Image.new("RGB", (WIDTH, HEIGHT), (0, 0, 255))),
                          ("cloth-warp-mask", Image.new("L", (WIDTH, HEIGHT), 255))):
        for name in NAMES:
            path = layout.warp_path(dresscode, "lower_body", folder, f"{name}_0.jpg",
                                    f"{name}_0.jpg")
            path.parent.mkdir(exist_ok=True)
            image.save(path, format="JPEG" if folder == "cloth-warp" else "PNG")
    sample = DressCode(dresscode, "train", categories="lower_body")[1]
    assert sample["warped_mask"].min() == 1 and sample["warped_cloth"][2].mean() > 0.9


# ---- one category folder as a data root (the command line's --root) ---------------------


def test_a_category_folder_is_a_data_root(dresscode):
    folder = dresscode / "upper_body"
    data = open_dataset(folder, "test", "unpaired", size=CI)
    assert isinstance(data, DressCode) and [p.tag for p in data.pairs] == ["upper_body"] * 2
    assert check_data(folder, "test", "paired") == folder / "test_pairs_paired.txt"
    sets = evaluation_sets(folder, get_profile("ci", n_eval=2))
    assert sets["unpaired"]["warped_mask"].shape == (2, 1, *get_profile("ci").image_size)
    assert sets["paired"]["cloth_name"] == [f"{n}_1.jpg" for n in NAMES]
    with pytest.raises(VitonHDLayoutError, match="is a DressCode root: expected one category "
                       "folder"):
        open_dataset(dresscode, "train")
    for warp in ("oracle", "carved"):
        with pytest.raises(ValueError, match=f"no '{warp}' warp"):
            open_dataset(folder, "test", warp=warp)
    before = data_fingerprint(folder, "train")
    Image.new("RGB", (WIDTH, HEIGHT)).save(folder / "images" / f"{NAMES[-1]}_1.jpg")
    assert data_fingerprint(folder, "train") != before


def test_a_pairs_file_of_one_category(dresscode):
    folder = dresscode / "dresses"
    (folder / "one.txt").write_text(f"{NAMES[1]}_0.jpg {NAMES[0]}_1.jpg\n")
    data = DressCode(dresscode, "test", "unpaired", categories="dresses", warped=False,
                     pairs_file="one.txt")
    assert [(p.person, p.cloth) for p in data.pairs] == [(f"{NAMES[1]}_0.jpg",
                                                          f"{NAMES[0]}_1.jpg")]
    with pytest.raises(ValueError, match="pairs_file names the pairs of one category"):
        DressCode(dresscode, "test", categories=CATEGORIES, pairs_file="one.txt")
