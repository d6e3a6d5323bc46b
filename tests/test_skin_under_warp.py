"""benchmarks/skin_under_warp.py: the skin error split by the computed warp's mask."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from skin_under_warp import evaluation_images, read_records, split_error  # noqa: E402


def test_split_error_by_hand():
    truth = torch.zeros(1, 3, 2, 2)
    images = torch.tensor([[[[0.3, 0.1], [0.9, 0.0]]]]).expand(1, 3, 2, 2)
    skin = torch.tensor([[[True, True], [True, False]]])
    under = torch.tensor([[[True, False], [False, False]]])
    split = split_error(images, truth, skin, under)
    assert split["all"] == pytest.approx((0.3 + 0.1 + 0.9) / 3)
    assert split["under_warp"] == pytest.approx(0.3)
    assert split["beside_warp"] == pytest.approx(0.5)


def test_evaluation_images_name_the_run_without_a_matching_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path))
    from gardiffmini.paths import runs_root

    folder = runs_root() / "tryon-base-cpu-seed0-x"
    folder.mkdir(parents=True)
    (folder / "evaluation-a.json").write_text(json.dumps(
        {"SSIM": 0.81234, "SSIM_u": 0.8, "skin_error_u": 0.2}))
    row = {"run": folder.name, "SSIM": 0.9, "SSIM_u": 0.8, "skin_error_u": 0.2}
    with pytest.raises(FileNotFoundError, match="tryon-base-cpu-seed0-x: 0 cached evaluations"):
        evaluation_images(row)


def test_evaluation_images_are_those_of_the_evaluation_with_the_record_s_numbers(tmp_path,
                                                                                 monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path))
    from gardiffmini.paths import runs_root

    folder = runs_root() / "tryon-base-cpu-seed0-y"
    folder.mkdir(parents=True)
    for name, ssim in (("a", 0.81234), ("b", 0.7)):  # another sampler's evaluation beside it
        (folder / f"evaluation-{name}.json").write_text(json.dumps(
            {"SSIM": ssim, "SSIM_u": 0.8, "skin_error_u": 0.2}))
        save_file({"unpaired": torch.full((1, 3, 2, 2), ssim)},
                  str(folder / f"evaluation-{name}.safetensors"))
    row = {"run": folder.name, "SSIM": 0.8123, "SSIM_u": 0.8, "skin_error_u": 0.2}
    assert evaluation_images(row).eq(0.81234).all()


def test_records_of_another_warp_are_refused_by_name(tmp_path):
    computed, carved = tmp_path / "computed.json", tmp_path / "carved.json"
    for path, warp in ((computed, "computed"), (carved, "carved")):
        path.write_text(json.dumps({"protocol": f"{warp} warp in training and at test"}))
    assert list(read_records([carved], "carved")) == [carved]
    with pytest.raises(ValueError, match=r"computed\.json was measured on 'computed warp"):
        read_records([carved, computed], "carved")
