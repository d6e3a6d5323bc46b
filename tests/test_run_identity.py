"""A run's identity covers the data it trains on (issue 12): ``data_fingerprint`` is part of
``train.train_variant``'s run config and of ``encoders._training_config``."""

from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from gardiffmini import train
from gardiffmini.data import layout
from gardiffmini.models import encoders
from gardiffmini.models import vae as vae_model
from gardiffmini.profiles import get_profile


class Stop(Exception):
    pass


def tryon_run_config(monkeypatch, root, pairs_file=None, mixed_precision="no") -> dict:
    """The config ``train_variant`` identifies its run by, for data at ``root``."""
    profile = get_profile("ci")
    tokenizer = encoders.build_tokenizer()
    torch.manual_seed(0)  # the same encoders for both data sets
    tiny = (vae_model.make_vae(profile),
            encoders.clip_image_encoder(encoders.make_clip(profile, tokenizer)))
    monkeypatch.setattr(train, "load_or_train_encoders", lambda *args, **kwargs: tiny)
    monkeypatch.setattr(train, "inpainting_base", lambda *args, **kwargs: None)  # not trained
    seen = {}

    def open_run(kind, profile_name, seed, config, root=None):
        seen.update(config)
        raise Stop

    monkeypatch.setattr(train.Run, "open", open_run)
    with pytest.raises(Stop):
        train.train_variant("base", profile, data_root=root, progress=False,
                            pairs_file=pairs_file, mixed_precision=mixed_precision)
    return seen


def changed_copy(root, tmp_path):
    copy = shutil.copytree(root, tmp_path / "elsewhere" / root.name)
    path = layout.person_path(copy, "train", "image", "00001_00")
    Image.open(path).rotate(180).save(path, format="JPEG")
    return copy


def test_tryon_run_identity_depends_on_the_data(monkeypatch, release_root, tmp_path):
    other = changed_copy(release_root, tmp_path)
    assert tryon_run_config(monkeypatch, release_root) != tryon_run_config(monkeypatch, other)


def test_tryon_run_identity_depends_on_mixed_precision(monkeypatch, release_root):
    """A bf16 run is not reused for an fp32 request; fp32 keeps its old identity."""
    fp32 = tryon_run_config(monkeypatch, release_root)
    bf16 = tryon_run_config(monkeypatch, release_root, mixed_precision="bf16")
    assert "mixed_precision" not in fp32
    assert bf16 == fp32 | {"mixed_precision": "bf16"}


def test_tryon_run_identity_depends_on_the_pairs_file(monkeypatch, release_root):
    (release_root / "two_pairs.txt").write_text("00001_00.jpg 00001_00.jpg\n"
                                                "00002_00.jpg 00002_00.jpg\n")
    default = tryon_run_config(monkeypatch, release_root)
    assert tryon_run_config(monkeypatch, release_root, "train_pairs.txt") == default
    assert tryon_run_config(monkeypatch, release_root, "two_pairs.txt") != default


def test_encoder_run_identity_depends_on_the_data(release_root, tmp_path):
    profile = get_profile("ci")
    other = changed_copy(release_root, tmp_path)  # same folder name, other images
    assert (encoders._training_config(profile, release_root)
            != encoders._training_config(profile, other))
