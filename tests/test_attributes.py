"""ToyVITON's garment attributes as class labels (the attribute network's targets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gardiffmini.attributes import attribute_labels
from gardiffmini.data import layout
from gardiffmini.data.garments import CATEGORIES, COLOR_NAMES, PATTERNS


def test_attribute_labels_match_the_attributes_file(toyviton_root: Path) -> None:
    table = json.loads((toyviton_root / "test" / layout.ATTRIBUTES_FILE).read_text())
    names = sorted(table)[:3]
    labels = attribute_labels(toyviton_root, "test", names)
    assert set(labels) == {"pattern", "category", "colour"}
    for i, name in enumerate(names):
        assert PATTERNS[labels["pattern"][i]] == table[name]["pattern"]
        assert CATEGORIES[labels["category"][i]] == table[name]["category"]
        assert COLOR_NAMES[labels["colour"][i]] == table[name]["colors"][0]
    assert all(v.dtype == torch.long and v.shape == (3,) for v in labels.values())


def test_attribute_labels_errors_name_the_file(toyviton_root: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cloth-attributes.json"):
        attribute_labels(tmp_path, "test", ["00000_00.jpg"])
    with pytest.raises(KeyError, match="99999_00.jpg"):
        attribute_labels(toyviton_root, "test", ["99999_00.jpg"])
