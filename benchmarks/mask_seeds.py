"""Is masked attention worth it? Base + GFA with and without the mask, over seeds (chapter 5).

    python benchmarks/mask_seeds.py --profile cpu --seeds 0 1 2 --out book/results/mask-cpu.json

For every seed, trains (or reuses) Base + GFA as the book trains it (the mask on the VAE
branch: the library's ``base+gfa``) and the same model with ``mask_branches=()`` (chapter 5's
``Base + GFA (no mask)``, the same variant, so the runs are shared with the book), and scores
both on the headline protocol (:mod:`gardiffmini.evaluate`: the data's default warp, paired against
the photo, unpaired against ToyVITON's rendered truth) through
:func:`gardiffmini.evaluate.cached_evaluation`, so evaluations the book or ``reproduce`` made
are reused. Beside the book's metrics it measures where the mask should matter: the colour
error on the skin and background next to the garment (:func:`gardiffmini.metrics.surround_error`:
within two latent cells of the truth's garment labels, inside the agnostic mask, the pixels a
model paints), paired and unpaired.

Writes to ``--out``: the per-seed numbers of both models, their mean and spread over seeds
(:func:`gardiffmini.reproduce.summarize`), the verdict on each metric by
:func:`gardiffmini.reproduce.compare` (the mask better or worse only beyond twice the spread of
the difference) and the per-seed difference (mask minus no mask), the wall time of every
training and evaluation (``cached``: reused), and provenance.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from scoring import scored_sets

from gardiffmini import metrics
from gardiffmini.data.datasets import default_warp
from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.evaluate import cached_evaluation
from gardiffmini.profiles import Profile
from gardiffmini.reproduce import compare, provenance, summarize
from gardiffmini.train import VARIANTS, Variant, train_variant

NO_MASK = Variant("Base + GFA (no mask)", garment_adapter=True, appearance_loss=False,
                  mask_branches=())
MODELS = {"mask": VARIANTS["base+gfa"], "no mask": NO_MASK}
REPORTED = ("SSIM", "garment_detail_error", "SSIM_u", "garment_detail_error_u", "skin_error_u",
            "FID_toy_p", "FID_toy_u", "attribute_accuracy_u", "unpaired_colour_match")
SURROUND = ("surround_error", "surround_error_u")


def band_width(profile: Profile) -> int:
    """Two latent cells, in pixels: the band the mask should keep the garment's texture out of
    (a border cell of the coarser attention grids is partly open, so the first cell is not
    closed by construction)."""
    return 2 * profile.image_size[0] // profile.latent_size[0]


def surround_errors(images: dict[str, torch.Tensor], sets: dict, width: int) -> dict[str, float]:
    """:func:`~gardiffmini.metrics.surround_error` of try-on ``images`` (``{"paired",
    "unpaired"}``, in [0, 1]) around the truth's garment labels, inside the agnostic mask,
    averaged over the pairs that have a band (NaN where none has)."""
    result = {}
    for pairing, key in (("paired", "surround_error"), ("unpaired", "surround_error_u")):
        batch = sets[pairing]
        garment = metrics.label_region(batch["truth_parse"], GARMENT_LABELS)
        errors = metrics.surround_error(images[pairing], batch["truth"].add(1).div(2), garment,
                                        width, within=batch["agnostic_mask"])
        cases = ~errors.isnan()
        result[key] = errors[cases].mean().item() if cases.any() else math.nan
    return result


def _rounded(numbers: dict) -> dict:
    return {key: (None if math.isnan(numbers[key]) else round(numbers[key], 4))
            for key in (*REPORTED, *SURROUND) if key in numbers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile)
    width = band_width(profile)
    per_seed: dict[str, list[dict]] = {name: [] for name in MODELS}
    runs: dict[str, list[dict]] = {name: [] for name in MODELS}
    for seed in args.seeds:
        for name, variant in MODELS.items():
            start = time.perf_counter()
            pipeline = train_variant(variant, profile, seed=seed, data_root=root)
            pipeline.set_progress_bar_config(disable=True)
            trained = time.perf_counter() - start
            stored = set(pipeline.run.folder.glob("evaluation-*.json"))
            start = time.perf_counter()
            result = cached_evaluation(pipeline, profile, root, seed, net, sets)
            evaluated = time.perf_counter() - start
            numbers = _rounded(result["metrics"] | surround_errors(result["images"], sets, width))
            per_seed[name].append(numbers)
            runs[name].append({
                "seed": seed, "run": pipeline.run.folder.name,
                "train_seconds": pipeline.run.metrics["summary"].get("train_seconds"),
                "load_or_train_seconds": round(trained, 1),
                "evaluate_seconds": round(evaluated, 1),
                "cached": set(pipeline.run.folder.glob("evaluation-*.json")) == stored})
            print(f"seed {seed}, {name}: {json.dumps(numbers)}", flush=True)
    # a metric missing (None) for some seed is reported per seed and left out of the summary
    keys = [key for key in per_seed["mask"][0]
            if all(row.get(key) is not None for rows in per_seed.values() for row in rows)]
    summary = summarize({name: [{key: row[key] for key in keys} for row in rows]
                         for name, rows in per_seed.items()})
    verdicts = {key: compare(summary["mask"], summary["no mask"], key) for key in keys}
    # the same seed's two models share their data, test pairs and sampling noise: the
    # per-seed difference shows whether the sign at least is the same at every seed
    differences = {key: [round(a[key] - b[key], 4) for a, b in
                         zip(per_seed["mask"], per_seed["no mask"], strict=True)]
                   for key in keys}
    for key, verdict in verdicts.items():
        print(f"{key}: mask vs no mask {verdict}", flush=True)
    record = {
        "question": "does masking the VAE branch's attention (Base + GFA) beat the same model "
                    "without the mask (mask_branches=())?",
        "profile": profile.name, "seeds": args.seeds, "n_pairs": len(sets["paired"]["person"]),
        "protocol": f"{default_warp(root)} warp in training and at test; unpaired against the "
                    "rendered truth",
        "models": {name: {"variant": variant.name, "mask_branches": list(variant.mask_branches)}
                   for name, variant in MODELS.items()},
        "surround_band": {"width_pixels": width, "definition": (
            "mean |result - truth| (RGB, [0, 1]) over the pixels within width_pixels (square "
            "neighbourhood) of the truth's garment labels and not in them, inside the agnostic "
            "mask; pairs with fewer than metrics.SKIN_MIN_PIXELS such pixels left out")},
        "per_seed": per_seed, "runs": runs, "summary": summary,
        "compare": {"rule": "reproduce.compare: margin = improvement of mask over no mask; "
                            "a verdict only beyond noise = 2 sqrt(std_mask^2 + std_no_mask^2)",
                    "mask_vs_no_mask": verdicts,
                    "difference_per_seed": differences},
        "provenance": provenance(profile, args.seeds, time.perf_counter() - started),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
