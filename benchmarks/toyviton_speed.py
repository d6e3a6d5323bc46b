"""How fast ToyVITON is written, and how much disk it takes.

    python benchmarks/toyviton_speed.py --profile cpu --n 10000 --workers 2

Writes ``--n`` training pairs (and no test pairs) into a temporary folder (or ``--root``),
then prints the wall time, pairs per second and the size on disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from gardiffmini import get_profile
from gardiffmini.data.toyviton import generate


def disk_usage(root: Path) -> tuple[int, int, int]:
    """Files, their bytes, and the bytes the file system allocates for them."""
    files = size = allocated = 0
    for folder, _, names in os.walk(root):
        for name in names:
            stat = (Path(folder) / name).stat()
            files += 1
            size += stat.st_size
            allocated += stat.st_blocks * 512
    return files, size, allocated


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="profile name (image size)")
    parser.add_argument("--n", type=int, default=10000, help="training pairs to write")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all)")
    parser.add_argument("--root", type=Path, default=None, help="keep the data set here")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    root = args.root or Path(tempfile.mkdtemp(prefix="toyviton-speed-")) / "toyviton"
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    generate(root, profile, n_train=args.n, n_test=0, workers=args.workers)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    files, size, allocated = disk_usage(root)
    print(f"profile {profile.name} ({profile.height}x{profile.width}), {args.n} pairs, "
          f"workers {args.workers or os.cpu_count()}, CPUs {os.cpu_count()}")
    print(f"wall time {seconds:.1f} s, {args.n / seconds:.0f} pairs/s; "
          f"CPU time {cpu:.1f} s, {1000 * cpu / max(args.n, 1):.1f} ms per pair")
    print(f"{files} files, {size / 2**20:.0f} MiB of data, {allocated / 2**20:.0f} MiB on disk, "
          f"{size / max(args.n, 1) / 1024:.1f} KiB per pair")
    if args.root is None:
        shutil.rmtree(root.parent)


if __name__ == "__main__":
    main()
