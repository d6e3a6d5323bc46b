"""The appearance loss (chapter 6): x0 estimate, Sobel, DISTS-style spatial loss, frozen decoder."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler
from imaging import gaussian_blur

from gardiffmini.features import OrientedFilterBank, VGG16Features, default_features
from gardiffmini.losses import (
    FrozenDecoder,
    appearance_loss,
    ddim_x0_estimate,
    gardiff_loss,
    high_frequency_loss,
    noise_mse,
    sobel_edges,
    spatial_loss,
)

H, W = 64, 48


@pytest.fixture
def textured():
    """A striped, noisy person-like image in [-1, 1] and a garment mask."""
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(W).float()
    stripes = 0.3 * torch.sin(2 * math.pi * x / 5).expand(2, 3, H, W)
    image = (stripes + 0.4 * torch.rand(2, 3, H, W, generator=generator) - 0.2).clamp(-1, 1)
    mask = torch.zeros(2, 1, H, W)
    mask[..., 16:48, 10:38] = 1
    return image, mask


def reference_sobel(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain loops, replicate padding, cross-correlation."""
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float)
    padded = np.pad(image, 1, mode="edge")
    gx, gy = np.zeros_like(image), np.zeros_like(image)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            patch = padded[i:i + 3, j:j + 3]
            gx[i, j] = (patch * kx).sum()
            gy[i, j] = (patch * kx.T).sum()
    return gx, gy


def test_noise_mse_matches_mean_square():
    a, b = torch.randn(2, 4, 8, 6), torch.randn(2, 4, 8, 6)
    assert noise_mse(a, b).item() == pytest.approx(((a - b) ** 2).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="eps_pred"):
        noise_mse(a, b[:1])


def test_ddim_x0_estimate_matches_hand_computation():
    abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    timesteps = torch.tensor([0, 10, 500, 999])
    generator = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(4, 4, 8, 6, generator=generator), torch.randn(4, 4, 8, 6,
                                                                         generator=generator)
    x0 = ddim_x0_estimate(x_t, eps, timesteps, abar)
    for i, t in enumerate(timesteps.tolist()):
        a = float(abar[t])
        expected = (x_t[i] - math.sqrt(1 - a) * eps[i]) / math.sqrt(a)
        # at t = 999, 1 / sqrt(abar) ~ 157 magnifies float32 rounding: compare relatively
        torch.testing.assert_close(x0[i], expected, rtol=1e-5, atol=1e-5 / math.sqrt(a))


def test_ddim_x0_estimate_matches_ddim_scheduler_step():
    scheduler = DDIMScheduler(num_train_timesteps=1000, clip_sample=False)  # latents: no clip
    scheduler.set_timesteps(20)
    x_t, eps = torch.randn(2, 4, 8, 6), torch.randn(2, 4, 8, 6)
    for t in scheduler.timesteps[::4]:
        expected = scheduler.step(eps, t, x_t).pred_original_sample
        ours = ddim_x0_estimate(x_t, eps, torch.full((2,), int(t)), scheduler.alphas_cumprod)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_ddim_x0_estimate_rejects_bad_inputs():
    abar = DDPMScheduler(num_train_timesteps=100).alphas_cumprod
    x = torch.randn(2, 4, 8, 6)
    with pytest.raises(ValueError, match="x_t"):
        ddim_x0_estimate(x, x[:, :3], torch.tensor([1, 2]), abar)
    with pytest.raises(ValueError, match="LongTensor"):
        ddim_x0_estimate(x, x, torch.tensor([1.0, 2.0]), abar)
    with pytest.raises(ValueError, match="LongTensor"):
        ddim_x0_estimate(x, x, torch.tensor([1, 2, 3]), abar)
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        ddim_x0_estimate(x, x, torch.tensor([1, 100]), abar)


def test_sobel_edges_match_plain_loops():
    image = torch.rand(1, 2, 7, 5, generator=torch.Generator().manual_seed(1))
    gx, gy = sobel_edges(image)
    assert gx.shape == gy.shape == image.shape
    for c in range(2):
        ref_x, ref_y = reference_sobel(image[0, c].double().numpy())
        np.testing.assert_allclose(gx[0, c].numpy(), ref_x, atol=1e-5)
        np.testing.assert_allclose(gy[0, c].numpy(), ref_y, atol=1e-5)
    ramp = torch.arange(W).float().expand(1, 1, H, W)  # slope 1 to the right
    gx, gy = sobel_edges(ramp)
    assert torch.allclose(gx[..., 1:-1], torch.tensor(8.0)) and gy.abs().max() == 0
    with pytest.raises(ValueError, match="images"):
        sobel_edges(torch.rand(3, H, W))


def test_high_frequency_loss_matches_plain_reference(textured):
    image, mask = textured
    pred = gaussian_blur(image, 1.0)
    loss = high_frequency_loss(pred, image)
    masked = high_frequency_loss(pred, image, mask)
    diffs_x, diffs_y, weights = [], [], []
    for b in range(2):
        for c in range(3):
            px, py = reference_sobel(pred[b, c].double().numpy())
            tx, ty = reference_sobel(image[b, c].double().numpy())
            diffs_x.append(np.abs(px - tx))
            diffs_y.append(np.abs(py - ty))
            weights.append(mask[b, 0].double().numpy())
    dx, dy, w = np.stack(diffs_x), np.stack(diffs_y), np.stack(weights)
    assert loss.item() == pytest.approx(dx.mean() + dy.mean(), rel=1e-4)
    expected = (dx * w).sum() / w.sum() + (dy * w).sum() / w.sum()
    assert masked.item() == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError, match="mask"):
        high_frequency_loss(pred, image, mask[:, :, :32])


def reference_spatial_loss(pred, target, mask, maps_fn, alpha=None, beta=None,
                           c1=1e-6, c2=1e-6) -> float:
    """Per sample, per map, per channel: weighted DISTS statistics in numpy."""
    pred_maps, target_maps = maps_fn((pred + 1) / 2), maps_fn((target + 1) / 2)
    n = sum(m.shape[1] for m in pred_maps)
    if alpha is None:
        alpha = beta = np.ones(n)  # equal weights
    total_weight = alpha.sum() + beta.sum()
    alpha, beta = alpha / total_weight, beta / total_weight
    distances = []
    for b in range(pred.shape[0]):
        total, k = 0.0, 0
        for x_map, y_map in zip(pred_maps, target_maps, strict=True):
            h, w = x_map.shape[-2:]
            m = mask[b, 0].double().numpy()
            factor = m.shape[0] // h
            m = m.reshape(h, factor, w, factor).mean(axis=(1, 3))  # block average
            m = m / m.sum()
            for c in range(x_map.shape[1]):
                x, y = x_map[b, c].double().numpy(), y_map[b, c].double().numpy()
                mx, my = (m * x).sum(), (m * y).sum()
                vx, vy = (m * (x - mx) ** 2).sum(), (m * (y - my) ** 2).sum()
                cov = (m * (x - mx) * (y - my)).sum()
                total += alpha[k] * (2 * mx * my + c1) / (mx**2 + my**2 + c1)
                total += beta[k] * (2 * cov + c2) / (vx + vy + c2)
                k += 1
        distances.append(1 - total)
    return float(np.mean(distances))


def test_spatial_loss_matches_plain_reference(textured):
    image, mask = textured
    pred = gaussian_blur(image, 1.5)

    def maps_fn(x):
        return [x, F.avg_pool2d(x, 2) ** 2]

    loss = spatial_loss(pred, image, mask, maps_fn)
    assert loss.item() == pytest.approx(reference_spatial_loss(pred, image, mask, maps_fn),
                                        rel=1e-4)
    class WeightedMaps(torch.nn.Module):  # a feature network carrying DISTS-style weights
        def __init__(self):
            super().__init__()
            generator = torch.Generator().manual_seed(5)
            self.alpha, self.beta = torch.rand(2, 6, generator=generator)

        def forward(self, x):
            return maps_fn(x)

    weighted = WeightedMaps()
    expected = reference_spatial_loss(pred, image, mask, maps_fn, weighted.alpha.double().numpy(),
                                      weighted.beta.double().numpy())
    assert spatial_loss(pred, image, mask, weighted).item() == pytest.approx(expected, rel=1e-4)
    weighted.alpha = torch.ones(5)
    with pytest.raises(ValueError, match="one per feature channel"):
        spatial_loss(pred, image, mask, weighted)
    with pytest.raises(ValueError, match="pred"):
        spatial_loss(pred[:, :, :32], image, mask, maps_fn)
    with pytest.raises(ValueError, match="mask"):
        spatial_loss(pred, image, mask * 2, maps_fn)


def test_losses_are_zero_for_identical_images(textured):
    image, mask = textured
    assert spatial_loss(image, image, mask, default_features()).abs().item() < 1e-5
    assert spatial_loss(image, image, None, default_features()).abs().item() < 1e-5
    assert high_frequency_loss(image, image).item() == 0


def test_losses_grow_with_blur_of_the_garment_region(textured):
    image, mask = textured
    features = default_features()
    spatial, high_freq = [], []
    for sigma in (0.5, 1.0, 1.5, 2.0, 3.0):
        blurred = image * (1 - mask) + gaussian_blur(image, sigma) * mask
        spatial.append(spatial_loss(blurred, image, mask, features).item())
        high_freq.append(high_frequency_loss(blurred, image).item())
    assert all(a < b for a, b in zip(spatial, spatial[1:], strict=False)), spatial
    assert all(a < b for a, b in zip(high_freq, high_freq[1:], strict=False)), high_freq
    assert spatial[0] > 0


def test_mask_focuses_spatial_loss_on_the_garment(textured):
    image, mask = textured
    features = default_features()
    blurred = gaussian_blur(image, 2.0)
    inside = image * (1 - mask) + blurred * mask
    outside = image * mask + blurred * (1 - mask)
    assert (spatial_loss(outside, image, mask, features)
            < 0.25 * spatial_loss(inside, image, mask, features))


def test_oriented_filter_bank_shapes_and_orientation():
    bank = OrientedFilterBank(n_scales=3, n_orientations=4)
    x = torch.arange(W).float()
    vertical_stripes = (0.5 + 0.5 * torch.cos(2 * math.pi * x / 4)).expand(1, 3, H, W)
    maps = bank(vertical_stripes)
    assert [tuple(m.shape) for m in maps] == [(1, 39, 64, 48), (1, 39, 32, 24), (1, 39, 16, 12)]
    assert all((m >= 0).all() for m in maps)
    energy = maps[0][0, 27:31, 8:-8, 8:-8].mean(dim=(1, 2))  # red channel's 4 orientations
    assert energy.argmax() == 0 and energy[0] > 5 * energy[2]  # 0 rad: varies along x
    torch.testing.assert_close(bank(vertical_stripes)[1], maps[1])
    with pytest.raises(ValueError, match="min"):
        bank(torch.rand(1, 3, 16, 12))


def test_vgg16_features_load_a_torchvision_state_dict(tmp_path):
    source = VGG16Features()
    state = {f"features.{k}": v for k, v in source.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(state, path)
    loaded = VGG16Features.from_file(path)
    torch.testing.assert_close(loaded.features[28].weight, source.features[28].weight)
    torchvision_convs = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    assert list(source.features.state_dict()) == [
        f"{i}.{name}" for i in torchvision_convs for name in ("weight", "bias")
    ]
    maps = loaded(torch.rand(1, 3, H, W))
    assert [m.shape[1] for m in maps] == [3, 64, 128, 256, 512, 512]
    assert maps[-1].shape[-2:] == (4, 3)
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.alpha is None
    dists = VGG16Features.from_file(path, dists_weights=True)  # torchmetrics' learned weights
    assert dists.alpha.shape == dists.beta.shape == (sum(m.shape[1] for m in maps),)
    image = torch.rand(1, 3, H, W) * 2 - 1
    assert spatial_loss(image, image, None, dists).abs().item() < 1e-5
    assert spatial_loss(gaussian_blur(image, 1.5), image, None, dists).item() > 0.01
    with pytest.raises(FileNotFoundError, match="vgg16"):
        VGG16Features.from_file(tmp_path / "missing.pth")
    torch.save({"0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        VGG16Features.from_file(tmp_path / "bad.pth")


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4,
    )


def test_appearance_loss_reaches_x0_hat_but_not_the_decoder(textured):
    image, mask = textured
    vae = tiny_vae()
    decoder = FrozenDecoder(vae)
    decoder.train()
    assert not decoder.vae.training
    x0_hat = torch.randn(2, 4, H // 2, W // 2, requires_grad=True)
    losses = appearance_loss(x0_hat, image, mask, decoder, default_features(), 0.18215)
    assert set(losses) == {"spatial", "high_freq", "total"}
    torch.testing.assert_close(losses["total"], losses["spatial"] + losses["high_freq"])
    losses["total"].backward()
    assert x0_hat.grad is not None and x0_hat.grad.abs().sum() > 0
    assert torch.isfinite(x0_hat.grad).all()
    assert all(p.grad is None for p in vae.parameters())
    with pytest.raises(ValueError, match="frozen"):
        appearance_loss(x0_hat, image, mask, tiny_vae().decoder, default_features(), 1.0)
    with pytest.raises(ValueError, match="target_images"):
        appearance_loss(x0_hat, image[:, :, :32], mask, decoder, default_features(), 1.0)


def test_gardiff_loss_combines_the_terms(textured):
    image, mask = textured
    vae = tiny_vae().requires_grad_(False)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    generator = torch.Generator().manual_seed(3)
    eps = torch.randn(2, 4, H // 2, W // 2, generator=generator)
    eps_pred = (eps + 0.1 * torch.randn(eps.shape, generator=generator)).requires_grad_()
    x_t = torch.randn(eps.shape, generator=generator)
    timesteps = torch.tensor([5, 700])
    losses = gardiff_loss(eps_pred, eps, x_t, timesteps, scheduler.alphas_cumprod, image, mask,
                          decoder=lambda z: vae.decode(z).sample, features=default_features(),
                          lam=0.5, scaling_factor=0.5)
    x0_hat = ddim_x0_estimate(x_t, eps_pred, timesteps, scheduler.alphas_cumprod)
    decoded = vae.decode(x0_hat / 0.5).sample
    spatial = spatial_loss(decoded, image, mask, default_features())
    high_freq = high_frequency_loss(decoded, image)
    torch.testing.assert_close(losses["spatial"], spatial)
    torch.testing.assert_close(losses["high_freq"], high_freq)
    expected = noise_mse(eps_pred, eps) + 0.5 * (spatial + high_freq)
    torch.testing.assert_close(losses["total"], expected)
    losses["total"].backward()
    assert eps_pred.grad is not None and all(p.grad is None for p in vae.parameters())


def test_spatial_loss_with_vgg16_and_learned_weights_is_torchmetrics_dists(monkeypatch):
    """Unmasked, with DISTS's weights, L_spatial equals torchmetrics' DISTS on the same VGG."""
    from types import SimpleNamespace

    from torchmetrics.functional.image import dists as tm_dists

    from gardiffmini.features import dists_channel_weights

    torch.manual_seed(0)
    ours = VGG16Features()
    ours.alpha, ours.beta = dists_channel_weights()
    # torchmetrics builds DISTS from torchvision's vgg16().features: hand it ours instead
    monkeypatch.setattr(tm_dists, "_TORCHVISION_AVAILABLE", True)
    monkeypatch.setattr(tm_dists, "VGG16_Weights", SimpleNamespace(DEFAULT=None), raising=False)
    monkeypatch.setattr(tm_dists, "vgg16", lambda weights: SimpleNamespace(features=ours.features),
                        raising=False)
    x, y = torch.rand(2, 3, H, W), torch.rand(2, 3, H, W)
    expected = tm_dists.DISTSNetwork()(x, y).mean()
    torch.testing.assert_close(spatial_loss(2 * x - 1, 2 * y - 1, None, ours), expected,
                               rtol=1e-4, atol=1e-6)


def test_appearance_samples_takes_the_appearance_terms_on_the_first_samples(textured):
    image, mask = textured
    scheduler = DDPMScheduler()
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 3, H, W, generator=generator)
    eps = torch.randn(2, 3, H, W, generator=generator)
    timesteps = torch.tensor([10, 500])
    x_t = scheduler.add_noise(latents, eps, timesteps)
    common = dict(alphas_cumprod=scheduler.alphas_cumprod, decoder=lambda z: z,
                  features=default_features(), lam=0.5)
    first = gardiff_loss(eps * 0.9, eps, x_t, timesteps, target_images=image,
                         garment_mask=mask, appearance_samples=1, **common)
    only_first = gardiff_loss(eps[:1] * 0.9, eps[:1], x_t[:1], timesteps[:1],
                              target_images=image[:1], garment_mask=mask[:1], **common)
    torch.testing.assert_close(first["appearance"], only_first["appearance"])
    torch.testing.assert_close(first["mse"], noise_mse(eps * 0.9, eps))


def test_max_timestep_takes_the_appearance_terms_on_the_samples_below_it(textured):
    image, mask = textured
    image, mask = image.repeat(2, 1, 1, 1)[:3], mask.repeat(2, 1, 1, 1)[:3]
    scheduler = DDPMScheduler()
    generator = torch.Generator().manual_seed(2)
    latents = torch.randn(3, 3, H, W, generator=generator)
    eps = torch.randn(3, 3, H, W, generator=generator)
    timesteps = torch.tensor([700, 150, 20])
    x_t = scheduler.add_noise(latents, eps, timesteps)
    common = dict(alphas_cumprod=scheduler.alphas_cumprod, decoder=lambda z: z,
                  features=default_features(), lam=0.5)
    below = gardiff_loss(eps * 0.9, eps, x_t, timesteps, target_images=image, garment_mask=mask,
                         appearance_samples=1, max_timestep=200, **common)
    second = gardiff_loss(eps[1:2] * 0.9, eps[1:2], x_t[1:2], timesteps[1:2],
                          target_images=image[1:2], garment_mask=mask[1:2], **common)
    torch.testing.assert_close(below["appearance"], second["appearance"])
    torch.testing.assert_close(below["mse"], noise_mse(eps * 0.9, eps))
    # no sample below it: the appearance terms are zero and the loss is the noise term alone
    none = gardiff_loss(eps * 0.9, eps, x_t, timesteps, target_images=image, garment_mask=mask,
                        max_timestep=10, **common)
    assert none["appearance"].item() == none["spatial"].item() == none["high_freq"].item() == 0
    torch.testing.assert_close(none["total"], noise_mse(eps * 0.9, eps))
