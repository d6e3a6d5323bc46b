"""The VITON-HD folder layout, written by :mod:`toyviton` and read by :mod:`vitonhd`.

One place for every folder name, file name and label convention, so that the writer and
the reader cannot drift apart. The layout is the one of the VITON-HD release
(Choi et al., CVPR 2021), with the two additions that some repositories make
(``cloth-warp`` and ``cloth-warp-mask``, the garment warped onto the person) and a JSON
of garment attributes that ToyVITON writes for the captions of chapter 2::

    ROOT/
      train_pairs.txt  test_pairs.txt  test_pairs_unpaired.txt
      train/ test/
        image/NAME.jpg                    the person
        cloth/NAME.jpg                    the in-shop garment (same size as the person)
        cloth-mask/NAME.jpg               its mask (JPEG in the release: threshold it)
        agnostic-v3.2/NAME.jpg            the person with the garment region greyed out
        agnostic-mask/NAME_mask.png       the region that was greyed out
        image-densepose/NAME.jpg          DensePose (I, U, V) rendered as colour
        image-parse-v3/NAME.png           human parsing, LIP labels, palette PNG
        openpose_img/NAME_rendered.png    the skeleton drawn
        openpose_json/NAME_keypoints.json OpenPose keypoints (BODY_25, or COCO-18)
        cloth-warp/NAME.jpg               (optional) the person's own garment warped onto them
        cloth-warp/NAME__CLOTH.jpg        (optional) another garment warped onto the person
        cloth-warp-mask/NAME.png          (optional) their masks, named likewise
        cloth-attributes.json             (ToyVITON only) garment attributes by cloth name

The release has no ``test_pairs_unpaired.txt``: its ``test_pairs.txt`` holds the unpaired
pairs (the paired test takes each person's own garment, whatever the second column says).
So the unpaired test reads ``test_pairs_unpaired.txt`` where it exists (ToyVITON) and
``test_pairs.txt`` otherwise (:func:`pair_file_candidates`).
"""

from __future__ import annotations

from pathlib import Path


class VitonHDLayoutError(ValueError):
    """The folder is not a readable VITON-HD layout; the message names the file at fault."""


SPLITS = ("train", "test")
PAIR_FILES = {
    ("train", "paired"): "train_pairs.txt",
    ("test", "paired"): "test_pairs.txt",
    ("test", "unpaired"): "test_pairs_unpaired.txt",
}
# where the release keeps a split's pairs when the file above is absent
PAIR_FILE_FALLBACKS = {("test", "unpaired"): "test_pairs.txt"}

# folder -> how a file name is formed from the person's (or garment's) stem
PERSON_FILES = {
    "image": "{stem}.jpg",
    "agnostic-v3.2": "{stem}.jpg",
    "agnostic-mask": "{stem}_mask.png",
    "image-densepose": "{stem}.jpg",
    "image-parse-v3": "{stem}.png",
    "openpose_img": "{stem}_rendered.png",
    "openpose_json": "{stem}_keypoints.json",
}
CLOTH_FILES = {
    "cloth": "{stem}.jpg",
    "cloth-mask": "{stem}.jpg",
}
WARP_FILES = {
    "cloth-warp": "{stem}.jpg",
    "cloth-warp-mask": "{stem}.png",
}
# ToyVITON only: the unpaired truth (the person wearing another garment), NAME__CLOTH as warps
TRUTH_FILES = {
    "image-tryon": "{stem}.jpg",
    "image-parse-tryon": "{stem}.png",
}
ATTRIBUTES_FILE = "cloth-attributes.json"

# OpenPose BODY_25, the keypoint order of VITON-HD's openpose_json
BODY_25 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
    "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
KEYPOINT = {name: i for i, name in enumerate(BODY_25)}
# OpenPose COCO-18 (the order of DressCode-style data): BODY_25 without MidHip and the feet
COCO_18 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)

# LIP labels, as in VITON-HD's image-parse-v3
PARSE_LABELS = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat",
    "socks", "pants", "neck", "scarf", "skirt", "face", "left-arm", "right-arm",
    "left-leg", "right-leg", "left-shoe", "right-shoe",
)
PARSE = {name: i for i, name in enumerate(PARSE_LABELS)}
GARMENT_LABELS = (PARSE["upper-clothes"], PARSE["dress"], PARSE["coat"])
# bare skin of the try-on region: ToyVITON labels the torso's skin (neckline, bare midriff) neck
SKIN_LABELS = (PARSE["neck"], PARSE["left-arm"], PARSE["right-arm"])


def stem(filename: str) -> str:
    """``'00001_00.jpg' -> '00001_00'``."""
    return Path(filename).stem


def person_path(root: Path | str, split: str, folder: str, name: str) -> Path:
    """Path of a person-side file (``folder`` in :data:`PERSON_FILES` or :data:`WARP_FILES`)."""
    pattern = PERSON_FILES.get(folder) or WARP_FILES[folder]
    return Path(root) / split / folder / pattern.format(stem=stem(name))


def pair_file_candidates(split: str, pairing: str) -> tuple[str, ...]:
    """The pair files of ``split`` and ``pairing``, in the order they are looked for."""
    key = (split, pairing)
    return tuple(name for name in (PAIR_FILES.get(key), PAIR_FILE_FALLBACKS.get(key)) if name)


def pair_stem(person: str, cloth: str) -> str:
    """The stem of a file about ``person`` wearing ``cloth``: ``NAME`` for their own garment,
    ``NAME__CLOTH`` for another one."""
    return stem(person) if stem(person) == stem(cloth) else f"{stem(person)}__{stem(cloth)}"


def warp_path(root: Path | str, split: str, folder: str, person: str, cloth: str) -> Path:
    """Path of a written warp (``folder`` in :data:`WARP_FILES`) of ``cloth`` onto ``person``:
    ``NAME.ext`` for the person's own garment, ``NAME__CLOTH.ext`` for another one."""
    return Path(root) / split / folder / WARP_FILES[folder].format(stem=pair_stem(person, cloth))


def truth_path(root: Path | str, split: str, folder: str, person: str, cloth: str) -> Path:
    """Path of ToyVITON's rendered truth (``folder`` in :data:`TRUTH_FILES`) of ``person``
    wearing ``cloth``, named as :func:`warp_path` names warps (``NAME__CLOTH.ext``)."""
    return Path(root) / split / folder / TRUTH_FILES[folder].format(stem=pair_stem(person, cloth))


def cloth_path(root: Path | str, split: str, folder: str, name: str) -> Path:
    """Path of a garment-side file (``folder`` in :data:`CLOTH_FILES`)."""
    return Path(root) / split / folder / CLOTH_FILES[folder].format(stem=stem(name))


def openpose_json(keypoints: list[list[float]]) -> dict:
    """The OpenPose 1.3 JSON document for one person: 25 ``(x, y, confidence)`` triples."""
    if len(keypoints) != len(BODY_25):
        raise ValueError(f"expected {len(BODY_25)} BODY_25 keypoints, got {len(keypoints)}")
    flat = [round(float(v), 3) for point in keypoints for v in point]
    return {
        "version": 1.3,
        "people": [
            {
                "person_id": [-1],
                "pose_keypoints_2d": flat,
                "face_keypoints_2d": [],
                "hand_left_keypoints_2d": [],
                "hand_right_keypoints_2d": [],
                "pose_keypoints_3d": [],
                "face_keypoints_3d": [],
                "hand_left_keypoints_3d": [],
                "hand_right_keypoints_3d": [],
            }
        ],
    }
