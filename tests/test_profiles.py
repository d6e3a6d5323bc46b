import pytest

from gardiffmini.profiles import PROFILES, get_profile, norm_groups


@pytest.mark.parametrize(("channels", "groups"), [
    ((16, 32, 32), 4), ((32, 64, 64), 8), ((64, 128, 256, 256), 16),
    ((128, 256, 512, 512), 32), ((320, 640, 1280, 1280), 32), ((24, 48), 6),
])
def test_norm_groups_keeps_at_least_four_channels_per_group(channels, groups):
    assert norm_groups(channels) == groups
    assert all(c % groups == 0 and c // groups >= 4 for c in channels)


@pytest.mark.parametrize("channels", [(), (2, 4)])
def test_norm_groups_rejects_too_narrow_networks(channels):
    with pytest.raises(ValueError, match="channels"):
        norm_groups(channels)


def test_every_profile_is_four_by_three_and_overridable():
    for profile in PROFILES.values():
        assert profile.height * 3 == profile.width * 4
    assert get_profile("cpu", n_train=5).n_train == 5
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("huge")


def test_evaluation_settings_are_not_part_of_a_training_runs_identity():
    from gardiffmini.profiles import EVALUATION_FIELDS, get_profile

    base = get_profile("cpu")
    other = get_profile("cpu", n_eval=7, sample_steps=3, guidance_scale=4.0)
    assert base.training_fields() == other.training_fields()
    assert not set(EVALUATION_FIELDS) & set(base.training_fields())
    assert get_profile("cpu", diffusion_steps=5).training_fields() != base.training_fields()


def test_a_dry_run_keeps_the_shapes_and_cuts_steps_and_data(monkeypatch):
    gpu = get_profile("gpu")
    monkeypatch.setenv("GARDIFF_DRY_RUN", "1")
    dry = get_profile("gpu")
    shapes = ("height", "width", "vae_channels", "latent_channels", "unet_channels",
              "clip_width", "clip_layers", "cross_attention_dim", "clip_tokens")
    assert all(getattr(dry, key) == getattr(gpu, key) for key in shapes)
    assert (dry.n_train, dry.n_test, dry.n_eval, dry.batch_size) == (16, 8, 4, 2)
    assert (dry.vae_steps, dry.diffusion_steps, dry.base_steps, dry.sample_steps) == (2, 2, 2, 2)
    assert get_profile(dry) == dry  # cut once: resolving again changes nothing
    assert get_profile("paper").base_steps == 0  # what is already below the cut stays
    assert get_profile("gpu", n_train=4).n_train == 4
    monkeypatch.setenv("GARDIFF_DRY_RUN", "0")
    assert get_profile("gpu") == gpu
