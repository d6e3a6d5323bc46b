"""Speed of the warp of :mod:`gardiffmini.data.warp` at a real size: items per second.

A flat T-shirt mask and a front-facing person's BODY_25 keypoints (the test fixture's,
scaled up) are warped ``--n`` times at ``--height x --width`` (default 512x384, the paper's
size) on the CPU, one item at a time, after one warm-up call (``--threads 1`` is what each worker of
``python -m gardiffmini warp`` uses)::

    nice -n 19 python benchmarks/warp_speed.py --height 512 --width 384 --n 5

Prints one JSON line: size, items, seconds, items/s, torch threads.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from gardiffmini.data.warp import warp_garment

# the fixture of tests/conftest.py at 96x128 (x, y) and its BODY_25 keypoints, feet undetected
TSHIRT = [(40, 22), (56, 22), (68, 26), (84, 44), (76, 52), (66, 42), (66, 102), (30, 102),
          (30, 42), (20, 52), (12, 44), (28, 26)]
KEYPOINTS = [
    (48, 18, 0.9), (48, 34, 0.9), (33, 36, 0.9), (27, 58, 0.8), (25, 78, 0.8),
    (63, 36, 0.9), (69, 58, 0.8), (71, 78, 0.8), (48, 82, 0.9), (41, 82, 0.9),
    (41, 104, 0.8), (41, 124, 0.7), (55, 82, 0.9), (55, 104, 0.8), (55, 124, 0.7),
    (46, 16, 0.9), (50, 16, 0.9), (44, 17, 0.8), (52, 17, 0.8), *[(0, 0, 0)] * 6,
]


def inputs(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Garment (3, H, W) in [-1, 1], its mask (1, H, W) and keypoints (25, 3) at this size."""
    sx, sy = width / 96, height / 128
    mask_image = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask_image).polygon([(x * sx, y * sy) for x, y in TSHIRT], fill=255)
    mask = (torch.from_numpy(np.array(mask_image)) > 127).float()[None]
    cloth = mask.expand(3, -1, -1) * -0.5 + (1 - mask)
    keypoints = torch.tensor([(x * sx, y * sy, c) for x, y, c in KEYPOINTS])
    return cloth, mask, keypoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cloth, mask, keypoints = inputs(args.height, args.width)
    warp_garment(cloth, mask, keypoints)  # warm-up
    start = time.perf_counter()
    for _ in range(args.n):
        warp_garment(cloth, mask, keypoints)
    seconds = time.perf_counter() - start
    print(json.dumps({"size": [args.height, args.width], "items": args.n,
                      "seconds": round(seconds, 3), "items_per_s": round(args.n / seconds, 3),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
