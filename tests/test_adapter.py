"""The garment-focused adapter: token projectors and the installation of the processors."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor2_0

from gardiffmini.models.adapter import (
    ClipTokenProjector,
    GarmentAdapter,
    VaeTokenProjector,
    adapter_parameters,
    install_garment_adapter,
    position_encoding,
)
from gardiffmini.models.attention import (
    DecoupledMaskedAttnProcessor,
    IgnoreGarmentMask,
    garment_processors,
)
from gardiffmini.models.unet import make_unet
from gardiffmini.profiles import get_profile

CI = get_profile("ci")


def sd_like_unet() -> UNet2DConditionModel:
    """Stable Diffusion 2 inpainting's architecture (blocks, heads per level, linear
    projections, 9 channels), with tiny widths."""
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=9, out_channels=4, layers_per_block=2,
        block_out_channels=(8, 16, 32, 32), norm_num_groups=8, attention_head_dim=(1, 2, 4, 4),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=24, use_linear_projection=True,
    )


def test_clip_token_projector():
    projector = ClipTokenProjector(clip_embed_dim=10, cross_attention_dim=16, n_tokens=3)
    tokens = projector(torch.randn(5, 10))
    assert tokens.shape == (5, 3, 16)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(5, 3), atol=1e-5, rtol=0)  # LayerNorm
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        projector(torch.randn(5, 11))


def test_position_encoding_is_row_major_and_separable():
    height, width, dim = 4, 3, 16
    position = position_encoding(height, width, dim)
    assert position.shape == (height * width, dim)
    grid = position.reshape(height, width, dim)
    rows, cols = grid[..., : dim // 2], grid[..., dim // 2 :]
    assert torch.equal(rows, rows[:, :1].expand_as(rows))  # first half: the row only
    assert torch.equal(cols, cols[:1].expand_as(cols))  # second half: the column only
    torch.testing.assert_close(rows[1, 0, dim // 4], torch.cos(torch.tensor(1.0)))
    torch.testing.assert_close(cols[0, 2, 0], torch.sin(torch.tensor(2.0)))
    assert len({tuple(p.tolist()) for p in position}) == height * width
    with pytest.raises(ValueError, match="multiple of 4"):
        position_encoding(2, 2, 6)


@pytest.mark.parametrize("size", [(16, 12), (7, 5)])
def test_vae_token_projector_any_size(size):
    projector = VaeTokenProjector(latent_channels=4, cross_attention_dim=16)
    latents = torch.randn(2, 4, *size)
    tokens = projector(latents)
    assert tokens.shape == (2, size[0] * size[1], 16)
    # a token depends on its own cell (and its position) only
    moved = latents.clone()
    moved[:, :, 0, 0] += 1
    changed = (projector(moved) - tokens).abs().sum(-1) > 0
    assert changed[:, 0].all() and not changed[:, 1:].any()
    with pytest.raises(ValueError, match=r"\(B, 4, h, w\)"):
        projector(torch.randn(2, 3, *size))


def test_garment_adapter_tokens():
    adapter = GarmentAdapter.from_profile(CI)
    profile = get_profile("ci")
    clip = torch.randn(2, profile.clip_embed_dim)
    latents = torch.randn(2, 4, 16, 12)
    assert adapter(clip, latents).shape == (2, profile.clip_tokens + 16 * 12, 32)
    with pytest.raises(ValueError, match="warped_latents"):
        adapter(clip)
    base = GarmentAdapter.from_profile(CI, use_vae_tokens=False)
    assert base.vae_projector is None
    assert base(clip, latents).shape == (2, profile.clip_tokens, 32)
    torch.testing.assert_close(base(clip, latents), base(clip))


def test_garment_adapter_save_and_load(tmp_path):
    adapter = GarmentAdapter.from_profile(CI, mask_branches=("clip", "vae"), scale_vae=0.5)
    adapter.save_pretrained(tmp_path)
    loaded = GarmentAdapter.from_pretrained(tmp_path)
    assert loaded.attention_settings == {
        "n_clip_tokens": 2, "mask_branches": ("clip", "vae"), "scale_clip": 1.0, "scale_vae": 0.5,
    }
    clip, latents = torch.randn(2, 32), torch.randn(2, 4, 16, 12)
    torch.testing.assert_close(loaded(clip, latents), adapter(clip, latents))


def test_install_on_the_small_unet():
    unet = make_unet(CI)
    before = unet.attn_processors
    processors = install_garment_adapter(unet, n_clip_tokens=2, scale_vae=0.5)
    after = unet.attn_processors
    assert set(before) == set(after)
    cross = {name for name in after if name.endswith("attn2.processor")}
    assert set(garment_processors(unet)) == cross and len(cross) == 4
    for name in set(after) - cross:  # self-attention: the same processor, taking the mask
        assert isinstance(after[name], IgnoreGarmentMask)
        assert type(after[name].processor) is type(before[name])
    assert len(processors) == 4 and all("." not in key for key in processors)
    for name, processor in garment_processors(unet).items():
        attn = unet.get_submodule(name.removesuffix(".processor"))
        assert torch.equal(processor.to_k_vae.weight, attn.to_k.weight)
        assert processor.layer_name == name and processor.scale_vae == 0.5
    # the processors' weights are part of the UNet's state dict and parameters
    assert any(".processor.to_k_vae." in key for key in unet.state_dict())
    params = list(adapter_parameters(unet))
    assert len(params) == 8 and all(p.requires_grad for p in params)
    assert {id(p) for p in params} <= {id(p) for p in unet.parameters()}


def test_vae_stream_is_trainable_and_masked_through_the_unet():
    unet = make_unet(CI)
    install_garment_adapter(unet, n_clip_tokens=2)
    sample = torch.randn(2, 12, 16, 12)
    tokens = torch.randn(2, 2 + 16 * 12, 32)
    unet(sample, 3, encoder_hidden_states=tokens).sample.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter_parameters(unet))

    other = tokens.clone()
    other[:, 2:] = torch.randn_like(other[:, 2:])
    with torch.no_grad():
        def run(t, mask):
            return unet(sample, 3, encoder_hidden_states=t,
                        cross_attention_kwargs={"garment_mask": mask}).sample
        zero = torch.zeros(2, 1, 64, 48)
        one = torch.ones(2, 1, 64, 48)
        torch.testing.assert_close(run(tokens, zero), run(other, zero), atol=0, rtol=0)
        assert not torch.allclose(run(tokens, one), run(other, one))


def test_install_on_a_stable_diffusion_shaped_unet():
    unet = sd_like_unet()
    processors = install_garment_adapter(unet, n_clip_tokens=4, mask_branches=("clip", "vae"))
    assert len(processors) == 16  # Stable Diffusion's 16 cross-attention layers
    heads = {p.to_k_vae.out_features for p in processors.values()}
    assert heads == {8, 16, 32}
    assert all(isinstance(p.processor, AttnProcessor2_0) for name, p in
               unet.attn_processors.items() if name.endswith("attn1.processor"))
    mask = torch.zeros(1, 1, 32, 24)
    mask[..., 8:24, 4:20] = 1
    with torch.no_grad():
        out = unet(torch.randn(1, 9, 8, 6), 10, encoder_hidden_states=torch.randn(1, 4 + 48, 24),
                   cross_attention_kwargs={"garment_mask": mask}).sample
    assert out.shape == (1, 4, 8, 6) and torch.isfinite(out).all()


def test_adapter_install_matches_its_config():
    unet = make_unet(CI)
    adapter = GarmentAdapter.from_profile(CI, mask_branches=("clip", "vae"), scale_clip=0.3)
    adapter.install(unet)
    for processor in garment_processors(unet).values():
        assert isinstance(processor, DecoupledMaskedAttnProcessor)
        assert processor.mask_branches == ("clip", "vae") and processor.scale_clip == 0.3
    base_unet = make_unet(CI)
    assert len(GarmentAdapter.from_profile(CI, use_vae_tokens=False).install(base_unet)) == 0
    assert not garment_processors(base_unet)


def test_install_needs_cross_attention():
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 8), norm_num_groups=8, mid_block_type=None,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    with pytest.raises(ValueError, match="no cross-attention"):
        install_garment_adapter(unet, n_clip_tokens=2)
