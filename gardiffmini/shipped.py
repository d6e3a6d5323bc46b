"""Weights that ship inside the package, in ``gardiffmini/weights/``.

Each is a safetensors file beside a JSON record that names the hash of what made the weights
(data, architecture, recipe, steps). A loader accepts them only where that hash equals the one
today's code computes; otherwise the caller trains, so shipped weights never stand in for
another model. The ``tools/ship_*.py`` commands make them: the ToyVITON VAEs, the shared
inpainting bases and the attribute networks of the ``ci`` and ``cpu`` profiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def load_shipped(path: Path, hash_field: str, expected: str | None
                 ) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The float32 state dict at ``path`` and its JSON record (``path`` with ``.json``), or
    ``None`` where either file is missing or the record's ``hash_field`` is not ``expected``."""
    record_path = path.with_suffix(".json")
    if expected is None or not (path.is_file() and record_path.is_file()):
        return None
    record = json.loads(record_path.read_text())
    if record.get(hash_field) != expected:
        return None
    return {key: value.float() for key, value in load_file(str(path)).items()}, record
