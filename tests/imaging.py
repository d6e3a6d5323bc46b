"""Image helpers shared by the tests (not part of the library)."""

import math

import torch
import torch.nn.functional as F


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable-free Gaussian blur with reflect padding, per channel."""
    radius = int(math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = torch.outer(g, g) / g.sum() ** 2
    c = images.shape[1]
    padded = F.pad(images, (radius,) * 4, mode="reflect")
    return F.conv2d(padded, kernel[None, None].repeat(c, 1, 1, 1), groups=c)


class IdentityVAE(torch.nn.Module):
    """A perfect VAE for the baselines' round trip: its latent is the image (no noise)."""

    def encode(self, x):
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
        return type("Out", (), {"latent_dist": DiagonalGaussianDistribution(
            torch.cat([x, torch.full_like(x, -30.0)], dim=1))})()

    def decode(self, z):
        return type("Out", (), {"sample": z})()
