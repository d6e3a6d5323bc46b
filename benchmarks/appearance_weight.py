"""The appearance loss's weight lambda, chosen on training pairs held out from training.

    python benchmarks/appearance_weight.py --profile cpu --lambdas 0 1e-3 1e-2 1e-1 1 \
        --out book/results/appearance-weight-cpu.json

The paper gives lambda no value we can reuse (its loss terms are on other scales), and the
book's default (``Variant.appearance_weight``) was never chosen on data. This study trains
Base + GFA + AL at every ``--lambdas`` value (0 is Base + GFA: the loss off) on the training
pairs less the last ``--holdout`` of them, and scores each on those held-out pairs, paired
against the photo, with the computed warp (the headline protocol of :mod:`gardiffmini.evaluate`).
The test pairs are never looked at, so the choice does not leak into the book's table.
Beside the rows stand the baselines on the same held-out pairs: the agnostic image, warp +
paste and the VAE round trip (the ceiling).

One seed per lambda (``--seed``): read a difference between two lambdas as real only where it
is larger than twice the seed spread that ``reproduce`` measures for the same variant
(``book/results/ablation-cpu.json``). Each run's held-out numbers are stored in its run
folder, so running the script again, or with a subset of ``--lambdas`` in two processes at
once, repeats no work. Writes every number, wall times and provenance to ``--out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from scoring import scoring_parser

from gardiffmini import metrics
from gardiffmini.data.datasets import open_dataset
from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import EVAL_KEYS, _stack, baseline_images, try_on
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance
from gardiffmini.runs import atomic_write_text, config_hash
from gardiffmini.train import VARIANTS, train_variant

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


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0, 1e-3, 1e-2, 1e-1, 1])
    parser.add_argument("--holdout", type=int, default=128)
    args = parser.parse_args()
    started = time.perf_counter()
    profile = get_profile(args.profile)
    root = ensure_toyviton(profile)
    fit_pairs, held_out_pairs = split_training_pairs(root, args.holdout)
    held_out = _stack(open_dataset(root, split="train", pairing="paired",
                                   size=profile.image_size, pairs_file=held_out_pairs),
                      args.holdout, EVAL_KEYS + ("parse",))
    vae, _ = load_or_train_encoders(profile)
    rows = {name: score_held_out(images["paired"], held_out)
            for name, images in baseline_images(vae, {"paired": held_out}).items()}
    for lam in args.lambdas:
        variant = (VARIANTS["base+gfa"] if lam == 0
                   else replace(VARIANTS["base+gfa+al"], appearance_weight=lam))
        pipeline = train_variant(variant, profile, seed=args.seed, data_root=root,
                                 pairs_file=fit_pairs)
        pipeline.set_progress_bar_config(disable=True)
        key = config_hash({"pairs": held_out_pairs.read_text(), "seed": args.seed,
                           "sample_steps": profile.sample_steps,
                           "guidance_scale": profile.guidance_scale,
                           "toolchain": metrics.TOOLCHAIN})
        cached = pipeline.run.folder / f"held-out-{key}.json"
        if cached.is_file():
            row = json.loads(cached.read_text())
        else:
            start = time.perf_counter()
            row = score_held_out(try_on(pipeline, held_out, profile, args.seed), held_out)
            row["evaluate_seconds"] = round(time.perf_counter() - start, 1)
            atomic_write_text(cached, json.dumps(row, indent=2))
        row |= {"lambda": lam, "run": pipeline.run.folder.name,
                "train_seconds": pipeline.run.metrics["summary"].get("train_seconds")}
        rows[f"lambda={lam:g}"] = row
        print(f"lambda={lam:g}", json.dumps(row), flush=True)
    record = {"profile": profile.name, "seed": args.seed, "n_held_out": args.holdout,
              "protocol": "Base + GFA + AL (lambda = 0: Base + GFA) trained on the training "
                          "pairs less the held-out ones, computed warp; scored paired on the "
                          "held-out training pairs",
              "rows": rows,
              "provenance": provenance(profile, [args.seed], time.perf_counter() - started)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
