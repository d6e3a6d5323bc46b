"""Issue 12's done-when: a folder in the real VITON-HD release's layout trains and evaluates
end to end through the command line at the ``ci`` profile, from ``--root`` alone.

The folder is ``conftest.write_release_like``'s (JPEG photos and masks, palette parse maps,
BODY_25 JSON, no ``cloth-warp/``, no ``cloth-attributes.json``), its pair files given stray
whitespace and Windows line ends, and ``test_pairs.txt`` holding the unpaired pairs as the
release does. Nothing is faked: the encoders (shipped VAE, CLIP trained on ToyVITON) and
the try-on model are the ``ci`` profile's, the warps are the loader's TPS warps. Runs and
ToyVITON go to a temporary ``$GARDIFF_DATA``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from conftest import RELEASE_NAMES

from gardiffmini.attributes import ATTRIBUTE_METRICS
from gardiffmini.cli import main
from gardiffmini.data import layout

NAMES = [f"{name}.jpg" for name in RELEASE_NAMES]
# the metrics that need no garment attributes; SSIM_occluded and its detail error are NaN
# where no test pair is occluded (as reference_points' n_occluded says)
MEASURED = {"SSIM", "garment_detail_error", "hf_energy_ratio", "unpaired_colour_match"}


def test_release_folder_trains_and_evaluates_from_root_alone(release_root, tmp_path,
                                                             monkeypatch, capsys, caplog):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "gardiff-data"))
    (release_root / "train_pairs.txt").write_bytes(
        "".join(f"  {n}\t{n}  \r\n\r\n" for n in NAMES).encode())
    shifted = NAMES[1:] + NAMES[:1]
    (release_root / "test_pairs.txt").write_bytes("".join(
        f"{p}   {c}\r\n" for p, c in zip(NAMES, shifted, strict=True)).encode())
    assert not (release_root / "test_pairs_unpaired.txt").exists()
    assert not any((release_root / split / layout.ATTRIBUTES_FILE).exists()
                   for split in layout.SPLITS)

    root = ["--profile", "ci", "--root", str(release_root)]
    main(["train", "--variant", "base", *root])
    trained = capsys.readouterr().out
    assert "base (ci, seed 0) is in" in trained
    run = Path(trained.strip().rsplit(" is in ", 1)[1])
    assert json.loads((run / "state.json").read_text())["status"] == "finished"
    trained_at = (run / "state.json").stat().st_mtime_ns

    with caplog.at_level(logging.WARNING, logger="gardiffmini.attributes"):
        main(["evaluate", "--variant", "base", *root])
    result = json.loads(capsys.readouterr().out)
    notices = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notices) == 1 and layout.ATTRIBUTES_FILE in notices[0], notices
    assert "\n" not in notices[0]
    assert MEASURED <= set(result) and not set(ATTRIBUTE_METRICS) & set(result)
    assert all(math.isfinite(result[key]) for key in MEASURED), result
    assert 0 < result["SSIM"] <= 1 and 0 <= result["unpaired_colour_match"] <= 1
    assert list(run.parent.glob("tryon-*")) == [run]  # evaluate reused the trained run
    assert (run / "state.json").stat().st_mtime_ns == trained_at
