"""What classifier-free guidance changes in a trained variant's try-on images.

    python benchmarks/guidance_effect.py --profile cpu --variant base --n 32

Reuses the finished run of ``--variant`` (trains it if missing), dresses the first ``--n``
paired test persons with guidance scales 1 (no guidance) and the ones given, and prints the
mean absolute pixel change against scale 1 and the SSIM against the photos of each.
"""

from __future__ import annotations

import argparse
import json

from gardiffmini import metrics
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import evaluation_sets, try_on
from gardiffmini.profiles import get_profile
from gardiffmini.train import train_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--variant", default="base")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--scales", type=float, nargs="+", default=[2.0, 4.0])
    args = parser.parse_args()
    profile = get_profile(args.profile, n_eval=args.n)
    root = ensure_toyviton(profile)
    pipeline = train_variant(args.variant, profile, seed=0, data_root=root)
    pipeline.set_progress_bar_config(disable=True)
    pairs = evaluation_sets(root, profile)["paired"]
    real = pairs["person"].add(1).div(2)
    images = {scale: try_on(pipeline, pairs, get_profile(profile, guidance_scale=scale), 0)
              for scale in [1.0, *args.scales]}
    report = {f"w={scale:g}": {"ssim": round(metrics.ssim(out, real).mean().item(), 4),
                               "mean_abs_change_vs_w1": round(
                                   (out - images[1.0]).abs().mean().item(), 4)}
              for scale, out in images.items()}
    print(json.dumps({"variant": args.variant, "profile": profile.name, "n": args.n,
                      "run": pipeline.run.folder.name, **report}, indent=2))


if __name__ == "__main__":
    main()
