"""The 12-channel try-on UNet: small from a profile, or pretrained and widened."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from gardiffmini.models.unet import load_pretrained_unet, make_unet, widen_conv_in
from gardiffmini.profiles import get_profile


def tiny_inpainting_unet() -> UNet2DConditionModel:
    """A Stable-Diffusion-inpainting-shaped UNet (9 input channels), tiny."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=9, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=8, attention_head_dim=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
    ).eval()


def test_make_unet_follows_the_profile():
    profile = get_profile("ci")
    unet = make_unet(profile)
    assert unet.config.in_channels == 3 * profile.latent_channels == 12
    assert unet.config.out_channels == profile.latent_channels
    assert tuple(unet.config.block_out_channels) == profile.unet_channels
    assert unet.config.cross_attention_dim == profile.cross_attention_dim
    assert tuple(unet.config.sample_size) == profile.latent_size
    cross = [m for m in unet.modules() if getattr(m, "is_cross_attention", False)]
    assert cross, "the try-on UNet needs cross-attention for the garment tokens"
    for attn in cross:
        assert attn.to_q.out_features // attn.heads == profile.unet_head_dim


@pytest.mark.parametrize("latent", [(16, 12), (32, 24)])
def test_make_unet_runs_on_non_square_latents(latent):
    unet = make_unet("ci")
    sample = torch.randn(2, 12, *latent)
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        out = unet(sample, torch.tensor([10, 500]), encoder_hidden_states=tokens).sample
    assert out.shape == (2, 4, *latent)
    assert torch.isfinite(out).all()


def test_make_unet_rejects_widths_that_do_not_split_into_heads():
    with pytest.raises(ValueError, match="unet_head_dim"):
        make_unet(get_profile("ci", unet_head_dim=7))


def test_widened_unet_matches_original_when_new_inputs_are_zero():
    unet = tiny_inpainting_unet()
    sample = torch.randn(2, 9, 8, 6)
    tokens = torch.randn(2, 3, 16)
    with torch.no_grad():
        original = unet(sample, 7, encoder_hidden_states=tokens).sample
        old_weight = unet.conv_in.weight.clone()
        widen_conv_in(unet, 12)
        widened = unet(torch.cat([sample, torch.zeros(2, 3, 8, 6)], 1), 7,
                       encoder_hidden_states=tokens).sample
        moved = unet(torch.cat([sample, torch.ones(2, 3, 8, 6)], 1), 7,
                     encoder_hidden_states=tokens).sample
    assert unet.config.in_channels == 12 and unet.conv_in.in_channels == 12
    assert torch.equal(unet.conv_in.weight[:, :9], old_weight)
    assert (unet.conv_in.weight[:, 9:] == 0).all()
    torch.testing.assert_close(widened, original, atol=1e-6, rtol=0)
    torch.testing.assert_close(moved, original, atol=1e-6, rtol=0)  # zero weights: ignored


def test_widen_conv_in_checks_channels():
    unet = tiny_inpainting_unet()
    assert widen_conv_in(unet, 9).conv_in.in_channels == 9
    with pytest.raises(ValueError, match="fewer than"):
        widen_conv_in(unet, 4)


def test_widened_unet_survives_save_and_load(tmp_path):
    unet = widen_conv_in(tiny_inpainting_unet(), 12)
    unet.save_pretrained(tmp_path / "widened")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "widened")
    assert loaded.config.in_channels == 12
    assert torch.equal(loaded.conv_in.weight, unet.conv_in.weight)


def test_load_pretrained_unet_widens_a_saved_inpainting_unet(tmp_path):
    unet = tiny_inpainting_unet()
    unet.save_pretrained(tmp_path / "sd-inpainting" / "unet")
    loaded = load_pretrained_unet(tmp_path / "sd-inpainting", subfolder="unet").eval()
    assert loaded.config.in_channels == 12
    sample = torch.randn(1, 9, 8, 6)
    tokens = torch.randn(1, 3, 16)
    with torch.no_grad():
        original = unet(sample, 3, encoder_hidden_states=tokens).sample
        widened = loaded(torch.cat([sample, torch.zeros(1, 3, 8, 6)], 1), 3,
                         encoder_hidden_states=tokens).sample
    torch.testing.assert_close(widened, original, atol=1e-6, rtol=0)
