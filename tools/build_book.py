"""Execute every chapter notebook with papermill at a profile, then build the HTML book.

The sources (``_config.yml``, ``_toc.yml``, ``book/``, ``notebooks/``) are copied into
``OUT/src``; the notebooks there are replaced by their executed versions; Jupyter Book
then builds ``OUT/src`` with warnings as errors and without executing anything itself.
Wall times per notebook go to ``OUT/timings.json``.

    python tools/build_book.py --profile ci --out _build/ci
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")
# seconds one cell may run before execution fails (a hung kernel must not hang CI)
CELL_TIMEOUT = {"ci": 600}


def stage(out: Path) -> Path:
    """Copy the book's sources into ``out/src`` and return that folder."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        else:
            shutil.copy2(path, src / name)
    return src


def execute(src: Path, profile: str) -> dict[str, float]:
    """Run every notebook in ``src/notebooks`` in place at ``profile``; return wall times."""
    timings = {}
    for notebook in sorted((src / "notebooks").glob("*.ipynb")):
        start = time.perf_counter()
        print(f"executing {notebook.name} at profile {profile} ...", flush=True)
        papermill.execute_notebook(
            str(notebook), str(notebook), parameters={"profile": profile},
            cwd=str(notebook.parent), kernel_name="python3", progress_bar=False,
            execution_timeout=CELL_TIMEOUT.get(profile, 4 * 3600),
        )
        timings[notebook.name] = round(time.perf_counter() - start, 1)
        print(f"  {notebook.name}: {timings[notebook.name]} s", flush=True)
    return timings


def build(src: Path, out: Path) -> Path:
    """Build the HTML book from ``src`` into ``out`` with warnings as errors."""
    command = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(src),
        "--path-output", str(out), "-W", "-n", "--keep-going",
    ]
    subprocess.run(command, check=True)
    return out / "_build" / "html" / "index.html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("GARDIFF_PROFILE", "cpu"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = (args.out or ROOT / "_build" / args.profile).resolve()
    os.environ["GARDIFF_PROFILE"] = args.profile
    src = stage(out)
    start = time.perf_counter()
    timings = execute(src, args.profile)
    timings["all notebooks"] = round(time.perf_counter() - start, 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    index = build(src, out)
    print(f"\nNotebook wall times (s): {json.dumps(timings)}")
    print(f"The book is at {index}")


if __name__ == "__main__":
    main()
