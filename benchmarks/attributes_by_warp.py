"""Which warp loses the garment's attributes? Paired (exact warp) against unpaired (computed).

    python benchmarks/attributes_by_warp.py --profile cpu \
        --out book/results/attributes-by-warp-cpu.json

Paired test pairs come with their exact warp (``cloth-warp/``, ToyVITON's ground truth);
unpaired ones get the computed warp (:mod:`gardiffmini.data.warp`: the torso by TPS, the
sleeves laid along the arms). For the real photos, warp + paste and every variant (trained,
or reused, at ``--seed``), this scores the attribute network's accuracy per attribute
twice: on the paired results against the person's own garment, and on the unpaired results
against the requested garment. The images are the
book's evaluation (:func:`gardiffmini.evaluate.cached_evaluation`), reused where the
chapters already made them. Writes the table and provenance to ``--out``.
"""

from __future__ import annotations

import json
import time

from scoring import scored_sets, scoring_parser

from gardiffmini import baselines, metrics
from gardiffmini.attributes import attribute_labels
from gardiffmini.evaluate import cached_evaluation
from gardiffmini.reproduce import provenance
from gardiffmini.train import VARIANTS, train_variant

PAIRINGS = {"paired": "own garment, exact warp", "unpaired": "requested garment, computed warp"}


def main() -> None:
    args = scoring_parser(__doc__).parse_args()
    started = time.perf_counter()
    profile, root, sets, net = scored_sets(args.profile)
    labels = {pairing: attribute_labels(root, "test", batch["cloth_name"])
              for pairing, batch in sets.items()}
    images = {"warp + paste": {pairing: baselines.warp_and_paste(batch).clamp(0, 1)
                               for pairing, batch in sets.items()}}
    for variant in VARIANTS:
        pipeline = train_variant(variant, profile, seed=args.seed, data_root=root)
        pipeline.set_progress_bar_config(disable=True)
        images[VARIANTS[variant].name] = cached_evaluation(
            pipeline, profile, root, args.seed, net, sets)["images"]
    rows = {"real test photos (ceiling)": {"paired": metrics.attribute_accuracy(
        net, sets["paired"]["person"].add(1).div(2), labels["paired"])}}
    for name, generated in images.items():
        rows[name] = {pairing: metrics.attribute_accuracy(net, generated[pairing],
                                                          labels[pairing])
                      for pairing in PAIRINGS}
    for name, row in rows.items():
        for pairing, scores in row.items():
            row[pairing] = {key: round(value, 4) for key, value in scores.items()}
            print(f"{name:<28} {PAIRINGS[pairing]:<28} {json.dumps(row[pairing])}")
    record = {"seed": args.seed, "n_pairs": len(sets["paired"]["person"]),
              "pairings": PAIRINGS, "rows": rows,
              "provenance": provenance(profile, [args.seed], time.perf_counter() - started)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
