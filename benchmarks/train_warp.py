"""Does it matter which warp the model trains on? The exact warp against the computed one.

    python benchmarks/train_warp.py --profile cpu --variant base+gfa \
        --out book/results/train-warp-cpu.json

ToyVITON's training pairs come with their exact warp (``cloth-warp/``: the ground truth that a
warping module approaches), which no real data set has; the book trains on the computed
warp (the torso by TPS, the sleeves along the arms: mask IoU 0.75 with the true garment),
the one a user has. This trains the variant twice, same seed and recipe, once per warp
protocol (:data:`gardiffmini.data.datasets.WARPS`), and scores both on the same test pairs
with the book's evaluation (:func:`gardiffmini.evaluate.cached_evaluation`: the computed warp
at test time, unpaired against the rendered truth); the requested garment's attributes are
broken down per attribute beside warp + paste's. Writes the numbers, the training times and
provenance to ``--out``.
"""

from __future__ import annotations

import json
import time

from scoring import scored_sets, scoring_parser, write_record

from gardiffmini import baselines, metrics
from gardiffmini.attributes import attribute_labels
from gardiffmini.evaluate import cached_evaluation
from gardiffmini.train import train_variant

REPORTED = ("SSIM", "SSIM_occluded", "garment_detail_error", "SSIM_u", "garment_detail_error_u",
            "attribute_accuracy_u", "unpaired_colour_match")


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--variant", default="base+gfa")
    args = parser.parse_args()
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile, "computed")
    unpaired = sets["unpaired"]
    requested = attribute_labels(root, "test", unpaired["cloth_name"])
    rows = {"warp + paste": {"attributes_u": metrics.attribute_accuracy(
        net, baselines.warp_and_paste(unpaired).clamp(0, 1), requested)}}
    for name, warp in (("trained on the exact warp", "oracle"),
                       ("trained on the computed warp", "computed")):
        pipeline = train_variant(args.variant, profile, seed=args.seed, data_root=root, warp=warp)
        pipeline.set_progress_bar_config(disable=True)
        result = cached_evaluation(pipeline, profile, root, args.seed, net, sets)
        rows[name] = {
            **{key: round(result["metrics"][key], 4) for key in REPORTED},
            "attributes_u": metrics.attribute_accuracy(net, result["images"]["unpaired"],
                                                       requested),
            "run": pipeline.run.folder.name,
            "train_seconds": pipeline.run.metrics["summary"].get("train_seconds"),
        }
        print(name, json.dumps(rows[name]), flush=True)
    for row in rows.values():
        row["attributes_u"] = {k: round(v, 4) for k, v in row["attributes_u"].items()}
    record = {"variant": args.variant, "seed": args.seed, "n_pairs": len(unpaired["person"]),
              "rows": rows}
    write_record(args.out, record, profile, [args.seed], started)


if __name__ == "__main__":
    main()
