"""The committed reference results (``book/results/*.json``), found wherever a notebook runs.

A notebook run inside a checkout reads them from the repository's ``book/results/``. A
notebook opened alone (Colab: the library ``pip install``-ed, no clone) reads the copy that
ships inside the package: ``gardiffmini/results`` is a link to ``book/results``, and the
package data takes its JSON files into every installed copy.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

CHECKOUT_FOLDER = Path("book") / "results"


def result_locations(name: str) -> list[Path]:
    """Where :func:`load_result` looks for ``name``, in order: ``book/results/`` of the
    checkout around the working directory, then the package's own copy."""
    found = [folder / CHECKOUT_FOLDER / name for folder in (Path.cwd(), *Path.cwd().parents)
             if (folder / CHECKOUT_FOLDER).is_dir()]
    return [*found[:1], Path(str(files("gardiffmini") / "results" / name))]


def load_result(name: str) -> dict:
    """The committed result ``name`` (e.g. ``"ablation-cpu.json"``), parsed.

    Raises ``FileNotFoundError`` naming every place it looked and how to get the file.
    """
    if Path(name).name != name or not name.endswith(".json"):
        raise ValueError(f"name must be a file name in book/results ending in .json, "
                         f"got {name!r}")
    places = result_locations(name)
    for path in places:
        if path.is_file():
            return json.loads(path.read_text())
    raise FileNotFoundError(
        f"{name} is not among the committed results: looked at "
        + ", ".join(str(p) for p in places)
        + ". It is committed by the maintainers after a full run; a copy of the repository "
          "(git clone) or a newer gardiffmini holds it once it is.")
