"""GarDiffPipeline: DDIM with classifier-free guidance, masked attention, save and load."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from gardiffmini.models.adapter import GarmentAdapter
from gardiffmini.models.attention import AttentionRecorder, garment_processors
from gardiffmini.models.unet import add_input_channels, make_unet
from gardiffmini.pipeline import (
    POSE_CHANNELS,
    GarDiffPipeline,
    encode_latents,
    person_inputs,
    pose_latent,
    tryon_unet_input,
)
from gardiffmini.profiles import get_profile
from gardiffmini.skin import skin_primed_agnostic

CI = get_profile("ci")

HEIGHT, WIDTH = 64, 48  # the ci profile's images; latents 16 x 12


def tiny_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        block_out_channels=(8, 16, 16), norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    )


def tiny_image_encoder() -> CLIPVisionModelWithProjection:
    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=32,
    ))


def tiny_pipeline(use_vae_tokens: bool = True) -> GarDiffPipeline:
    torch.manual_seed(0)
    unet = make_unet(CI)
    adapter = GarmentAdapter.from_profile(CI, use_vae_tokens=use_vae_tokens)
    adapter.install(unet)
    with torch.no_grad():  # trained-looking VAE-stream weights, unlike their initial copies
        for processor in garment_processors(unet).values():
            processor.to_k_vae.weight.normal_()
            processor.to_v_vae.weight.normal_()
    pipe = GarDiffPipeline(unet=unet.eval(), vae=tiny_vae().eval(),
                           image_encoder=tiny_image_encoder().eval(), adapter=adapter.eval(),
                           scheduler=DDIMScheduler(clip_sample=False))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def person_batch(batch: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    warped_mask = torch.zeros(batch, 1, HEIGHT, WIDTH)
    warped_mask[:, :, 16:48, 8:40] = 1
    return {
        "agnostic": torch.rand(batch, 3, HEIGHT, WIDTH, generator=generator) * 2 - 1,
        "warped_cloth": torch.rand(batch, 3, HEIGHT, WIDTH, generator=generator) * 2 - 1,
        "warped_mask": warped_mask,
        "cloth": torch.rand(batch, 3, HEIGHT, WIDTH, generator=generator) * 2 - 1,
    }


def sample(pipe, seed=0, batch=1, **kwargs):
    kwargs = {"num_inference_steps": 2, "guidance_scale": 2.0, **kwargs}
    return pipe(**person_batch(batch), generator=torch.Generator().manual_seed(seed),
                **kwargs).images


@pytest.fixture(scope="module")
def pipe() -> GarDiffPipeline:
    return tiny_pipeline()


@pytest.fixture(scope="module")
def baseline(pipe) -> torch.Tensor:
    return sample(pipe)


def test_tryon_unet_input_order():
    x_t, warped = torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2)
    agnostic = torch.full((1, 4, 2, 2), 2.0)
    stacked = tryon_unet_input(x_t, warped, agnostic)
    assert stacked.shape == (1, 12, 2, 2)
    assert stacked[:, :4].eq(0).all() and stacked[:, 4:8].eq(1).all() and stacked[:, 8:].eq(2).all()


def test_tryon_unet_input_appends_the_pose_last():
    x_t, warped = torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)
    agnostic = torch.full((2, 4, 2, 2), 2.0)
    pose = torch.full((2, POSE_CHANNELS, 2, 2), -0.5)
    plain = tryon_unet_input(x_t, warped, agnostic)
    assert torch.equal(tryon_unet_input(x_t, warped, agnostic, None), plain)
    posed = tryon_unet_input(x_t, warped, agnostic, pose)
    assert posed.shape == (2, 12 + POSE_CHANNELS, 2, 2)
    assert torch.equal(posed[:, :12], plain) and posed[:, 12:].eq(-0.5).all()


def test_pose_latent_is_the_mean_of_each_block():
    generator = torch.Generator().manual_seed(0)
    densepose = torch.rand(2, 3, HEIGHT, WIDTH, generator=generator) * 2 - 1
    densepose[0, :, :8] = 1.0  # the ends of the range stay at the ends
    densepose[1, :, :8] = -1.0
    latent = pose_latent(densepose, (HEIGHT // 4, WIDTH // 4))
    assert latent.shape == (2, 3, 16, 12) and latent.dtype == torch.float32
    assert latent.min() >= -1 and latent.max() <= 1
    assert latent[0, :, :2].eq(1).all() and latent[1, :, :2].eq(-1).all()
    expected = torch.empty(2, 3, 16, 12)  # by hand: each latent cell, the mean of its 4x4 pixels
    for i in range(16):
        for j in range(12):
            expected[..., i, j] = densepose[..., 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean((-2, -1))
    torch.testing.assert_close(latent, expected)
    with pytest.raises(ValueError, match="densepose must be"):
        pose_latent(densepose[:, :1], (16, 12))


def test_encode_latents_is_the_scaled_posterior_mean(pipe):
    images = person_batch()["agnostic"]
    with torch.no_grad():  # the VAE's own layers: the moments are [mean, log variance]
        mean = pipe.vae.quant_conv(pipe.vae.encoder(images))[:, :4]
        latents = encode_latents(pipe.vae, images)
    torch.testing.assert_close(latents, mean * 0.18215)
    assert torch.equal(latents, encode_latents(pipe.vae, images))  # the mean, not a sample


def test_images_in_unit_range_and_seeded(pipe, baseline):
    assert baseline.shape == (1, 3, HEIGHT, WIDTH)
    # postprocess clamps to [0, 1], so check what the clamp cannot hide: NaN survives it, and
    # a diverged sample piles up at 0 and 1 (this random pipeline: 98.7 % strictly inside)
    assert torch.isfinite(baseline).all()
    assert ((baseline > 0) & (baseline < 1)).float().mean() > 0.9
    assert torch.equal(baseline, sample(pipe))
    assert not torch.equal(baseline, sample(pipe, seed=1))


def test_steps_guidance_and_output_types(pipe, baseline):
    assert not torch.allclose(baseline, sample(pipe, guidance_scale=1.0))
    assert not torch.allclose(baseline, sample(pipe, num_inference_steps=3))
    (pil,) = pipe(**person_batch(2), num_inference_steps=1, output_type="pil", return_dict=False)
    assert len(pil) == 2 and isinstance(pil[0], Image.Image) and pil[0].size == (WIDTH, HEIGHT)


def test_paste_back_keeps_the_person_outside_the_agnostic_mask(pipe):
    batch = person_batch()
    images = pipe(**batch, agnostic_mask=torch.zeros(1, 1, HEIGHT, WIDTH),
                  num_inference_steps=1).images
    torch.testing.assert_close(images, (batch["agnostic"] + 1) / 2)


def test_guidance_runs_the_unet_on_conditional_and_unconditional_halves(pipe):
    with AttentionRecorder(pipe.unet) as recorder:
        sample(pipe, batch=2, num_inference_steps=3)
    layer = recorder.maps["down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor"]
    assert len(layer["vae"]) == 3  # one map per step
    assert layer["vae"][0].shape == (4, 16, 12, 16 * 12)  # 2 images x (unconditional, conditional)
    outside = layer["vae"][0][:, :4].sum(-1)  # rows above the warped garment (mask rows 16:48)
    assert (outside == 0).all()


def test_bad_inputs_name_the_argument(pipe):
    batch = person_batch()
    with pytest.raises(ValueError, match="warped_mask"):
        pipe(**{**batch, "warped_mask": batch["warped_mask"].repeat(1, 3, 1, 1)})
    with pytest.raises(ValueError, match="cloth has batch 2"):
        pipe(**{**batch, "cloth": batch["cloth"].repeat(2, 1, 1, 1)})
    with pytest.raises(ValueError, match="multiple of the VAE"):
        pipe(**{k: v[..., :62, :] for k, v in batch.items()})
    with pytest.raises(ValueError, match="output_type"):
        pipe(**batch, output_type="latent")


def test_pipeline_checks_the_unet_matches_the_adapter(pipe):
    components = dict(pipe.components)
    with pytest.raises(ValueError, match="adapter.install"):
        GarDiffPipeline(**{**components, "unet": make_unet(CI)})
    other = GarmentAdapter.from_profile(CI, mask_branches=("clip", "vae"))
    with pytest.raises(ValueError, match="installed with"):
        GarDiffPipeline(**{**components, "adapter": other})


# How far a loaded pipeline's samples may stray, and why. from_pretrained copies every weight
# into memory of its own (gardiffmini.models.memory.own_memory), so the loaded pipeline runs the
# same kernels on the same bits and its samples were identical (max difference 0, Intel Xeon).
# Before that copy, weights left at unaligned addresses changed batch-1 Linear outputs by one
# ulp on an AMD EPYC (1.8e-7, FINDINGS.md), and samples by 6.6e-7 (plain VAE) and 1.3e-5 (the
# shortcut VAE). Emulated on the Xeon by nudging Linear outputs one ulp (torch.nextafter): the
# CLIP projection and the adapter's projection alone 6.6e-7 / 1.4e-5, every Linear layer 8.6e-7
# / 2.1e-5. The tolerances sit 5x above the emulated worst case, far below what a loading
# error does (one garment processor's to_v_vae lost: 0.23 / 1.0).
ROUND_TRIP_ATOL = {"plain": 5e-6, "shortcut": 1e-4}


def assert_loaded_weights_identical(loaded: GarDiffPipeline, saved: GarDiffPipeline) -> None:
    """Every weight of every component back bit for bit, each in memory of its own."""
    for name in ("unet", "vae", "image_encoder", "adapter"):
        expected = getattr(saved, name).state_dict()
        weights = getattr(loaded, name).state_dict()
        assert weights.keys() == expected.keys(), name
        for key, value in weights.items():
            assert torch.equal(value, expected[key]), f"{name}.{key}"
            assert value.data_ptr() % 64 == 0, f"{name}.{key} left at an unaligned address"


@pytest.mark.parametrize("use_vae_tokens", [True, False])
def test_save_and_load_round_trip(tmp_path, use_vae_tokens):
    pipe = tiny_pipeline(use_vae_tokens)
    expected = sample(pipe)
    pipe.save_pretrained(tmp_path)
    loaded = GarDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert len(garment_processors(loaded.unet)) == (4 if use_vae_tokens else 0)
    assert_loaded_weights_identical(loaded, pipe)
    torch.testing.assert_close(sample(loaded), expected, atol=ROUND_TRIP_ATOL["plain"], rtol=0)


def test_a_pipeline_with_the_shortcut_vae_round_trips(tmp_path):
    from gardiffmini.models.vae import ShortcutAutoencoderKL, make_vae

    pipe = tiny_pipeline(True)
    torch.manual_seed(0)
    pipe = GarDiffPipeline(**{**pipe.components, "vae": make_vae(CI).eval()})
    pipe.set_progress_bar_config(disable=True)
    expected = sample(pipe)
    pipe.save_pretrained(tmp_path)
    loaded = GarDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.vae, ShortcutAutoencoderKL)
    assert_loaded_weights_identical(loaded, pipe)
    torch.testing.assert_close(sample(loaded), expected, atol=ROUND_TRIP_ATOL["shortcut"],
                               rtol=0)


def pose_pipeline(pipe: GarDiffPipeline) -> GarDiffPipeline:
    """``pipe`` with its UNet given the DensePose channels, at zero (as training starts)."""
    unet = add_input_channels(copy.deepcopy(pipe.unet), POSE_CHANNELS)
    posed = GarDiffPipeline(**{**pipe.components, "unet": unet})
    posed.set_progress_bar_config(disable=True)
    return posed


def densepose(batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(5)) * 2 - 1


def test_a_pose_pipeline_needs_the_densepose_and_samples_with_it(pipe, baseline):
    posed = pose_pipeline(pipe)
    assert posed.needs_densepose and not pipe.needs_densepose
    with pytest.raises(ValueError, match="densepose is missing: this UNet was trained with "
                                         "pose_input"):
        sample(posed)
    with pytest.raises(ValueError, match="densepose was given, but this UNet has no pose"):
        sample(pipe, densepose=densepose())
    with pytest.raises(ValueError, match="densepose has batch 2"):
        sample(posed, densepose=densepose(2))
    with pytest.raises(ValueError, match=r"densepose has values in"):
        sample(posed, densepose=(densepose() + 1) * 127.5)
    # the new input weights are zero: the DensePose changes nothing until training
    assert torch.equal(sample(posed, densepose=densepose()), baseline)
    with torch.no_grad():
        posed.unet.conv_in.weight[:, 12:].normal_(generator=torch.Generator().manual_seed(0))
    for guidance_scale in (2.0, 1.0):
        images = sample(posed, batch=2, densepose=densepose(2), guidance_scale=guidance_scale)
        assert images.shape == (2, 3, HEIGHT, WIDTH) and torch.isfinite(images).all()
    moved = sample(posed, densepose=densepose())
    assert not torch.allclose(moved, sample(posed, densepose=-densepose()))


@pytest.mark.parametrize(("extra", "expected"), [
    (0, (False, False)), (POSE_CHANNELS, (True, False)), (4, (False, True)),
    (4 + POSE_CHANNELS, (True, True)),
])
def test_person_inputs_tells_the_conditions_apart_by_their_count(extra, expected):
    assert person_inputs(12 + extra, 4) == expected
    with pytest.raises(ValueError, match="reads no known conditions"):
        person_inputs(12 + 1, 4)


def test_tryon_unet_input_appends_the_skin_after_the_pose():
    x_t, warped, agnostic = (torch.full((1, 4, 2, 2), v) for v in (0.0, 1.0, 2.0))
    pose, skin = torch.full((1, POSE_CHANNELS, 2, 2), 3.0), torch.full((1, 4, 2, 2), 4.0)
    both = tryon_unet_input(x_t, warped, agnostic, pose, skin)
    assert both.shape == (1, 12 + POSE_CHANNELS + 4, 2, 2)
    assert both[:, 12:15].eq(3).all() and both[:, 15:].eq(4).all()
    assert torch.equal(tryon_unet_input(x_t, warped, agnostic, skin=skin)[:, 12:], skin)


def test_a_skin_pipeline_needs_the_skin_colour_and_samples_with_it(pipe):
    skinned = GarDiffPipeline(**{**pipe.components,
                                 "unet": add_input_channels(copy.deepcopy(pipe.unet), 4)})
    skinned.set_progress_bar_config(disable=True)
    assert skinned.needs_skin_colour and not skinned.needs_densepose
    assert not pipe.needs_skin_colour
    mask = torch.zeros(1, 1, HEIGHT, WIDTH)
    mask[:, :, 8:56] = 1
    colour = torch.tensor([[0.4, 0.1, -0.2]])
    with pytest.raises(ValueError, match="skin_colour is missing: this UNet was trained with "
                                         "skin_input"):
        sample(skinned, agnostic_mask=mask)
    with pytest.raises(ValueError, match="skin_colour was given, but this UNet has no skin"):
        sample(pipe, agnostic_mask=mask, skin_colour=colour)
    with pytest.raises(ValueError, match="skin_colour needs agnostic_mask"):
        sample(skinned, skin_colour=colour)
    with pytest.raises(ValueError, match=r"skin_colour must be a tensor of shape \(1, 3\)"):
        sample(skinned, agnostic_mask=mask, skin_colour=colour[0])
    with pytest.raises(ValueError, match="skin_colour has values in"):
        sample(skinned, agnostic_mask=mask, skin_colour=colour * 255)
    # the new input weights are zero: the skin colour changes nothing until training
    assert torch.equal(sample(skinned, agnostic_mask=mask, skin_colour=colour),
                       sample(pipe, agnostic_mask=mask))
    with torch.no_grad():
        skinned.unet.conv_in.weight[:, 12:].normal_(generator=torch.Generator().manual_seed(0))
    moved = sample(skinned, agnostic_mask=mask, skin_colour=colour)
    assert not torch.allclose(moved, sample(skinned, agnostic_mask=mask, skin_colour=-colour))


def test_person_latents_are_the_pose_on_the_latent_grid_and_the_primed_latent(pipe):
    both = GarDiffPipeline(**{**pipe.components, "unet": add_input_channels(
        copy.deepcopy(pipe.unet), POSE_CHANNELS + 4)})
    agnostic = person_batch()["agnostic"]
    mask = torch.zeros(1, 1, HEIGHT, WIDTH)
    mask[:, :, 8:56] = 1
    colour = torch.tensor([[0.4, 0.1, -0.2]])
    pose, skin = both.person_latents(agnostic, mask, densepose(), colour)
    latent_size = (HEIGHT // both.vae_scale_factor, WIDTH // both.vae_scale_factor)
    torch.testing.assert_close(pose, pose_latent(densepose(), latent_size), rtol=0, atol=0)
    primed = skin_primed_agnostic(agnostic, mask, colour)  # by hand: E of the primed image
    torch.testing.assert_close(skin, encode_latents(both.vae, primed), rtol=0, atol=0)
    assert both.person_latents(agnostic) == (None, None)  # nothing given, nothing read


def test_a_paste_warp_pipeline_pastes_the_warp_into_its_skin_latent(pipe, tmp_path):
    with pytest.raises(ValueError, match="paste_warp pastes the warp into the skin-primed "
                                         "agnostic image, but this UNet has no skin channels"):
        GarDiffPipeline(**pipe.components, paste_warp=True)
    components = {**pipe.components, "unet": add_input_channels(copy.deepcopy(pipe.unet), 4)}
    primed_only = GarDiffPipeline(**components)
    pasted = GarDiffPipeline(**components, paste_warp=True)
    assert pasted.config.paste_warp and not primed_only.config.paste_warp
    images = person_batch()
    mask = torch.zeros(1, 1, HEIGHT, WIDTH)
    mask[:, :, 8:56] = 1
    colour = torch.tensor([[0.4, 0.1, -0.2]])
    with pytest.raises(ValueError, match="trained with paste_warp: its skin latent needs "
                                         "warped_cloth and warped_mask"):
        pasted.person_latents(images["agnostic"], mask, skin_colour=colour)
    _, skin = pasted.person_latents(images["agnostic"], mask, skin_colour=colour,
                                    warped_cloth=images["warped_cloth"],
                                    warped_mask=images["warped_mask"])
    primed = skin_primed_agnostic(images["agnostic"], mask, colour)  # by hand
    by_hand = images["warped_mask"] * images["warped_cloth"] + (1 - images["warped_mask"]) * primed
    torch.testing.assert_close(skin, encode_latents(pasted.vae, by_hand), rtol=0, atol=0)
    # without paste_warp the warp is not read, even where given
    _, plain = primed_only.person_latents(images["agnostic"], mask, skin_colour=colour,
                                          warped_cloth=images["warped_cloth"],
                                          warped_mask=images["warped_mask"])
    torch.testing.assert_close(plain, encode_latents(pasted.vae, primed), rtol=0, atol=0)
    with torch.no_grad():  # trained-looking skin weights: the pasted latent changes the sample
        pasted.unet.conv_in.weight[:, 12:].normal_(generator=torch.Generator().manual_seed(0))
    pasted.set_progress_bar_config(disable=True)
    primed_only.set_progress_bar_config(disable=True)
    assert not torch.allclose(sample(pasted, agnostic_mask=mask, skin_colour=colour),
                              sample(primed_only, agnostic_mask=mask, skin_colour=colour))
    pasted.save_pretrained(tmp_path)
    assert GarDiffPipeline.from_pretrained(tmp_path).config.paste_warp is True
