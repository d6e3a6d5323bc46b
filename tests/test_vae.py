"""The ToyVITON VAE: the colour shortcut, its save/load, the round-trip measures and the gate."""

import pytest
import torch
from diffusers import AutoencoderKL

from gardiffmini.data.garments import COLOR_NAMES
from gardiffmini.models import vae as vae_model
from gardiffmini.profiles import get_profile

CI = get_profile("ci")

# What a shipped VAE must keep, per profile: every colour within COLOUR_TOLERANCE, and the
# round trip pasted back into the photo at least this SSIM (the ceiling of any latent model).
# Issue 9 asks 0.95 at cpu on the test pairs' files; there the shipped cpu VAE (8 latent
# channels, 4,000 steps) reaches 0.964, and 0.945 on these in-memory held-out persons (4
# channels: 0.944 and 0.930; 0.88 before the colour shortcut). The gate holds it there.
# The ci VAE sees images a quarter the size through a latent of 4x16x12.
SSIM_GATE = {"cpu": 0.94, "ci": 0.88}


def test_shortcut_starts_as_a_blurred_copy_with_the_right_colours():
    torch.manual_seed(0)
    vae = vae_model.make_vae(CI).eval()
    with torch.no_grad():  # silence the networks: only the shortcut is left
        for module in (vae.encoder.conv_out, vae.decoder.conv_out):
            module.weight.zero_()
            module.bias.zero_()
        vae.quant_conv.weight.zero_()
        vae.quant_conv.bias[: vae.config.latent_channels].zero_()
    image = torch.zeros(1, 3, 64, 48)
    image[:, 0], image[:, 1], image[:, 2] = 0.4, -0.5, 0.6  # flat purple-ish
    latent = vae.encode(image).latent_dist.mode()
    torch.testing.assert_close(latent[:, :3], image[:, :, :16, :12])
    torch.testing.assert_close(vae.decode(latent).sample, image)


def test_without_the_shortcut_it_is_diffusers_autoencoderkl():
    torch.manual_seed(0)
    ours = vae_model.make_vae(CI, colour_shortcut=False).eval()
    plain = AutoencoderKL.from_config({k: v for k, v in ours.config.items()
                                       if k != "colour_shortcut"}).eval()
    plain.load_state_dict(ours.state_dict())
    x = torch.rand(2, 3, 64, 48) * 2 - 1
    torch.testing.assert_close(ours.decode(ours.encode(x).latent_dist.mode()).sample,
                               plain.decode(plain.encode(x).latent_dist.mode()).sample)


def test_save_and_load_keep_the_shortcut(tmp_path):
    torch.manual_seed(0)
    vae = vae_model.make_vae(CI).eval()
    vae.save_pretrained(tmp_path / "vae")
    loaded = vae_model.ShortcutAutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    assert loaded.config.colour_shortcut
    x = torch.rand(1, 3, 64, 48) * 2 - 1
    torch.testing.assert_close(loaded.encode(x).latent_dist.mean, vae.encode(x).latent_dist.mean)


def test_shortcut_needs_three_latent_channels():
    with pytest.raises(ValueError, match="latent_channels >= 3"):
        vae_model.ShortcutAutoencoderKL(latent_channels=2, block_out_channels=(32,),
                                        norm_num_groups=8)


def test_vae_loss_adds_the_squared_term():
    target = torch.zeros(1, 3, 4, 4)
    reconstruction = torch.full_like(target, 0.5)
    posterior = vae_model.DiagonalGaussianDistribution(torch.zeros(1, 8, 1, 1))
    plain = vae_model.vae_loss(reconstruction, target, posterior, kl_weight=0.0)
    squared = vae_model.vae_loss(reconstruction, target, posterior, kl_weight=0.0, mse_weight=2)
    assert plain["loss"].item() == pytest.approx(0.5)
    assert squared["loss"].item() == pytest.approx(0.5 + 2 * 0.25)


def test_palette_has_every_colour_and_a_mask_inside_each_garment():
    images, masks = vae_model.palette_garments(64, 48)
    assert images.shape == (len(COLOR_NAMES), 3, 64, 48) and images.dtype == torch.uint8
    assert masks.shape == (len(COLOR_NAMES), 64, 48) and masks.any(dim=(1, 2)).all()
    red = images[COLOR_NAMES.index("red")].float()
    inside = red[:, masks[COLOR_NAMES.index("red")]].mean(dim=1)
    assert inside[0] > 150 and inside[1] < 80  # red, not the white ground


def test_colour_errors_are_zero_for_a_perfect_autoencoder():
    class Identity(torch.nn.Module):
        def encode(self, x):
            return type("Out", (), {"latent_dist": vae_model.DiagonalGaussianDistribution(
                torch.cat([x, torch.full_like(x, -30.0)], dim=1))})()

        def decode(self, z):
            return type("Out", (), {"sample": z})()

    errors = vae_model.colour_round_trip_errors(Identity(), 64, 48)
    assert set(errors) == set(COLOR_NAMES) and max(errors.values()) == 0


def test_a_vae_of_another_recipe_is_not_the_shipped_one(tmp_path, monkeypatch):
    profile = get_profile("ci")
    monkeypatch.setattr(vae_model, "WEIGHTS_DIR", tmp_path)
    assert vae_model.load_shipped_vae(profile) is None  # nothing shipped there
    vae = vae_model.make_vae(profile)
    from safetensors.torch import save_file

    save_file(vae.state_dict(), str(tmp_path / "vae-ci.safetensors"))
    record = tmp_path / "vae-ci.json"
    record.write_text('{"recipe_hash": "0000", "scaling_factor": 1.0}')
    assert vae_model.load_shipped_vae(profile) is None
    record.write_text(f'{{"recipe_hash": "{vae_model.recipe_hash(profile, 0, vae)}", '
                      '"scaling_factor": 0.5}')
    loaded = vae_model.load_shipped_vae(profile)
    assert loaded is not None and loaded.config.scaling_factor == 0.5


@pytest.mark.parametrize("name", sorted(SSIM_GATE))
def test_shipped_vae_passes_the_gate(name):
    """The gate of every shipped VAE: colours and detail survive a round trip."""
    profile = get_profile(name)
    vae = vae_model.load_shipped_vae(profile)
    assert vae is not None, (
        f"no shipped VAE matches today's recipe for {name!r}: run "
        f"`python tools/ship_vae.py --profile {name}` and commit gardiffmini/weights/")
    report = vae_model.round_trip_report(vae, profile, n=32)
    bad = {c: e for c, e in report["colour"].items() if e > vae_model.COLOUR_TOLERANCE}
    assert not bad, f"colours lost in the round trip: {bad}"
    assert report["ssim_pasted"] >= SSIM_GATE[name], report
