"""benchmarks/appearance_weight.py at ci: lambda = 0 (Base + GFA) and one lambda > 0 trained on
the training pairs less the held-out ones and scored on those, with the appearance loss's
timestep threshold reaching the lambda > 0 run only."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import appearance_weight  # noqa: E402


def test_the_lambda_study_takes_the_timestep_threshold_into_its_al_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))
    out = tmp_path / "appearance-weight.json"
    monkeypatch.setattr(sys, "argv", ["appearance_weight.py", "--profile", "ci", "--holdout", "8",
                                      "--lambdas", "0", "0.5", "--appearance-max-timestep", "300",
                                      "--out", str(out)])
    appearance_weight.main()
    record = json.loads(out.read_text())
    assert record["appearance_max_timestep"] == 300 and "below t = 300" in record["protocol"]
    rows = record["rows"]
    assert {"lambda=0", "lambda=0.5", "warp+paste"} <= set(rows)
    recipes = {name: json.loads((tmp_path / "data" / "runs" / rows[name]["run"] / "config.json")
                                .read_text())["recipe"]
               for name in ("lambda=0", "lambda=0.5")}
    assert recipes["lambda=0.5"]["appearance_max_timestep"] == 300
    assert "appearance_max_timestep" not in recipes["lambda=0"]
    for name in ("lambda=0", "lambda=0.5"):
        assert 0 < rows[name]["SSIM"] <= 1 and rows[name]["garment_detail_error"] > 0
