"""Levers on garment detail, each measured on the book's evaluation (issue 19's levers).

    python benchmarks/detail_levers.py --profile cpu --levers spacing vae-stream \
        --out book/results/detail-levers-cpu.json

Every lever is scored on the headline protocol (:mod:`gardiffmini.evaluate`: the computed
warp, paired against the photo and unpaired against ToyVITON's rendered truth), beside warp +
paste and the VAE round trip, with one trained Base + GFA (``--seed``; one seed, so a lever is
worth a three-seed run only where its difference is clearly larger than the seed spread
that ``reproduce`` measures):

- ``spacing``: the same trained model sampled with diffusers' ``"leading"`` timestep spacing
  (at 25 steps the first step is t = 960, where sqrt(abar) = 0.086: not pure noise) and
  ``"trailing"`` (the first step is t = 999; Lin et al. 2024). Sampling only.
- ``vae-stream``: Base + GFA trained a second time with its VAE stream starting at zero
  (:func:`gardiffmini.models.attention.start_vae_stream_at_zero`), sampled with the spacing
  given by ``--spacing``.
- ``garment-weight``: Base + GFA trained a second time with the diffusion loss weighted
  ``--garment-weight`` times more on the garment the person wears (on top of the try-on
  region's weight; :class:`gardiffmini.objective.Recipe`), sampled with ``--spacing``.

Evaluations go through :func:`gardiffmini.evaluate.cached_evaluation`, so the book's own
(leading spacing) is reused where ``reproduce`` made it. Writes every number, the wall time
of each evaluation (``cached``: reused) and provenance to ``--out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from diffusers import DDIMScheduler
from scoring import scored_sets, scoring_parser, write_record

from gardiffmini.evaluate import baseline_images, cached_evaluation, score
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.objective import DEFAULT_RECIPE
from gardiffmini.train import VARIANTS, train_variant

REPORTED = ("SSIM", "garment_detail_error", "SSIM_occluded", "SSIM_u", "garment_detail_error_u",
            "skin_error_u", "skin_pairs_u", "FID_toy_p", "FID_toy_u", "attribute_accuracy_u",
            "unpaired_colour_match")
SPACINGS = ("leading", "trailing")
LEVERS = ("spacing", "vae-stream", "garment-weight")


def _rounded(numbers: dict) -> dict:
    return {key: round(numbers[key], 4) for key in REPORTED if key in numbers}


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--levers", nargs="+", choices=LEVERS, default=list(LEVERS))
    parser.add_argument("--spacing", choices=SPACINGS, default="trailing",
                        help="the spacing the vae-stream and garment-weight levers sample with")
    parser.add_argument("--garment-weight", type=float, default=4.0)
    args = parser.parse_args()
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile)
    vae, _ = load_or_train_encoders(profile)
    rows = {name: _rounded(score(images, sets, net, root, args.seed))
            for name, images in baseline_images(vae, sets).items()}

    def evaluate(title: str, variant, spacing: str, recipe=DEFAULT_RECIPE) -> None:
        if title in rows:  # measured by another lever
            return
        pipeline = train_variant(variant, profile, seed=args.seed, data_root=root, recipe=recipe)
        pipeline.set_progress_bar_config(disable=True)
        pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config,
                                                       timestep_spacing=spacing)
        start = time.perf_counter()
        result = cached_evaluation(pipeline, profile, root, args.seed, net, sets)
        pipeline.scheduler.set_timesteps(profile.sample_steps)
        rows[title] = {**_rounded(result["metrics"]), "run": pipeline.run.folder.name,
                       "first_timestep": int(pipeline.scheduler.timesteps[0]),
                       "train_seconds": pipeline.run.metrics["summary"].get("train_seconds"),
                       "evaluate_seconds": round(time.perf_counter() - start, 1),
                       "cached": time.perf_counter() - start < 5}
        print(title, json.dumps(rows[title]), flush=True)

    gfa = VARIANTS["base+gfa"]
    if "spacing" in args.levers:
        for spacing in SPACINGS:
            evaluate(f"Base + GFA, {spacing} spacing", gfa, spacing)
    if "vae-stream" in args.levers:
        evaluate(f"Base + GFA, {args.spacing} spacing", gfa, args.spacing)
        evaluate(f"Base + GFA, VAE stream from zero, {args.spacing} spacing",
                 replace(gfa, vae_stream_from_zero=True), args.spacing)
    if "garment-weight" in args.levers:
        evaluate(f"Base + GFA, {args.spacing} spacing", gfa, args.spacing)
        evaluate(f"Base + GFA, garment weight {args.garment_weight:g}, {args.spacing} spacing",
                 gfa, args.spacing, replace(DEFAULT_RECIPE, garment_weight=args.garment_weight))
    record = {"profile": profile.name, "seed": args.seed, "n_pairs": len(sets["paired"]["person"]),
              "protocol": "computed warp in training and at test; unpaired against the "
                          "rendered truth", "rows": rows}
    write_record(args.out, record, profile, [args.seed], started)


if __name__ == "__main__":
    main()
