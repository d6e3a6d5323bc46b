"""The 12-channel try-on UNet: small from a profile, or pretrained and widened."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import UNet2DConditionModel

from gardiffmini.models.unet import (
    add_input_channels,
    load_pretrained_unet,
    make_unet,
    move_input_weights,
    widen_conv_in,
)
from gardiffmini.profiles import get_profile

CI = get_profile("ci")


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
    unet = make_unet(CI)
    sample = torch.randn(2, 12, *latent)
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        out = unet(sample, torch.tensor([10, 500]), encoder_hidden_states=tokens).sample
    assert out.shape == (2, 4, *latent)
    assert torch.isfinite(out).all()


def test_make_unet_rejects_widths_that_do_not_split_into_heads():
    with pytest.raises(ValueError, match="unet_head_dim"):
        make_unet(get_profile("ci", unet_head_dim=7))


def latents(seed: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """``x_t``, ``E(I_w)``, ``E(I_a)`` and CLIP-like tokens for the tiny UNet, at random."""
    generator = torch.Generator().manual_seed(seed)
    x_t, warped, agnostic = (torch.randn(2, 4, 8, 6, generator=generator, dtype=dtype)
                             for _ in range(3))
    return x_t, warped, agnostic, torch.randn(2, 3, 16, generator=generator, dtype=dtype)


def test_widening_moves_each_pretrained_weight_to_the_input_that_means_the_same():
    unet = tiny_inpainting_unet()
    old = unet.conv_in.weight.clone()  # inputs [x_t (0-3), mask (4), E(masked image) (5-8)]
    widen_conv_in(unet)
    weight = unet.conv_in.weight  # inputs [x_t (0-3), E(I_w) (4-7), E(I_a) (8-11)]
    assert unet.config.in_channels == 12 and weight.shape[1] == 12
    assert torch.equal(weight[:, 0:4], old[:, 0:4])
    assert torch.equal(weight[:, 4:8], torch.zeros_like(old[:, 0:4]))
    assert torch.equal(weight[:, 8:12], old[:, 5:9])  # the mask's weights (4) are dropped


def test_widened_unet_fed_no_garment_is_the_inpainting_unet_fed_no_mask():
    # float64, so that the check does not depend on how a CPU orders its sums: differences
    # measured 0 on an Intel Xeon, in float64 and in float32, over 20 random inputs
    unet = tiny_inpainting_unet().double()
    widened = widen_conv_in(copy.deepcopy(unet))
    x_t, warped, agnostic, tokens = latents(0, torch.float64)
    no_mask = torch.zeros_like(x_t[:, :1])
    with torch.no_grad():
        original = unet(torch.cat([x_t, no_mask, agnostic], 1), 7,
                        encoder_hidden_states=tokens).sample
        no_garment = widened(torch.cat([x_t, torch.zeros_like(warped), agnostic], 1), 7,
                             encoder_hidden_states=tokens).sample
        garment = widened(torch.cat([x_t, warped, agnostic], 1), 7,
                          encoder_hidden_states=tokens).sample
    torch.testing.assert_close(no_garment, original, atol=1e-12, rtol=0)
    assert torch.equal(garment, no_garment)  # E(I_w)'s weights are zero: it is ignored
    with torch.no_grad():  # and the mask channel mattered to the original: it is really gone
        masked = unet(torch.cat([x_t, no_mask + 1, agnostic], 1), 7,
                      encoder_hidden_states=tokens).sample
    assert (masked - original).abs().max() > 1e-3


def test_widening_a_text_to_image_unet_keeps_x_t():
    unet = UNet2DConditionModel.from_config(tiny_inpainting_unet().config, in_channels=4)
    old = unet.conv_in.weight.clone()
    weight = widen_conv_in(unet).conv_in.weight
    assert torch.equal(weight[:, :4], old) and (weight[:, 4:] == 0).all()


def test_widen_conv_in_checks_channels():
    unet = widen_conv_in(tiny_inpainting_unet())
    weight = unet.conv_in.weight
    assert widen_conv_in(unet).conv_in.weight is weight  # already [x_t, E(I_w), E(I_a)]
    odd = UNet2DConditionModel.from_config(unet.config, in_channels=7)
    with pytest.raises(ValueError, match="7 input channels and 4 output.*expected 4 .*9 .*12"):
        widen_conv_in(odd)


def test_widened_unet_survives_save_and_load(tmp_path):
    unet = widen_conv_in(tiny_inpainting_unet())
    unet.save_pretrained(tmp_path / "widened")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "widened")
    assert loaded.config.in_channels == 12
    assert torch.equal(loaded.conv_in.weight, unet.conv_in.weight)


def test_load_pretrained_unet_widens_a_saved_inpainting_unet(tmp_path):
    unet = tiny_inpainting_unet()
    unet.save_pretrained(tmp_path / "sd-inpainting" / "unet")
    loaded = load_pretrained_unet(tmp_path / "sd-inpainting", subfolder="unet").eval()
    expected = widen_conv_in(copy.deepcopy(unet)).state_dict()
    assert loaded.config.in_channels == 12 and loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
        assert value.data_ptr() % 64 == 0, f"{key} left at an unaligned address"


def test_added_input_channels_start_at_zero_and_change_nothing(tmp_path):
    unet = widen_conv_in(tiny_inpainting_unet())
    before = unet.conv_in.weight.detach().clone()
    widened = add_input_channels(copy.deepcopy(unet), 3)
    weight = widened.conv_in.weight
    assert widened.config.in_channels == 15 and weight.shape[1] == 15
    assert torch.equal(weight[:, :12], before) and weight[:, 12:].eq(0).all()
    assert torch.equal(widened.conv_in.bias, unet.conv_in.bias)
    x_t, warped, agnostic, tokens = latents(2)
    inputs = torch.cat([x_t, warped, agnostic], 1)
    pose = torch.rand(len(x_t), 3, *x_t.shape[-2:]) * 2 - 1
    with torch.no_grad():
        expected = unet(inputs, 7, encoder_hidden_states=tokens).sample
        got = widened(torch.cat([inputs, pose], 1), 7, encoder_hidden_states=tokens).sample
    assert torch.equal(got, expected)
    widened.save_pretrained(tmp_path / "posed")
    assert UNet2DConditionModel.from_pretrained(tmp_path / "posed").config.in_channels == 15
    with pytest.raises(ValueError, match="extra"):
        add_input_channels(unet, 0)


def test_moved_input_weights_read_the_target_as_the_source_was_read():
    unet = widen_conv_in(tiny_inpainting_unet())
    skinned = move_input_weights(add_input_channels(copy.deepcopy(unet), 4), 8, 12, 4)
    weight = skinned.conv_in.weight
    assert weight[:, 8:12].eq(0).all()
    assert torch.equal(weight[:, 12:], unet.conv_in.weight[:, 8:12])
    assert torch.equal(weight[:, :8], unet.conv_in.weight[:, :8])
    x_t, warped, agnostic, tokens = latents(2)
    primed = torch.rand_like(agnostic)
    with torch.no_grad():  # the old agnostic input is ignored, the new one read in its place
        expected = unet(torch.cat([x_t, warped, primed], 1), 7,
                        encoder_hidden_states=tokens).sample
        got = skinned(torch.cat([x_t, warped, agnostic, primed], 1), 7,
                      encoder_hidden_states=tokens).sample
    # the same products, summed in another order: exactly equal on a Xeon
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="do not fit 16 inputs"):
        move_input_weights(skinned, 8, 13, 4)
