"""The committed results are found from a checkout, from outside one, and inside the wheel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gardiffmini.results import load_result, result_locations

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "book" / "results").glob("*.json"))


def test_there_are_committed_results():
    assert "ablation-cpu.json" in [path.name for path in COMMITTED]


def test_a_notebook_outside_the_checkout_finds_every_committed_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a notebook opened alone: no book/results above it
    for path in COMMITTED:
        assert result_locations(path.name) == [ROOT / "gardiffmini" / "results" / path.name]
        assert load_result(path.name) == json.loads(path.read_text())


def test_inside_the_checkout_book_results_comes_first(monkeypatch):
    monkeypatch.chdir(ROOT / "notebooks")
    assert result_locations("ablation-cpu.json")[0] == ROOT / "book" / "results" / (
        "ablation-cpu.json")


def test_a_missing_or_bad_name_says_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ablation-gpu.json .*looked at .*git clone"):
        load_result("ablation-gpu.json")
    with pytest.raises(ValueError, match="file name in book/results"):
        load_result("../pyproject.toml")
    with pytest.raises(ValueError, match="ending in .json"):
        load_result("ablation-cpu.md")


def test_the_wheel_carries_every_committed_result(tmp_path):
    """What ``pip install`` on Colab gets: the package built from a copy of the sources."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "gardiffmini", source / "gardiffmini", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "book" / "results", source / "book" / "results")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation",
                    "--no-deps", str(source), "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("gardiffmini-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for path in COMMITTED:
            packed = archive.read(f"gardiffmini/results/{path.name}")
            assert json.loads(packed) == json.loads(path.read_text()), path.name
