"""Where the skin error lies: under the computed warp's mask, or beside it.

    python benchmarks/skin_under_warp.py --records book/results/skin-agnostic-init-cpu.json \
        --out book/results/skin-under-warp-cpu.json

The skin error (:func:`gardiffmini.metrics.skin_error`) is measured on the skin a requested
garment bares that the person's own garment covered. Where the computed warp's mask ``m_w``
lies over that skin, the model is handed garment where the truth has skin. This splits the
error of every model row of the given lever records (:mod:`detail_levers`, every seed: the
images of each row's cached evaluation, found in its run folder by its numbers), and of the
baselines, into the pixels under ``m_w`` and those beside it (``--warp carved``: the mask of the
carved warp, for records measured on it). Errors are pooled over the
pixels of all pairs (``metrics.skin_error`` averages per pair first, so its numbers differ
slightly). Nothing is trained or sampled.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from scoring import SCORED_WARPS, scored_sets, scoring_parser, write_record

from gardiffmini import baselines, metrics
from gardiffmini.paths import runs_root


def split_error(images: torch.Tensor, truth: torch.Tensor, skin: torch.Tensor,
                under: torch.Tensor) -> dict[str, float]:
    """The mean |images - truth| (RGB, [0, 1]) over the pixels of ``skin``, and over those
    of ``skin`` under and beside ``under`` (boolean ``(B, H, W)`` masks each)."""
    error = (images - truth).abs().mean(dim=1)
    return {"all": error[skin].mean().item(), "under_warp": error[skin & under].mean().item(),
            "beside_warp": error[skin & ~under].mean().item()}


def evaluation_images(row: dict) -> torch.Tensor:
    """The unpaired images of the cached evaluation of ``row``'s run whose numbers are the
    row's; an error naming the run folder where there is not exactly one."""
    folder = runs_root() / row["run"]
    found = [path for path in sorted(folder.glob("evaluation-*.json"))
             if all(round(json.loads(path.read_text())[key], 4) == row[key]
                    for key in ("SSIM", "SSIM_u", "skin_error_u"))]
    if len(found) != 1:
        raise FileNotFoundError(f"{folder}: {len(found)} cached evaluations match the record's "
                                "numbers, expected 1 (run detail_levers.py again)")
    return load_file(str(found[0].with_suffix(".safetensors")))["unpaired"]


def read_records(paths: list[Path], warp: str) -> dict[Path, dict]:
    """The lever records at ``paths``, each checked to have been measured on the warp
    protocol ``warp`` (an error naming the file otherwise)."""
    records = {path: json.loads(path.read_text()) for path in paths}
    for path, record in records.items():
        if not record["protocol"].startswith(f"{warp} warp"):
            raise ValueError(f"{path} was measured on {record['protocol']!r}, not on the "
                             f"{warp} warp: pass --warp to match")
    return records


def main() -> None:
    parser = scoring_parser(__doc__)
    parser.add_argument("--records", type=Path, nargs="+", required=True)
    parser.add_argument("--warp", choices=SCORED_WARPS, default="computed",
                        help="the warp protocol the records were measured on")
    args = parser.parse_args()
    started = time.perf_counter()
    records = read_records(args.records, args.warp)
    profile, _, sets, _ = scored_sets(args.profile, args.warp)
    unpaired = sets["unpaired"]
    truth = unpaired["truth"].add(1).div(2)
    skin = metrics.newly_bared_skin(unpaired["parse"], unpaired["truth_parse"]).bool()[:, 0]
    under = unpaired["warped_mask"][:, 0] > 0.5
    rows = {
        "warp + paste": split_error(baselines.warp_and_paste(unpaired), truth, skin, under),
        "warp + paste, skin-primed": split_error(
            baselines.warp_and_paste(baselines.skin_primed(unpaired)), truth, skin, under),
    }
    seeds: set[int] = set()
    for record in records.values():
        for seed, seed_rows in record["per_seed"].items():
            seeds.add(int(seed))
            for title, row in seed_rows.items():
                if "run" in row:
                    rows.setdefault(title, {})[f"seed {seed}"] = split_error(
                        evaluation_images(row), truth, skin, under)
    for per_seed in rows.values():
        if all(key.startswith("seed") for key in per_seed):
            per_seed["mean"] = {part: sum(s[part] for s in per_seed.values()) / len(per_seed)
                                for part in ("all", "under_warp", "beside_warp")}
    record = {"profile": profile.name, "warp": args.warp,
              "records": [str(path) for path in args.records],
              "skin_pixels": int(skin.sum()),
              "share_under_warp": (skin & under).sum().item() / skin.sum().item(),
              "rows": rows}
    write_record(args.out, record, profile, sorted(seeds), started)


if __name__ == "__main__":
    main()
