"""The VITON-HD loader: one ``Dataset`` for the real release and for ToyVITON.

It reads the layout of :mod:`gardiffmini.data.layout`, checks it when it is built, and
returns every input a try-on model sees, resized to one size::

    person, agnostic, cloth, warped_cloth, pose, densepose   float (3, H, W) in [-1, 1]
    agnostic_mask, cloth_mask, warped_mask                   float (1, H, W) in {0, 1}
    parse                                                    int64 (H, W), LIP labels
    keypoints                                                float (25, 3): x, y, confidence
    person_name, cloth_name, tag                             str
    truth, truth_parse        the person wearing the pair's garment, and its labels: the
                              photo and parse for paired pairs; ToyVITON's rendered unpaired
                              truth where it is written (``has_truth``), else absent

*Paired* means the person wears their own garment: as in the loaders of the field, the
garment's name is the person's name (first column of the pair file). *Unpaired* takes the
garment of the second column, from ``test_pairs_unpaired.txt`` where it exists and else
from ``test_pairs.txt`` (the release keeps its unpaired pairs there). A third column
(GP-VTON) is kept as ``tag``.

The warped garment ``I_w`` and its mask ``m_w`` come from ``cloth-warp/`` where the pair's
warp is written there (ToyVITON's ground truth for the person's own garment, or the warps
written once by ``python -m gardiffmini warp``), else from the warp of
:mod:`gardiffmini.data.warp` (the torso by TPS, the sleeves along the arms), computed on the
fly.

Every file is read as what it is by :mod:`gardiffmini.data.images` (16-bit, transparent,
0/1 masks, palette label maps) and :mod:`gardiffmini.data.keypoints` (BODY_25 or COCO-18,
one person chosen, values checked); anything that cannot be read right is an error naming
the file. Masks are thresholded at 0.5: the release stores some as JPEG, whose compression
noise is tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from gardiffmini.data import layout
from gardiffmini.data.images import (
    MASK_MIN_FRACTION,
    MASK_TOLERANCE,
    check_mode,
    label_array,
    mask_array,
    open_image,
    photo_rgb,
)
from gardiffmini.data.keypoints import read_keypoints
from gardiffmini.data.layout import VitonHDLayoutError
from gardiffmini.data.warp import warp_garment
from gardiffmini.profiles import Profile

__all__ = [
    "FIELDS", "MASK_MIN_FRACTION", "MASK_TOLERANCE", "Pair", "VitonHD", "VitonHDLayoutError",
    "check_layout", "mask_array", "open_image", "read_keypoints", "read_pairs",
]

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
LOADER_WARPS = ("given", "tps", "tps-arms", "auto")
# ToyVITON's unpaired truth (sample key -> folder, kind), beside the layout
TRUTH_FIELDS = {
    "truth": ("image-tryon", "image"),
    "truth_parse": ("image-parse-tryon", "labels"),
}
KEYPOINTS_FOLDER = "openpose_json"


@dataclass(frozen=True)
class Pair:
    """One line of a pair file: the person's image name, the garment's, and an optional tag."""

    person: str
    cloth: str
    tag: str = ""


def _pair_file_text(path: Path) -> str:
    """The text of a pair file: UTF-8, a byte-order mark dropped; binary or another encoding
    is an error naming the file and the line."""
    data = path.read_bytes()
    if b"\0" in data:
        raise VitonHDLayoutError(
            f"pair file {path} is binary (it holds NUL bytes): expected a text file of lines "
            "'person cloth'"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise VitonHDLayoutError(
            f"pair file {path}, line {line}: byte 0x{data[error.start]:02x} is not UTF-8: "
            "expected a UTF-8 (or ASCII) text file of lines 'person cloth'"
        ) from None


def read_pairs(path: Path | str) -> list[Pair]:
    """Read a pair file of two (``person cloth``) or three (``person cloth tag``) columns.

    Columns are separated by any whitespace; blank lines, Windows line ends and a UTF-8
    byte-order mark are ignored. A name holding an invisible or control character is an
    error (it would name a file that is not there).
    """
    path = Path(path)
    if not path.is_file():
        raise VitonHDLayoutError(f"pair file {path} not found: expected lines 'person cloth'")
    pairs = []
    for number, line in enumerate(_pair_file_text(path).splitlines(), start=1):
        columns = line.split()
        if not columns:
            continue
        if len(columns) not in (2, 3):
            raise VitonHDLayoutError(
                f"{path}, line {number}: expected 2 or 3 columns (person cloth [tag]), "
                f"got {len(columns)}: {line!r}"
            )
        hidden = [column for column in columns if not column.isprintable()]
        if hidden:
            raise VitonHDLayoutError(
                f"{path}, line {number}: {hidden[0]!r} holds an invisible or control "
                "character: expected plain file names"
            )
        pairs.append(Pair(*columns))
    if not pairs:
        raise VitonHDLayoutError(f"pair file {path} is empty: expected lines 'person cloth'")
    return pairs


def pairs_path(root: Path, split: str, pairing: str, pairs_file: str | Path | None = None
               ) -> Path:
    """The pair file of ``split`` and ``pairing`` under ``root``: ``pairs_file`` if given (a
    path, or a name inside ``root``), else the first of the layout's candidates that exists
    (:func:`~gardiffmini.data.layout.pair_file_candidates`)."""
    if pairs_file is not None:
        path = Path(pairs_file)
        return path if path.is_absolute() or path.exists() else root / path
    candidates = layout.pair_file_candidates(split, pairing)
    if not candidates:
        raise VitonHDLayoutError(
            f"the layout has no default pair file for {split} {pairing}: pass pairs_file"
        )
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise VitonHDLayoutError(
        f"pair file {root / candidates[0]} not found: expected the {split} {pairing} pairs in "
        f"{' or '.join(candidates)} under {root}"
    )


def check_layout(root: Path | str, split: str = "train", pairing: str = "paired",
                 pairs_file: str | Path | None = None) -> Path:
    """A quick check, before any work, that ``root`` is a VITON-HD layout with ``split``'s
    folders and a readable pair file; returns the pair file. Reads no image (the loader
    checks those when it is built)."""
    root = Path(root)
    if not root.is_dir():
        raise VitonHDLayoutError(f"{root} is not a folder: expected a VITON-HD root")
    for folder in (*_required_folders(warp_given=False), KEYPOINTS_FOLDER):
        if not (root / split / folder).is_dir():
            raise VitonHDLayoutError(
                f"folder {root / split / folder} is missing: the VITON-HD layout needs "
                f"{split}/{folder}/"
            )
    path = pairs_path(root, split, pairing, pairs_file)
    read_pairs(path)
    return path


def _required_folders(warp_given: bool) -> list[str]:
    return [folder for key, (folder, _) in FIELDS.items() if warp_given or key not in WARP_KEYS]


def _resolve_size(size: tuple[int, int] | Profile | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, Profile):
        return size.image_size
    if isinstance(size, str) or len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (height, width) of positive ints or a Profile, "
                         f"got {size!r}")
    return (int(size[0]), int(size[1]))


class VitonHD(Dataset):
    """The VITON-HD layout (real release or ToyVITON) as a map-style ``Dataset``.

    Args:
        root: the folder holding ``train/``, ``test/`` and the pair files.
        split: ``"train"`` or ``"test"``.
        pairing: ``"paired"`` (the person's own garment) or ``"unpaired"`` (another one).
        size: ``(height, width)`` of every returned image, or a
            :class:`~gardiffmini.profiles.Profile` (its image size); ``None`` keeps each
            pair's own size.
        pairs_file: a pair file other than the layout's default for ``split`` and ``pairing``
            (a path, or a name inside ``root``).
        warp: ``"given"`` (``cloth-warp/``, required), ``"tps"`` (always the TPS warp),
            ``"tps-arms"`` (always the TPS warp, its torso behind the arms drawn from the
            keypoints: :mod:`gardiffmini.data.arms`) or ``"auto"`` (``cloth-warp/`` where it
            applies, else TPS).
        check_images: fully decode every file and check every mask and JSON when built;
            by default only headers are read (and the first pair is decoded in full).
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        pairing: str = "paired",
        size: tuple[int, int] | Profile | None = None,
        pairs_file: str | Path | None = None,
        warp: str = "auto",
        check_images: bool = False,
    ) -> None:
        if split not in layout.SPLITS:
            raise ValueError(f"split must be one of {layout.SPLITS}, got {split!r}")
        if pairing not in ("paired", "unpaired"):
            raise ValueError(f"pairing must be 'paired' or 'unpaired', got {pairing!r}")
        if warp not in LOADER_WARPS:
            raise ValueError(f"warp must be one of {LOADER_WARPS}, got {warp!r}")
        self.root = Path(root)
        self.split = split
        self.pairing = pairing
        self.size = _resolve_size(size)
        self.warp = warp
        self._check_folders()
        self.pairs_file = pairs_path(self.root, split, pairing, pairs_file)
        pairs = read_pairs(self.pairs_file)
        if pairing == "paired":
            pairs = [Pair(p.person, p.person, p.tag) for p in pairs]
        elif all(layout.stem(p.person) == layout.stem(p.cloth) for p in pairs):
            raise VitonHDLayoutError(
                f"{self.pairs_file} pairs every person with their own garment, but "
                "pairing='unpaired' was asked: expected a pair file of other garments "
                "(or pairing='paired')"
            )
        self.pairs = pairs
        self.given_warp = [self._uses_given_warp(pair) for pair in pairs]
        self.has_truth = pairing == "paired" or all(
            path.is_file() for pair in pairs for path in self._truth_paths(pair).values())
        self._check_pairs(check_images)

    # ---- construction-time checks -------------------------------------------------------
    def _check_folders(self) -> None:
        if not self.root.is_dir():
            raise VitonHDLayoutError(f"{self.root} is not a folder: expected a VITON-HD root")
        for folder in (*_required_folders(self.warp == "given"), KEYPOINTS_FOLDER):
            path = self.root / self.split / folder
            if not path.is_dir():
                raise VitonHDLayoutError(
                    f"folder {path} is missing: the VITON-HD layout needs {self.split}/{folder}/"
                )

    def _warp_paths(self, pair: Pair) -> dict[str, Path]:
        return {key: layout.warp_path(self.root, self.split, FIELDS[key][0], pair.person,
                                      pair.cloth) for key in WARP_KEYS}

    def _truth_paths(self, pair: Pair) -> dict[str, Path]:
        return {key: layout.truth_path(self.root, self.split, folder, pair.person, pair.cloth)
                for key, (folder, _) in TRUTH_FIELDS.items()}

    def _uses_given_warp(self, pair: Pair) -> bool:
        if self.warp in ("tps", "tps-arms"):
            return False
        missing = [path for path in self._warp_paths(pair).values() if not path.is_file()]
        if missing and self.warp == "given":
            raise VitonHDLayoutError(
                f"{missing[0]} not found: warp='given' needs the warp of every pair of "
                f"{self.pairs_file} (write them with: python -m gardiffmini warp --root "
                f"{self.root}), or use warp='auto' or 'tps'"
            )
        return not missing

    def _paths(self, index: int) -> dict[str, Path]:
        pair, paths = self.pairs[index], {}
        for key, (folder, _) in FIELDS.items():
            if key in WARP_KEYS:
                continue
            if folder in layout.CLOTH_FILES:
                paths[key] = layout.cloth_path(self.root, self.split, folder, pair.cloth)
            else:
                paths[key] = layout.person_path(self.root, self.split, folder, pair.person)
        if self.given_warp[index]:
            paths.update(self._warp_paths(pair))
        if self.has_truth and self.pairing == "unpaired":
            paths.update(self._truth_paths(pair))
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
                    check_mode(image, path, (FIELDS | TRUTH_FIELDS)[key][1])
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

    # ---- reading --------------------------------------------------------------------------
    def _output_size(self, native: tuple[int, int]) -> tuple[int, int]:
        """``(height, width)`` of the outputs, given the native PIL ``(width, height)``."""
        return self.size or (native[1], native[0])

    def _read(self, key: str, path: Path, size: tuple[int, int]) -> torch.Tensor:
        kind = (FIELDS | TRUTH_FIELDS)[key][1]
        image = open_image(path, decode=True)
        pil_size = (size[1], size[0])
        if kind == "labels":
            label_array(image, path, layout.PARSE_LABELS)  # every label must be a LIP label
            labels = image.resize(pil_size, Image.Resampling.NEAREST)
            return torch.from_numpy(np.array(labels, dtype=np.int64))
        if kind == "mask":
            grey = Image.fromarray(mask_array(image, path)).resize(
                pil_size, Image.Resampling.BILINEAR
            )
            return (torch.from_numpy(np.array(grey)) > 0.5).float()[None]
        rgb = photo_rgb(image, path).resize(pil_size, Image.Resampling.BICUBIC)
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
        keypoints = read_keypoints(self._keypoints_path(index), native)
        keypoints[:, 0] *= size[1] / native[0]
        keypoints[:, 1] *= size[0] / native[1]
        sample["keypoints"] = keypoints
        if not self.given_warp[index]:
            try:
                warped, mask = warp_garment(sample["cloth"], sample["cloth_mask"], keypoints,
                                            arms_in_front=self.warp == "tps-arms")
            except ValueError as error:
                raise VitonHDLayoutError(
                    f"cannot warp {paths['cloth']} onto {self._keypoints_path(index)}: {error}"
                ) from error
            sample["warped_cloth"], sample["warped_mask"] = warped, mask
        if self.pairing == "paired":
            sample["truth"], sample["truth_parse"] = sample["person"], sample["parse"]
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
            f"  warped garment: {given} from cloth-warp/ (written), {len(self) - given} by TPS",
        ])

    def __repr__(self) -> str:
        return (
            f"VitonHD(root={str(self.root)!r}, split={self.split!r}, pairing={self.pairing!r}, "
            f"size={self.size}, warp={self.warp!r}, pairs={len(self)})"
        )
