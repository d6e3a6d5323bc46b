"""The sampler's guidance scale and step count, chosen on training pairs held out from training.

    python benchmarks/held_out_sampling.py --profile cpu --guidance 1 1.5 2 3 \
        --steps 5 10 15 20 25 50 --out book/results/held-out-sampling-cpu.json

Base + GFA (the variant the book ships) is trained on the training pairs less the last
``--holdout`` (:mod:`held_out`; the same run as the appearance-weight study's lambda = 0) and
sampled on those held-out pairs with every ``--guidance`` at the profile's step count, and with
every ``--steps`` at the profile's guidance: paired, against the photo, on the data's default
warp (the carved one on ToyVITON).
The models paint about twice the truth's high-frequency energy in the garment (chapter 7);
classifier-free guidance extrapolates away from the unconditional prediction and may add to
it, so the high-frequency energy ratio is reported beside SSIM and the garment-detail error.
One seed: read a difference as real only beyond twice the seed spread of chapter 7's reference.
Sampling only; each score is stored in the run folder and reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from held_out import held_out_score, held_out_study
from scoring import scoring_parser, write_record

from gardiffmini.data.datasets import default_warp
from gardiffmini.train import train_variant


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 20, 25, 50])
    parser.add_argument("--holdout", type=int, default=128)
    args = parser.parse_args()
    started = time.perf_counter()
    study = held_out_study(args.profile, args.holdout)
    profile = study.profile
    pipeline = train_variant("base+gfa", profile, seed=args.seed, data_root=study.root,
                             pairs_file=study.fit_pairs)
    pipeline.set_progress_bar_config(disable=True)
    settings = sorted({(g, profile.sample_steps) for g in args.guidance}
                      | {(profile.guidance_scale, s) for s in args.steps})
    rows = {}
    for guidance, steps in settings:
        sampler = replace(profile, guidance_scale=guidance, sample_steps=steps)
        row = held_out_score(pipeline, study.pairs_set, study.pairs, sampler, args.seed)
        rows[f"guidance {guidance:g}, {steps} steps"] = row | {"guidance_scale": guidance,
                                                               "sample_steps": steps}
        print(guidance, steps, json.dumps(row), flush=True)
    record = {"profile": profile.name, "seed": args.seed, "n_held_out": args.holdout,
              "run": pipeline.run.folder.name,
              "protocol": "Base + GFA trained on the training pairs less the held-out ones, "
                          f"{default_warp(study.root)} warp; scored paired on the held-out "
                          "training pairs",
              "rows": rows}
    write_record(args.out, record, profile, [args.seed], started)


if __name__ == "__main__":
    main()
