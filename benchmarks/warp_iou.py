"""How close the computed warp comes to ToyVITON's ground truth: mask IoU on the test split.

For every test pair, the warp of :mod:`gardiffmini.data.warp` (the torso by TPS, the sleeves
laid along the arms) puts the in-shop garment onto the person's keypoints; its mask ``m_w``
is compared with ``cloth-warp-mask`` (the garment deformed onto the body by the generator,
arms not drawn over it)::

    python benchmarks/warp_iou.py --profile cpu --n-test 200 --root /tmp/toyviton-warp

The data set is generated under ``--root`` if it is not there yet.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

import torch
from tqdm.auto import tqdm

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="/tmp/toyviton-warp")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    root = generate(args.root, profile, seed=args.seed, n_train=0, n_test=args.n_test)
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
