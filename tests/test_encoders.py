import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from gardiffmini.data import garments
from gardiffmini.data.toyviton import generate
from gardiffmini.models import encoders
from gardiffmini.models import vae as vae_model
from gardiffmini.profiles import get_profile

CI = get_profile("ci")


@pytest.fixture(scope="module")
def tokenizer():
    return encoders.build_tokenizer()


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "toyviton-ci"
    return generate(root, CI, n_train=12, n_test=4, workers=1, progress=False)


STRIPED = {"category": "long-sleeve top", "colors": ["red", "navy"], "pattern": "stripes",
           "stripe_frequency": 16, "stripe_angle": 45, "neckline": "round", "length": "regular"}


def test_caption_reads_the_attributes():
    assert encoders.caption(STRIPED) == (
        "a red long-sleeve top with a round neck and thin diagonal navy stripes")
    plain = {**STRIPED, "pattern": "plain", "colors": ["grey"], "length": "cropped"}
    assert encoders.caption(plain) == "a cropped plain grey long-sleeve top with a round neck"
    text = {**STRIPED, "pattern": "text", "text": "NYC", "category": "t-shirt"}
    assert encoders.caption(text).endswith("t-shirt with a round neck and navy printed text")
    wide = {**STRIPED, "stripe_frequency": 3, "stripe_angle": 90}
    assert "wide vertical navy stripes" in encoders.caption(wide)


def test_caption_rejects_incomplete_attributes():
    with pytest.raises(KeyError, match="pattern"):
        encoders.caption({"category": "t-shirt", "colors": ["red"]})
    with pytest.raises(ValueError, match="unknown pattern"):
        encoders.caption({**STRIPED, "pattern": "paisley"})


def test_frequency_bins_cover_every_toyviton_frequency():
    bins = [encoders.frequency_bin(f) for f in garments.STRIPE_FREQUENCIES]
    assert bins == ["wide", "wide", "medium", "medium", "thin", "thin"]
    with pytest.raises(ValueError, match="positive"):
        encoders.frequency_bin(0)


def test_tokenizer_round_trip_without_unknown_words(tokenizer, tmp_path):
    rng = np.random.default_rng(0)
    captions = [encoders.caption(garments.sample_attributes(rng)) for _ in range(200)]
    ids = tokenizer(captions)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert all(row[0] == tokenizer.bos_token_id and row[-1] == tokenizer.eos_token_id
               for row in ids)
    assert max(len(row) for row in ids) <= encoders.MAX_CAPTION_TOKENS
    assert tokenizer.decode(ids[0], skip_special_tokens=True) == captions[0]
    tokenizer.save_pretrained(tmp_path)
    reloaded = type(tokenizer).from_pretrained(tmp_path)
    assert reloaded(captions)["input_ids"] == ids
    assert tokenizer.eos_token_id != 2  # CLIP treats eos id 2 as a legacy argmax


@pytest.mark.parametrize("name", ["ci", "cpu", "gpu"])
def test_encoder_shapes_at_every_profile(name, tokenizer):
    profile = get_profile(name)
    vae = vae_model.make_vae(profile)
    image_encoder = encoders.clip_image_encoder(encoders.make_clip(profile, tokenizer))
    images = torch.rand(2, 3, profile.height, profile.width) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mode()
        embeds = encoders.clip_image_embeds(image_encoder, images)
    assert latents.shape == (2, profile.latent_channels, *profile.latent_size)
    assert embeds.shape == (2, profile.clip_embed_dim)


def test_paper_profile_config_matches_stable_diffusion_and_vit_h(tokenizer):
    profile = get_profile("paper")
    assert profile.vae_factor == 8 and profile.latent_size == (64, 48)
    assert encoders.clip_image_side(profile) == 378  # 27 patches of 14
    clip = encoders.make_clip(get_profile("ci"), tokenizer)
    assert clip.config.text_config.eos_token_id == tokenizer.eos_token_id


def test_clip_image_encoder_matches_the_clip_model(tokenizer):
    profile = get_profile("ci")
    torch.manual_seed(0)
    clip = encoders.make_clip(profile, tokenizer).eval()
    images = torch.rand(3, 3, profile.height, profile.width) * 2 - 1
    pixels = encoders.clip_pixel_values(images, encoders.clip_image_side(profile))
    with torch.no_grad():
        expected = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
        actual = encoders.clip_image_embeds(encoders.clip_image_encoder(clip), images)
    torch.testing.assert_close(actual, expected)


def test_clip_pixel_values_rejects_images_outside_minus_one_one():
    with pytest.raises(ValueError, match=r"\[-1.0, 1.0\]"):
        encoders.clip_pixel_values(torch.full((1, 3, 8, 8), 2.0), 8)
    with pytest.raises(ValueError, match="3 channels"):
        encoders.clip_pixel_values(torch.zeros(1, 1, 8, 8), 8)


def test_pretrained_round_trip_through_local_folders(tmp_path, tokenizer):
    profile = get_profile("ci")
    torch.manual_seed(0)
    vae = vae_model.make_vae(profile).eval()
    image_encoder = encoders.clip_image_encoder(encoders.make_clip(profile, tokenizer))
    vae.save_pretrained(tmp_path / "sd" / "vae")
    image_encoder.save_pretrained(tmp_path / "ip" / "models" / "image_encoder")
    image_encoder.save_pretrained(tmp_path / "flat")
    images = torch.rand(2, 3, profile.height, profile.width) * 2 - 1
    loaded_vae = vae_model.load_pretrained_vae(tmp_path / "sd")
    loaded_clip = encoders.load_pretrained_clip_image_encoder(tmp_path / "ip")
    flat_clip = encoders.load_pretrained_clip_image_encoder(tmp_path / "flat")
    with torch.no_grad():
        torch.testing.assert_close(loaded_vae.encode(images).latent_dist.mode(),
                                   vae.encode(images).latent_dist.mode())
        expected = encoders.clip_image_embeds(image_encoder, images)
        torch.testing.assert_close(encoders.clip_image_embeds(loaded_clip, images), expected)
        torch.testing.assert_close(encoders.clip_image_embeds(flat_clip, images), expected)
    with pytest.raises(FileNotFoundError, match="config.json"):
        vae_model.load_pretrained_vae(tmp_path / "ip")


def test_clip_contrastive_loss_matches_a_hand_written_reference():
    torch.manual_seed(0)
    image, text, scale = torch.randn(5, 7), torch.randn(5, 7), torch.tensor(math.log(10.0))
    expected = 0.0
    for i in range(5):
        sims = [10.0 * F.cosine_similarity(image[i], text[j], dim=0) for j in range(5)]
        expected -= torch.log(torch.exp(sims[i]) / sum(torch.exp(s) for s in sims)) / 10
        sims = [10.0 * F.cosine_similarity(text[i], image[j], dim=0) for j in range(5)]
        expected -= torch.log(torch.exp(sims[i]) / sum(torch.exp(s) for s in sims)) / 10
    torch.testing.assert_close(encoders.clip_contrastive_loss(image, text, scale), expected)
    with pytest.raises(ValueError, match="both be"):
        encoders.clip_contrastive_loss(image, text[:4], scale)


def test_clip_contrastive_loss_agrees_with_transformers(tokenizer):
    profile = get_profile("ci")
    torch.manual_seed(0)
    clip = encoders.make_clip(profile, tokenizer).eval()
    captions = [encoders.caption({**STRIPED, "colors": [c, "navy"]}) for c in ("red", "blue")]
    tokens = tokenizer(captions, padding=True, return_tensors="pt")
    images = torch.rand(2, 3, profile.height, profile.width) * 2 - 1
    pixels = encoders.clip_pixel_values(images, encoders.clip_image_side(profile))
    with torch.no_grad():
        output = clip(**tokens, pixel_values=pixels, return_loss=True)
        ours = encoders.clip_contrastive_loss(output.image_embeds, output.text_embeds,
                                              clip.logit_scale)
    torch.testing.assert_close(ours, output.loss)


def test_vae_loss_matches_a_reference():
    torch.manual_seed(0)
    target, reconstruction = torch.randn(2, 3, 8, 6), torch.randn(2, 3, 8, 6)
    mean, logvar = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2) * 0.1
    posterior = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean() / (3 * 8 * 6)
    rec = (reconstruction - target).abs().mean()
    out = vae_model.vae_loss(reconstruction, target, posterior, kl_weight=0.5)
    torch.testing.assert_close(out["kl"], kl)
    torch.testing.assert_close(out["loss"], rec + 0.5 * kl)
    with pytest.raises(ValueError, match="one shape"):
        vae_model.vae_loss(reconstruction[:1], target, posterior)


def test_load_images_and_attributes_follow_the_pair_file(toy_root):
    images = encoders.load_images(toy_root, "train", "cloth", (32, 24))
    attributes = encoders.load_attributes(toy_root, "train")
    assert images.shape == (12, 3, 32, 24) and images.dtype == torch.uint8
    assert len(attributes) == 12 and all("pattern" in a for a in attributes)
    with pytest.raises(Exception, match="not found"):
        encoders.load_attributes(toy_root / "missing", "train")


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("kind", ["vae", "clip"])
def test_interrupted_training_resumes_to_the_same_weights(kind, toy_root, tmp_path, monkeypatch):
    profile = get_profile("ci", vae_steps=4, clip_steps=4, batch_size=4, warmup_steps=2)
    train = encoders.train_vae if kind == "vae" else encoders.train_clip
    loss_name = "vae_loss" if kind == "vae" else "clip_contrastive_loss"
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "straight"))
    reference = _weights(train(profile, seed=3, data_root=toy_root, progress=False))

    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "interrupted"))
    real_loss, calls = getattr(encoders, loss_name), []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(encoders, loss_name, interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(profile, seed=3, data_root=toy_root, progress=False)
    monkeypatch.setattr(encoders, loss_name, real_loss)
    model = train(profile, seed=3, data_root=toy_root, progress=False)
    resumed = _weights(model)
    for key, value in reference.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0)

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr(encoders, loss_name, must_not_train)
    again = _weights(train(profile, seed=3, data_root=toy_root, progress=False))
    for key, value in reference.items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=0)
    if kind == "vae":  # latents scaled to unit variance, as Stable Diffusion's
        images = encoders.load_images(toy_root, "train", "cloth", profile.image_size)
        with torch.no_grad():
            latents = model.encode(encoders.to_float(images)).latent_dist.mode()
        assert 0.5 < float(latents.std() * model.config.scaling_factor) < 2.0


@torch.no_grad()
def test_vae_posterior_starts_nearly_deterministic():
    vae = vae_model.make_vae(CI)
    posterior = vae.encode(torch.rand(2, 3, 64, 48) * 2 - 1).latent_dist
    expected = math.exp(vae_model.INITIAL_LOG_VARIANCE / 2)
    assert posterior.std.mean().item() == pytest.approx(expected, rel=0.5)
