"""The small VAE of the ToyVITON profiles: an ``AutoencoderKL`` with a colour shortcut.

Stable Diffusion's VAE learns, from scratch, to carry an image's colours through its
latent. That is slow: Adam moves each weight by about the learning rate per step, and the
colour of a patch must travel through a dozen convolutions and back. At the ``cpu`` profile
a plain ``AutoencoderKL`` still turned purple into steel blue after 1,200 steps (the mean
absolute RGB error on plain garments was 0.07-0.21), and even a two-layer 1x1 linear
autoencoder needs several hundred steps at lr 1e-3 to get colours right.

:class:`ShortcutAutoencoderKL` makes colour the starting point instead of the goal, as the
residual autoencoding of DC-AE (Chen et al., 2024) does with its non-parametric
space-to-channel shortcuts:

    mu(x)  = mu_net(x) + [avgpool_f(x), 0]          the first three latent channels hold a
                                                    thumbnail of the image (f: the VAE factor)
    D(z)   = D_net(z) + upsample_f(z[:, :3])        the decoder adds that thumbnail back

so at step 0 the image's colours already travel through the latent, in the thumbnail. The
untrained networks still add their own output on top (at step 0 chapter 2 measures a strong
magenta cast, a worst colour error of 0.34 at ``ci``); they learn to take it away and to add
the detail (edges, stripes, text), not to carry colour. After 100 steps every
ToyVITON colour comes back within 0.03 (it took the plain VAE more than 1,200 steps not to).
It is still an ``AutoencoderKL``: ``encode(x).latent_dist`` and ``decode(z).sample`` work as in
diffusers, and ``save_pretrained``/``from_pretrained`` keep the shortcut in the config.

The ``ci`` and ``cpu`` profiles ship trained weights inside the package
(``gardiffmini/weights/``, made by ``python tools/ship_vae.py --profile P``); they are used
only when the recipe and architecture that made them match the current code
(:func:`recipe_hash`), otherwise the VAE trains here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# diffusers' pipeline loader checks a saved component against the loadable base classes it
# finds in the component's own module (this one), so ModelMixin must be importable from here
from diffusers import AutoencoderKL, ModelMixin  # noqa: F401
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution

from gardiffmini.profiles import Profile, norm_groups
from gardiffmini.runs import architecture, config_hash
from gardiffmini.shipped import WEIGHTS_DIR, load_shipped

DEFAULT_VAE_ID = "stabilityai/stable-diffusion-2-inpainting"
# Stable Diffusion's VAE weighs its KL term by 1e-6 against a per-pixel L1 term.
VAE_KL_WEIGHT = 1e-6
# log sigma^2 of q(z|x) at initialisation: sigma = 0.05 rather than 1. With a KL weight of
# 1e-6 only the reconstruction term pulls sigma down, slowly; until it has, noise of std 1
# on latents of std ~1 lets only coarse shapes through, and colour is lost (at the cpu
# profile, 8 norm groups, 200 steps: mean saturation 0.07 from sigma = 1, 0.28 from 0.05).
INITIAL_LOG_VARIANCE = -6.0
SHORTCUT_CHANNELS = 3  # RGB
# How the ToyVITON VAEs are trained (train_vae): measured at the cpu profile, see the module
# docstring and the shipped weights' JSON for the curves.
VAE_RECIPE = {
    "learning_rate": 2e-3, "warmup_steps": 100, "schedule": "cosine", "mse_weight": 1.0,
    "kl_weight": VAE_KL_WEIGHT, "crop": "half", "initial_log_variance": INITIAL_LOG_VARIANCE,
}
COLOUR_TOLERANCE = 0.03  # mean absolute RGB error (0-1 units) a round trip may cost a colour


class ShortcutAutoencoderKL(AutoencoderKL):
    """``AutoencoderKL`` whose latent mean starts as a thumbnail of the image (see module doc).

    ``colour_shortcut=False`` gives diffusers' ``AutoencoderKL`` exactly.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        mid_block_add_attention: bool = True,
        colour_shortcut: bool = True,
    ) -> None:
        if colour_shortcut and latent_channels < SHORTCUT_CHANNELS:
            raise ValueError(f"colour_shortcut needs latent_channels >= {SHORTCUT_CHANNELS}, "
                             f"got {latent_channels}")
        super().__init__(
            in_channels=in_channels, out_channels=out_channels,
            down_block_types=down_block_types, up_block_types=up_block_types,
            block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            latent_channels=latent_channels, norm_num_groups=norm_num_groups,
            sample_size=sample_size, scaling_factor=scaling_factor,
            mid_block_add_attention=mid_block_add_attention,
        )

    @property
    def factor(self) -> int:
        """The spatial down-sampling factor ``f``."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        moments = super()._encode(x)
        if not self.config.colour_shortcut:
            return moments
        thumbnail = F.avg_pool2d(x, self.factor)
        return torch.cat([moments[:, :SHORTCUT_CHANNELS] + thumbnail,
                          moments[:, SHORTCUT_CHANNELS:]], dim=1)

    def _decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple:
        decoded = super()._decode(z, return_dict=True).sample
        if self.config.colour_shortcut:
            decoded = decoded + F.interpolate(z[:, :SHORTCUT_CHANNELS], scale_factor=self.factor,
                                              mode="bilinear", align_corners=False)
        return DecoderOutput(sample=decoded) if return_dict else (decoded,)


def make_vae(profile: Profile, colour_shortcut: bool = True) -> ShortcutAutoencoderKL:
    """A randomly initialised VAE sized by the profile.

    One down block per entry of ``profile.vae_channels`` (so the latent is
    ``(latent_channels, H / f, W / f)`` with ``f = profile.vae_factor``), one ResNet layer per
    block to train fast on a CPU (Stable Diffusion's has two), and its mid-block attention.
    Group norms follow :func:`~gardiffmini.profiles.norm_groups`, the posterior starts
    nearly deterministic (:data:`INITIAL_LOG_VARIANCE`) and the colour shortcut is on: all
    three keep colour in the latent.
    """
    channels = tuple(profile.vae_channels)
    vae = ShortcutAutoencoderKL(
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        layers_per_block=1,
        latent_channels=profile.latent_channels,
        norm_num_groups=norm_groups(channels),
        sample_size=profile.height,
        colour_shortcut=colour_shortcut,
    )
    with torch.no_grad():  # quant_conv's output is (mean, log variance) of q(z|x)
        vae.quant_conv.bias[profile.latent_channels:] = INITIAL_LOG_VARIANCE
    return vae


def vae_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    posterior: DiagonalGaussianDistribution,
    kl_weight: float = VAE_KL_WEIGHT,
    mse_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The VAE objective of Latent Diffusion (Rombach et al., 2022, Sec. 3.1 and App. G).

    ``L = |x - D(z)|_1 + w * |x - D(z)|^2 + beta * KL(N(mu, sigma^2) || N(0, I))``, with
    ``z ~ q(z|x) = N(mu, sigma^2)`` and ``KL = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2)``.
    All terms are divided by the number of pixel values, so ``beta`` (``kl_weight``) means
    what it means in Stable Diffusion's training (1e-6). Its LPIPS and patch-GAN terms are
    left out at this scale; the squared term (``mse_weight``, 0 in Stable Diffusion) pulls
    harder on large errors such as a wrong colour. Returns ``{"loss", "reconstruction", "kl"}``.
    """
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} "
            "must have one shape"
        )
    values_per_image = target[0].numel()
    error = reconstruction - target
    reconstruction_term = error.abs().mean()
    kl = posterior.kl().mean() / values_per_image
    loss = reconstruction_term + mse_weight * error.square().mean() + kl_weight * kl
    return {"loss": loss, "reconstruction": reconstruction_term, "kl": kl}


def load_pretrained_vae(
    id_or_path: str | Path = DEFAULT_VAE_ID, subfolder: str | None = "vae"
) -> AutoencoderKL:
    """A pretrained ``AutoencoderKL`` from a model id (needs the network) or a local folder.

    Default: the VAE of Stable Diffusion 2 inpainting, the paper's base model. A folder saved
    from a :class:`ShortcutAutoencoderKL` loads as one, its shortcut included.
    """
    from gardiffmini.models.encoders import pretrained_location

    location = pretrained_location(id_or_path, subfolder)
    config = AutoencoderKL.load_config(**location)
    cls = ShortcutAutoencoderKL if "colour_shortcut" in config else AutoencoderKL
    return cls.from_pretrained(**location).eval()


# ---- what a round trip keeps ------------------------------------------------------------

def palette_garments(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One plain in-shop garment of every ToyVITON colour: uint8 ``(N, 3, H, W)`` and masks.

    The masks ``(N, H, W)`` (bool) are the garments eroded by ``max(1, height // 40)`` pixels,
    so that a colour is measured inside the garment, not on its outline. Order:
    :data:`~gardiffmini.data.garments.COLOR_NAMES`.
    """
    from scipy import ndimage

    from gardiffmini.data import garments

    rng = np.random.default_rng(seed)
    images, masks = [], []
    for colour in garments.COLOR_NAMES:
        attributes = garments.sample_attributes(rng) | {"pattern": "plain", "colors": [colour]}
        flat = garments.draw_flat_garment(attributes, rng, height, width)
        images.append(flat.image())
        masks.append(ndimage.binary_erosion(flat.mask > 0.5, iterations=max(1, height // 40)))
    return (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(np.stack(masks)))


@torch.no_grad()
def round_trip(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """``D(mu(x))`` of images in [-1, 1], clamped to [-1, 1] (the posterior mean, no noise)."""
    parts = [vae.decode(vae.encode(chunk).latent_dist.mode()).sample
             for chunk in images.split(batch_size)]
    return torch.cat(parts).clamp(-1, 1)


def colour_round_trip_errors(vae: AutoencoderKL, height: int, width: int) -> dict[str, float]:
    """Mean absolute RGB error (0-1 units) of each ToyVITON colour after a VAE round trip.

    Measured inside plain garments of each colour (:func:`palette_garments`).
    """
    from gardiffmini.data.garments import COLOR_NAMES

    images, masks = palette_garments(height, width)
    target = images.float() / 127.5 - 1
    error = (round_trip(vae, target) - target).abs().mean(dim=1) / 2
    return {name: round(float(error[i][masks[i]].mean()), 4) for i, name in enumerate(COLOR_NAMES)}


def pasted_round_trip(vae: AutoencoderKL, person: torch.Tensor,
                      agnostic_mask: torch.Tensor) -> torch.Tensor:
    """The VAE round trip of ``person`` ([-1, 1]) pasted into it inside ``agnostic_mask``.

    This is the ceiling of any latent try-on model that is pasted back outside the agnostic
    mask: its best output is the VAE's reconstruction of the true photo.
    """
    return agnostic_mask * round_trip(vae, person) + (1 - agnostic_mask) * person


# ---- shipped weights --------------------------------------------------------------------

def recipe_hash(profile: Profile, seed: int, vae: AutoencoderKL) -> str:
    """What determines the weights of a ToyVITON VAE: data, architecture, recipe, steps.

    The latent ``scaling_factor`` is measured after training, so it is not part of it.
    """
    from gardiffmini.data.toyviton import TOYVITON_VERSION

    model = {k: v for k, v in architecture(vae.config).items() if k != "scaling_factor"}
    return config_hash({
        "toyviton": TOYVITON_VERSION, "seed": seed, "size": profile.image_size,
        "n_train": profile.n_train, "batch_size": profile.batch_size,
        "steps": profile.vae_steps, "recipe": VAE_RECIPE, "architecture": model,
    })


def shipped_weights_path(profile: Profile) -> Path:
    """Where the package keeps the trained VAE of ``profile`` (may not exist)."""
    return WEIGHTS_DIR / f"vae-{profile.name}.safetensors"


def load_shipped_vae(profile: Profile, seed: int = 0) -> ShortcutAutoencoderKL | None:
    """The package's trained VAE of ``profile``, or ``None`` if none matches today's recipe.

    The weights' JSON records the :func:`recipe_hash` that made them; a VAE built and trained
    differently would be another model, so then ``None`` is returned and the caller trains.
    """
    vae = make_vae(profile)
    shipped = load_shipped(shipped_weights_path(profile), "recipe_hash",
                           recipe_hash(profile, seed, vae))
    if shipped is None:
        return None
    weights, record = shipped
    vae.load_state_dict(weights)
    vae.register_to_config(scaling_factor=record["scaling_factor"])
    return vae.eval().requires_grad_(False)


def heldout_persons(profile: Profile, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The first ``n`` ToyVITON test persons of ``profile``, rendered in memory.

    ``{"person": (n, 3, H, W) in [-1, 1], "agnostic_mask": (n, 1, H, W) in {0, 1}}``: the
    same pairs ``make data`` writes into the test split (VAEs train on the train split only).
    """
    from gardiffmini.data.toyviton import render_sample, sample_rng

    samples = [render_sample(sample_rng(seed, "test", i), profile.height, profile.width)
               for i in range(n)]
    person = torch.from_numpy(np.stack([s["person"] for s in samples])).permute(0, 3, 1, 2)
    mask = torch.from_numpy(np.stack([s["agnostic_mask"] for s in samples]))[:, None]
    return {"person": person.float() / 127.5 - 1, "agnostic_mask": (mask > 127).float()}


def round_trip_report(vae: AutoencoderKL, profile: Profile, n: int = 64) -> dict:
    """What a VAE round trip keeps, at the profile's size: the numbers the gate checks.

    ``colour``: :func:`colour_round_trip_errors`; ``ssim_pasted``: SSIM (torchmetrics, data
    range 1) of :func:`pasted_round_trip` against the photo, mean over ``n`` held-out persons
    (:func:`heldout_persons`); ``ssim_full``: the same without pasting.
    """
    from gardiffmini import metrics

    persons = heldout_persons(profile, n)
    photo = persons["person"].add(1).div(2)
    full = round_trip(vae, persons["person"]).add(1).div(2)
    pasted = pasted_round_trip(vae, persons["person"], persons["agnostic_mask"]).add(1).div(2)
    colour = colour_round_trip_errors(vae, profile.height, profile.width)
    return {"colour": colour, "colour_max": max(colour.values()), "n_persons": n,
            "ssim_pasted": round(float(metrics.ssim(pasted, photo).mean()), 4),
            "ssim_full": round(float(metrics.ssim(full, photo).mean()), 4)}
