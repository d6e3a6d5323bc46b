"""tools/gpu_day.py, dry: the GPU day's three stages at the ci profile's shapes on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SPEC = importlib.util.spec_from_file_location(
    "gpu_day", Path(__file__).parents[1] / "tools" / "gpu_day.py")
gpu_day = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(gpu_day)


def test_the_gpu_day_dry_run_writes_every_result(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))
    out = tmp_path / "results"
    (out).mkdir()
    (out / "memory-ci.json").write_text(json.dumps({"peak_gb": 0.5}))
    gpu_day.main(["--profile", "ci", "--dry-run", "--out", str(out)])
    written = sorted(path.name for path in out.iterdir())
    assert written == ["bench-cpu-ci.json", "gpu-day-cpu-ci.json", "gpu-day-loss-cpu-ci.png",
                       "memory-ci.json"]
    summary = json.loads((out / "gpu-day-cpu-ci.json").read_text())
    assert summary["mixed_precision"] == "no"  # the CPU trains in fp32
    assert set(summary["bench"]) == {"base", "base+al", "base+gfa", "base+gfa+al"}
    assert all(row["steps_per_s"] > 0 for row in summary["bench"].values())
    run = summary["short_run"]
    assert run["variant"] == "base+gfa+al" and run["profile"]["height"] == 64
    assert run["profile"]["diffusion_steps"] == 2 and run["profile"]["n_train"] == 16
    assert [h["step"] for h in run["history"]] == [0, 1]
    assert all(h["loss"] > 0 and "spatial" in h for h in run["history"])
    assert run["estimated_peak_gb"] == 0.5 and run["peak_memory_gb"] is None  # CPU: none
    assert set(summary["wall_seconds"]) == {"bench", "short training (data, encoders, variant)"}
    assert {"device", "commit", "torch", "date"} <= set(summary["provenance"])
    assert "dry run" in summary["what"]
    bench = json.loads((out / "bench-cpu-ci.json").read_text())
    assert (bench["steps"], bench["warmup"]) == gpu_day.BENCH_STEPS["dry"]
