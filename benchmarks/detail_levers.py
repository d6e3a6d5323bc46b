"""Levers on garment detail, each measured on the book's evaluation (issue 19's levers).

    python benchmarks/detail_levers.py --profile cpu --levers spacing vae-stream \
        --out book/results/detail-levers-cpu.json

The levers are measured against the recipe they were found on,
:data:`~gardiffmini.objective.PLAIN_RECIPE` (the book's until DensePose and the skin colour
became defaults): its Base + GFA is "the book's Base + GFA" of the records. Every lever is
scored on the headline protocol (:mod:`gardiffmini.evaluate`: the computed
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
- ``pose``: Base + GFA trained a second time with the person's DensePose as three more UNet
  input channels (the recipe's ``pose_input``, as IDM-VTON feeds it; not in the paper), so
  that the model is told where the arms are when the requested garment bares them (the
  agnostic image greys them out); sampled with ``--spacing``. The metric it is meant to
  move is ``skin_error_u``.
- ``skin``: Base + GFA trained a second time with the agnostic image painted in the person's
  skin colour (read off the face) as more UNet input channels (the recipe's ``skin_input``;
  not in the paper), so that the model has the colour of bare arms at hand. Beside it, the
  agnostic image and warp + paste on that skin-primed image
  (:func:`gardiffmini.baselines.skin_primed`): what the cue gives with no model. The metric
  it is meant to move is ``skin_error_u``.
- ``skin-agnostic-init``: the same, its skin channels starting with ``E(I_a)``'s weights and
  ``E(I_a)``'s at zero (the recipe's ``skin_init="agnostic"``): the model starts as the book's
  would on the skin-primed image, instead of learning to read the new channels from zero.
- ``pose+skin``: DensePose and the skin colour (with ``E(I_a)``'s weights) at once: the one
  says where bare arms are, the other what colour.
- ``pose+skin+garment-weight``: those two and the garment weight, which lowered the detail
  error at the skin's expense: whether the skin cue pays that expense.
- ``pose+garment-weight``: both of the last two at once (on their own, the garment weight
  brought the unpaired detail error to a tie with warp + paste, DensePose moved it by half as
  much, inside the noise).
- ``paste``: the skin colour input (with ``E(I_a)``'s weights) carrying the computed warp
  pasted into the skin-primed image (the recipe's ``paste_warp``, DCI-VTON's condition), so
  that the model starts from warp + paste instead of learning to move the garment in from
  ``E(I_w)``.
- ``cosine``: the learning rate decaying to zero over the run after its warm-up instead of
  staying constant (the recipe's ``lr_schedule="cosine"``): the same steps, ending at a
  small rate. Training longer lowered the detail error (``shared_base.py
  --variant-steps``); this asks whether part of that gain was the rate, not the steps.
- ``learning-rate``: Base + GFA trained at each of ``--learning-rate-scales`` times the
  profile's rate (the recipe's ``learning_rate_scale``; the profile's rate was chosen on
  Base's SSIM curve, before the adapter and the detail error existed): whether the detail,
  which the variant learns last, comes sooner at a higher rate.
- ``adapter-learning-rate``: Base + GFA with the parameters the adapter adds (the adapter's
  and the garment processors', which start fresh) trained at each of
  ``--adapter-learning-rate-scales`` times the rate of the rest (the recipe's
  ``adapter_learning_rate_scale``): whether the detail comes sooner when only the new weights
  move faster, the UNet from the shared base keeping its rate (four times the rate for every
  weight cost SSIM and skin colour).

``--reference book`` measures the levers against the book's recipe
(:data:`~gardiffmini.objective.DEFAULT_RECIPE`, DensePose and the skin colour among its
inputs) instead of :data:`~gardiffmini.objective.PLAIN_RECIPE`: each lever's recipe is the
book's with the lever's fields set, and the reference row is "Base + GFA (the book's
recipe)", the book's own runs where ``reproduce`` made them. The records made so before
2026-12-07 (late) measured against the book's recipe of then, with the adapter at the UNet's
rate: ``--reference book-one-rate`` makes them again. The command of one:

    python benchmarks/detail_levers.py --profile cpu --reference book --levers paste \
        --warp carved --spacing leading --seeds 0 1 2 --out book/results/paste-warp-cpu.json

``--warp carved`` trains and tests every row, and scores warp + paste, on the computed warp
whose torso lies behind the arms drawn from the keypoints (:mod:`gardiffmini.data.arms`)
instead of the book's computed warp: the book's Base + GFA is trained again on it, and the
levers are judged against that.

``--appearance-loss`` trains Base + GFA + AL (the book's lambda) with each recipe lever's
recipe too, and judges it against Base + GFA with the same recipe: the appearance loss
against its own base, on that recipe.

Evaluations go through :func:`gardiffmini.evaluate.cached_evaluation`, so the book's own
(leading spacing) is reused where ``reproduce`` made it. Writes every number, the wall time
of each evaluation (``cached``: reused) and provenance to ``--out``.

With ``--seeds 0 1 2`` every lever is measured at each seed; the record then also holds each
row's mean and spread over the seeds and, for each lever, its verdict against the book's Base
+ GFA and the best row's against warp + paste (:func:`gardiffmini.reproduce.compare`: a gain
or a loss only beyond twice the spread):

    python benchmarks/detail_levers.py --profile cpu --levers garment-weight \
        --spacing leading --seeds 0 1 2 --out book/results/garment-weight-cpu.json
    python benchmarks/detail_levers.py --profile cpu --levers pose \
        --spacing leading --seeds 0 1 2 --out book/results/pose-input-cpu.json
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial

from diffusers import DDIMScheduler
from scoring import SCORED_WARPS, scored_sets, scoring_parser, write_record

from gardiffmini import baselines
from gardiffmini.evaluate import baseline_images, cached_evaluation, score
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.objective import DEFAULT_RECIPE, PLAIN_RECIPE, Recipe
from gardiffmini.reproduce import compare, summarize
from gardiffmini.train import VARIANTS, train_variant

REPORTED = ("SSIM", "garment_detail_error", "SSIM_occluded", "SSIM_u", "garment_detail_error_u",
            "skin_error_u", "skin_pairs_u", "FID_toy_p", "FID_toy_u", "attribute_accuracy_u",
            "unpaired_colour_match")
# the metrics a lever is judged on over seeds
COMPARED = ("SSIM", "garment_detail_error", "SSIM_u", "garment_detail_error_u", "skin_error_u")
SPACINGS = ("leading", "trailing")
LEVERS = ("spacing", "vae-stream", "garment-weight", "pose", "pose+garment-weight", "skin",
          "skin-agnostic-init", "pose+skin", "pose+skin+garment-weight", "paste", "cosine",
          "learning-rate", "adapter-learning-rate")
# the recipe each lever changes, and how its own row is titled
REFERENCES = {"plain": (PLAIN_RECIPE, "Base + GFA"),
              "book": (DEFAULT_RECIPE, "Base + GFA (the book's recipe)"),
              # the book's recipe until it trained the adapter's weights faster (2026-12-07):
              # the reference of the records made with --reference book before then
              "book-one-rate": (replace(DEFAULT_RECIPE, adapter_learning_rate_scale=1.0),
                                "Base + GFA (the book's recipe, one rate)")}
AL_PREFIX = "Base + GFA + AL, "  # the rows of --appearance-loss
SKIN_BASELINES = {"skin-primed agnostic": baselines.agnostic,
                  "warp + paste, skin-primed": baselines.warp_and_paste}


def _rounded(numbers: dict) -> dict:
    return {key: round(numbers[key], 4) for key in REPORTED if key in numbers}


def lever_rows(args, profile, root, sets, net, vae, seed: int) -> dict:
    """Every row of one seed: the baselines, then each lever of ``args.levers``."""
    rows = {name: _rounded(score(images, sets, net, root, seed))
            for name, images in baseline_images(vae, sets).items()}
    reference = REFERENCES[args.reference][0]
    reference_row = partial(reference_title, args.reference)
    recipes = recipe_levers(args.garment_weight, reference)
    for lever in args.levers:
        if lever in recipes and recipes[lever][1] == reference:
            raise ValueError(f"lever {lever!r} is the {args.reference} reference recipe itself")
    if any(recipes[lever][1].skin_input for lever in args.levers if lever in recipes):
        primed = {pairing: baselines.skin_primed(batch) for pairing, batch in sets.items()}
        rows |= {name: _rounded(score({pairing: make(batch).clamp(0, 1)
                                       for pairing, batch in primed.items()},
                                      sets, net, root, seed))
                 for name, make in SKIN_BASELINES.items()}

    def evaluate(title: str, variant, spacing: str, recipe=reference) -> None:
        if title in rows:  # measured by another lever
            return
        pipeline = train_variant(variant, profile, seed=seed, data_root=root, recipe=recipe,
                                 warp=args.warp)
        pipeline.set_progress_bar_config(disable=True)
        pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config,
                                                       timestep_spacing=spacing)
        start = time.perf_counter()
        result = cached_evaluation(pipeline, profile, root, seed, net, sets)
        pipeline.scheduler.set_timesteps(profile.sample_steps)
        rows[title] = {**_rounded(result["metrics"]), "run": pipeline.run.folder.name,
                       "first_timestep": int(pipeline.scheduler.timesteps[0]),
                       "train_seconds": pipeline.run.metrics["summary"].get("train_seconds"),
                       "evaluate_seconds": round(time.perf_counter() - start, 1),
                       "cached": time.perf_counter() - start < 5}
        print(f"seed {seed}:", title, json.dumps(rows[title]), flush=True)

    gfa = VARIANTS["base+gfa"]
    if "spacing" in args.levers:
        for spacing in SPACINGS:
            evaluate(reference_row(spacing), gfa, spacing)
    if "vae-stream" in args.levers:
        evaluate(reference_row(args.spacing), gfa, args.spacing)
        evaluate(f"Base + GFA, VAE stream from zero, {args.spacing} spacing",
                 replace(gfa, vae_stream_from_zero=True), args.spacing)
    rated = rate_levers(reference, args.learning_rate_scales, args.adapter_learning_rate_scales)
    for lever, (what, recipe) in rated + list(recipes.items()):
        if lever in args.levers:
            evaluate(reference_row(args.spacing), gfa, args.spacing)
            evaluate(f"Base + GFA, {what}, {args.spacing} spacing", gfa, args.spacing, recipe)
            if args.appearance_loss:
                evaluate(f"{AL_PREFIX}{what}, {args.spacing} spacing", VARIANTS["base+gfa+al"],
                         args.spacing, recipe)
    return rows


def reference_title(reference: str, spacing: str) -> str:
    """The title of the row the levers are judged against (:data:`REFERENCES`)."""
    return f"{REFERENCES[reference][1]}, {spacing} spacing"


def rate_levers(reference: Recipe, scales: list[float], adapter_scales: list[float]
                ) -> list[tuple[str, tuple[str, Recipe]]]:
    """The learning-rate levers, one per factor: (lever, (what a row's title says of it, the
    recipe)), ``reference`` with ``learning_rate_scale`` or ``adapter_learning_rate_scale``
    set."""
    return ([("learning-rate", (f"learning rate x{scale:g}",
                                replace(reference, learning_rate_scale=scale)))
             for scale in scales]
            + [("adapter-learning-rate", (f"adapter learning rate x{scale:g}",
                                          replace(reference, adapter_learning_rate_scale=scale)))
               for scale in adapter_scales])


def recipe_levers(garment_weight: float, reference: Recipe = PLAIN_RECIPE
                  ) -> dict[str, tuple[str, Recipe]]:
    """The levers that train Base + GFA again with another recipe, each ``reference`` with the
    lever's fields set: name -> (what a row's title says of it, the recipe)."""
    weighted = f"garment weight {garment_weight:g}"
    skinned, skin = ("skin colour input with E(I_a)'s weights",
                     {"skin_input": True, "skin_init": "agnostic"})
    pasted = ("warp pasted into the skin-primed image" if reference.skin_input
              else f"{skinned}, warp pasted in")
    return {
        "garment-weight": (weighted, replace(reference, garment_weight=garment_weight)),
        "pose": ("DensePose input", replace(reference, pose_input=True)),
        "pose+garment-weight": (f"DensePose input, {weighted}",
                                replace(reference, pose_input=True,
                                        garment_weight=garment_weight)),
        "skin": ("skin colour input", replace(reference, skin_input=True)),
        "skin-agnostic-init": (skinned, replace(reference, **skin)),
        "pose+skin": (f"DensePose input, {skinned}",
                      replace(reference, pose_input=True, **skin)),
        "pose+skin+garment-weight": (f"DensePose input, {skinned}, {weighted}",
                                     replace(reference, pose_input=True,
                                             garment_weight=garment_weight, **skin)),
        "paste": (pasted, replace(reference, paste_warp=True, **skin)),
        "cosine": ("cosine learning-rate decay", replace(reference, lr_schedule="cosine")),
    }


def verdicts(summary: dict, plain: str) -> dict:
    """Each lever's row against ``plain`` (the book's Base + GFA), each model row's against
    warp + paste, and each Base + GFA + AL row's against Base + GFA with the same recipe (its
    base, where measured), metric by metric."""
    keys = [key for key in COMPARED if key in summary[plain]]
    models = [title for title in summary if title.startswith("Base + GFA")]
    found = {
        "against the book's Base + GFA": {
            title: {key: compare(summary[title], summary[plain], key) for key in keys}
            for title in models if title != plain},
        "against warp + paste": {
            title: {key: compare(summary[title], summary["warp+paste"], key) for key in keys}
            for title in models}}
    bases = {title: "Base + GFA, " + title.removeprefix(AL_PREFIX) for title in models
             if title.startswith(AL_PREFIX)}
    if bases:
        found["against the same recipe without AL"] = {
            title: {key: compare(summary[title], summary[base], key) for key in keys}
            for title, base in bases.items() if base in summary}
    return found


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="measure at each of these seeds (default: --seed alone)")
    parser.add_argument("--levers", nargs="+", choices=LEVERS, default=list(LEVERS))
    parser.add_argument("--spacing", choices=SPACINGS, default="trailing",
                        help="the spacing the vae-stream, garment-weight and pose levers "
                             "sample with")
    parser.add_argument("--garment-weight", type=float, default=4.0)
    parser.add_argument("--learning-rate-scales", type=float, nargs="+", default=[2.0],
                        help="the learning-rate lever's factors on the profile's rate")
    parser.add_argument("--adapter-learning-rate-scales", type=float, nargs="+", default=[4.0],
                        help="the adapter-learning-rate lever's factors on the adapter's rate")
    parser.add_argument("--reference", choices=sorted(REFERENCES), default="plain",
                        help="the recipe the levers change (book: the book's recipe; "
                             "book-one-rate: the same with the adapter at the UNet's rate, "
                             "the book's until 2026-12-07; plain: the one the levers were "
                             "first measured against)")
    parser.add_argument("--appearance-loss", action="store_true",
                        help="with each recipe lever, also Base + GFA + AL on its recipe")
    parser.add_argument("--warp", choices=SCORED_WARPS, default="computed",
                        help="the warp protocol of training and test (carved: the computed "
                             "warp with its torso behind the arms)")
    args = parser.parse_args()
    seeds = args.seeds or [args.seed]
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile, args.warp)
    vae, _ = load_or_train_encoders(profile)
    per_seed = {seed: lever_rows(args, profile, root, sets, net, vae, seed) for seed in seeds}
    record = {"profile": profile.name, "n_pairs": len(sets["paired"]["person"]),
              "protocol": f"{args.warp} warp in training and at test; unpaired against the "
                          "rendered truth",
              "reference": args.reference}
    if len(seeds) == 1:
        record |= {"seed": seeds[0], "rows": per_seed[seeds[0]]}
    else:
        titles = per_seed[seeds[0]]
        summary = summarize({title: [{key: per_seed[seed][title][key] for key in COMPARED
                                      if key in per_seed[seed][title]} for seed in seeds]
                             for title in titles})
        record |= {"seeds": seeds, "per_seed": per_seed, "summary": summary,
                   "verdicts": verdicts(summary, reference_title(args.reference, args.spacing))}
    write_record(args.out, record, profile, seeds, started)


if __name__ == "__main__":
    main()
