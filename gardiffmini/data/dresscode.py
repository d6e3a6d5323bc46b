"""The DressCode layout (Morelli et al., 2022), read into the samples of :class:`VitonHD`.

DressCode keeps each category in its own folder, with its own pair files::

    ROOT/upper_body/ lower_body/ dresses/
      train_pairs.txt  test_pairs_paired.txt  test_pairs_unpaired.txt   "NAME_0.jpg NAME_1.jpg"
      images/NAME_0.jpg            the person          images/NAME_1.jpg   the garment
      keypoints/NAME_2.json        {"keypoints": [[x, y, score, id] x 18]}: OpenPose COCO-18,
                                   in a 384x512 frame whatever the photo's size
      label_maps/NAME_4.png        human parsing, 18 ATR labels (:data:`ATR_LABELS`)
      skeletons/NAME_5.jpg         the skeleton drawn
      dense/NAME_5.png             DensePose part labels (0-24)
      cloth_mask/NAME_1.png        (optional, added by some repositories) the garment's mask

It has no agnostic image and no garment mask, so, as the field's loaders do (the DressCode
loader of LaDI-VTON and its descendants), they are built here:

- the **garment mask**: where a pixel is not near-white, holes filled (a white garment's
  inside is enclosed by its outline), unless ``cloth_mask/`` gives it;
- the **region to repaint** (``agnostic_mask``): the category's garment labels, plus the
  arms for upper-body garments and dresses (arm pixels within a thick line drawn along the
  keypoints shoulder -> elbow -> wrist) and the legs for lower-body garments and dresses,
  dilated by :data:`DILATION` of the photo's height, minus what the garment never covers
  (head, hair, hat, sunglasses, shoes, bag, and the other half's clothes: pants and skirt
  for a top, top and arms for a lower-body garment);
- the **agnostic image**: the person with that region grey, as in VITON-HD.

``parse`` is returned in VITON-HD's LIP labels (:data:`ATR_TO_LIP`), ``densepose`` as its
part labels drawn grey. The TPS warp's landmarks are a top's: the warped garment comes from
TPS for ``upper_body`` only; the other categories need their warps written in
``cloth-warp/NAME_0.jpg`` and ``cloth-warp-mask/NAME_0.png`` (or ``NAME_0__CLOTH``), else
reading a pair is an error that says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from torch.utils.data import Dataset

from gardiffmini.data import layout
from gardiffmini.data.images import check_mode, label_array, mask_array, open_image, photo_rgb
from gardiffmini.data.keypoints import check_keypoints, coco18_to_body25
from gardiffmini.data.layout import VitonHDLayoutError
from gardiffmini.data.vitonhd import Pair, _resolve_size, pairs_path, read_pairs
from gardiffmini.data.warp import warp_garment
from gardiffmini.profiles import Profile

CATEGORIES = ("upper_body", "lower_body", "dresses")
ATR_LABELS = (
    "background", "hat", "hair", "sunglasses", "upper_clothes", "skirt", "pants", "dress",
    "belt", "left_shoe", "right_shoe", "head", "left_leg", "right_leg", "left_arm",
    "right_arm", "bag", "scarf",
)
ATR = {name: i for i, name in enumerate(ATR_LABELS)}
# ATR -> LIP (VITON-HD's labels); LIP has no belt (-> pants) and no bag (-> background)
ATR_TO_LIP = np.array([layout.PARSE[name] for name in (
    "background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress",
    "pants", "left-shoe", "right-shoe", "face", "left-leg", "right-leg", "left-arm",
    "right-arm", "background", "scarf",
)])
GARMENT_LABELS = {
    "upper_body": ("upper_clothes",),
    "lower_body": ("pants", "skirt", "belt"),
    "dresses": ("dress", "upper_clothes", "skirt"),
}
KEPT_LABELS = ("head", "hair", "hat", "sunglasses", "left_shoe", "right_shoe", "bag")
OTHER_HALF = {
    "upper_body": ("pants", "skirt", "belt"),
    "lower_body": ("upper_clothes", "left_arm", "right_arm"),
    "dresses": (),
}
KEYPOINT_FRAME = (384, 512)  # (width, height) of DressCode's keypoint coordinates
ARM_WIDTH = 0.09  # of the photo's height: the line along the arm that bounds masked arm pixels
DILATION = 0.01  # of the photo's height: the region to repaint grows by this much
WHITE = 240  # a garment photo's background: every channel at least this
PAIR_FILES = {("train", "paired"): "train_pairs.txt", ("test", "paired"): "test_pairs_paired.txt",
              ("test", "unpaired"): "test_pairs_unpaired.txt"}
FOLDERS = ("images", "keypoints", "label_maps", "skeletons", "dense")  # of each category
OPTIONAL = ("cloth_mask", "warped_cloth", "warped_mask")  # files a pair may lack


def is_category_folder(path: Path | str) -> bool:
    """Whether ``path`` looks like one DressCode category folder (its own sub-folders)."""
    return all((Path(path) / sub).is_dir() for sub in ("images", "keypoints", "label_maps"))


def category_pairs_path(folder: Path, split: str, pairing: str,
                        pairs_file: str | Path | None = None) -> Path:
    """The pair file of ``split`` and ``pairing`` in the category ``folder``: ``pairs_file``
    where given (a path, or a name inside ``folder``), else DressCode's own."""
    if (split, pairing) not in PAIR_FILES:
        raise ValueError(f"DressCode has no {split} {pairing} pairs: expected one of "
                         f"{sorted(PAIR_FILES)}")
    if pairs_file is not None:
        return pairs_path(folder, split, pairing, pairs_file)
    path = folder / PAIR_FILES[(split, pairing)]
    if not path.is_file():
        raise VitonHDLayoutError(f"pair file {path} not found: expected the DressCode {split} "
                                 f"{pairing} pairs of {folder.name} there")
    return path


def check_category(folder: Path | str, split: str = "train", pairing: str = "paired",
                   pairs_file: str | Path | None = None) -> Path:
    """A quick check, before any work, that ``folder`` is a DressCode category folder with a
    readable pair file; returns the pair file. Reads no image."""
    folder = Path(folder)
    if folder.name not in CATEGORIES:
        raise VitonHDLayoutError(f"{folder} looks like a DressCode category folder, but "
                                 f"DressCode names them {', '.join(CATEGORIES)}")
    for sub in FOLDERS:
        if not (folder / sub).is_dir():
            raise VitonHDLayoutError(f"folder {folder / sub} is missing: the DressCode layout "
                                     f"needs {folder.name}/{sub}/")
    path = category_pairs_path(folder, split, pairing, pairs_file)
    read_pairs(path)
    return path


def own_cloth(person: str) -> str:
    """The in-shop garment of a DressCode person: ``NAME_0.jpg -> NAME_1.jpg``."""
    return person.replace("_0.", "_1.")


def pair_paths(root: Path, pair: Pair) -> dict[str, Path]:
    """Every file read for ``pair`` (its ``tag`` the category) under the DressCode ``root``;
    ``cloth_mask`` and the warps (``warped_cloth``, ``warped_mask``) may be absent."""
    folder, person = root / pair.tag, layout.stem(pair.person)
    base = person.rsplit("_", 1)[0]
    own = base == layout.stem(pair.cloth).rsplit("_", 1)[0]
    cloth = pair.person if own else pair.cloth  # a warp is NAME_0.jpg for the own garment
    return {
        "person": folder / "images" / pair.person,
        "cloth": folder / "images" / pair.cloth,
        "cloth_mask": folder / "cloth_mask" / f"{layout.stem(pair.cloth)}.png",
        "keypoints": folder / "keypoints" / f"{base}_2.json",
        "parse": folder / "label_maps" / f"{base}_4.png",
        "pose": folder / "skeletons" / f"{base}_5.jpg",
        "densepose": folder / "dense" / f"{base}_5.png",
        "warped_cloth": layout.warp_path(root, pair.tag, "cloth-warp", pair.person, cloth),
        "warped_mask": layout.warp_path(root, pair.tag, "cloth-warp-mask", pair.person, cloth),
    }


def read_dresscode_keypoints(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """BODY_25 keypoints (25, 3) in pixels of a photo of ``size`` ``(width, height)`` from a
    DressCode JSON (18 ``[x, y, score, id]`` in a 384x512 frame; negative: undetected)."""
    try:
        rows = json.loads(path.read_bytes().decode("utf-8-sig"))["keypoints"]
    except FileNotFoundError:
        raise VitonHDLayoutError(f"{path} not found: the pair file names it") from None
    except (ValueError, KeyError, TypeError) as error:
        raise VitonHDLayoutError(
            f"{path} is not a DressCode keypoints JSON: expected {{'keypoints': 18 x [x, y, "
            f"score, id]}} ({error})"
        ) from error
    if (not isinstance(rows, list) or len(rows) != len(layout.COCO_18)
            or not all(isinstance(r, list) and len(r) >= 3 for r in rows)):
        raise VitonHDLayoutError(f"{path}: expected 18 keypoints [x, y, score, id]")
    values = [v for row in rows for v in row[:3]]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
           for v in values):
        raise VitonHDLayoutError(f"{path}: keypoints hold non-numbers or non-finite values: "
                                 "expected finite numbers x, y, score")
    points = torch.tensor(values, dtype=torch.float32).reshape(-1, 3)
    detected = (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 2] > 0)
    points[:, 0] *= size[0] / KEYPOINT_FRAME[0]
    points[:, 1] *= size[1] / KEYPOINT_FRAME[1]
    points[~detected] = 0
    body = coco18_to_body25(points)
    check_keypoints(body, path, size)
    return body


def garment_mask(rgb: np.ndarray) -> np.ndarray:
    """The mask of a garment photographed on white: not near-white, holes filled."""
    return ndimage.binary_fill_holes((rgb < WHITE).any(axis=2))


def _labels(parse: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return np.isin(parse, [ATR[name] for name in names])


def repaint_region(parse: np.ndarray, keypoints: torch.Tensor, category: str) -> np.ndarray:
    """The region to repaint (bool (H, W)) of a person wearing a ``category`` garment, from
    its ATR ``parse`` map and BODY_25 ``keypoints`` in the same pixels."""
    height, width = parse.shape
    region = _labels(parse, GARMENT_LABELS[category])
    if category in ("upper_body", "dresses"):
        lines = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(lines)
        line_width = max(1, round(ARM_WIDTH * height))
        for side in ("R", "L"):
            joints = [keypoints[layout.KEYPOINT[f"{side}{j}"]] for j in ("Shoulder", "Elbow",
                                                                          "Wrist")]
            points = [(float(p[0]), float(p[1])) for p in joints if p[2] > 0]
            if len(points) > 1:
                draw.line(points, fill=255, width=line_width, joint="curve")
            for x, y in points:
                r = line_width / 2
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        region |= _labels(parse, ("left_arm", "right_arm")) & (np.array(lines) > 0)
    if category in ("lower_body", "dresses"):
        region |= _labels(parse, ("left_leg", "right_leg"))
    radius = max(1, round(DILATION * height))
    region = ndimage.binary_dilation(region, iterations=radius)
    return region & ~_labels(parse, KEPT_LABELS + OTHER_HALF[category])


class DressCode(Dataset):
    """The DressCode layout as a map-style ``Dataset`` of VITON-HD-like samples.

    Args:
        root: the folder holding ``upper_body/``, ``lower_body/``, ``dresses/``.
        split: ``"train"`` or ``"test"``; pairing: ``"paired"`` or ``"unpaired"``.
        categories: one category or several (their pairs in this order).
        size: ``(height, width)`` or a profile; ``None`` keeps each photo's size.
        warped: return ``warped_cloth`` and ``warped_mask`` (see the module's docstring);
            ``False`` leaves them out, to look at the other inputs of any category.
        pairs_file: a pair file other than DressCode's own (a path, or a name inside the
            category's folder); only with one category.
    The ``tag`` of a sample is its category.
    """

    def __init__(
        self, root: Path | str, split: str = "train", pairing: str = "paired",
        categories: str | tuple[str, ...] = CATEGORIES,
        size: tuple[int, int] | Profile | None = None, warped: bool = True,
        pairs_file: str | Path | None = None,
    ) -> None:
        categories = (categories,) if isinstance(categories, str) else tuple(categories)
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown or not categories:
            raise ValueError(f"categories must be among {CATEGORIES}, got {categories}")
        if pairs_file is not None and len(categories) != 1:
            raise ValueError(f"pairs_file names the pairs of one category, got {categories}")
        self.root, self.split, self.pairing = Path(root), split, pairing
        self.size = _resolve_size(size)
        self.warped = warped
        if not self.root.is_dir():
            raise VitonHDLayoutError(f"{self.root} is not a folder: expected a DressCode root")
        self.pairs: list[Pair] = []
        for category in categories:
            path = check_category(self.root / category, split, pairing, pairs_file)
            for pair in read_pairs(path):
                cloth = own_cloth(pair.person) if pairing == "paired" else pair.cloth
                self.pairs.append(Pair(pair.person, cloth, category))
        for pair in self.pairs:
            for key, path in pair_paths(self.root, pair).items():
                if not path.is_file() and key not in OPTIONAL:
                    raise VitonHDLayoutError(f"{path} not found: the pair file names it")
        if self.pairs:
            self[0]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        paths = pair_paths(self.root, pair)
        person_image = open_image(paths["person"], decode=True)
        native = person_image.size
        height, width = self.size or (native[1], native[0])

        def photo(image: Image.Image, path: Path, resample=Image.Resampling.BICUBIC):
            if image.size != native:
                raise VitonHDLayoutError(f"{path} is {image.size[0]}x{image.size[1]} (WxH) but "
                                         f"{paths['person']} is {native[0]}x{native[1]}: "
                                         "expected one size")
            return photo_rgb(image, path).resize((width, height), resample)

        def to_tensor(rgb: Image.Image) -> torch.Tensor:
            pixels = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)
            return pixels / 127.5 - 1

        def to_mask(mask: np.ndarray) -> torch.Tensor:
            grey = Image.fromarray(mask.astype(np.float32)).resize((width, height),
                                                                   Image.Resampling.BILINEAR)
            return (torch.from_numpy(np.array(grey)) > 0.5).float()[None]

        parse_image = open_image(paths["parse"], decode=True)
        check_mode(parse_image, paths["parse"], "labels")
        parse = label_array(parse_image, paths["parse"], ATR_LABELS)
        if parse.shape != (native[1], native[0]):
            raise VitonHDLayoutError(f"{paths['parse']} is {parse.shape[1]}x{parse.shape[0]} "
                                     f"(WxH): expected {native[0]}x{native[1]} like the person")
        keypoints = read_dresscode_keypoints(paths["keypoints"], native)
        region = repaint_region(parse, keypoints, pair.tag)
        person_rgb = np.array(photo_rgb(person_image, paths["person"]), dtype=np.float32)
        agnostic_rgb = np.where(region[..., None], 128.0, person_rgb).astype(np.uint8)
        cloth_rgb = photo(open_image(paths["cloth"], decode=True), paths["cloth"])
        if paths["cloth_mask"].is_file():
            mask_image = open_image(paths["cloth_mask"], decode=True)
            photo(mask_image.convert("L"), paths["cloth_mask"])  # checks its size
            cloth_mask = to_mask(mask_array(mask_image, paths["cloth_mask"]) > 0.5)
        else:
            cloth_image = photo_rgb(open_image(paths["cloth"], decode=True), paths["cloth"])
            cloth_mask = to_mask(garment_mask(np.array(cloth_image)))
        dense = label_array(open_image(paths["densepose"], decode=True), paths["densepose"],
                            tuple(str(i) for i in range(25)))
        dense_grey = Image.fromarray((dense * 10).astype(np.uint8)).convert("RGB")
        lip = Image.fromarray(ATR_TO_LIP[parse].astype(np.uint8)).resize(
            (width, height), Image.Resampling.NEAREST)
        scaled = keypoints.clone()
        scaled[:, 0] *= width / native[0]
        scaled[:, 1] *= height / native[1]
        sample = {
            "person": to_tensor(Image.fromarray(person_rgb.astype(np.uint8)).resize(
                (width, height), Image.Resampling.BICUBIC)),
            "agnostic": to_tensor(Image.fromarray(agnostic_rgb).resize(
                (width, height), Image.Resampling.BICUBIC)),
            "agnostic_mask": to_mask(region),
            "cloth": to_tensor(cloth_rgb),
            "cloth_mask": cloth_mask,
            "pose": to_tensor(photo(open_image(paths["pose"], decode=True), paths["pose"])),
            "densepose": to_tensor(dense_grey.resize((width, height),
                                                     Image.Resampling.NEAREST)),
            "parse": torch.from_numpy(np.array(lip, dtype=np.int64)),
            "keypoints": scaled,
        }
        warped_path, warped_mask_path = paths["warped_cloth"], paths["warped_mask"]
        if not self.warped:
            pass
        elif warped_path.is_file() and warped_mask_path.is_file():
            sample["warped_cloth"] = to_tensor(photo(open_image(warped_path, decode=True),
                                                     warped_path))
            sample["warped_mask"] = to_mask(mask_array(open_image(
                warped_mask_path, decode=True), warped_mask_path) > 0.5)
        elif pair.tag == "upper_body":
            try:
                sample["warped_cloth"], sample["warped_mask"] = warp_garment(
                    sample["cloth"], sample["cloth_mask"], scaled)
            except ValueError as error:
                raise VitonHDLayoutError(f"cannot warp {paths['cloth']} onto "
                                         f"{paths['keypoints']}: {error}") from error
        else:
            raise VitonHDLayoutError(
                f"{warped_path} not found: the TPS warp is a top's, so {pair.tag} needs its "
                "warped garments written in cloth-warp/ and cloth-warp-mask/"
            )
        sample.update(person_name=pair.person, cloth_name=pair.cloth, tag=pair.tag)
        return sample

    def __repr__(self) -> str:
        return (f"DressCode(root={str(self.root)!r}, split={self.split!r}, "
                f"pairing={self.pairing!r}, size={self.size}, pairs={len(self)})")
