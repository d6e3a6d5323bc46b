"""Training pairs held out from training: where a setting is chosen without the test pairs.

A setting chosen on the test pairs (the appearance loss's weight, the guidance scale) would
tune the book's table to its own test. The benchmarks that choose one train on the training
pairs less the last ``holdout`` (:func:`split_training_pairs`) and score on those
(:func:`held_out_set`, :func:`held_out_score`): paired, against the photo, on the data's
default warp (the carved one on ToyVITON), as the headline protocol of
:mod:`gardiffmini.evaluate` scores paired pairs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from gardiffmini import metrics
from gardiffmini.data.datasets import open_dataset
from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import EVAL_KEYS, _stack, try_on
from gardiffmini.profiles import Profile, get_profile
from gardiffmini.runs import atomic_write_text, config_hash

FIT_PAIRS, HELD_OUT_PAIRS = "train_pairs_fit.txt", "train_pairs_heldout.txt"


def split_training_pairs(root: Path, holdout: int) -> tuple[Path, Path]:
    """Write the layout's training pairs, less the last ``holdout``, to ``FIT_PAIRS`` and those
    last ``holdout`` to ``HELD_OUT_PAIRS`` under ``root``; return both paths."""
    lines = (root / "train_pairs.txt").read_text().splitlines()
    if not 0 < holdout < len(lines):
        raise ValueError(f"--holdout must be between 1 and {len(lines) - 1}, got {holdout}")
    fit, held_out = root / FIT_PAIRS, root / HELD_OUT_PAIRS
    for path, part in ((fit, lines[:-holdout]), (held_out, lines[-holdout:])):
        text = "\n".join(part) + "\n"
        if not path.is_file() or path.read_text() != text:
            atomic_write_text(path, text)
    return fit, held_out


def held_out_set(root: Path, profile: Profile, pairs: Path) -> dict:
    """The held-out pairs of the file ``pairs`` as tensors, their garments warped as the
    book's models are trained (:func:`~gardiffmini.data.datasets.default_warp`)."""
    n = len(pairs.read_text().splitlines())
    return _stack(open_dataset(root, split="train", pairing="paired", size=profile.image_size,
                               pairs_file=pairs), n, EVAL_KEYS)


def score_held_out(images: torch.Tensor, held_out: dict) -> dict[str, float]:
    """SSIM, LPIPS (where available) and garment-detail error (in the photo's garment labels) of
    ``images`` in [0, 1] against the held-out photos, and the high-frequency energy ratio."""
    truth = held_out["person"].add(1).div(2)
    garment = metrics.label_region(held_out["parse"], GARMENT_LABELS)
    numbers = {
        "SSIM": metrics.ssim(images, truth).mean().item(),
        "garment_detail_error": metrics.garment_detail_error(images, truth, garment).mean().item(),
        "hf_energy_ratio": metrics.high_frequency_energy_ratio(images, truth, garment)
        .mean().item(),
    }
    if metrics.lpips_status() is None:
        numbers["LPIPS"] = metrics.lpips(images, truth).mean().item()
    return {key: round(value, 4) for key, value in numbers.items()}


def held_out_score(pipeline, held_out: dict, pairs: Path, profile: Profile, seed: int) -> dict:
    """:func:`score_held_out` of ``pipeline``'s try-ons of ``held_out`` (sampled with
    ``profile``'s steps and guidance), stored in its run folder and reused when asked again;
    with the seconds the sampling took (``evaluate_seconds``)."""
    key = config_hash({"pairs": pairs.read_text(), "seed": seed,
                       "sample_steps": profile.sample_steps,
                       "guidance_scale": profile.guidance_scale,
                       "toolchain": metrics.TOOLCHAIN})
    cached = pipeline.run.folder / f"held-out-{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    start = time.perf_counter()
    row = score_held_out(try_on(pipeline, held_out, profile, seed), held_out)
    row["evaluate_seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(cached, json.dumps(row, indent=2))
    return row


@dataclass
class HeldOut:
    """A study's data: the profile, its ToyVITON, the fitting pairs' file, the held-out pairs'
    file and the held-out pairs as tensors (:func:`held_out_set`)."""

    profile: Profile
    root: Path
    fit_pairs: Path
    pairs: Path
    pairs_set: dict


def held_out_study(profile_name: str, holdout: int) -> HeldOut:
    """The profile called ``profile_name``, its ToyVITON (made if missing) and its training pairs
    split into fitting pairs and ``holdout`` held-out ones (:func:`split_training_pairs`)."""
    profile = get_profile(profile_name)
    root = ensure_toyviton(profile)
    fit_pairs, pairs = split_training_pairs(root, holdout)
    return HeldOut(profile, root, fit_pairs, pairs, held_out_set(root, profile, pairs))
