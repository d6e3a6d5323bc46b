"""The appearance loss's weight lambda, chosen on training pairs held out from training.

    python benchmarks/appearance_weight.py --profile cpu --lambdas 0 1e-3 1e-2 1e-1 1 \
        --out book/results/appearance-weight-cpu.json

The paper gives lambda no value we can reuse (its loss terms are on other scales), and the
book's default (``Variant.appearance_weight``) was never chosen on data. This study trains
Base + GFA + AL at every ``--lambdas`` value (0 is Base + GFA: the loss off) on the training
pairs less the last ``--holdout`` of them, and scores each on those held-out pairs, paired
against the photo, on the data's default warp (the headline protocol of
:mod:`gardiffmini.evaluate`: on ToyVITON the carved warp), with the book's recipe.
The test pairs are never looked at, so the choice does not leak into the book's table.
``--appearance-max-timestep T`` takes the loss only on samples below timestep T
(``Recipe.appearance_max_timestep``; not in the paper) in every lambda > 0 row.
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

from held_out import held_out_score, held_out_study, score_held_out
from scoring import scoring_parser, write_record

from gardiffmini.data.datasets import default_warp
from gardiffmini.evaluate import baseline_images
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.objective import DEFAULT_RECIPE
from gardiffmini.train import VARIANTS, train_variant


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0, 1e-3, 1e-2, 1e-1, 1])
    parser.add_argument("--holdout", type=int, default=128)
    parser.add_argument("--appearance-max-timestep", type=int, default=None, metavar="T",
                        help="the appearance loss only below timestep T (default: every "
                             "timestep, as in the paper)")
    args = parser.parse_args()
    recipe = replace(DEFAULT_RECIPE, appearance_max_timestep=args.appearance_max_timestep)
    started = time.perf_counter()
    study = held_out_study(args.profile, args.holdout)
    profile, root, held_out = study.profile, study.root, study.pairs_set
    vae, _ = load_or_train_encoders(profile)
    rows = {name: score_held_out(images["paired"], held_out)
            for name, images in baseline_images(vae, {"paired": held_out}).items()}
    for lam in args.lambdas:
        variant = (VARIANTS["base+gfa"] if lam == 0
                   else replace(VARIANTS["base+gfa+al"], appearance_weight=lam))
        pipeline = train_variant(variant, profile, seed=args.seed, data_root=root,
                                 pairs_file=study.fit_pairs,
                                 recipe=DEFAULT_RECIPE if lam == 0 else recipe)
        pipeline.set_progress_bar_config(disable=True)
        row = held_out_score(pipeline, held_out, study.pairs, profile, args.seed)
        row |= {"lambda": lam, "run": pipeline.run.folder.name,
                "train_seconds": pipeline.run.metrics["summary"].get("train_seconds")}
        rows[f"lambda={lam:g}"] = row
        print(f"lambda={lam:g}", json.dumps(row), flush=True)
    record = {"profile": profile.name, "seed": args.seed, "n_held_out": args.holdout,
              "warp": default_warp(root),
              "appearance_max_timestep": args.appearance_max_timestep,
              "protocol": "Base + GFA + AL (lambda = 0: Base + GFA) trained on the training "
                          f"pairs less the held-out ones, {default_warp(root)} warp, the "
                          "book's recipe" + (f", the appearance loss below t = {threshold}"
                                             if (threshold := args.appearance_max_timestep)
                                             else "")
                          + "; scored paired on the held-out training pairs",
              "rows": rows}
    write_record(args.out, record, profile, [args.seed], started)


if __name__ == "__main__":
    main()
