"""benchmarks/detail_levers.py: its verdicts over seeds (the 2-sigma rule, row by row) and the
recipes of its levers."""

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from detail_levers import (  # noqa: E402
    COMPARED,
    LEVERS,
    REFERENCES,
    rate_levers,
    recipe_levers,
    verdicts,
)

from gardiffmini.objective import DEFAULT_RECIPE, PLAIN_RECIPE  # noqa: E402
from gardiffmini.reproduce import summarize  # noqa: E402


def _rows(detail: float, ssim: float) -> dict:
    return {key: (detail if "detail" in key or "skin" in key else ssim) for key in COMPARED}


def test_verdicts_judge_each_lever_against_the_plain_model_and_paste() -> None:
    plain, lever = "Base + GFA, leading spacing", "Base + GFA, garment weight 4, leading spacing"
    per_seed = {  # three seeds: the lever lowers the detail error by 0.02, spreads 0.001-0.002
        plain: [_rows(0.380, 0.820), _rows(0.382, 0.821), _rows(0.378, 0.819)],
        lever: [_rows(0.360, 0.800), _rows(0.361, 0.820), _rows(0.359, 0.840)],
        "warp+paste": [_rows(0.360, 0.775)] * 3,
    }
    found = verdicts(summarize(per_seed), plain)
    against_plain = found["against the book's Base + GFA"]
    assert set(against_plain) == {lever}
    assert against_plain[lever]["garment_detail_error"]["verdict"] == "better"
    assert against_plain[lever]["garment_detail_error"]["margin"] > 0.019
    # SSIM: the lever's mean equals the plain one's, its seeds spread by 0.016
    assert against_plain[lever]["SSIM"]["verdict"] == "no measurable effect"
    against_paste = found["against warp + paste"]
    assert set(against_paste) == {plain, lever}
    assert against_paste[plain]["garment_detail_error"]["verdict"] == "worse"
    assert against_paste[lever]["garment_detail_error"]["verdict"] == "no measurable effect"
    assert against_paste[plain]["SSIM"]["verdict"] == "better"


def test_recipe_levers_change_only_what_they_name() -> None:
    levers = recipe_levers(4.0)
    assert set(levers) <= set(LEVERS)
    weighted, posed, both = (levers[name][1] for name in
                             ("garment-weight", "pose", "pose+garment-weight"))
    assert (weighted.garment_weight, weighted.pose_input) == (4.0, False)
    assert (posed.garment_weight, posed.pose_input) == (1.0, True)
    assert (both.garment_weight, both.pose_input) == (4.0, True)
    assert levers["pose+garment-weight"][0] == "DensePose input, garment weight 4"
    assert levers["skin"] == ("skin colour input", replace(PLAIN_RECIPE, skin_input=True))
    assert levers["skin-agnostic-init"][1] == replace(PLAIN_RECIPE, skin_input=True,
                                                      skin_init="agnostic")
    assert levers["pose+skin"][1] == replace(levers["skin-agnostic-init"][1], pose_input=True)
    assert levers["pose+skin+garment-weight"][1] == replace(levers["pose+skin"][1],
                                                            garment_weight=4.0)
    assert levers["cosine"] == ("cosine learning-rate decay",
                                replace(PLAIN_RECIPE, lr_schedule="cosine"))
    for _, recipe in levers.values():  # everything else is the recipe they were found on
        assert replace(recipe, garment_weight=1.0, pose_input=False, skin_input=False,
                       skin_init="zero", paste_warp=False, lr_schedule="constant") == PLAIN_RECIPE


def test_rate_levers_scale_one_rate_each() -> None:
    rated = rate_levers(DEFAULT_RECIPE, [2.0, 4.0], [4.0])
    assert [lever for lever, _ in rated] == ["learning-rate"] * 2 + ["adapter-learning-rate"]
    assert rated[1][1] == ("learning rate x4", replace(DEFAULT_RECIPE, learning_rate_scale=4.0))
    assert rated[2][1] == ("adapter learning rate x4",
                           replace(DEFAULT_RECIPE, adapter_learning_rate_scale=4.0))
    assert {lever for lever, _ in rated} <= set(LEVERS)


def test_an_appearance_loss_row_is_judged_against_its_own_recipe_without_it() -> None:
    plain = "Base + GFA, leading spacing"
    base, al = (f"{prefix}pose, leading spacing" for prefix in ("Base + GFA, ",
                                                                 "Base + GFA + AL, "))
    per_seed = {  # the AL row lowers the detail error by 0.01 below its base, spreads 0.001
        plain: [_rows(0.400, 0.820)] * 3,
        base: [_rows(0.380, 0.830), _rows(0.381, 0.831), _rows(0.379, 0.829)],
        al: [_rows(0.370, 0.830), _rows(0.371, 0.831), _rows(0.369, 0.829)],
        "warp+paste": [_rows(0.390, 0.775)] * 3,
    }
    found = verdicts(summarize(per_seed), plain)
    assert set(found["against the same recipe without AL"]) == {al}
    own = found["against the same recipe without AL"][al]
    assert own["garment_detail_error"]["verdict"] == "better"
    assert own["garment_detail_error"]["margin"] == pytest.approx(0.01)
    assert own["SSIM"]["verdict"] == "no measurable effect"
    assert "against the same recipe without AL" not in verdicts(
        summarize({key: per_seed[key] for key in (plain, base, "warp+paste")}), plain)


def test_the_paste_lever_pastes_the_warp_into_the_skin_input_of_its_reference() -> None:
    title, plain_paste = recipe_levers(4.0)["paste"]
    assert title == "skin colour input with E(I_a)'s weights, warp pasted in"
    assert plain_paste == replace(PLAIN_RECIPE, skin_input=True, skin_init="agnostic",
                                  paste_warp=True)
    title, book_paste = recipe_levers(4.0, DEFAULT_RECIPE)["paste"]
    assert title == "warp pasted into the skin-primed image"
    assert book_paste == replace(DEFAULT_RECIPE, paste_warp=True)
    # against the book's recipe, the levers it already holds are the reference itself
    assert recipe_levers(4.0, DEFAULT_RECIPE)["pose+skin"][1] == DEFAULT_RECIPE
    assert REFERENCES["book"][0] == DEFAULT_RECIPE and REFERENCES["plain"][0] == PLAIN_RECIPE
    # the book's recipe before the adapter's rate, which the earlier records were made against
    one_rate = REFERENCES["book-one-rate"][0]
    assert one_rate.adapter_learning_rate_scale == 1.0
    assert replace(one_rate, adapter_learning_rate_scale=10.0) == DEFAULT_RECIPE
