"""The profile is resolved once, at the edge (issue 22): from a profile's name, one
``sample_variant``, ``evaluate_variant`` or ``gardiffmini train`` call runs ``get_profile``
once, and the library below it passes the ``Profile`` object down. Nothing is faked: the
``ci`` encoders, base and Base variant are built on the way, in a temporary ``$GARDIFF_DATA``.
"""

from __future__ import annotations

import sys

import pytest

from gardiffmini import profiles
from gardiffmini.cli import main
from gardiffmini.evaluate import evaluate_variant, sample_variant


def count_resolutions(monkeypatch) -> list[tuple]:
    """Replace ``get_profile`` by a counting wrapper in :mod:`gardiffmini.profiles` and in
    every imported module of the package that holds it; return the list of its arguments."""
    calls: list[tuple] = []
    original = profiles.get_profile

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "gardiffmini" and getattr(module, "get_profile", None) is original:
            monkeypatch.setattr(module, "get_profile", counting)
    return calls


def test_one_call_resolves_the_profile_once(monkeypatch, tmp_path, release_root, capsys):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))
    calls = count_resolutions(monkeypatch)
    paths = sample_variant("base", "ci", out=tmp_path / "samples", n=1, data_root=release_root)
    assert len(paths) == 1 and paths[0].is_file()
    assert calls == [("ci",)]

    calls.clear()
    assert "SSIM" in evaluate_variant("base", "ci", data_root=release_root)  # the run reused
    assert calls == [("ci",)]

    calls.clear()
    main(["train", "--variant", "base", "--profile", "ci", "--root", str(release_root)])
    assert "base (ci, seed 0) is in" in capsys.readouterr().out
    assert calls == [("ci",)]


def test_a_bad_name_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown profile 'huge'; expected one of"):
        sample_variant("base", "huge", out=tmp_path)
