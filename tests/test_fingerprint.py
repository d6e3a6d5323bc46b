"""data_fingerprint: a run's identity changes with its data, and only with it."""

from __future__ import annotations

import shutil

import pytest
from conftest import RELEASE_NAMES
from PIL import Image

from gardiffmini.data import layout
from gardiffmini.data.fingerprint import _sample_indices, data_fingerprint
from gardiffmini.data.vitonhd import VitonHDLayoutError


def test_same_data_same_fingerprint(release_root):
    first = data_fingerprint(release_root, "train")
    assert first == data_fingerprint(release_root, "train")
    assert len(first) == 16 and int(first, 16) >= 0
    assert first != data_fingerprint(release_root, "test")


def test_another_root_or_other_data_changes_it(release_root, tmp_path):
    before = data_fingerprint(release_root)
    copy = shutil.copytree(release_root, tmp_path / "copy")
    assert data_fingerprint(copy) != before  # another place: another data set
    assert data_fingerprint(release_root / "train" / "..") == before  # one place, one name


@pytest.mark.parametrize("change", ["pairs", "image", "keypoints", "warp"])
def test_a_change_in_the_data_changes_it(release_root, change):
    before = data_fingerprint(release_root)
    name = RELEASE_NAMES[-1]
    if change == "pairs":
        (release_root / "train_pairs.txt").write_text(
            "".join(f"{n}.jpg {n}.jpg\n" for n in RELEASE_NAMES[:2]))
    elif change == "image":
        path = layout.person_path(release_root, "train", "image", name)
        Image.open(path).rotate(180).save(path, format="JPEG")
    elif change == "keypoints":
        path = layout.person_path(release_root, "train", "openpose_json", name)
        path.write_text(path.read_text().replace("0.9", "0.8"))
    else:
        for folder in layout.WARP_FILES:
            path = layout.warp_path(release_root, "train", folder, name, name)
            path.parent.mkdir(exist_ok=True)
            Image.new("L", (96, 128), 255).save(path, format="PNG")
    assert data_fingerprint(release_root) != before


def test_sample_is_spread_over_the_pairs():
    assert _sample_indices(3, 16) == [0, 1, 2]
    indices = _sample_indices(11_647, 16)
    assert len(indices) == 16 and indices[0] == 0 and indices[-1] == 11_646


def test_bad_root_is_an_error(tmp_path):
    with pytest.raises(VitonHDLayoutError, match="train_pairs.txt not found"):
        data_fingerprint(tmp_path)
    with pytest.raises(ValueError, match="sample must be >= 2"):
        data_fingerprint(tmp_path, sample=1)
