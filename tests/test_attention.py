"""Decoupled masked cross-attention against a plain softmax-attention reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from gardiffmini.models.adapter import install_garment_adapter
from gardiffmini.models.attention import (
    AttentionRecorder,
    DecoupledMaskedAttnProcessor,
    garment_processors,
    query_grid,
    resize_mask,
    start_vae_stream_at_zero,
)
from gardiffmini.models.unet import make_unet
from gardiffmini.profiles import get_profile

CI = get_profile("ci")

HEADS, HEAD_DIM, QUERY_DIM, CROSS_DIM, N_CLIP = 2, 8, 16, 12, 3
GRID = (8, 6)  # a non-square query grid, from a 16 x 12 mask


def make_layer(mask_branches=("vae",), scale_clip=1.0, scale_vae=1.0):
    torch.manual_seed(0)
    attn = Attention(query_dim=QUERY_DIM, cross_attention_dim=CROSS_DIM, heads=HEADS,
                     dim_head=HEAD_DIM)
    processor = DecoupledMaskedAttnProcessor.for_layer(
        attn, layer_name="layer", n_clip_tokens=N_CLIP, mask_branches=mask_branches,
        scale_clip=scale_clip, scale_vae=scale_vae,
    )
    with torch.no_grad():  # make the VAE stream differ from the CLIP stream's projections
        processor.to_k_vae.weight.normal_()
        processor.to_v_vae.weight.normal_()
    attn.set_processor(processor)
    return attn, processor


def inputs(batch=2, n_vae=10):
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(batch, GRID[0] * GRID[1], QUERY_DIM, generator=generator)
    tokens = torch.randn(batch, N_CLIP + n_vae, CROSS_DIM, generator=generator)
    mask = torch.zeros(batch, 1, 16, 12)
    mask[:, :, 4:12, 2:10] = 1.0
    mask[1, :, 5, 3] = 0.3  # a soft value
    return hidden, tokens, mask


def reference_attention(attn, processor, hidden, tokens, mask, mask_branches, scale_clip,
                        scale_vae):
    """The equation of GARDIFF.md (claims 2 and 3) in plain tensor code."""
    def heads(x):
        return x.reshape(x.shape[0], x.shape[1], HEADS, HEAD_DIM).permute(0, 2, 1, 3)

    q = heads(attn.to_q(hidden))
    clip, vae = tokens[:, :N_CLIP], tokens[:, N_CLIP:]
    m = None
    if mask is not None:  # 16x12 -> 8x6: average each 2x2 block
        m = F.avg_pool2d(mask, 2).reshape(mask.shape[0], 1, -1, 1)
    total = 0
    for name, k, v, scale in (
        ("clip", heads(attn.to_k(clip)), heads(attn.to_v(clip)), scale_clip),
        ("vae", heads(processor.to_k_vae(vae)), heads(processor.to_v_vae(vae)), scale_vae),
    ):
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM), dim=-1)
        if m is not None and name in mask_branches:
            weights = m * weights
        total = total + scale * (weights @ v)
    out = total.permute(0, 2, 1, 3).reshape(hidden.shape[0], hidden.shape[1], -1)
    return attn.to_out[0](out)


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("mask_branches", [("vae",), ("clip", "vae"), ()])
@pytest.mark.parametrize("scales", [(1.0, 1.0), (0.5, 2.0), (1.0, 0.0), (0.0, 0.7)])
def test_processor_equals_reference(use_mask, mask_branches, scales):
    attn, processor = make_layer(mask_branches, *scales)
    hidden, tokens, mask = inputs()
    mask = mask if use_mask else None
    kwargs = {"garment_mask": mask} if use_mask else {}
    with torch.no_grad():
        out = attn(hidden, encoder_hidden_states=tokens, **kwargs)
        expected = reference_attention(attn, processor, hidden, tokens, mask, mask_branches,
                                       *scales)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("branch", ["vae", "clip"])
def test_masked_positions_receive_nothing_from_masked_branch(branch):
    attn, processor = make_layer(mask_branches=(branch,))
    hidden, tokens, mask = inputs()
    projection = processor.to_v_vae if branch == "vae" else attn.to_v
    with torch.no_grad():
        out = attn(hidden, encoder_hidden_states=tokens, garment_mask=mask)
        projection.weight.add_(torch.randn_like(projection.weight))
        perturbed = attn(hidden, encoder_hidden_states=tokens, garment_mask=mask)
    outside = resize_mask(mask, GRID)[:, 0, :, 0] == 0
    assert outside.any() and (~outside).any()
    assert torch.equal(out[outside], perturbed[outside])
    assert not torch.allclose(out[~outside], perturbed[~outside])


def test_all_ones_mask_is_no_mask():
    attn, _ = make_layer(mask_branches=("clip", "vae"))
    hidden, tokens, mask = inputs()
    with torch.no_grad():
        plain = attn(hidden, encoder_hidden_states=tokens)
        ones = attn(hidden, encoder_hidden_states=tokens, garment_mask=torch.ones_like(mask))
    torch.testing.assert_close(plain, ones, atol=1e-6, rtol=0)


def test_for_layer_copies_key_value_projections():
    torch.manual_seed(0)
    attn = Attention(query_dim=QUERY_DIM, cross_attention_dim=CROSS_DIM, heads=HEADS,
                     dim_head=HEAD_DIM)
    processor = DecoupledMaskedAttnProcessor.for_layer(attn, n_clip_tokens=N_CLIP)
    assert torch.equal(processor.to_k_vae.weight, attn.to_k.weight)
    assert torch.equal(processor.to_v_vae.weight, attn.to_v.weight)
    assert processor.to_k_vae.weight.data_ptr() != attn.to_k.weight.data_ptr()
    assert processor.to_k_vae.bias is None
    self_attention = Attention(query_dim=QUERY_DIM, heads=HEADS, dim_head=HEAD_DIM)
    with pytest.raises(ValueError, match="self-attention"):
        DecoupledMaskedAttnProcessor.for_layer(self_attention, n_clip_tokens=N_CLIP)


def test_bad_settings_and_inputs_raise():
    with pytest.raises(ValueError, match="mask_branches"):
        DecoupledMaskedAttnProcessor(16, 12, N_CLIP, mask_branches=("text",))
    with pytest.raises(ValueError, match="n_clip_tokens"):
        DecoupledMaskedAttnProcessor(16, 12, 0)
    attn, _ = make_layer()
    hidden, tokens, mask = inputs()
    with pytest.raises(ValueError, match="at least one VAE token"):
        attn(hidden, encoder_hidden_states=tokens[:, :N_CLIP])
    with pytest.raises(ValueError, match="garment_mask has batch"):
        attn(hidden, encoder_hidden_states=tokens, garment_mask=mask[:1])
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        attn(hidden, encoder_hidden_states=tokens, garment_mask=mask[:, 0])
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        attn(hidden)


@pytest.mark.parametrize(
    ("n_queries", "aspect", "grid"),
    [(48, (4, 3), (8, 6)), (192, (64, 48), (16, 12)), (12, (4, 3), (4, 3)), (64, (1, 1), (8, 8)),
     (768, (512, 384), (32, 24)), (7, (4, 3), (7, 1))],
)
def test_query_grid(n_queries, aspect, grid):
    assert query_grid(n_queries, aspect) == grid


def test_query_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="n_queries"):
        query_grid(0, (4, 3))


def test_resize_mask_is_area_average():
    mask = torch.zeros(1, 1, 16, 12)
    mask[0, 0, :2, :2] = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    resized = resize_mask(mask, (8, 6))
    assert resized.shape == (1, 1, 48, 1)
    assert resized[0, 0, 0, 0].item() == pytest.approx(0.75)
    assert (resized[0, 0, 1:, 0] == 0).all()


def test_recorder_stores_maps_only_when_on():
    profile_latent = (16, 12)
    unet = make_unet(CI)
    install_garment_adapter(unet, n_clip_tokens=2)
    sample = torch.randn(2, 12, *profile_latent)
    tokens = torch.randn(2, 2 + 16 * 12, 32)
    mask = torch.ones(2, 1, 64, 48)
    mask[:, :, :, :24] = 0
    kwargs = {"garment_mask": mask}
    with torch.no_grad():
        plain = unet(sample, 5, encoder_hidden_states=tokens, cross_attention_kwargs=kwargs).sample
        with AttentionRecorder(unet) as recorder:
            recorded = unet(sample, 5, encoder_hidden_states=tokens,
                            cross_attention_kwargs=kwargs).sample
        after = unet(sample, 5, encoder_hidden_states=tokens, cross_attention_kwargs=kwargs).sample
    torch.testing.assert_close(plain, recorded, atol=1e-5, rtol=1e-5)
    assert len(recorder.maps) == 4  # the ci UNet's four cross-attention layers
    assert all(p.recorder is None for p in recorder.processors.values())
    grids = set()
    for layer in recorder.maps.values():
        clip, vae = layer["clip"], layer["vae"]
        assert len(clip) == len(vae) == 1
        batch, h, w, n_tokens = vae[0].shape
        grids.add((h, w))
        assert (batch, n_tokens, clip[0].shape[-1]) == (2, 16 * 12, 2)
        torch.testing.assert_close(clip[0].sum(-1), torch.ones(2, h, w))  # CLIP: unmasked
        assert (vae[0][:, :, : w // 2].sum(-1) == 0).all()  # VAE: nothing left of the mask
        torch.testing.assert_close(vae[0][:, :, w // 2 :].sum(-1), torch.ones(2, h, w - w // 2))
    assert grids == {(16, 12), (8, 6)}
    torch.testing.assert_close(plain, after)
    assert sum(len(s) for layer in recorder.maps.values() for s in layer.values()) == 8


def test_recorder_needs_garment_processors():
    with pytest.raises(ValueError, match="no DecoupledMaskedAttnProcessor"):
        AttentionRecorder(make_unet(CI))


def test_a_vae_stream_started_at_zero_leaves_the_unet_as_it_was_until_trained():
    torch.manual_seed(0)
    plain = make_unet(CI)
    with_adapter = make_unet(CI)
    with_adapter.load_state_dict(plain.state_dict())
    install_garment_adapter(with_adapter, n_clip_tokens=2)
    start_vae_stream_at_zero(with_adapter)
    sample = torch.randn(2, 12, 16, 12)
    clip = torch.randn(2, 2, 32)
    tokens = torch.cat([clip, torch.randn(2, 16 * 12, 32)], dim=1)
    mask = {"garment_mask": torch.ones(2, 1, 64, 48)}
    expected = plain(sample, 5, encoder_hidden_states=clip).sample
    got = with_adapter(sample, 5, encoder_hidden_states=tokens, cross_attention_kwargs=mask).sample
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)  # the same sums, +0 per layer
    # the stream opens at the first step: W_v' has a gradient, W_k' not yet (V_vae = 0)
    got.square().mean().backward()
    processor = next(iter(garment_processors(with_adapter).values()))
    assert processor.to_v_vae.weight.grad.abs().sum() > 0
    assert processor.to_k_vae.weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="install the adapter first"):
        start_vae_stream_at_zero(make_unet(CI))
