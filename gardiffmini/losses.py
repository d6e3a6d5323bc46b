"""GarDiff's training objective: noise MSE plus the appearance loss on the DDIM estimate of x_0.

The equations (``shared/GARDIFF.md``, "Appearance loss on the DDIM estimate of x_0")::

    x0_hat  = (x_t - sqrt(1 - abar_t) * eps_theta(x_t, t)) / sqrt(abar_t)        (DDIM x_0)
    I_hat   = D(x0_hat / scaling_factor)                                         (frozen decoder)
    L       = L_mse(eps, eps_theta) + lambda * (L_spatial(I_hat, I) + L_high_freq(I_hat, I))

``L_spatial`` is a DISTS-style structure and texture distance whose statistics are weighted by
the warped-garment mask m_w; ``L_high_freq`` is the L1 distance between the horizontal and
vertical Sobel edge maps. Images in the models are ``(B, 3, H, W)`` in ``[-1, 1]``; the feature
networks of :mod:`gardiffmini.features` see them mapped to ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

FeatureNet = Callable[[torch.Tensor], Sequence[torch.Tensor]]

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T.contiguous()


def check_image_batch(name: str, images: torch.Tensor, channels: int | None = 3,
                      value_range: tuple[float, float] | None = None) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``images`` is ``(B, channels, H, W)``.

    With ``value_range``, values must also lie in it (1e-4 tolerance).
    """
    if not torch.is_tensor(images) or images.ndim != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"{name} must be a tensor (B, C, H, W); got {shape}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (B, {channels}, H, W); "
                         f"got {tuple(images.shape)}")
    if value_range is not None:
        low, high = value_range
        if images.min() < low - 1e-4 or images.max() > high + 1e-4:
            raise ValueError(f"{name} must lie in [{low}, {high}]; got values in "
                             f"[{images.min().item():.4g}, {images.max().item():.4g}]")


def _check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} "
                         "must have the same shape")


def _check_mask(mask: torch.Tensor, images: torch.Tensor) -> None:
    check_image_batch("mask", mask, channels=1, value_range=(0.0, 1.0))
    if mask.shape[0] != images.shape[0] or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} must be (B, 1, H, W) for images "
                         f"{tuple(images.shape)}")


def noise_mse(eps_pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``L_mse = ||eps - eps_theta(x_t, t)||^2`` (mean over all elements), the noise objective."""
    _check_same_shape("eps_pred", eps_pred, "eps", eps)
    return F.mse_loss(eps_pred, eps)


def ddim_x0_estimate(x_t: torch.Tensor, eps_pred: torch.Tensor, timesteps: torch.Tensor,
                     alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """One DDIM step to x_0: ``x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)``.

    ``abar_t`` is the scheduler's own ``alphas_cumprod`` (shape ``(T,)``) indexed per sample by
    ``timesteps`` (a LongTensor ``(B,)``), as diffusers' ``DDIMScheduler.step`` does for its
    ``pred_original_sample``.
    """
    _check_same_shape("x_t", x_t, "eps_pred", eps_pred)
    if alphas_cumprod.ndim != 1:
        raise ValueError(f"alphas_cumprod must be 1-D (T,); got {tuple(alphas_cumprod.shape)}")
    if timesteps.shape != (x_t.shape[0],) or timesteps.is_floating_point():
        raise ValueError(f"timesteps must be a LongTensor ({x_t.shape[0]},); got "
                         f"{timesteps.dtype} {tuple(timesteps.shape)}")
    if timesteps.min() < 0 or timesteps.max() >= alphas_cumprod.shape[0]:
        raise ValueError(f"timesteps must lie in [0, {alphas_cumprod.shape[0] - 1}]; got "
                         f"[{timesteps.min().item()}, {timesteps.max().item()}]")
    abar = alphas_cumprod.to(device=x_t.device)[timesteps.to(x_t.device)].to(x_t.dtype)
    abar = abar.view(-1, *([1] * (x_t.ndim - 1)))
    return (x_t - torch.sqrt(1 - abar) * eps_pred) / torch.sqrt(abar)


def epsilon_from_v(v_pred: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor,
                   alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The noise a v-prediction implies: ``eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t``.

    With ``v = sqrt(abar) eps - sqrt(1 - abar) x0`` and ``x_t = sqrt(abar) x0 + sqrt(1 - abar)
    eps`` (Salimans & Ho, 2022), so that a v model's output enters the paper's equations
    (:func:`ddim_x0_estimate`) unchanged.
    """
    _check_same_shape("x_t", x_t, "v_pred", v_pred)
    abar = alphas_cumprod.to(x_t.device)[timesteps].view(-1, 1, 1, 1).to(x_t.dtype)
    return abar.sqrt() * v_pred + (1 - abar).sqrt() * x_t


def sobel_edges(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical Sobel maps ``(gx, gy)`` of ``(B, C, H, W)`` images, per channel.

    The fixed 3x3 kernels of L_high_freq, unnormalised, applied by cross-correlation (conv2d)
    with replicate padding, so ``gx`` responds to intensity increasing to the right.
    """
    check_image_batch("images", images, channels=None)
    channels = images.shape[1]
    kernels = torch.stack([SOBEL_X, SOBEL_Y]).to(images)[:, None].repeat(channels, 1, 1, 1)
    edges = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernels, groups=channels)
    edges = edges.view(images.shape[0], channels, 2, *images.shape[-2:])
    return edges[:, :, 0], edges[:, :, 1]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    weights = mask.expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1e-8)


def high_frequency_loss(pred: torch.Tensor, target: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """``L_high_freq = |S_x(I_hat) - S_x(I)|_1 + |S_y(I_hat) - S_y(I)|_1`` (Sobel maps, means).

    With ``mask`` ``(B, 1, H, W)`` the means are taken with the mask as weights.
    """
    _check_same_shape("pred", pred, "target", target)
    if mask is not None:
        _check_mask(mask, pred)
    pred_x, pred_y = sobel_edges(pred)
    target_x, target_y = sobel_edges(target)
    return (_masked_mean((pred_x - target_x).abs(), mask)
            + _masked_mean((pred_y - target_y).abs(), mask))


def spatial_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                 features: FeatureNet, c1: float = 1e-6, c2: float = 1e-6) -> torch.Tensor:
    """``L_spatial``: DISTS-style structure and texture distance, statistics weighted by m_w.

    GARDIFF.md, claim 4. For every feature map k and channel c of ``features`` (DISTS, Ding et
    al., TPAMI 2020), with the spatial weights ``w`` = m_w resized to the map (area average) and
    normalised to sum 1::

        texture   l = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)
        structure s = (2 sigma_xy + c2) / (sigma_x^2 + sigma_y^2 + c2)
        D = 1 - sum_kc (alpha_kc l_kc + beta_kc s_kc)

    where mu, sigma^2 and sigma_xy are w-weighted means, variances and covariances. By default
    alpha and beta are equal (``1 / (2 * channels)``, DISTS's initialisation), which treats every
    feature network alike: DISTS learned its weights on human ratings for VGG16 only. A feature
    network may carry such weights as attributes ``alpha`` and ``beta`` (one per channel of all
    its maps, see ``VGG16Features.from_file(path, dists_weights=True)``); they are normalised
    to sum 1 together, as in DISTS. ``mask=None`` weighs all positions equally; a sample with
    an empty mask contributes 0. ``pred``/``target``: ``(B, 3, H, W)`` in ``[-1, 1]``; returns
    the mean over the batch.
    """
    _check_same_shape("pred", pred, "target", target)
    check_image_batch("pred", pred)
    if mask is not None:
        _check_mask(mask, pred)
    pred_maps = features((pred + 1) / 2)
    target_maps = features((target + 1) / 2)
    textures, structures = [], []
    for x, y in zip(pred_maps, target_maps, strict=True):
        x, y = x.float(), y.float()  # statistics in float32, also under autocast
        if mask is None:
            weights = torch.ones_like(x[:, :1])
        else:
            weights = F.adaptive_avg_pool2d(mask.float(), x.shape[-2:])
        weights = weights / weights.sum(dim=(2, 3), keepdim=True).clamp_min(1e-8)
        mu_x = (weights * x).sum(dim=(2, 3))
        mu_y = (weights * y).sum(dim=(2, 3))
        dx, dy = x - mu_x[..., None, None], y - mu_y[..., None, None]
        var_x = (weights * dx**2).sum(dim=(2, 3))
        var_y = (weights * dy**2).sum(dim=(2, 3))
        cov_xy = (weights * dx * dy).sum(dim=(2, 3))
        texture = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
        structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
        textures.append(texture)
        structures.append(structure)
    texture, structure = torch.cat(textures, dim=1), torch.cat(structures, dim=1)
    alpha, beta = getattr(features, "alpha", None), getattr(features, "beta", None)
    if alpha is None or beta is None:
        similarity = (texture + structure).mean(dim=1) / 2
    else:
        if alpha.numel() != texture.shape[1] or beta.numel() != texture.shape[1]:
            raise ValueError(f"features.alpha/beta have {alpha.numel()}/{beta.numel()} weights; "
                             f"expected one per feature channel ({texture.shape[1]})")
        alpha, beta = alpha.flatten().float(), beta.flatten().float()
        similarity = (texture @ alpha + structure @ beta) / (alpha.sum() + beta.sum())
    return (1 - similarity).mean()


class FrozenDecoder(nn.Module):
    """A VAE's decoder as a frozen callable ``latents -> images``: no parameter takes a gradient.

    Gradients still flow through it into the latents (the UNet's x0_hat).
    """

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenDecoder:
        """Stay in eval mode: the decoder is never trained."""
        return super().train(False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode ``latents`` (already divided by the scaling factor) to images in [-1, 1]."""
        return self.vae.decode(latents).sample


def appearance_loss(x0_hat: torch.Tensor, target_images: torch.Tensor,
                    garment_mask: torch.Tensor, decoder: Callable[[torch.Tensor], torch.Tensor],
                    features: FeatureNet, scaling_factor: float) -> dict[str, torch.Tensor]:
    """``L_spatial(I_hat, I) + L_high_freq(I_hat, I)`` with ``I_hat = D(x0_hat / scaling_factor)``.

    ``decoder`` is frozen: pass :class:`FrozenDecoder` (or any module with no parameter that
    requires grad; a module that has one is refused) or a plain callable of a frozen VAE.
    The mask m_w weights L_spatial; L_high_freq is taken over the whole image, as in the paper.
    """
    if isinstance(decoder, nn.Module) and any(p.requires_grad for p in decoder.parameters()):
        raise ValueError("decoder has parameters that require grad; the VAE decoder must be "
                         "frozen (wrap it in FrozenDecoder or call vae.requires_grad_(False))")
    decoded = decoder(x0_hat / scaling_factor)
    _check_same_shape("decoder(x0_hat)", decoded, "target_images", target_images)
    spatial = spatial_loss(decoded, target_images, garment_mask, features)
    high_freq = high_frequency_loss(decoded, target_images)
    return {"spatial": spatial, "high_freq": high_freq, "total": spatial + high_freq}


def gardiff_loss(eps_pred: torch.Tensor, eps: torch.Tensor, x_t: torch.Tensor,
                 timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                 target_images: torch.Tensor, garment_mask: torch.Tensor,
                 decoder: Callable[[torch.Tensor], torch.Tensor], features: FeatureNet,
                 lam: float = 1e-3, scaling_factor: float = 1.0,
                 appearance_samples: int | None = None,
                 mse: torch.Tensor | None = None,
                 max_timestep: int | None = None) -> dict[str, torch.Tensor]:
    """GarDiff's loss ``L = L_mse + lambda * (L_spatial + L_high_freq)`` (GARDIFF.md, claim 4).

    ``lam`` is lambda (1e-3 in the paper). ``appearance_samples`` takes the appearance terms
    on the first that many samples of the batch only (decoding is the costly part on a CPU;
    the samples are in random order, so this is an unbiased estimate); ``None``: all, as in
    the paper. ``max_timestep`` takes them only on samples whose timestep is below it (the
    first ``appearance_samples`` of those), as diffusers' latent perceptual loss example
    (Berrada et al., 2025) takes its loss only below t = 200: from high noise the DDIM
    estimate of x0 is a blur, which the terms would ask to be sharp. Where no sample is below
    it, the appearance terms are zero. ``None``: every timestep, as in the paper. ``mse``: the
    noise term when the training weighs it (default: the paper's unweighted
    :func:`noise_mse`). Returns ``mse``, ``spatial``, ``high_freq``, ``appearance`` (their
    sum) and ``total``.
    """
    mse = noise_mse(eps_pred, eps) if mse is None else mse
    # indices on the CPU index tensors on any device
    eligible = (torch.ones(len(x_t), dtype=torch.bool) if max_timestep is None
                else timesteps.cpu() < max_timestep)
    chosen = torch.nonzero(eligible).flatten()[:appearance_samples or len(x_t)]
    if len(chosen) == 0:
        zero = mse.new_zeros(())
        return {"mse": mse, "spatial": zero, "high_freq": zero, "appearance": zero,
                "total": mse}
    x0_hat = ddim_x0_estimate(x_t[chosen], eps_pred[chosen], timesteps[chosen], alphas_cumprod)
    appearance = appearance_loss(x0_hat, target_images[chosen], garment_mask[chosen], decoder,
                                 features, scaling_factor)
    return {
        "mse": mse,
        "spatial": appearance["spatial"],
        "high_freq": appearance["high_freq"],
        "appearance": appearance["total"],
        "total": mse + lam * appearance["total"],
    }
