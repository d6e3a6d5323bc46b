"""Which warp loses the requested garment's attributes? The exact warp against the computed one.

    python benchmarks/attributes_by_warp.py --profile cpu \
        --out book/results/attributes-by-warp-cpu.json

Every variant (trained, or reused, at ``--seed``; trained on the computed warp) dresses the
unpaired test persons twice: given ToyVITON's exact warp of the requested garment (the
``oracle`` protocol of :data:`gardiffmini.data.datasets.WARPS`) and the computed warp
(:mod:`gardiffmini.data.warp`: the torso by TPS, the sleeves laid along the arms). For the
real photos (paired: their own garment, the ceiling), warp + paste and every variant, this
scores the attribute network's accuracy per attribute against the requested garment under
each warp. The images are the book's evaluation
(:func:`gardiffmini.evaluate.cached_evaluation`), reused where the chapters and
``reproduce`` already made them. Writes the table and provenance to ``--out``.
"""

from __future__ import annotations

import json
import time

from scoring import scored_sets, scoring_parser, write_record

from gardiffmini import baselines, metrics
from gardiffmini.attributes import attribute_labels
from gardiffmini.evaluate import cached_evaluation, evaluation_sets
from gardiffmini.train import VARIANTS, train_variant

PROTOCOLS = {"oracle": "requested garment, exact warp",
             "computed": "requested garment, computed warp"}


def main() -> None:
    args = scoring_parser(__doc__).parse_args()
    started = time.perf_counter()
    profile, root, computed, net = scored_sets(args.profile, "computed")
    protocols = {"oracle": evaluation_sets(root, profile, warp="oracle"), "computed": computed}
    requested = attribute_labels(root, "test", computed["unpaired"]["cloth_name"])
    images = {"warp + paste": {warp: baselines.warp_and_paste(sets["unpaired"]).clamp(0, 1)
                               for warp, sets in protocols.items()}}
    for variant in VARIANTS:
        pipeline = train_variant(variant, profile, seed=args.seed, data_root=root)
        pipeline.set_progress_bar_config(disable=True)
        images[VARIANTS[variant].name] = {
            warp: cached_evaluation(pipeline, profile, root, args.seed, net,
                                    sets)["images"]["unpaired"]
            for warp, sets in protocols.items()}
    paired = computed["paired"]
    rows = {"real test photos (ceiling)": {"own garment": metrics.attribute_accuracy(
        net, paired["person"].add(1).div(2), attribute_labels(root, "test", paired["cloth_name"]))}}
    for name, generated in images.items():
        rows[name] = {warp: metrics.attribute_accuracy(net, generated[warp], requested)
                      for warp in PROTOCOLS}
    for name, row in rows.items():
        for warp, scores in row.items():
            row[warp] = {key: round(value, 4) for key, value in scores.items()}
            print(f"{name:<28} {warp:<12} {json.dumps(row[warp])}")
    record = {"seed": args.seed, "n_pairs": len(paired["person"]), "protocols": PROTOCOLS,
              "rows": rows}
    write_record(args.out, record, profile, [args.seed], started)


if __name__ == "__main__":
    main()
