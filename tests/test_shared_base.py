"""benchmarks/shared_base.py at ci: the book's variant on the shipped base beside the same
variant on a base that reads the person inputs and on one that does not, each trained for
the steps asked."""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import shared_base  # noqa: E402

from gardiffmini.models.unet import add_input_channels, make_unet  # noqa: E402
from gardiffmini.pipeline import POSE_CHANNELS  # noqa: E402
from gardiffmini.profiles import get_profile  # noqa: E402


def test_shared_base_trains_a_person_base_and_scores_the_variant_on_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))
    out = tmp_path / "shared-base.json"
    monkeypatch.setattr(sys, "argv", ["shared_base.py", "--profile", "ci", "--bases", "person:4",
                                      "plain:4", "--variant-steps", "3", "--out", str(out)])
    shared_base.main()
    rows = json.loads(out.read_text())["rows"]
    book = rows["the book's Base + GFA (shipped base)"]
    person = rows["Base + GFA on a person base (skin channels: E(I_a)'s initial weights) of 4 "
                  "steps, trained 3 steps"]
    ci = get_profile("ci")
    assert (book["steps"], book["base_steps"], book["base_train_seconds"]) == (
        ci.diffusion_steps, ci.base_steps, None)
    assert (person["steps"], person["base_steps"]) == (3, 4)
    assert person["base_train_seconds"] > 0 and person["run"] != book["run"]
    config = json.loads((tmp_path / "data" / "runs" / person["run"] / "config.json").read_text())
    assert config["recipe"]["person_base"] is True
    assert config["unet"]["in_channels"] == 4 * ci.latent_channels + POSE_CHANNELS
    plain = rows["Base + GFA on a base of 4 steps, trained 3 steps"]
    assert plain["base_train_seconds"] > 0 and plain["run"] not in (book["run"], person["run"])
    plain_config = json.loads((tmp_path / "data" / "runs" / plain["run"] / "config.json")
                              .read_text())
    assert "person_base" not in plain_config["recipe"]
    assert plain_config["unet"]["in_channels"] == config["unet"]["in_channels"]
    for row in ("agnostic", "warp+paste", "vae round trip"):
        assert 0 < rows[row]["SSIM"] <= 1


def test_a_base_is_named_by_its_kind_and_steps():
    assert shared_base.base_spec("person-skin-zero:3000") == ("person-skin-zero", 3000)
    for bad in ("person", "person:0", "person:x", "sd:3000"):
        with pytest.raises(argparse.ArgumentTypeError, match="KIND:STEPS"):
            shared_base.base_spec(bad)


def test_the_paste_kind_shares_the_plain_base_and_pastes_the_warp_in_the_variant():
    from gardiffmini.objective import DEFAULT_RECIPE, base_recipe

    assert shared_base.base_spec("plain-paste:6000") == ("plain-paste", 6000)
    plain, pasted = (shared_base.BASES[kind][1] for kind in ("plain", "plain-paste"))
    assert pasted == replace(DEFAULT_RECIPE, paste_warp=True) and plain == DEFAULT_RECIPE
    assert base_recipe(pasted) == base_recipe(plain)  # one base run serves both kinds


def test_input_weight_norms_split_the_first_convolution_by_input():
    unet = make_unet(get_profile("ci"))
    c = get_profile("ci").latent_channels
    add_input_channels(unet, POSE_CHANNELS + c)
    with torch.no_grad():
        unet.conv_in.weight.zero_()
        unet.conv_in.weight[:, 3 * c:3 * c + POSE_CHANNELS] = 1.0  # the DensePose only
    norms = shared_base.input_weight_norms(unet, c)
    assert list(norms) == ["x_t", "E(I_w)", "E(I_a)", "pose", "skin"]
    expected = (unet.conv_in.out_channels * POSE_CHANNELS * 9) ** 0.5
    assert norms["pose"] == pytest.approx(expected, abs=1e-3)
    assert all(value == 0 for name, value in norms.items() if name != "pose")
    assert list(shared_base.input_weight_norms(make_unet(get_profile("ci")), c)) == [
        "x_t", "E(I_w)", "E(I_a)"]


def test_a_row_s_title_names_the_adapter_s_rate_where_it_is_not_the_book_s():
    plain = shared_base.row_title("Base + GFA", "plain-paste", 6000, 1200)
    assert plain == ("Base + GFA on a base (warp pasted into the skin-primed image) of 6000 "
                     "steps, trained 1200 steps")
    one_rate = shared_base.row_title("Base + GFA", "plain-paste", 6000, 1200, 1.0)
    assert one_rate == plain + ", the adapter at the UNet's rate"
    faster = shared_base.row_title("Base + GFA", "plain-paste", 6000, 1200, 30.0)
    assert faster == plain + ", the adapter at 30 times the rate"
