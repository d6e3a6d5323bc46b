import json

import numpy as np
import pytest
from PIL import Image

from gardiffmini import get_profile
from gardiffmini.data import toyviton
from gardiffmini.data.bodies import box_around, keypoints, sample_body, segment_frame
from gardiffmini.data.garments import (
    CATEGORIES,
    COLOR_NAMES,
    GARMENT_EASE,
    LENGTHS,
    LOGOS,
    NECKLINES,
    PATTERNS,
    SLEEVES,
    STRIPE_ANGLES,
    STRIPE_FREQUENCIES,
    WRAP_ANGLE,
    draw_flat_garment,
    draw_texture,
    garment_map,
    sample_attributes,
)
from gardiffmini.data.layout import (
    ATTRIBUTES_FILE,
    BODY_25,
    CLOTH_FILES,
    PAIR_FILES,
    PARSE,
    PARSE_LABELS,
    PERSON_FILES,
    WARP_FILES,
    cloth_path,
    person_path,
)

CI = get_profile("ci")
N_TRAIN, N_TEST = 12, 6
MODES = {
    "image": "RGB", "agnostic-v3.2": "RGB", "agnostic-mask": "L", "image-densepose": "RGB",
    "image-parse-v3": "P", "openpose_img": "RGB", "openpose_json": None,
    "cloth": "RGB", "cloth-mask": "L", "cloth-warp": "RGB", "cloth-warp-mask": "L",
}
ATTRIBUTE_KEYS = {"category", "sleeve", "neckline", "length", "colors", "pattern",
                  "stripe_frequency", "stripe_angle", "text", "logo"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toyviton"
    return toyviton.generate(root, CI, seed=3, n_train=N_TRAIN, n_test=N_TEST, workers=1,
                             progress=False)


@pytest.fixture(scope="module")
def samples():
    return [toyviton.render_sample(toyviton.sample_rng(0, "train", i), CI.height, CI.width)
            for i in range(40)]


def _names(n):
    return [toyviton.pair_name(i) for i in range(n)]


def test_every_file_of_the_layout_exists_with_size_and_mode(dataset):
    assert set(MODES) == {*PERSON_FILES, *CLOTH_FILES, *WARP_FILES}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for name in _names(n):
            for folder, mode in MODES.items():
                path = (cloth_path(dataset, split, folder, name) if folder in CLOTH_FILES
                        else person_path(dataset, split, folder, name))
                assert path.is_file(), path
                if mode is not None:
                    with Image.open(path) as image:
                        assert image.size == (CI.width, CI.height), path
                        assert image.mode == mode, path
        assert (dataset / split / ATTRIBUTES_FILE).is_file()


def test_masks_are_binary_and_parse_uses_lip_labels(dataset):
    name = _names(N_TRAIN)[0]
    for folder in ("agnostic-mask", "cloth-warp-mask"):
        values = np.unique(np.asarray(Image.open(person_path(dataset, "train", folder, name))))
        assert set(values.tolist()) <= {0, 255}
    parse = Image.open(person_path(dataset, "train", "image-parse-v3", name))
    labels = set(np.unique(np.asarray(parse)).tolist())
    assert labels <= set(range(len(PARSE_LABELS)))
    assert {PARSE["background"], PARSE["face"], PARSE["upper-clothes"]} <= labels
    assert parse.getpalette()[3 * 5:3 * 5 + 3] == [128, 0, 128]  # LIP colour of upper-clothes


def test_pair_files_reference_existing_files(dataset):
    for (split, _), filename in PAIR_FILES.items():
        lines = (dataset / filename).read_text().splitlines()
        assert len(lines) == (N_TRAIN if split == "train" else N_TEST)
        for line in lines:
            person, garment = line.split()
            assert person_path(dataset, split, "image", person).is_file()
            assert cloth_path(dataset, split, "cloth", garment).is_file()
    paired = (dataset / PAIR_FILES["train", "paired"]).read_text().splitlines()
    assert paired[3] == "00003_00.jpg 00003_00.jpg"


def test_unpaired_pairs_each_person_with_another_garment(dataset):
    lines = (dataset / PAIR_FILES["test", "unpaired"]).read_text().splitlines()
    pairs = [line.split() for line in lines]
    assert all(person != garment for person, garment in pairs)
    assert sorted(garment for _, garment in pairs) == _names(N_TEST)


def test_unpaired_garments_is_a_derangement():
    for n in range(2, 12):
        garments = toyviton.unpaired_garments(n, seed=n)
        assert sorted(garments) == list(range(n))
        assert all(g != i for i, g in enumerate(garments))
    with pytest.raises(ValueError, match="n_test"):
        toyviton.unpaired_garments(1, seed=0)


def test_keypoints_json_is_openpose_body_25(dataset):
    path = person_path(dataset, "train", "openpose_json", _names(N_TRAIN)[1])
    flat = json.loads(path.read_text())["people"][0]["pose_keypoints_2d"]
    assert len(flat) == 3 * len(BODY_25) == 75
    points = np.array(flat).reshape(25, 3)
    visible = points[:, 2] > 0
    assert visible[BODY_25.index("Neck")] and visible[BODY_25.index("RShoulder")]
    assert not visible[BODY_25.index("LBigToe")]  # feet are below the frame
    assert np.all(points[~visible] == 0)
    assert np.all((points[visible, 0] >= 0) & (points[visible, 0] < CI.width))
    assert np.all((points[visible, 1] >= 0) & (points[visible, 1] < CI.height))
    right, left = points[BODY_25.index("RShoulder")], points[BODY_25.index("LShoulder")]
    assert right[0] < left[0]  # a front view: the wearer's right is on the image's left


def test_attributes_json_is_complete_and_in_the_vocabularies(dataset):
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        attributes = json.loads((dataset / split / ATTRIBUTES_FILE).read_text())
        assert sorted(attributes) == _names(n)
        for garment in attributes.values():
            _check_attributes(garment)


def _check_attributes(garment):
    assert set(garment) == ATTRIBUTE_KEYS
    assert garment["category"] == CATEGORIES[SLEEVES.index(garment["sleeve"])]
    assert garment["neckline"] in NECKLINES and garment["length"] in LENGTHS
    assert garment["pattern"] in PATTERNS
    assert all(color in COLOR_NAMES for color in garment["colors"])
    assert len(garment["colors"]) == (1 if garment["pattern"] == "plain" else 2)
    repeats = garment["pattern"] in ("stripes", "checks", "dots")
    assert (garment["stripe_frequency"] in STRIPE_FREQUENCIES) == repeats
    assert garment["stripe_frequency"] == 0 or repeats
    assert garment["stripe_angle"] in STRIPE_ANGLES
    assert bool(garment["text"]) == (garment["pattern"] == "text")
    assert (garment["logo"] in LOGOS) == (garment["pattern"] == "logo")


def test_sample_attributes_covers_the_vocabularies():
    rng = np.random.default_rng(0)
    drawn = [sample_attributes(rng) for _ in range(300)]
    for garment in drawn:
        _check_attributes(garment)
    assert {g["pattern"] for g in drawn} == set(PATTERNS)
    assert {g["sleeve"] for g in drawn} == set(SLEEVES)
    assert {g["neckline"] for g in drawn} == set(NECKLINES)


def test_same_seed_gives_identical_bytes_whatever_the_workers(dataset, tmp_path):
    again = toyviton.generate(tmp_path / "again", CI, seed=3, n_train=N_TRAIN, n_test=N_TEST,
                              workers=2, progress=False)
    other = toyviton.generate(tmp_path / "other", CI, seed=4, n_train=N_TRAIN, n_test=N_TEST,
                              workers=1, progress=False)
    for split, folder, name in (("train", "image", "00007_00.jpg"),
                                ("train", "image-parse-v3", "00002_00.jpg"),
                                ("test", "cloth-warp", "00005_00.jpg"),
                                ("test", "openpose_json", "00001_00.jpg")):
        reference = person_path(dataset, split, folder, name).read_bytes()
        assert person_path(again, split, folder, name).read_bytes() == reference
        assert person_path(other, split, folder, name).read_bytes() != reference
    for filename in (*PAIR_FILES.values(), f"train/{ATTRIBUTES_FILE}"):
        assert (again / filename).read_bytes() == (dataset / filename).read_bytes()


def test_complete_data_set_is_not_written_again(dataset):
    metadata = json.loads((dataset / toyviton.METADATA_FILE).read_text())
    assert metadata["seed"] == 3 and metadata["n_train"] == N_TRAIN
    assert metadata["profile"] == "ci" and metadata["version"] == toyviton.TOYVITON_VERSION
    image = person_path(dataset, "train", "image", "00000_00.jpg")
    before = image.stat().st_mtime_ns
    toyviton.generate(dataset, CI, seed=3, n_train=N_TRAIN, n_test=N_TEST, progress=False)
    assert image.stat().st_mtime_ns == before


def test_a_different_request_replaces_an_earlier_toyviton(tmp_path):
    root = toyviton.generate(tmp_path / "d", CI, n_train=5, n_test=2, workers=1, progress=False)
    toyviton.generate(root, CI, n_train=3, n_test=0, workers=1, progress=False)
    assert sorted(p.name for p in (root / "train" / "image").iterdir()) == _names(3)
    assert (root / PAIR_FILES["test", "unpaired"]).read_text() == ""
    assert json.loads((root / toyviton.METADATA_FILE).read_text())["n_train"] == 3


def test_refuses_to_overwrite_a_folder_that_is_not_toyviton(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="toyviton.json"):
        toyviton.generate(tmp_path, CI, n_train=2, n_test=2, progress=False)
    with pytest.raises(ValueError, match="n_train"):
        toyviton.generate(tmp_path / "x", CI, n_train=-1, n_test=2, progress=False)


def test_ensure_toyviton_writes_into_the_profile_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path))
    root = toyviton.ensure_toyviton(get_profile("ci", n_train=3, n_test=2), progress=False)
    assert root == tmp_path / "toyviton-ci"
    assert len((root / PAIR_FILES["train", "paired"]).read_text().splitlines()) == 3


def test_render_sample_shapes_and_types(samples):
    h, w = CI.height, CI.width
    sample = samples[0]
    for key in ("person", "cloth", "agnostic", "densepose", "pose_image", "warped_cloth"):
        assert sample[key].shape == (h, w, 3) and sample[key].dtype == np.uint8, key
    for key in ("cloth_mask", "agnostic_mask", "warped_mask", "parse"):
        assert sample[key].shape == (h, w) and sample[key].dtype == np.uint8, key
    assert sample["keypoints"].shape == (25, 3)
    _check_attributes(sample["attributes"])
    with pytest.raises(ValueError, match="height x width"):
        toyviton.render_sample(np.random.default_rng(0), 16, 12)


def test_cloth_is_a_garment_on_white(samples):
    for sample in samples[:10]:
        mask = sample["cloth_mask"] > 0
        assert 0.15 < mask.mean() < 0.6
        assert np.all(sample["cloth"][~mask] == 255)


def test_warp_lies_inside_the_garment_and_arms_of_the_person(samples):
    worn_or_arms = (PARSE["upper-clothes"], PARSE["left-arm"], PARSE["right-arm"])
    for sample in samples:
        warp = sample["warped_mask"] > 0
        worn = sample["parse"] == PARSE["upper-clothes"]
        assert warp.sum() > 0.05 * warp.size
        assert np.all(np.isin(sample["parse"][warp], worn_or_arms))
        assert not np.any(worn & ~warp)  # every visible garment pixel comes from the warp
        assert np.all(sample["warped_cloth"][~warp] == 255)
        agnostic = sample["agnostic_mask"] > 0
        assert np.all(agnostic[warp]) and np.all(sample["agnostic"][agnostic] == 128)


def test_some_arms_occlude_the_garment(samples):
    hidden = [1 - (s["parse"] == PARSE["upper-clothes"]).sum() / (s["warped_mask"] > 0).sum()
              for s in samples]
    assert sum(h > 0.10 for h in hidden) >= 4  # about 30% cross an arm in front
    assert sum(h < 0.05 for h in hidden) >= 10


def test_keypoints_are_the_skeleton_and_drop_what_is_outside():
    rng = np.random.default_rng(1)
    body = sample_body(rng, 64, 48)
    points = keypoints(body, 64, 48, rng)
    neck = points[BODY_25.index("Neck")]
    np.testing.assert_allclose(neck[:2], body.points["Neck"], rtol=1e-6)
    assert 0.6 <= neck[2] <= 0.95
    assert np.all(points[BODY_25.index("RAnkle")] == 0)  # the ankles are below the frame


def test_segment_frame_against_hand_values():
    a, b = np.array([0.0, 0.0]), np.array([10.0, 0.0])
    x, y = np.array([5.0, -4.0, 13.0]), np.array([3.0, 3.0, -4.0])
    s, t, distance = segment_frame(x, y, a, b)
    np.testing.assert_allclose(s, [5, -4, 13])
    np.testing.assert_allclose(t, [3, 3, -4])
    np.testing.assert_allclose(distance, [3, 5, 5])


def test_box_around_is_clipped_to_the_image():
    rows, columns = box_around([np.array([2.0, 5.0]), np.array([60.0, 9.0])], 3, 20, 50)
    assert (rows.start, rows.stop, columns.start, columns.stop) == (2, 13, 0, 50)


def test_stripe_frequency_counts_cycles_across_the_garment():
    attributes = {"colors": ["black", "white"], "pattern": "stripes", "stripe_frequency": 8,
                  "stripe_angle": 90, "text": "", "logo": ""}
    texture = draw_texture(attributes, np.random.default_rng(0), 40, 400, 200.0, 10.0, 200.0)
    row = texture[20, 100:300, 0] > 128  # one garment width, across vertical stripes
    assert np.count_nonzero(row[1:] != row[:-1]) in (15, 16, 17)  # two edges per cycle


def test_garment_map_sends_body_landmarks_to_the_flat_garment():
    rng = np.random.default_rng(5)
    body = sample_body(rng, 128, 96)
    attributes = dict(sample_attributes(rng), sleeve="long")
    flat = draw_flat_garment(attributes, rng, 128, 96)
    worn = garment_map(body, flat, 128, 96)
    shoulder_row = round(body.shoulder_y)
    t = body.row_t(np.float32(shoulder_row))
    flat_y = flat.shoulder_y + t * (flat.hip_y - flat.shoulder_y)
    np.testing.assert_allclose(worn.fy[shoulder_row, 0], flat_y, rtol=1e-5)
    centre = int(body.cx)
    flat_half = flat.shoulder_half + (flat.hip_half - flat.shoulder_half) * t
    worn_half = GARMENT_EASE * body.torso_half(t) + 0.5
    expected = flat.cx + flat_half * np.arcsin((centre - body.cx) / worn_half
                                               * np.sin(WRAP_ANGLE)) / WRAP_ANGLE
    np.testing.assert_allclose(worn.fx[shoulder_row, centre], expected, rtol=1e-4)
    assert {sleeve.side for sleeve in worn.sleeves} == {"right", "left"}
    for sleeve in worn.sleeves:
        assert (sleeve.cover > 0.5).sum() > 20
