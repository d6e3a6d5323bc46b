"""A short fingerprint of a data set split: what a training run's identity needs of its data.

A run is reused when its configuration hash matches, so the hash must change whenever the
data that would train it changes. Hashing every file of a real release (tens of GB) at each
start is too slow; the fingerprint hashes

- the root folder (resolved), so two copies in different places are two data sets;
- the split's pair file, in full (which pairs, in which order);
- a deterministic sample of the pairs (``sample`` of them, evenly spaced over the pair file,
  first and last included): for each, the name, size and SHA-256 of every file the loader
  reads for it, the written warps included where present.

Regenerating ToyVITON with another seed, replacing images, adding or removing pairs, or
writing warps changes it; an edit to a file outside the sample may not (say so, or delete
the run). Both layouts of :mod:`gardiffmini.data.datasets` are fingerprinted alike: a
DressCode category folder by its pair file and the files that
:func:`~gardiffmini.data.dresscode.pair_paths` names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gardiffmini.data import dresscode, layout
from gardiffmini.data.datasets import layout_of
from gardiffmini.data.vitonhd import (
    FIELDS,
    KEYPOINTS_FOLDER,
    WARP_KEYS,
    Pair,
    pairs_path,
    read_pairs,
)

SAMPLE_PAIRS = 16


def _sample_indices(count: int, sample: int) -> list[int]:
    if count <= sample:
        return list(range(count))
    return sorted({round(i * (count - 1) / (sample - 1)) for i in range(sample)})


def pair_files(root: Path, split: str, person: str, cloth: str) -> list[Path]:
    """Every file the loader may read for one pair (written warps included)."""
    files = []
    for key, (folder, _) in FIELDS.items():
        if key in WARP_KEYS:
            files.append(layout.warp_path(root, split, folder, person, cloth))
        elif folder in layout.CLOTH_FILES:
            files.append(layout.cloth_path(root, split, folder, cloth))
        else:
            files.append(layout.person_path(root, split, folder, person))
    files.append(layout.person_path(root, split, KEYPOINTS_FOLDER, person))
    return files


def _paired_files(root: Path, split: str, pairs_file: str | Path | None
                  ) -> tuple[Path, list[list[Path]]]:
    """The paired pair file of ``split`` and, per pair, every file the loader may read."""
    if layout_of(root) == "dresscode":
        path = dresscode.check_category(root, split, "paired", pairs_file)
        pairs = [Pair(p.person, dresscode.own_cloth(p.person), root.name)
                 for p in read_pairs(path)]
        return path, [list(dresscode.pair_paths(root.parent, pair).values()) for pair in pairs]
    path = pairs_path(root, split, "paired", pairs_file)
    return path, [pair_files(root, split, p.person, p.cloth) for p in read_pairs(path)]


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.stat().st_size}:{digest.hexdigest()}"


def data_fingerprint(
    root: Path | str, split: str = "train", pairs_file: str | Path | None = None,
    sample: int = SAMPLE_PAIRS,
) -> str:
    """A 16-hex-digit fingerprint of ``split`` of the data set at ``root`` (see the module's
    docstring); ``pairs_file`` as :func:`~gardiffmini.data.datasets.open_dataset` takes it
    (default: the split's paired pair file)."""
    if sample < 2:
        raise ValueError(f"data_fingerprint: sample must be >= 2 pairs, got {sample}")
    root = Path(root).resolve()
    path, files = _paired_files(root, split, pairs_file)
    digest = hashlib.sha256()
    digest.update(f"root={root}\nsplit={split}\n".encode())
    digest.update(f"pairs={path.name}:{_file_digest(path)}\n".encode())
    for index in _sample_indices(len(files), sample):
        for file in files[index]:
            digest.update(f"{file.relative_to(root)}={_file_digest(file)}\n".encode())
    return digest.hexdigest()[:16]
