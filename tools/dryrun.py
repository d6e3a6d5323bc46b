"""Execute every chapter at a profile's shapes with its step counts and data cut to a few.

A dry run (``$GARDIFF_DRY_RUN``, :func:`gardiffmini.profiles.dry_run`) keeps the profile's
image size, model widths and latent channels, so every shape the GPU will see is built and
run through on the CPU; its numbers mean nothing. The notebooks are staged and executed with
papermill like ``tools/build_book.py`` does, into ``OUT``; data and runs go to
``OUT/data``; no HTML is built. Wall times per notebook go to ``OUT/timings.json``.

    python tools/dryrun.py --profile gpu --out _build/dryrun-gpu
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from build_book import ROOT, execute, stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = (args.out or ROOT / "_build" / f"dryrun-{args.profile}").resolve()
    os.environ.update(GARDIFF_PROFILE=args.profile, GARDIFF_DRY_RUN="1",
                      GARDIFF_DATA=str(out / "data"))
    start = time.perf_counter()
    timings = execute(stage(out), args.profile)
    timings["all notebooks"] = round(time.perf_counter() - start, 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"\nDry run at {args.profile}'s shapes passed; wall times (s): {json.dumps(timings)}")


if __name__ == "__main__":
    main()
