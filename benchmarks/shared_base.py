"""The shared inpainting base as a lever (issue 19's "a stronger shared base"), on the book's
evaluation.

    python benchmarks/shared_base.py --profile cpu \
        --bases person:3000 person-skin-zero:3000 plain:6000 \
        --out book/results/shared-base-cpu.json

Every variant starts from the shared base (:mod:`gardiffmini.inpainting_base`). The one that
ships was trained without the person inputs that the book's recipe gives the UNet (the
DensePose and the skin-primed agnostic latent), so each variant learns to read them from zero
in its own steps. Each of ``--bases`` is a kind of base and its training steps:
``person:N`` reads them too (the recipe's ``person_base``), so that it learns where bare
arms go and what colour they are over its N steps; ``person-skin-zero:N`` the same with its
skin channels starting from zero instead of reading the skin-primed image as ``E(I_a)`` was
read; ``plain:N`` is the shipped kind of base, without them, trained for N steps instead of
the profile's ``base_steps``; ``plain-paste:N`` the same base, the variant trained with the
recipe's ``paste_warp`` (the warp pasted into its skin-primed image, as
``benchmarks/detail_levers.py --levers paste`` measures it on the shipped base). Each base
is trained once and kept as a run; ``--variant`` (Base + GFA by default) starts from it and
trains its ``--variant-steps`` (default: the profile's), with the adapter's weights at
``--adapter-learning-rate-scale`` times the rate (the recipe's
``adapter_learning_rate_scale``; by default the book's). Beside them: the book's
``--variant`` on the shipped base, warp + paste, the agnostic image and the VAE round trip,
all on the headline protocol (:mod:`gardiffmini.evaluate`: the book's warp, paired against
the photo and unpaired against ToyVITON's rendered truth).

A stronger base is a lever of two kinds: of quality (the skin error of newly bared arms is
the metric it is meant to move), and of time, since the base ships and a variant that starts
further on may need fewer of the steps that a reader's ``make book`` pays for.

With ``--seeds 0 1 2`` each row is measured at each seed, with its mean, spread and verdict
against the book's row (:func:`gardiffmini.reproduce.compare`: a gain or a loss only beyond
twice the spread). Writes every number, each training's and evaluation's wall time, the norm of
each row's first-convolution weights per input (which inputs the trained UNet reads most)
and provenance to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from scoring import scored_sets, scoring_parser, write_record

from gardiffmini.evaluate import baseline_images, cached_evaluation, score
from gardiffmini.inpainting_base import BASE_SEED, base_config
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.objective import DEFAULT_RECIPE, base_recipe
from gardiffmini.pipeline import POSE_CHANNELS, person_inputs
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import compare, summarize
from gardiffmini.runs import Run
from gardiffmini.train import VARIANTS, train_variant, weights_hash

REPORTED = ("SSIM", "garment_detail_error", "SSIM_u", "garment_detail_error_u", "skin_error_u",
            "skin_pairs_u", "FID_toy_p", "FID_toy_u", "attribute_accuracy_u")
COMPARED = ("SSIM", "garment_detail_error", "SSIM_u", "garment_detail_error_u", "skin_error_u")
BOOK_ROW = "the book's {variant} (shipped base)"
# the kinds of base a row can start from: what its title says of it, the variant's recipe
BASES = {
    "plain": ("a base", DEFAULT_RECIPE),
    "person": ("a person base (skin channels: E(I_a)'s initial weights)",
               replace(DEFAULT_RECIPE, person_base=True)),
    "person-skin-zero": ("a person base (skin channels from zero)",
                         replace(DEFAULT_RECIPE, person_base=True, skin_init="zero")),
    # the shipped kind of base, the variant reading the warp pasted into its skin-primed image
    "plain-paste": ("a base (warp pasted into the skin-primed image)",
                    replace(DEFAULT_RECIPE, paste_warp=True)),
}


def row_title(variant: str, kind: str, base_steps: int, steps: int,
              adapter_learning_rate_scale: float = DEFAULT_RECIPE.adapter_learning_rate_scale
              ) -> str:
    """The title of the row of ``variant`` trained ``steps`` steps on the base ``kind``
    (:data:`BASES`) of ``base_steps`` steps, naming the adapter's rate where it is not the
    book's."""
    title = f"{variant} on {BASES[kind][0]} of {base_steps} steps, trained {steps} steps"
    if adapter_learning_rate_scale == DEFAULT_RECIPE.adapter_learning_rate_scale:
        return title
    if adapter_learning_rate_scale == 1:
        return f"{title}, the adapter at the UNet's rate"
    return f"{title}, the adapter at {adapter_learning_rate_scale:g} times the rate"


def base_spec(text: str) -> tuple[str, int]:
    """``KIND:STEPS`` (a key of :data:`BASES` and a positive step count) as a pair."""
    kind, _, steps = text.partition(":")
    if kind not in BASES or not steps.isdigit() or int(steps) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KIND:STEPS with KIND one of "
                                         f"{list(BASES)} and STEPS a positive count")
    return kind, int(steps)


def input_weight_norms(unet, latent_channels: int) -> dict[str, float]:
    """The norm of the first convolution's weights per input the UNet reads: how much of what
    it computes comes from ``x_t``, ``E(I_w)``, ``E(I_a)``, the DensePose and the skin-primed
    latent (a rough measure: the inputs' own scales differ)."""
    weight = unet.conv_in.weight.detach()
    pose, skin = person_inputs(weight.shape[1], latent_channels)
    sizes = {"x_t": latent_channels, "E(I_w)": latent_channels, "E(I_a)": latent_channels,
             "pose": POSE_CHANNELS * pose, "skin": latent_channels * skin}
    norms, start = {}, 0
    for name, size in sizes.items():
        if size:
            norms[name] = round(float(weight[:, start:start + size].norm()), 3)
        start += size
    return norms


def base_seconds(profile, vae_id: str, recipe) -> float | None:
    """The training time of the base that ``profile`` and ``recipe`` name (its run's)."""
    run = Run.open("inpainting-base", profile.name, BASE_SEED, base_config(profile, vae_id,
                                                                            recipe))
    return run.metrics["summary"].get("train_seconds")


def rows_of_seed(args, profile, root, sets, net, vae, baselines: dict, seed: int) -> dict:
    """The ``baselines``' scores (:func:`~gardiffmini.evaluate.baseline_images`, the same
    images at every seed), the book's variant and the variant on each base asked for, at
    ``seed``."""
    rows = {name: {key: round(value, 4) for key, value in score(images, sets, net, root,
                                                                seed).items()
                   if key in REPORTED}
            for name, images in baselines.items()}
    vae_id = weights_hash(vae)
    variant = VARIANTS[args.variant]
    # (title, profile, recipe, steps, whether the row trains its own base)
    runs = [(BOOK_ROW.format(variant=variant.name), profile, DEFAULT_RECIPE, None, False)]
    scale = args.adapter_learning_rate_scale
    for kind, base_steps in args.bases:
        recipe = replace(BASES[kind][1], adapter_learning_rate_scale=scale)
        for steps in args.variant_steps or [profile.diffusion_steps]:
            title = row_title(variant.name, kind, base_steps, steps, scale)
            runs.append((title, get_profile(profile.name, base_steps=base_steps), recipe,
                         steps, True))
    for title, settings, recipe, steps, own_base in runs:
        pipeline = train_variant(variant, settings, seed=seed, data_root=root, recipe=recipe,
                                 steps=steps)
        pipeline.set_progress_bar_config(disable=True)
        started = time.perf_counter()
        result = cached_evaluation(pipeline, settings, root, seed, net, sets)
        rows[title] = {
            **{key: round(result["metrics"][key], 4) for key in REPORTED},
            "run": pipeline.run.folder.name, "steps": pipeline.run.state["step"],
            "input_weight_norms": input_weight_norms(pipeline.unet, settings.latent_channels),
            "base_steps": settings.base_steps,
            "base_train_seconds": (base_seconds(settings, vae_id, base_recipe(recipe))
                                   if own_base else None),
            "train_seconds": pipeline.run.metrics["summary"].get("train_seconds"),
            "evaluate_seconds": round(time.perf_counter() - started, 1)}
        print(f"seed {seed}:", title, json.dumps(rows[title]), flush=True)
    return rows


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="measure at each of these seeds (default: --seed alone)")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="base+gfa")
    parser.add_argument("--bases", nargs="+", type=base_spec, required=True,
                        metavar="KIND:STEPS",
                        help=f"the bases, each a kind ({', '.join(BASES)}) and its training "
                             "steps, e.g. person:3000 plain:6000")
    parser.add_argument("--variant-steps", type=int, nargs="+", default=None,
                        help="the variant's steps on each person base (default: the "
                             "profile's diffusion_steps)")
    parser.add_argument("--adapter-learning-rate-scale", type=float,
                        default=DEFAULT_RECIPE.adapter_learning_rate_scale,
                        help="the factor on the rate of the adapter's weights in the rows on "
                             "--bases (the book's row keeps the book's recipe)")
    args = parser.parse_args()
    seeds = args.seeds or [args.seed]
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile)
    vae, _ = load_or_train_encoders(profile)
    baselines = baseline_images(vae, sets)
    per_seed = {seed: rows_of_seed(args, profile, root, sets, net, vae, baselines, seed)
                for seed in seeds}
    record = {"profile": profile.name, "variant": args.variant,
              "n_pairs": len(sets["paired"]["person"]),
              "protocol": "the book's warp in training and at test; unpaired against the "
                          "rendered truth"}
    if len(seeds) == 1:
        record |= {"seed": seeds[0], "rows": per_seed[seeds[0]]}
    else:
        titles = per_seed[seeds[0]]
        summary = summarize({title: [{key: per_seed[seed][title][key] for key in COMPARED}
                                     for seed in seeds] for title in titles})
        book = BOOK_ROW.format(variant=VARIANTS[args.variant].name)
        record |= {"seeds": seeds, "per_seed": per_seed, "summary": summary,
                   "verdicts": {title: {key: compare(summary[title], summary[book], key)
                                        for key in COMPARED}
                                for title in titles if title != book}}
    write_record(args.out, record, profile, seeds, started)


if __name__ == "__main__":
    main()
