"""GarDiffPipeline: DDIM with classifier-free guidance, masked attention, save and load."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler
from PIL import Image
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from gardiffmini.models.adapter import GarmentAdapter
from gardiffmini.models.attention import AttentionRecorder, garment_processors
from gardiffmini.models.unet import make_unet
from gardiffmini.pipeline import GarDiffPipeline, encode_latents, tryon_unet_input

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
    unet = make_unet("ci")
    adapter = GarmentAdapter.from_profile("ci", use_vae_tokens=use_vae_tokens)
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


def test_encode_latents_is_the_scaled_posterior_mean(pipe):
    images = person_batch()["agnostic"]
    with torch.no_grad():
        expected = pipe.vae.encode(images).latent_dist.mean * pipe.vae.config.scaling_factor
        torch.testing.assert_close(encode_latents(pipe.vae, images), expected)


def test_images_in_unit_range_and_seeded(pipe, baseline):
    assert baseline.shape == (1, 3, HEIGHT, WIDTH)
    assert baseline.min() >= 0 and baseline.max() <= 1
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
        GarDiffPipeline(**{**components, "unet": make_unet("ci")})
    other = GarmentAdapter.from_profile("ci", mask_branches=("clip", "vae"))
    with pytest.raises(ValueError, match="installed with"):
        GarDiffPipeline(**{**components, "adapter": other})


@pytest.mark.parametrize("use_vae_tokens", [True, False])
def test_save_and_load_round_trip(tmp_path, use_vae_tokens):
    pipe = tiny_pipeline(use_vae_tokens)
    expected = sample(pipe)
    pipe.save_pretrained(tmp_path)
    loaded = GarDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert len(garment_processors(loaded.unet)) == (4 if use_vae_tokens else 0)
    original_weights = pipe.unet.state_dict()
    for key, value in loaded.unet.state_dict().items():
        assert torch.equal(value, original_weights[key]), key
    torch.testing.assert_close(sample(loaded), expected, atol=1e-6, rtol=0)


def test_a_pipeline_with_the_shortcut_vae_round_trips(tmp_path):
    from gardiffmini.models.vae import ShortcutAutoencoderKL, make_vae

    pipe = tiny_pipeline(True)
    torch.manual_seed(0)
    pipe = GarDiffPipeline(**{**pipe.components, "vae": make_vae("ci").eval()})
    pipe.set_progress_bar_config(disable=True)
    expected = sample(pipe)
    pipe.save_pretrained(tmp_path)
    loaded = GarDiffPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.vae, ShortcutAutoencoderKL)
    torch.testing.assert_close(sample(loaded), expected, atol=1e-6, rtol=0)
