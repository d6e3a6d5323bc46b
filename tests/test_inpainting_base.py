"""The shared inpainting base: built blind to the garment, trained without one, shipped."""

from dataclasses import replace

import pytest
import torch

from gardiffmini import inpainting_base as base
from gardiffmini import objective, train
from gardiffmini.models.unet import make_unet
from gardiffmini.pipeline import POSE_CHANNELS
from gardiffmini.profiles import get_profile
from gardiffmini.runs import step_generator

CI = get_profile("ci")


def _cache(profile, n: int = 4) -> dict[str, torch.Tensor]:
    h, w = profile.latent_size
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, profile.height, profile.width)
    mask[..., profile.height // 4:, :] = 1
    return {"x0": torch.randn(n, profile.latent_channels, h, w, generator=generator),
            "agnostic": torch.randn(n, profile.latent_channels, h, w, generator=generator),
            "agnostic_mask": mask}


def test_garment_channels_are_the_second_latent():
    assert base.garment_channels(CI) == slice(4, 8)


def test_base_unet_ignores_the_garment_channels():
    torch.manual_seed(0)
    unet = base.make_base_unet(CI).eval()
    assert unet.conv_in.weight[:, 4:8].abs().sum() == 0
    assert unet.conv_in.weight[:, :4].abs().sum() > 0
    h, w = CI.latent_size
    x = torch.randn(1, 12, h, w)
    with_garment = x.clone()
    with_garment[:, 4:8] = torch.randn(1, 4, h, w)
    tokens = torch.zeros(1, CI.clip_tokens, CI.cross_attention_dim)
    with torch.no_grad():
        a = unet(x, torch.tensor([500]), encoder_hidden_states=tokens).sample
        b = unet(with_garment, torch.tensor([500]), encoder_hidden_states=tokens).sample
    torch.testing.assert_close(a, b)


def test_base_step_trains_everything_but_the_garment_channels():
    torch.manual_seed(0)
    unet = base.make_base_unet(CI)
    scheduler = objective.noise_scheduler("v_prediction")
    loss = base.base_step_loss(unet, _cache(CI), torch.tensor([0, 1, 2]), step_generator(0, 0),
                               scheduler, CI.clip_tokens)["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert unet.conv_in.weight.grad[:, 4:8].abs().sum() == 0  # E(I_w) is empty: no gradient
    assert unet.conv_in.weight.grad[:, :4].abs().sum() > 0


def test_base_step_is_the_recipe_mse_of_a_garmentless_unet():
    torch.manual_seed(0)
    unet = base.make_base_unet(CI)
    cache, index = _cache(CI), torch.tensor([1, 3])
    scheduler = objective.noise_scheduler("v_prediction")
    loss = base.base_step_loss(unet, cache, index, step_generator(0, 7), scheduler,
                               CI.clip_tokens)["loss"]
    x0 = cache["x0"][index]
    noise, t, x_t = objective.noised_latents(x0, step_generator(0, 7), scheduler)
    unet_input = torch.cat([x_t, torch.zeros_like(x0), cache["agnostic"][index]], dim=1)
    tokens = torch.zeros(2, CI.clip_tokens, CI.cross_attention_dim)
    prediction = unet(unet_input, t, encoder_hidden_states=tokens).sample
    expected = objective.recipe_mse(prediction, x0, noise, t, cache["agnostic_mask"][index],
                                    scheduler, objective.DEFAULT_RECIPE)
    torch.testing.assert_close(loss, expected)


def test_build_model_starts_from_the_base_and_gfa_adds_fresh_projections():
    torch.manual_seed(1)
    weights = base.make_base_unet(CI).state_dict()
    for name in ("base", "base+gfa"):
        unet, _ = train.build_model(CI, train.get_variant(name), weights, objective.PLAIN_RECIPE)
        state = unet.state_dict()
        for key, value in weights.items():
            torch.testing.assert_close(state[key], value)
        assert (len(state) > len(weights)) == (name == "base+gfa")


def test_the_book_recipe_moves_the_agnostic_weights_to_the_skin_channels():
    """DensePose's channels start at zero; the skin-primed latent's take E(I_a)'s weights,
    and E(I_a)'s start at zero (skin_init="agnostic"): the model starts as the base would
    on the skin-primed image."""
    torch.manual_seed(1)
    weights = base.make_base_unet(CI).state_dict()
    unet, _ = train.build_model(CI, train.get_variant("base"), weights)
    c, pose = CI.latent_channels, POSE_CHANNELS
    moved, started = unet.state_dict()["conv_in.weight"], weights["conv_in.weight"]
    assert moved.shape[1] == 3 * c + pose + c
    torch.testing.assert_close(moved[:, :2 * c], started[:, :2 * c])  # x_t, E(I_w)
    assert moved[:, 2 * c:3 * c + pose].eq(0).all()  # E(I_a), the DensePose
    torch.testing.assert_close(moved[:, 3 * c + pose:], started[:, 2 * c:3 * c])
    for key, value in weights.items():
        if key != "conv_in.weight":
            torch.testing.assert_close(unet.state_dict()[key], value)


def test_a_profile_without_base_steps_has_no_base():
    paper_like = get_profile("ci", base_steps=0)
    assert base.inpainting_base(paper_like, "any", training_set=lambda: pytest.fail()) is None


def test_the_base_identity_follows_the_vae_and_the_schedule():
    assert base.base_hash(CI, "vae-a") != base.base_hash(CI, "vae-b")
    assert base.base_hash(CI, "vae-a") != base.base_hash(get_profile("ci", base_steps=7), "vae-a")


def test_train_base_runs_keeps_a_run_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path))
    profile = get_profile("ci", base_steps=3, batch_size=2)
    calls = []

    def training_set():
        calls.append(1)
        return _cache(profile)

    first = base.train_base(profile, "vae-x", training_set, progress=False)
    assert first.run.finished and first.conv_in.weight[:, 4:8].abs().sum() == 0
    again = base.train_base(profile, "vae-x", training_set, progress=False)
    assert len(calls) == 1  # the finished run is loaded, not retrained
    for key, value in first.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)


def test_shipped_bases_load_only_for_their_vae():
    for name in ("ci", "cpu"):
        profile = get_profile(name)
        record = base.shipped_base_path(profile).with_suffix(".json")
        assert record.is_file(), f"{record} missing: run tools/ship_base.py --profile {name}"
        assert base.load_shipped_base(profile, "not-the-shipped-vae") is None


def test_the_shipped_ci_base_fits_the_ci_unet(tmp_path, monkeypatch):
    from gardiffmini.models.encoders import load_or_train_encoders

    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path))  # the CLIP it trains goes there

    vae, _ = load_or_train_encoders(CI, progress=False)
    weights = base.load_shipped_base(CI, train.weights_hash(vae))
    assert weights is not None, "the shipped ci base does not match the shipped ci VAE"
    assert weights.keys() == make_unet(CI).state_dict().keys()
    assert weights["conv_in.weight"][:, 4:8].abs().sum() == 0


PERSON = objective.base_recipe(replace(objective.DEFAULT_RECIPE, person_base=True))


def _person_cache(profile, n: int = 4) -> dict[str, torch.Tensor]:
    h, w = profile.latent_size
    generator = torch.Generator().manual_seed(1)
    return _cache(profile, n) | {
        "pose": torch.rand(n, POSE_CHANNELS, h, w, generator=generator) * 2 - 1,
        "skin": torch.randn(n, profile.latent_channels, h, w, generator=generator)}


def test_the_base_recipe_is_plain_unless_the_variant_asks_for_a_person_base():
    assert objective.base_recipe(objective.DEFAULT_RECIPE) == objective.PLAIN_RECIPE
    assert PERSON.pose_input and PERSON.skin_input and PERSON.person_base
    assert PERSON.prediction_type == objective.PLAIN_RECIPE.prediction_type
    assert base.base_hash(CI, "vae-a", PERSON) != base.base_hash(CI, "vae-a")
    with pytest.raises(ValueError, match="person_base needs a person input"):
        replace(objective.PLAIN_RECIPE, person_base=True)


def test_a_person_base_reads_the_densepose_and_the_skin_primed_latent():
    torch.manual_seed(0)
    unet = base.make_base_unet(CI, PERSON)
    c = CI.latent_channels
    assert unet.config.in_channels == 3 * c + POSE_CHANNELS + c
    cache, index = _person_cache(CI), torch.tensor([0, 2])
    scheduler = objective.noise_scheduler("v_prediction")
    seen = []
    unet.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    loss = base.base_step_loss(unet, cache, index, step_generator(0, 3), scheduler,
                               CI.clip_tokens, PERSON)["loss"]
    torch.testing.assert_close(seen[0][:, 3 * c:3 * c + POSE_CHANNELS], cache["pose"][index])
    torch.testing.assert_close(seen[0][:, 3 * c + POSE_CHANNELS:], cache["skin"][index])
    loss.backward()  # the new channels start at zero and are trained
    assert unet.conv_in.weight.grad[:, 3 * c:].abs().sum() > 0


def test_a_variant_on_a_person_base_keeps_its_person_weights():
    """No channel is appended at zero or moved: the base already reads the person inputs."""
    torch.manual_seed(2)
    weights = base.make_base_unet(CI, PERSON).state_dict()
    with torch.no_grad():
        weights["conv_in.weight"][:, 3 * CI.latent_channels:] = 0.5
    recipe = replace(objective.DEFAULT_RECIPE, person_base=True)
    unet, _ = train.build_model(CI, train.get_variant("base+gfa"), weights, recipe)
    state = unet.state_dict()
    for key, value in weights.items():
        torch.testing.assert_close(state[key], value)


def test_a_person_base_is_trained_not_the_shipped_one(monkeypatch):
    calls = []
    monkeypatch.setattr(base, "train_base",
                        lambda profile, vae_id, training_set, progress, recipe:
                        calls.append(recipe) or base.make_base_unet(profile, recipe))
    weights = base.inpainting_base(CI, "any-vae", lambda: pytest.fail(), recipe=PERSON)
    assert calls == [PERSON]
    assert weights["conv_in.weight"].shape[1] == 4 * CI.latent_channels + POSE_CHANNELS
