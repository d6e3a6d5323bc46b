"""Weights shipped inside the package: loaded only for what made them (issue 9: the attribute
network of the evaluation ships like the VAE and the inpainting base)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from gardiffmini.attributes import (
    feature_net,
    feature_net_hash,
    load_shipped_feature_net,
    shipped_feature_net_path,
)
from gardiffmini.data.toyviton import METADATA_FILE, generate, toyviton_record
from gardiffmini.profiles import get_profile
from gardiffmini.shipped import load_shipped


def test_load_shipped_returns_float32_weights_only_for_the_recorded_hash(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.tensor([0.5, -1.25], dtype=torch.float16)}, str(path))
    assert load_shipped(path, "made_by", "abc") is None  # no record beside the weights
    path.with_suffix(".json").write_text(json.dumps({"made_by": "abc", "note": 1}))
    weights, record = load_shipped(path, "made_by", "abc")
    assert weights["w"].dtype == torch.float32
    assert weights["w"].tolist() == [0.5, -1.25]
    assert record["note"] == 1
    assert load_shipped(path, "made_by", "another model") is None
    assert load_shipped(path, "made_by", None) is None
    assert load_shipped(tmp_path / "missing.safetensors", "made_by", "abc") is None


@pytest.mark.parametrize("name", ["ci", "cpu"])
def test_shipped_feature_nets_load_only_on_their_toyviton(tmp_path, name):
    profile = get_profile(name)
    assert shipped_feature_net_path(profile).is_file(), (
        f"no shipped attribute network for {name!r}: run python tools/ship_featurenet.py "
        f"--profile {name}")
    assert feature_net_hash(profile, tmp_path) is None  # no ToyVITON record here
    assert load_shipped_feature_net(profile, tmp_path) is None
    record = tmp_path / METADATA_FILE
    record.write_text(json.dumps(toyviton_record(profile, n_train=profile.n_train + 1)))
    assert load_shipped_feature_net(profile, tmp_path) is None  # other data, other network
    record.write_text(json.dumps(toyviton_record(profile)))
    net = load_shipped_feature_net(profile, tmp_path)
    assert net is not None and not net.training
    assert load_shipped_feature_net(profile, tmp_path, seed=1) is None


def test_the_shipped_ci_feature_net_is_what_training_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))  # the run goes there
    profile = get_profile("ci")
    root = generate(tmp_path / "toyviton-ci", profile, workers=1, progress=False)
    trained = feature_net(profile, root, use_shipped=False)
    assert trained.run.metrics["summary"]["train_seconds"] > 0
    shipped = feature_net(profile, root)
    assert not hasattr(shipped, "run")  # the package's, not a run's
    # Bit for bit with the thread count it was shipped with (2); another count sums floats in
    # another order, which after 200 Adam steps moved weights of size ~1 by 3e-5 (measured).
    # Another CPU's kernels do too: on an Intel Xeon held to AVX2 (ATEN_CPU_CAPABILITY=avx2,
    # MKL_ENABLE_INSTRUCTIONS=AVX2, ONEDNN_MAX_CPU_ISA=AVX2) they moved by 6.5e-5 (measured;
    # 0 with its AVX-512 default). The tolerance is 15x that.
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(shipped.state_dict()[key], value, rtol=0, atol=1e-3, msg=key)
