"""How close the computed warp comes to ToyVITON's ground truth: mask IoU on the test split.

For every test pair, the warp of :mod:`gardiffmini.data.warp` (the torso by TPS, the sleeves
laid along the arms) puts the in-shop garment onto the person's keypoints; its mask ``m_w``
is compared with ``cloth-warp-mask`` (the garment deformed onto the body by the generator,
arms not drawn over it)::

    python benchmarks/warp_iou.py --profile cpu --n-test 200 --root /tmp/toyviton-warp

The data set is generated under ``--root`` if it is not there yet.

With ``--arms``, the warp whose torso lies behind the arms drawn from the keypoints
(:mod:`gardiffmini.data.arms`) is set beside the plain one, at each ``--arm-radius`` and
``--hand-reach`` given (in shoulder widths), on what a try-on shows rather than on ToyVITON's
warp (which keeps the garment under the arms): the IoU of ``m_w`` with the visible garment
(the garment labels of the photo, paired, and of the rendered truth, unpaired), and the
share of the skin an unpaired garment bares (:func:`gardiffmini.metrics.newly_bared_skin`)
that lies under ``m_w``::

    python benchmarks/warp_iou.py --arms --arm-radius 0.1 0.12 0.14 --hand-reach 0 0.2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from scoring import write_record
from tqdm.auto import tqdm

from gardiffmini import metrics
from gardiffmini.data import arms
from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.data.toyviton import generate
from gardiffmini.data.vitonhd import VitonHD
from gardiffmini.data.warp import warp_garment
from gardiffmini.profiles import get_profile


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two binary masks."""
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / (a | b).sum().clamp_min(1))


def warp_ious(data: VitonHD) -> list[float]:
    """IoU of the computed warp's mask with the given ``warped_mask`` for every pair of ``data``."""
    ious = []
    for sample in tqdm(data, desc="warp", unit="pair"):
        _, mask = warp_garment(sample["cloth"], sample["cloth_mask"], sample["keypoints"])
        ious.append(mask_iou(mask, sample["warped_mask"]))
    return ious


def test_samples(root, profile) -> dict[str, list[dict]]:
    """Every test pair of ``root``, paired and unpaired, read once (their given warps are
    not used: each row of :func:`arms_table` warps the garments itself)."""
    return {pairing: list(tqdm(VitonHD(root, "test", pairing, size=profile, warp="given"),
                               desc=f"reading {pairing}", unit="pair"))
            for pairing in ("paired", "unpaired")}


def visible_garment_ious(samples: dict[str, list[dict]], arms_in_front: bool
                         ) -> dict[str, float]:
    """Mean IoU of the computed ``m_w`` (``arms_in_front`` or not) with the visible garment,
    paired and unpaired, and the share of the newly bared skin under ``m_w`` (pooled over
    the unpaired pairs)."""
    ious: dict[str, list[float]] = {}
    under = bared = 0
    for pairing, pairs in samples.items():
        for sample in pairs:
            _, mask = warp_garment(sample["cloth"], sample["cloth_mask"], sample["keypoints"],
                                   arms_in_front=arms_in_front)
            visible = metrics.label_region(sample["truth_parse"][None], GARMENT_LABELS)[0]
            ious.setdefault(pairing, []).append(mask_iou(mask, visible))
            if pairing == "unpaired":
                skin = metrics.newly_bared_skin(sample["parse"][None], sample["truth_parse"][None])
                under += int((skin[0].bool() & (mask > 0.5)).sum())
                bared += int(skin.sum())
    return {f"IoU visible {pairing}": statistics.mean(values) for pairing, values in ious.items()
            } | {"skin under m_w": under / max(bared, 1)}


def arms_table(root, profile, radii: list[float], reaches: list[float]) -> dict[str, dict]:
    """Print and return :func:`visible_garment_ious` of the plain warp and of the carved one
    at every arm radius and hand reach."""
    samples = test_samples(root, profile)
    rows = {"plain": visible_garment_ious(samples, arms_in_front=False)}
    chosen = arms.ARM_RADIUS, arms.HAND_REACH
    try:
        for radius in tqdm(radii, desc="arm radii"):
            for reach in reaches:
                arms.ARM_RADIUS, arms.HAND_REACH = radius, reach
                rows[f"arms r={radius:g} hand={reach:g}"] = visible_garment_ious(
                    samples, arms_in_front=True)
    finally:
        arms.ARM_RADIUS, arms.HAND_REACH = chosen
    for title, numbers in rows.items():
        print(f"  {title:<24}" + "  ".join(f"{k} {v:.3f}" for k, v in numbers.items()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="/tmp/toyviton-warp")
    parser.add_argument("--arms", action="store_true",
                        help="the warp behind the arms against the visible garment")
    parser.add_argument("--arm-radius", type=float, nargs="+", default=[arms.ARM_RADIUS])
    parser.add_argument("--hand-reach", type=float, nargs="+", default=[arms.HAND_REACH])
    parser.add_argument("--out", type=Path, help="with --arms: write the table as JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    profile = get_profile(args.profile)
    root = generate(args.root, profile, seed=args.seed, n_train=0, n_test=args.n_test)
    if args.arms:
        print(f"Warp vs the visible garment, {args.profile} profile, {args.n_test} test pairs")
        rows = arms_table(root, profile, args.arm_radius, args.hand_reach)
        if args.out:
            record = {"profile": profile.name, "n_test": args.n_test, "data_seed": args.seed,
                      "library's": {"arm_radius": arms.ARM_RADIUS, "hand_reach": arms.HAND_REACH},
                      "rows": rows}
            write_record(args.out, record, profile, [args.seed], started)
        return
    data = VitonHD(root, "test", "paired", size=profile, warp="given")
    ious = warp_ious(data)
    attributes = json.loads((root / "test" / "cloth-attributes.json").read_text())
    groups = defaultdict(list)
    for pair, iou in zip(data.pairs, ious, strict=True):
        garment = attributes[pair.cloth]
        groups[f"sleeve={garment['sleeve']}"].append(iou)
        groups[f"length={garment['length']}"].append(iou)
    print(f"Warp vs ToyVITON cloth-warp-mask, {args.profile} profile, {len(ious)} test pairs")
    print(f"  mask IoU: mean {statistics.mean(ious):.3f}  median {statistics.median(ious):.3f}  "
          f"min {min(ious):.3f}")
    for name, values in sorted(groups.items()):
        print(f"  {name:<18} mean {statistics.mean(values):.3f}  (n={len(values)})")


if __name__ == "__main__":
    main()
