"""Does it matter which warp the model trains on? Issue 9's train/test mismatch, measured.

    python benchmarks/train_warp.py --profile cpu --variant base+gfa \
        --out book/results/train-warp-cpu.json

ToyVITON's training pairs come with their exact warp (``cloth-warp/``: the ground truth that a
warping module approaches), and so do the paired test pairs; the unpaired test pairs get the
computed warp (the torso by TPS, the sleeves along the arms: mask IoU 0.75 with the true
garment), so the model meets a warp at unpaired test time that it never saw in training.
This trains the variant a second time, same seed and recipe, on a view of the same data in
which the training pairs have no ``cloth-warp/`` files
(symbolic links to everything else, under ``<data>/<toyviton>-tps-train``), so that the loader
warps them as it warps the unpaired test pairs. Both runs are scored on the same test
pairs with the evaluation of the book (:func:`gardiffmini.evaluate.cached_evaluation`), and
the requested garment's attributes are broken down per attribute beside warp + paste's.
Writes the numbers, the training times and provenance to ``--out``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from scoring import scored_sets, scoring_parser

from gardiffmini import baselines, metrics
from gardiffmini.attributes import attribute_labels
from gardiffmini.data.vitonhd import FIELDS, WARP_KEYS
from gardiffmini.evaluate import cached_evaluation
from gardiffmini.reproduce import provenance
from gardiffmini.train import train_variant

WARP_FOLDERS = {FIELDS[key][0] for key in WARP_KEYS}
REPORTED = ("SSIM", "SSIM_occluded", "garment_detail_error", "attribute_accuracy_u",
            "unpaired_colour_match")


def tps_training_view(root: Path) -> Path:
    """A folder beside ``root`` that links to all of it except the training pairs' warps."""
    view = root.with_name(root.name + "-tps-train")
    kept = [item for item in root.iterdir() if item.name != "train"]
    kept += [folder for folder in (root / "train").iterdir() if folder.name not in WARP_FOLDERS]
    for target in kept:
        link = view / target.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(target.resolve(), target_is_directory=target.is_dir())
    return view


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--variant", default="base+gfa")
    args = parser.parse_args()
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile)
    unpaired = sets["unpaired"]
    requested = attribute_labels(root, "test", unpaired["cloth_name"])
    rows = {"warp + paste": {"attributes_u": metrics.attribute_accuracy(
        net, baselines.warp_and_paste(unpaired).clamp(0, 1), requested)}}
    for name, data_root in (("trained on the exact warp", root),
                            ("trained on the TPS warp", tps_training_view(root))):
        pipeline = train_variant(args.variant, profile, seed=args.seed, data_root=data_root)
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
              "rows": rows,
              "provenance": provenance(profile, [args.seed], time.perf_counter() - started)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
