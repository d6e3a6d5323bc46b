"""tools/time_estimate.py: counted FLOPs and launches, and the gpu profile's fit on a T4."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
SPEC = importlib.util.spec_from_file_location("time_estimate", ROOT / "tools" / "time_estimate.py")
time_estimate = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(time_estimate)


def test_a_linear_layer_costs_two_flops_per_weight_and_one_launch():
    with torch.device("meta"):
        layer, x = torch.nn.Linear(64, 32, bias=False), torch.zeros(5, 64)
        cost = time_estimate.measure(lambda: layer(x))
    assert cost == {"gflop": 2 * 5 * 64 * 32 / 1e9, "ops": 2}  # transpose view + mm


def test_a_step_takes_the_slower_of_the_two_bounds():
    t4 = time_estimate.DEVICES["t4"]
    assert time_estimate.step_seconds(1500.0, 10, t4, 15.0) == pytest.approx(0.1)  # FLOPs
    assert time_estimate.step_seconds(1.0, 20_000, t4, 15.0) == pytest.approx(0.2)  # launches


@pytest.mark.parametrize("device", ["t4", "h100"])
def test_the_committed_estimates_are_the_gpu_profiles_and_fit_a_free_t4(device):
    committed = json.loads((ROOT / "book" / "results" / f"time-gpu-{device}.json").read_text())
    fresh = json.loads(json.dumps(time_estimate.estimate("gpu", device)))  # as written
    assert committed["profile"] == fresh["profile"], "re-run tools/time_estimate.py"
    assert committed["chapters"] == fresh["chapters"]
    slow = [chapter["minutes"][1] for chapter in fresh["chapters"].values()]
    assert len(slow) == 7 and max(slow) <= 20 and sum(slow) <= 90  # issue 20's T4 budget
