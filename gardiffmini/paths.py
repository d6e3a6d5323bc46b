"""Where generated data sets and training runs live.

``$GARDIFF_DATA`` wins; otherwise ``data/`` of the repository when running from a checkout
(found by walking up from the working directory), else ``~/gardiffmini-data`` (Colab).
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """The folder that holds ``toyviton-<profile>/`` and ``runs/``."""
    if os.environ.get("GARDIFF_DATA"):
        return Path(os.environ["GARDIFF_DATA"]).expanduser()
    for folder in (Path.cwd(), *Path.cwd().parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.exists() and 'name = "gardiffmini"' in pyproject.read_text():
            return folder / "data"
    return Path.home() / "gardiffmini-data"


def toyviton_root(profile_name: str) -> Path:
    """The ToyVITON data set of a profile."""
    return data_root() / f"toyviton-{profile_name}"


def runs_root() -> Path:
    """The folder of training runs (one sub-folder per model, profile and seed)."""
    return data_root() / "runs"
