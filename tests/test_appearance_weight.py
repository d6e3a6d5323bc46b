"""benchmarks/appearance_weight.py's plumbing, with its training and scoring stubbed (the
training step's use of the threshold is tested in test_train.py): every lambda > 0 run gets
the appearance loss's timestep threshold, lambda = 0 (Base + GFA) the book's recipe."""

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import appearance_weight  # noqa: E402

from gardiffmini.objective import DEFAULT_RECIPE  # noqa: E402
from gardiffmini.profiles import get_profile  # noqa: E402


def test_the_lambda_study_takes_the_timestep_threshold_into_its_al_runs(tmp_path, monkeypatch):
    trained = []

    def fake_train_variant(variant, profile, seed, data_root, pairs_file, recipe):
        trained.append((variant, recipe))
        run = SimpleNamespace(folder=Path(f"run-{len(trained)}"),
                              metrics={"summary": {"train_seconds": 1.0}})
        return SimpleNamespace(run=run, set_progress_bar_config=lambda **kwargs: None)

    study = SimpleNamespace(profile=get_profile("ci"), root=tmp_path, pairs_set={},
                            fit_pairs=tmp_path / "fit.txt", pairs=tmp_path / "held.txt")
    stubs = {
        "held_out_study": lambda profile, holdout: study,
        "load_or_train_encoders": lambda profile: (None, None),
        "baseline_images": lambda vae, sets: {"warp+paste": {"paired": torch.zeros(1)}},
        "score_held_out": lambda images, held_out: {"SSIM": 0.5},
        "default_warp": lambda root: "carved",
        "train_variant": fake_train_variant,
        "held_out_score": lambda pipeline, held_out, pairs, profile, seed: {"SSIM": 0.8},
    }
    for name, stub in stubs.items():
        monkeypatch.setattr(appearance_weight, name, stub)
    out = tmp_path / "appearance-weight.json"
    monkeypatch.setattr(sys, "argv", ["appearance_weight.py", "--profile", "ci", "--lambdas", "0",
                                      "0.5", "--appearance-max-timestep", "300",
                                      "--out", str(out)])
    appearance_weight.main()
    (off, off_recipe), (al, al_recipe) = trained
    assert (off.appearance_loss, off_recipe) == (False, DEFAULT_RECIPE)
    assert (al.appearance_loss, al.appearance_weight) == (True, 0.5)
    assert al_recipe == replace(DEFAULT_RECIPE, appearance_max_timestep=300)
    record = json.loads(out.read_text())
    assert record["appearance_max_timestep"] == 300 and "below t = 300" in record["protocol"]
    assert {"lambda=0", "lambda=0.5", "warp+paste"} == set(record["rows"])
