"""The VITON-HD loader: one ``Dataset`` for the real release and for ToyVITON.

It reads the layout of :mod:`gardiffmini.data.layout`, checks it when it is built, and
returns every input a try-on model sees, resized to one size::

    person, agnostic, cloth, warped_cloth, pose, densepose   float (3, H, W) in [-1, 1]
    agnostic_mask, cloth_mask, warped_mask                   float (1, H, W) in {0, 1}
    parse                                                    int64 (H, W), LIP labels
    keypoints                                                float (25, 3): x, y, confidence
    person_name, cloth_name, tag                             str

*Paired* means the person wears their own garment: as in the loaders of the field, the
garment's name is the person's name (first column of the pair file). *Unpaired* takes the
garment of the second column. A third column (GP-VTON) is kept as ``tag``.

The warped garment ``I_w`` and its mask ``m_w`` come from ``cloth-warp/`` when the layout has
it and the garment is the person's own (``warp="given"`` or ``"auto"``); otherwise
(unpaired pairs, the real release) from the TPS warp of :mod:`gardiffmini.data.warp`.

Masks are thresholded at 0.5: the release stores some as JPEG, whose compression noise is
tolerated; a file that cannot be a mask (a colour photo, a grey photo) is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from gardiffmini.data import layout
from gardiffmini.data.warp import warp_garment
from gardiffmini.profiles import Profile, get_profile

# sample key -> (folder, kind); kind is "image" (RGB), "mask" (binary) or "labels" (parse map)
FIELDS = {
    "person": ("image", "image"),
    "agnostic": ("agnostic-v3.2", "image"),
    "pose": ("openpose_img", "image"),
    "densepose": ("image-densepose", "image"),
    "agnostic_mask": ("agnostic-mask", "mask"),
    "parse": ("image-parse-v3", "labels"),
    "cloth": ("cloth", "image"),
    "cloth_mask": ("cloth-mask", "mask"),
    "warped_cloth": ("cloth-warp", "image"),
    "warped_mask": ("cloth-warp-mask", "mask"),
}
WARP_KEYS = ("warped_cloth", "warped_mask")
KEYPOINTS_FOLDER = "openpose_json"

# A mask is near-binary when this fraction of its pixels lies within MASK_TOLERANCE of 0 or 1
# (JPEG ringing stays well inside), and grey-valued when as many have channels this close.
MASK_TOLERANCE = 0.15
MASK_MIN_FRACTION = 0.95
MASK_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")
LABEL_MODES = ("L", "P")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)


class VitonHDLayoutError(ValueError):
    """The folder is not a readable VITON-HD layout; the message names the file at fault."""


@dataclass(frozen=True)
class Pair:
    """One line of a pair file: the person's image name, the garment's, and an optional tag."""

    person: str
    cloth: str
    tag: str = ""


def read_pairs(path: Path | str) -> list[Pair]:
    """Read a pair file of two (``person cloth``) or three (``person cloth tag``) columns."""
    path = Path(path)
    if not path.is_file():
        raise VitonHDLayoutError(f"pair file {path} not found: expected lines 'person cloth'")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) not in (2, 3):
            raise VitonHDLayoutError(
                f"{path}, line {number}: expected 2 or 3 columns (person cloth [tag]), "
                f"got {len(columns)}: {line!r}"
            )
        pairs.append(Pair(*columns))
    if not pairs:
        raise VitonHDLayoutError(f"pair file {path} is empty: expected lines 'person cloth'")
    return pairs


def open_image(path: Path, decode: bool = False) -> Image.Image:
    """Open ``path`` (its header only unless ``decode``), naming the file on any failure."""
    try:
        image = Image.open(path)
        if decode:
            image.load()
    except FileNotFoundError:
        raise VitonHDLayoutError(f"{path} not found: the pair file names it") from None
    except DECODE_ERRORS as error:
        raise VitonHDLayoutError(
            f"{path} is unreadable or truncated: expected a complete image ({error})"
        ) from error
    return image


def mask_array(image: Image.Image, path: Path) -> np.ndarray:
    """A mask as a float (H, W) array in [0, 1], after checking that it can be a mask.

    A mask must be single-channel or grey-valued (equal R, G, B) and near-binary: at least
    ``MASK_MIN_FRACTION`` of its pixels within ``MASK_TOLERANCE`` of 0 or 1.
    """
    if image.mode not in MASK_MODES:
        raise VitonHDLayoutError(f"{path} has mode {image.mode}: a mask must be grey or RGB")
    if image.mode in ("1", "L"):
        grey = np.asarray(image.convert("L"), dtype=np.float32) / 255
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
        spread = rgb.max(axis=2) - rgb.min(axis=2)
        if np.mean(spread <= MASK_TOLERANCE) < MASK_MIN_FRACTION:
            raise VitonHDLayoutError(
                f"{path} is a colour image in a mask's place: expected a grey-valued, "
                "near-binary mask"
            )
        grey = rgb.mean(axis=2)
    near_binary = np.minimum(grey, 1 - grey) <= MASK_TOLERANCE
    if np.mean(near_binary) < MASK_MIN_FRACTION:
        raise VitonHDLayoutError(
            f"{path} is not near-binary ({np.mean(near_binary):.0%} of pixels near 0 or 1): "
            f"expected a mask with at least {MASK_MIN_FRACTION:.0%}"
        )
    return grey


def read_keypoints(path: Path) -> torch.Tensor:
    """The BODY_25 keypoints of the first person in an OpenPose JSON, (25, 3); zeros if none."""
    try:
        people = json.loads(path.read_text())["people"]
        if not people:
            return torch.zeros(len(layout.BODY_25), 3)
        flat = people[0]["pose_keypoints_2d"]
    except FileNotFoundError:
        raise VitonHDLayoutError(f"{path} not found: the pair file names it") from None
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise VitonHDLayoutError(
            f"{path} is not an OpenPose JSON: expected people[0].pose_keypoints_2d ({error})"
        ) from error
    if len(flat) != 3 * len(layout.BODY_25):
        raise VitonHDLayoutError(
            f"{path}: expected {3 * len(layout.BODY_25)} BODY_25 values, got {len(flat)}"
        )
    return torch.tensor(flat, dtype=torch.float32).reshape(len(layout.BODY_25), 3)


def _resolve_size(size: tuple[int, int] | str | Profile | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (str, Profile)):
        return get_profile(size).image_size
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (height, width) of positive ints or a profile, got {size}")
    return (int(size[0]), int(size[1]))


class VitonHD(Dataset):
    """The VITON-HD layout (real release or ToyVITON) as a map-style ``Dataset``.

    Args:
        root: the folder holding ``train/``, ``test/`` and the pair files.
        split: ``"train"`` or ``"test"``.
        pairing: ``"paired"`` (the person's own garment) or ``"unpaired"`` (another one).
        size: ``(height, width)`` of every returned image, or a profile (name); ``None``
            keeps each pair's own size.
        pairs_file: a pair file other than the layout's default for ``split`` and ``pairing``
            (a path, or a name inside ``root``).
        warp: ``"given"`` (``cloth-warp/``, required), ``"tps"`` (always the TPS warp) or
            ``"auto"`` (``cloth-warp/`` where it applies, else TPS).
        check_images: fully decode every file and check every mask and JSON when built;
            by default only headers are read (and the first pair is decoded in full).
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        pairing: str = "paired",
        size: tuple[int, int] | str | Profile | None = None,
        pairs_file: str | Path | None = None,
        warp: str = "auto",
        check_images: bool = False,
    ) -> None:
        if split not in layout.SPLITS:
            raise ValueError(f"split must be one of {layout.SPLITS}, got {split!r}")
        if pairing not in ("paired", "unpaired"):
            raise ValueError(f"pairing must be 'paired' or 'unpaired', got {pairing!r}")
        if warp not in ("given", "tps", "auto"):
            raise ValueError(f"warp must be 'given', 'tps' or 'auto', got {warp!r}")
        self.root = Path(root)
        self.split = split
        self.pairing = pairing
        self.size = _resolve_size(size)
        self.warp = warp
        self.pairs_file = self._pairs_path(pairs_file)
        self._check_folders()
        pairs = read_pairs(self.pairs_file)
        if pairing == "paired":
            pairs = [Pair(p.person, p.person, p.tag) for p in pairs]
        self.pairs = pairs
        self.given_warp = [self._uses_given_warp(pair) for pair in pairs]
        self._check_pairs(check_images)

    # ---- construction-time checks -------------------------------------------------------
    def _pairs_path(self, pairs_file: str | Path | None) -> Path:
        if pairs_file is not None:
            path = Path(pairs_file)
            return path if path.is_absolute() or path.exists() else self.root / path
        key = (self.split, self.pairing)
        if key not in layout.PAIR_FILES:
            raise VitonHDLayoutError(
                f"the layout has no default pair file for {self.split} {self.pairing}: "
                "pass pairs_file"
            )
        return self.root / layout.PAIR_FILES[key]

    def _check_folders(self) -> None:
        if not self.root.is_dir():
            raise VitonHDLayoutError(f"{self.root} is not a folder: expected a VITON-HD root")
        required = [folder for key, (folder, _) in FIELDS.items() if key not in WARP_KEYS]
        if self.warp == "given":
            required += [FIELDS[key][0] for key in WARP_KEYS]
        for folder in (*required, KEYPOINTS_FOLDER):
            path = self.root / self.split / folder
            if not path.is_dir():
                raise VitonHDLayoutError(
                    f"folder {path} is missing: the VITON-HD layout needs {self.split}/{folder}/"
                )

    def _has_given_warp(self) -> bool:
        return all((self.root / self.split / FIELDS[key][0]).is_dir() for key in WARP_KEYS)

    def _uses_given_warp(self, pair: Pair) -> bool:
        own_garment = layout.stem(pair.person) == layout.stem(pair.cloth)
        if self.warp == "given" and not own_garment:
            raise VitonHDLayoutError(
                f"{self.pairs_file}: warp='given' needs each person's own garment, but "
                f"{pair.person} is paired with {pair.cloth}; use warp='auto' or 'tps'"
            )
        return self.warp != "tps" and own_garment and self._has_given_warp()

    def _paths(self, index: int) -> dict[str, Path]:
        pair, paths = self.pairs[index], {}
        for key, (folder, _) in FIELDS.items():
            if key in WARP_KEYS and not self.given_warp[index]:
                continue
            if folder in layout.CLOTH_FILES:
                paths[key] = layout.cloth_path(self.root, self.split, folder, pair.cloth)
            else:
                paths[key] = layout.person_path(self.root, self.split, folder, pair.person)
        return paths

    def _keypoints_path(self, index: int) -> Path:
        person = self.pairs[index].person
        return layout.person_path(self.root, self.split, KEYPOINTS_FOLDER, person)

    def _check_pairs(self, check_images: bool) -> None:
        headers: dict[Path, tuple[tuple[int, int], str]] = {}
        for index in range(len(self.pairs)):
            paths = self._paths(index)
            keypoints = self._keypoints_path(index)
            if not keypoints.is_file():
                raise VitonHDLayoutError(f"{keypoints} not found: {self.pairs_file} names it")
            for key, path in paths.items():
                if path not in headers:
                    if not path.is_file():
                        raise VitonHDLayoutError(f"{path} not found: {self.pairs_file} names it")
                    image = open_image(path)
                    headers[path] = (image.size, image.mode)
                    self._check_mode(key, path, image.mode)
            person_size = headers[paths["person"]][0]
            for path in paths.values():
                if headers[path][0] != person_size:
                    raise VitonHDLayoutError(
                        f"{path} is {headers[path][0][0]}x{headers[path][0][1]} (WxH) but the "
                        f"person image {paths['person']} is {person_size[0]}x{person_size[1]}: "
                        "expected every image of a pair to have one size"
                    )
            if check_images or index == 0:
                self[index]

    @staticmethod
    def _check_mode(key: str, path: Path, mode: str) -> None:
        kind = FIELDS[key][1]
        if kind == "mask" and mode not in MASK_MODES:
            raise VitonHDLayoutError(f"{path} has mode {mode}: a mask must be grey or RGB")
        if kind == "labels" and mode not in LABEL_MODES:
            raise VitonHDLayoutError(
                f"{path} has mode {mode}: a parse map must be a palette or grey label image"
            )

    # ---- reading --------------------------------------------------------------------------
    def _output_size(self, native: tuple[int, int]) -> tuple[int, int]:
        """``(height, width)`` of the outputs, given the native PIL ``(width, height)``."""
        return self.size or (native[1], native[0])

    def _read(self, key: str, path: Path, size: tuple[int, int]) -> torch.Tensor:
        kind = FIELDS[key][1]
        image = open_image(path, decode=True)
        pil_size = (size[1], size[0])
        if kind == "labels":
            labels = image.resize(pil_size, Image.Resampling.NEAREST)
            return torch.from_numpy(np.array(labels, dtype=np.int64))
        if kind == "mask":
            grey = Image.fromarray(mask_array(image, path)).resize(
                pil_size, Image.Resampling.BILINEAR
            )
            return (torch.from_numpy(np.array(grey)) > 0.5).float()[None]
        rgb = image.convert("RGB").resize(pil_size, Image.Resampling.BICUBIC)
        pixels = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)
        return (pixels / 127.5 - 1).clamp(-1, 1)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        paths = self._paths(index)
        native = open_image(paths["person"]).size
        size = self._output_size(native)
        sample: dict = {key: self._read(key, path, size) for key, path in paths.items()}
        keypoints = read_keypoints(self._keypoints_path(index))
        keypoints[:, 0] *= size[1] / native[0]
        keypoints[:, 1] *= size[0] / native[1]
        sample["keypoints"] = keypoints
        if not self.given_warp[index]:
            try:
                warped, mask = warp_garment(sample["cloth"], sample["cloth_mask"], keypoints)
            except ValueError as error:
                raise VitonHDLayoutError(
                    f"cannot warp {paths['cloth']} onto {self._keypoints_path(index)}: {error}"
                ) from error
            sample["warped_cloth"], sample["warped_mask"] = warped, mask
        sample.update(person_name=pair.person, cloth_name=pair.cloth, tag=pair.tag)
        return sample

    # ---- description ----------------------------------------------------------------------
    def describe(self) -> str:
        """A few lines: where the data is, which pairs, what size, where I_w comes from."""
        given = sum(self.given_warp)
        size = f"{self.size[0]}x{self.size[1]}" if self.size else "native"
        return "\n".join([
            f"VITON-HD layout at {self.root}",
            f"  split {self.split}, {self.pairing}: {len(self)} pairs from {self.pairs_file.name}",
            f"  size (HxW): {size}",
            f"  warped garment: {given} from cloth-warp/, {len(self) - given} by TPS",
        ])

    def __repr__(self) -> str:
        return (
            f"VitonHD(root={str(self.root)!r}, split={self.split!r}, pairing={self.pairing!r}, "
            f"size={self.size}, warp={self.warp!r}, pairs={len(self)})"
        )
