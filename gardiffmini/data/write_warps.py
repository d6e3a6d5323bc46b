"""Warps computed once: the warp of every pair written into ``cloth-warp/``.

The loader warps a garment on the fly when a pair has no written warp; at the release's
1024x768 that is most of the cost of reading a pair. ``python -m gardiffmini warp --root R``
(:func:`write_warps`) writes, for every pair of the train split and every pair of the test
split, paired and unpaired, ``cloth-warp/`` and ``cloth-warp-mask/`` at the photos' own size
(names: :func:`gardiffmini.data.layout.warp_path`), in several worker processes, and the
loader (``warp="auto"``) then reads them. The warp is
:func:`~gardiffmini.data.warp.warp_garment`'s (the torso by TPS, the sleeves along the arms).
Files already there are kept (ToyVITON's ground-truth warps among them, and the warps an
older version wrote) unless ``overwrite``; each file is written atomically, so an interrupted
run leaves no half-written warp and resumes where it stopped.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from gardiffmini.data import layout
from gardiffmini.data.images import mask_array, open_image, photo_rgb
from gardiffmini.data.keypoints import read_keypoints
from gardiffmini.data.layout import VitonHDLayoutError
from gardiffmini.data.vitonhd import KEYPOINTS_FOLDER, Pair, pairs_path, read_pairs
from gardiffmini.data.warp import warp_garment

JPEG_QUALITY = 95


def warp_pairs(
    root: Path | str, split: str, pairs_file: str | Path | None = None
) -> list[Pair]:
    """The pairs of ``split`` whose warps the loader may ask for, each once.

    Every person with their own garment (the paired pairs) and, for the test split, every
    pair of the unpaired pair file; with ``pairs_file``, the pairs of that file as they are.
    """
    root = Path(root)
    if pairs_file is not None:
        pairs = read_pairs(pairs_path(root, split, "unpaired", pairs_file))
        return list(dict.fromkeys(Pair(p.person, p.cloth) for p in pairs))
    paired = read_pairs(pairs_path(root, split, "paired"))
    wanted = [Pair(p.person, p.person) for p in paired]
    if layout.pair_file_candidates(split, "unpaired"):
        unpaired = read_pairs(pairs_path(root, split, "unpaired"))
        wanted += [Pair(p.person, p.cloth) for p in unpaired]
    return list(dict.fromkeys(wanted))


def _save(image: Image.Image, path: Path, format: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    options = {"quality": JPEG_QUALITY} if format == "JPEG" else {}
    image.save(tmp, format=format, **options)
    os.replace(tmp, path)


def write_pair_warp(root: Path | str, split: str, pair: Pair, overwrite: bool = False) -> bool:
    """Write the warp of ``pair`` at the photos' size; ``False`` if it was already there."""
    root = Path(root)
    warped_path = layout.warp_path(root, split, "cloth-warp", pair.person, pair.cloth)
    mask_path = layout.warp_path(root, split, "cloth-warp-mask", pair.person, pair.cloth)
    if not overwrite and warped_path.is_file() and mask_path.is_file():
        return False
    cloth_path = layout.cloth_path(root, split, "cloth", pair.cloth)
    cloth_mask_path = layout.cloth_path(root, split, "cloth-mask", pair.cloth)
    person_size = open_image(layout.person_path(root, split, "image", pair.person)).size
    cloth_image = photo_rgb(open_image(cloth_path, decode=True), cloth_path)
    if cloth_image.size != person_size:
        raise VitonHDLayoutError(
            f"{cloth_path} is {cloth_image.size[0]}x{cloth_image.size[1]} (WxH) but the person "
            f"photo is {person_size[0]}x{person_size[1]}: expected one size"
        )
    cloth = torch.from_numpy(np.array(cloth_image, dtype=np.float32)).permute(2, 0, 1)
    cloth = cloth / 127.5 - 1
    mask = mask_array(open_image(cloth_mask_path, decode=True), cloth_mask_path)
    mask = torch.from_numpy(mask > 0.5).float()[None]
    keypoints_path = layout.person_path(root, split, KEYPOINTS_FOLDER, pair.person)
    keypoints = read_keypoints(keypoints_path, person_size)
    try:
        warped, warped_mask = warp_garment(cloth, mask, keypoints)
    except ValueError as error:
        raise VitonHDLayoutError(
            f"cannot warp {cloth_path} onto {keypoints_path}: {error}"
        ) from None
    pixels = ((warped + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    warped_path.parent.mkdir(exist_ok=True)
    mask_path.parent.mkdir(exist_ok=True)
    _save(Image.fromarray(pixels, mode="RGB"), warped_path, "JPEG")
    _save(Image.fromarray((warped_mask[0].numpy() * 255).astype(np.uint8), mode="L"), mask_path,
          "PNG")
    return True


def _job(job: tuple[str, str, str, str, bool]) -> tuple[bool, str]:
    root, split, person, cloth, overwrite = job
    try:
        return write_pair_warp(root, split, Pair(person, cloth), overwrite), ""
    except VitonHDLayoutError as error:
        return False, str(error)


def _single_thread() -> None:
    torch.set_num_threads(1)


def write_warps(
    root: Path | str, splits: tuple[str, ...] = layout.SPLITS,
    pairs_file: str | Path | None = None, workers: int | None = None,
    overwrite: bool = False, progress: bool = True,
) -> dict[str, int]:
    """Write the warps of every pair of ``splits`` (:func:`warp_pairs`) under ``root``.

    ``workers`` processes of one thread each (default: the CPUs this process may use).
    Returns ``{"written", "kept", "pairs"}``. A pair that cannot be warped does not stop the
    others; afterwards a :class:`VitonHDLayoutError` names the first few.
    """
    root = Path(root)
    workers = workers or len(os.sched_getaffinity(0))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = [(str(root), split, pair.person, pair.cloth, overwrite)
            for split in splits for pair in warp_pairs(root, split, pairs_file)]
    bar = tqdm(total=len(jobs), desc="writing warps", unit="pair", disable=not progress)
    results: list[tuple[bool, str]] = []
    if workers == 1:
        for job in jobs:
            results.append(_job(job))
            bar.update()
    else:
        context = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread) as pool:
            for result in pool.map(_job, jobs, chunksize=max(1, min(32, len(jobs) // workers))):
                results.append(result)
                bar.update()
    bar.close()
    failures = [error for _, error in results if error]
    if failures:
        listed = "; ".join(failures[:3])
        raise VitonHDLayoutError(
            f"{len(failures)} of {len(jobs)} pairs could not be warped (the rest were written): "
            f"{listed}"
        )
    written = sum(done for done, _ in results)
    return {"written": written, "kept": len(jobs) - written, "pairs": len(jobs)}
