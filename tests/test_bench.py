import json

import pytest

from gardiffmini import bench, train


def test_bench_writes_every_variant_the_peer_and_provenance(tmp_path, capsys):
    bench.main(["--profile", "ci", "--steps", "2", "--warmup", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "bench-cpu-ci.json").read_text())
    assert set(result["variants"]) == set(train.VARIANTS) and result["overrides"] == {}
    peer = result["peer"]["steps_per_s"]
    for row in result["variants"].values():
        assert row["steps_per_s"] > 0 and row["peak_memory_gb"] is None  # the CPU reports none
        # steps/s is rounded to 4 decimals and images/s to 3: they agree within both roundings
        # (a relative 1e-3 failed on a loaded machine: 0.0448 steps/s, 0.359 images/s)
        rounding = 5e-4 + result["batch_size"] * 5e-5
        assert row["images_per_s"] == pytest.approx(row["steps_per_s"] * result["batch_size"],
                                                    rel=0, abs=rounding)
        assert abs(row["vs_peer"] - row["steps_per_s"] / peer) < 1e-3
    assert {"device", "commit", "torch", "date"} <= set(result["provenance"])
    assert "plain fp32 loop (peer)" in capsys.readouterr().out


def test_device_slug_of_the_cpu():
    import torch

    assert bench.device_slug(torch.device("cpu")) == "cpu"


def test_profile_override_parses_json_and_names_bad_input():
    assert bench.profile_override("unet_head_dim=32") == ("unet_head_dim", 32)
    assert bench.profile_override("unet_channels=[64,128]") == ("unet_channels", (64, 128))
    assert bench.profile_override("learning_rate=1e-4") == ("learning_rate", 1e-4)
    with pytest.raises(ValueError, match="KEY one of .*unet_head_dim"):
        bench.profile_override("head_dim=32")
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        bench.profile_override("unet_head_dim")
    with pytest.raises(ValueError, match="VALUE must be JSON"):
        bench.profile_override("unet_head_dim=wide")


def test_an_overridden_profile_is_benched_recorded_and_named(tmp_path):
    bench.main(["--profile", "ci", "--steps", "1", "--warmup", "1", "--variants", "base",
                "--set", "unet_head_dim=16", "--set", "unet_channels=[32,48]",
                "--out", str(tmp_path)])
    result = json.loads((tmp_path / "bench-cpu-ci-unet_head_dim-16-unet_channels-32-48.json")
                        .read_text())
    assert result["overrides"] == {"unet_channels": [32, 48], "unet_head_dim": 16}
    assert set(result["variants"]) == {"base"}
    assert not (tmp_path / "bench-cpu-ci.json").exists()
