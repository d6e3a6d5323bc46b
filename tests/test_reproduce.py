"""The reproduction of GarDiff's ablation: summaries, tables, the figure, end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
import pytest
import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file

from gardiffmini import attributes as attributes_module
from gardiffmini import evaluate as evaluate_module
from gardiffmini import metrics
from gardiffmini import reproduce as reproduce_module
from gardiffmini.attributes import ATTRIBUTE_METRICS, ATTRIBUTES
from gardiffmini.data import layout
from gardiffmini.evaluate import cached_evaluation, evaluate_pipeline, evaluation_sets
from gardiffmini.features import ToyVitonFeatureNet
from gardiffmini.models.encoders import build_tokenizer, clip_image_encoder, make_clip
from gardiffmini.models.vae import make_vae
from gardiffmini.pipeline import GarDiffPipeline
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import (
    HIGHER_IS_BETTER,
    PAPER_ABLATION,
    SAMPLES_FILE,
    TABLE_COLUMNS,
    ablation_markdown,
    ablation_table,
    compare,
    fine_detail_box,
    paper_table,
    provenance,
    qualitative_grid,
    reproduce,
    showcase_rows,
    summarize,
)
from gardiffmini.runs import Run
from gardiffmini.train import VARIANTS, build_model, noise_scheduler

matplotlib.use("Agg")


def test_summarize_mean_and_spread() -> None:
    per_seed = {"base": [{"SSIM": 0.5, "FID_toy_p": 2.0}, {"SSIM": 0.7, "FID_toy_p": 4.0}]}
    summary = summarize(per_seed)
    assert summary["base"]["SSIM"]["mean"] == pytest.approx(0.6)
    assert summary["base"]["SSIM"]["std"] == pytest.approx(0.1)  # population std over seeds
    assert summary["base"]["FID_toy_p"] == {"mean": pytest.approx(3.0), "std": pytest.approx(1.0),
                                            "n": 2}


def _summary(with_lpips: bool) -> dict:
    keys = [k for k in HIGHER_IS_BETTER if with_lpips or not k.startswith("LPIPS")]
    return {v: {k: {"mean": 0.1 * i + 0.0004, "std": 0.01} for k in keys}
            for i, v in enumerate(VARIANTS)}


def test_ablation_table_rows_and_columns() -> None:
    table = ablation_table(_summary(with_lpips=False)).splitlines()
    assert len(table) == 2 + len(VARIANTS)
    assert "SSIM p ↑" in table[0] and "LPIPS" not in table[0]
    assert table[2].startswith("| Base | 0.000 ± 0.010")
    assert table[-1].startswith("| Base + GFA + AL | 0.300 ± 0.010")
    assert all(row.count("|") == table[0].count("|") for row in table)
    assert "LPIPS p ↓" in ablation_table(_summary(with_lpips=True)).splitlines()[0]
    summary = _summary(with_lpips=False)
    baselines = {"warp+paste": summary["base"]}
    with_baselines = ablation_table(summary, baselines).splitlines()
    assert with_baselines[2].startswith("| *warp + paste* | 0.000 ± 0.010")
    assert len(with_baselines) == 3 + len(VARIANTS)


def test_ablation_markdown_renders_both_protocols_without_kid() -> None:
    summary = _summary(with_lpips=False)
    record = {"summary": summary, "baselines": {"summary": {"warp+paste": summary["base"]}},
              "oracle": {"summary": summary, "baselines": {"summary": {}}}}
    text = ablation_markdown(record)
    headline, oracle = text.split("Oracle warp")
    assert headline.strip() == ablation_table(summary, {"warp+paste": summary["base"]})
    assert oracle.strip().endswith(ablation_table(summary))
    assert "KID_toy" not in text and "FID_toy u ↓" in text
    assert "Oracle warp" not in ablation_markdown({**record, "oracle": None})


def test_paper_table_holds_the_papers_numbers() -> None:
    table = paper_table().splitlines()
    assert len(table) == 2 + len(PAPER_ABLATION)
    assert table[-1] == "| Base + GFA + AL | 0.912 | 0.036 | 6.02 | 0.019 | 7.89 | 0.027 |"


def test_fine_detail_box_finds_the_stripes() -> None:
    image = -torch.ones(3, 32, 24)
    image[:, 16:28:2, 4:12] = 1.0  # stripes in the lower left of the garment
    mask = torch.zeros(1, 32, 24)
    mask[:, 4:30, 2:22] = 1.0
    top, left, height, width = fine_detail_box(image, mask, (8, 6))
    assert (height, width) == (8, 6)
    assert 14 <= top <= 22 and 2 <= left <= 8
    with pytest.raises(ValueError, match="warped_mask"):
        fine_detail_box(image, mask[0], (8, 6))
    with pytest.raises(ValueError, match="must fit"):
        fine_detail_box(image, mask, (40, 6))


def test_qualitative_grid_layout(toyviton_root: Path) -> None:
    profile = get_profile("ci", n_eval=6)
    sets = evaluation_sets(toyviton_root, profile)
    samples = {v: torch.rand(6, 3, *profile.image_size) for v in ("base", "base+gfa")}
    names = {v: VARIANTS[v].name for v in samples}
    figure = qualitative_grid(sets, samples, names, n=2)
    columns = 3 + len(samples)  # person, garment, truth, the variants
    assert len(figure.axes) == 2 * 2 * columns
    assert figure.axes[2].get_title() == "truth" and figure.axes[3].get_title() == "Base"
    assert figure.axes[columns + 1].get_title() == "zoom: warped garment"
    with pytest.raises(ValueError, match="same"):
        qualitative_grid(sets, samples, {"base": "Base"})


def test_showcase_rows_pick_bared_skin_then_an_occluding_forearm(toyviton_root: Path) -> None:
    sets = evaluation_sets(toyviton_root, get_profile("ci", n_eval=16))
    unpaired = sets["unpaired"]
    bared = metrics.newly_bared_skin(unpaired["parse"], unpaired["truth_parse"]).sum(dim=(1, 2, 3))
    rows = showcase_rows(sets, n=3)
    assert rows[0] == int(bared.argmax()) and bared.max() > 0
    assert bool(sets["paired"]["occluded"][rows[1]]) and len(set(rows)) == 3
    sets["paired"]["occluded"][:] = False
    assert showcase_rows(sets, n=2)[1] == (1 if rows[0] == 0 else 0)


def test_compare_counts_only_differences_beyond_twice_the_spread() -> None:
    a = {"SSIM": {"mean": 0.90, "std": 0.003}, "garment_detail_error": {"mean": 0.20, "std": 0.01}}
    b = {"SSIM": {"mean": 0.88, "std": 0.004}, "garment_detail_error": {"mean": 0.21, "std": 0.01}}
    ssim = compare(a, b, "SSIM")
    assert ssim["margin"] == pytest.approx(0.02) and ssim["noise"] == pytest.approx(0.01)
    assert ssim["verdict"] == "better" and compare(b, a, "SSIM")["verdict"] == "worse"
    detail = compare(a, b, "garment_detail_error")  # lower is better: +0.01 against 0.028
    assert detail["margin"] == pytest.approx(0.01)
    assert detail["verdict"] == "no measurable effect"
    one_seed = {"SSIM": {"mean": 0.9, "std": 0.0}}
    assert compare(one_seed, b | {"SSIM": {"mean": 0.8, "std": 0.0}}, "SSIM")["verdict"] == (
        "unknown (one seed)")
    # three seeds that agree exactly (colour match 1.0 every time): any difference counts
    agreed = {"SSIM": {"mean": 0.9, "std": 0.0, "n": 3}}
    assert compare(agreed, {"SSIM": {"mean": 0.8, "std": 0.0, "n": 3}}, "SSIM")["verdict"] == (
        "better")
    assert compare(agreed, agreed, "SSIM")["verdict"] == "no measurable effect"
    assert compare(agreed, {"SSIM": {"mean": 0.8, "std": 0.0, "n": 1}}, "SSIM")["verdict"] == (
        "unknown (one seed)")


def test_provenance_records_where_and_how() -> None:
    record = provenance(get_profile("ci"), [0, 1], 12.34)
    assert record["profile"] == "ci" and record["seeds"] == [0, 1]
    assert record["wall_time_s"] == 12.3
    assert "SSIM" in record["toolchain"] and record["device"]


def test_reproduce_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="seeds"):
        reproduce("ci", seeds=0)
    with pytest.raises(ValueError, match="unknown variants"):
        reproduce("ci", seeds=1, variants=("base", "base+xyz"))


def _untrained_pipeline(variant: str, profile) -> GarDiffPipeline:
    """A pipeline of the variant's architecture at ``profile``, weights as initialised."""
    torch.manual_seed(0)
    unet, adapter = build_model(profile, VARIANTS[variant])
    encoder = clip_image_encoder(make_clip(profile, build_tokenizer()))
    return GarDiffPipeline(unet=unet.eval(), vae=make_vae(profile).eval(),
                           image_encoder=encoder.eval(), adapter=adapter.eval(),
                           scheduler=DDIMScheduler.from_config(noise_scheduler().config))


def test_reproduce_end_to_end(toyviton_root: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every variant evaluated, tabulated, drawn and recorded; training is stubbed (too slow
    for a unit test: the ci notebook of chapter 7 runs the real thing)."""
    profile = get_profile("ci", n_eval=2, sample_steps=1, guidance_scale=1.0)
    trained = []

    evaluated = []

    def fake_train_variant(variant, profile, seed, data_root, progress):
        assert Path(data_root) == toyviton_root
        trained.append((variant, seed))
        pipeline = _untrained_pipeline(variant, profile)
        pipeline.run = Run.open(f"fake-{variant}", profile.name, seed, {}, root=tmp_path / "runs")
        return pipeline

    def counted_evaluate_pipeline(*args, **kwargs):
        evaluated.append(kwargs["seed"])
        return evaluate_pipeline(*args, **kwargs)

    attributes = {name: len(values) for name, values in ATTRIBUTES.items()}
    monkeypatch.setattr(reproduce_module, "train_variant", fake_train_variant)
    monkeypatch.setattr(evaluate_module, "evaluate_pipeline", counted_evaluate_pipeline)

    def fake_feature_net(profile, root):
        torch.manual_seed(0)
        return ToyVitonFeatureNet(attributes, width=8).eval()

    monkeypatch.setattr(attributes_module, "feature_net", fake_feature_net)
    monkeypatch.setattr(reproduce_module, "load_or_train_encoders",
                        lambda profile, progress: (make_vae(profile).eval(), None))
    out = reproduce(profile, seeds=2, out=tmp_path / "out", data_root=toyviton_root,
                    variants=("base", "base+gfa+al"), progress=False)
    assert trained == [("base", 0), ("base", 1), ("base+gfa+al", 0), ("base+gfa+al", 1)]
    record = json.loads((out / "ablation.json").read_text())
    assert list(record["summary"]) == ["base", "base+gfa+al"]
    for variant, numbers in record["summary"].items():
        runs = record["per_seed"][variant]
        assert len(runs) == 2
        assert {"SSIM", "garment_detail_error", "FID_toy_u", "KID_toy_u",
                "attribute_accuracy_u", "SSIM_u", "garment_detail_error_u", "skin_error_u",
                "skin_pairs_u"} <= set(numbers)
        assert numbers["SSIM"]["mean"] == pytest.approx((runs[0]["SSIM"] + runs[1]["SSIM"]) / 2)
        # NaN only where a subset can be empty: no occluded pair, no newly bared skin
        assert all(math.isfinite(m["mean"]) for k, m in numbers.items()
                   if "occluded" not in k and k != "skin_error_u")
        assert 0 < numbers["SSIM"]["mean"] <= 1 and 0 < numbers["SSIM_u"]["mean"] <= 1
        assert set(record["occluded"][variant]) == {"SSIM_occluded",
                                                    "garment_detail_error_occluded"}
        assert 0 <= record["unpaired_colour_match"][variant]["mean"] <= 1
    assert list(record["baselines"]["per_seed"]) == ["agnostic", "warp+paste", "vae round trip"]
    assert all(len(runs) == 2 for runs in record["baselines"]["per_seed"].values())
    points = record["reference_points"]
    assert 0 <= points["attribute_ceiling"] <= 1 and points["n_pairs"] == 2
    assert points["attribute_chance"] == pytest.approx(
        sum(1 / len(v) for v in ATTRIBUTES.values()) / len(ATTRIBUTES))
    assert len(record["vae"]["colour"]) == 14
    assert record["provenance"]["profile"] == "ci" and record["provenance"]["seeds"] == [0, 1]
    assert record["paper"] == PAPER_ABLATION
    assert (out / "ablation.md").read_text().startswith(record["table"])
    oracle = record["oracle"]
    assert "Oracle warp" in (out / "ablation.md").read_text()
    assert list(oracle["summary"]) == ["base", "base+gfa+al"]
    assert {"SSIM_u", "garment_detail_error_u", "skin_error_u"} <= set(oracle["summary"]["base"])
    paste, exact_paste = (r["baselines"]["summary"]["warp+paste"] for r in (record, oracle))
    assert paste["SSIM"]["mean"] != exact_paste["SSIM"]["mean"]  # two warps, two pastes
    assert (out / "qualitative.png").stat().st_size > 0
    samples = load_file(str(out / SAMPLES_FILE))
    assert set(samples) == {"base", "base+gfa+al"}
    assert samples["base"].shape == (2, 3, *profile.image_size)
    assert len(oracle["per_seed"]["base"]) == 1  # the oracle table is seed 0's
    assert len(evaluated) == 6  # 2 variants x 2 seeds computed, 2 variants x seed 0 oracle
    again = reproduce(profile, seeds=2, out=tmp_path / "again", data_root=toyviton_root,
                      variants=("base", "base+gfa+al"), progress=False)
    assert len(evaluated) == 6  # every evaluation was cached in its run folder
    assert json.loads((again / "ablation.json").read_text())["summary"] == record["summary"]
    without = reproduce(profile, seeds=1, out=tmp_path / "without", data_root=toyviton_root,
                        variants=("base",), progress=False, oracle=False)
    assert json.loads((without / "ablation.json").read_text())["oracle"] is None
    assert "Oracle" not in (without / "ablation.md").read_text()


def test_cached_evaluation_is_reused_until_the_warps_change(
        toyviton_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = get_profile("ci", n_eval=2, sample_steps=1, guidance_scale=1.0)
    pipeline = _untrained_pipeline("base", profile)
    pipeline.run = Run.open("fake-base", profile.name, 0, {}, root=tmp_path / "runs")
    evaluated = []

    def counted_evaluate_pipeline(*args, **kwargs):
        evaluated.append(kwargs["seed"])
        return evaluate_pipeline(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "evaluate_pipeline", counted_evaluate_pipeline)
    sets = evaluation_sets(toyviton_root, profile)
    first = cached_evaluation(pipeline, profile, toyviton_root, 0, None, sets)
    again = cached_evaluation(pipeline, profile, toyviton_root, 0, None, sets)
    assert len(evaluated) == 1 and again["metrics"] == first["metrics"]
    # diffusers' bookkeeping lists a set, in an order that changes between processes
    used = list(pipeline.scheduler.config["_use_default_values"])
    pipeline.scheduler.register_to_config(_use_default_values=used[::-1])
    cached_evaluation(pipeline, profile, toyviton_root, 0, None, sets)
    assert len(evaluated) == 1  # the same evaluation, found again
    torch.testing.assert_close(again["images"]["unpaired"], first["images"]["unpaired"])
    sets["unpaired"]["warped_cloth"] = sets["unpaired"]["warped_cloth"].flip(-1)
    cached_evaluation(pipeline, profile, toyviton_root, 0, None, sets)
    assert len(evaluated) == 2  # another warp: evaluated again, not served the old images
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config,
                                                   timestep_spacing="trailing")
    cached_evaluation(pipeline, profile, toyviton_root, 0, None, sets)
    assert len(evaluated) == 3  # another sampler: evaluated again


def test_every_reported_metric_has_a_direction() -> None:
    reported = {key for key, _ in TABLE_COLUMNS} | set(PAPER_ABLATION["base"])
    assert reported <= set(HIGHER_IS_BETTER)
    assert HIGHER_IS_BETTER["SSIM"] and not HIGHER_IS_BETTER["FID_toy_u"]


def test_reproduce_on_a_release_folder_skips_the_attribute_metrics(
        release_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """The real release has no cloth-attributes.json: the metrics that need it are left out
    of every number and of the table, said once, and recorded as skipped; training stubbed."""
    profile = get_profile("ci", n_eval=3, sample_steps=1, guidance_scale=1.0)

    def fake_train_variant(variant, profile, seed, data_root, progress):
        pipeline = _untrained_pipeline(variant, profile)
        pipeline.run = Run.open(f"fake-{variant}", profile.name, seed, {}, root=tmp_path / "runs")
        return pipeline

    def no_feature_net(profile, root):
        raise AssertionError("the attribute network needs ToyVITON's attributes")

    monkeypatch.setattr(reproduce_module, "train_variant", fake_train_variant)
    monkeypatch.setattr(attributes_module, "feature_net", no_feature_net)
    monkeypatch.setattr(reproduce_module, "load_or_train_encoders",
                        lambda profile, progress: (make_vae(profile).eval(), None))
    with caplog.at_level("WARNING", logger="gardiffmini.attributes"):
        out = reproduce(profile, seeds=1, out=tmp_path / "out", data_root=release_root,
                        variants=("base",), progress=False, pairs_file="test_pairs.txt")
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 1 and notices[0].endswith(
        "(ToyVITON's garment attributes): attribute accuracy and FID_toy/KID_toy skipped")
    record = json.loads((out / "ablation.json").read_text())
    assert record["skipped"]["metrics"] == list(ATTRIBUTE_METRICS)
    assert str(release_root / "train" / layout.ATTRIBUTES_FILE) in record["skipped"]["reason"]
    measured = set(record["summary"]["base"])
    assert not measured & set(ATTRIBUTE_METRICS) and {"SSIM", "unpaired_colour_match"} <= measured
    assert all(not set(ATTRIBUTE_METRICS) & set(runs[0])
               for runs in record["baselines"]["per_seed"].values())
    assert set(record["reference_points"]) == {"n_pairs", "n_occluded"}
    assert record["reference_points"]["n_pairs"] == 3
    assert "FID_toy" not in record["table"] and "attr acc" not in record["table"]
    assert "SSIM p ↑" in record["table"] and "SSIM u" not in record["table"]  # no truth
    assert record["oracle"] is None  # a release has no exact warp
