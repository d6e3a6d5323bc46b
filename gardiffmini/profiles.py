"""Named scales for everything in the book: ``ci``, ``cpu``, ``gpu`` and ``paper``.

A profile fixes the image size (always 4:3, like the paper's 512x384), the size of the
ToyVITON data set, the widths of every model, the number of training steps, the batch
size and the sampling settings. Notebooks and the command line take a profile *name*;
nothing else is edited to change scale. They resolve it once, with :func:`get_profile`,
and pass the :class:`Profile` down: the library takes the object (only its top-level
entry points, ``sample_variant``, ``evaluate_variant``, ``reproduce`` and ``bench``, also
take a name, which they resolve at their top).

- ``ci``: each notebook finishes in well under a minute on two CPU cores (for CI).
- ``cpu``: legible results on a laptop in minutes.
- ``gpu``: the paper's shape on one free-tier GPU (a T4: about 50 minutes for the book,
  estimated).
- ``paper``: the paper's setting (512x384, Stable Diffusion sized, pretrained weights).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class Profile:
    """One named scale. All sizes are in pixels; ``height:width`` is 4:3."""

    name: str
    height: int
    width: int
    # ToyVITON
    n_train: int
    n_test: int
    # VAE (AutoencoderKL): the latent is (latent_channels, height/f, width/f), f = 2**(len-1)
    vae_channels: tuple[int, ...]
    latent_channels: int
    # CLIP image/text encoders (transformers CLIPModel)
    clip_width: int
    clip_layers: int
    clip_heads: int
    clip_patch: int
    clip_embed_dim: int
    # UNet2DConditionModel and the garment-focused adapter
    unet_channels: tuple[int, ...]
    unet_layers_per_block: int
    unet_head_dim: int
    cross_attention_dim: int
    clip_tokens: int
    # training
    batch_size: int
    vae_steps: int
    clip_steps: int
    probe_steps: int
    # the shared inpainting base every variant starts from (0: none, or a pretrained SD)
    base_steps: int
    diffusion_steps: int
    learning_rate: float  # of the try-on UNet and adapter, and of the inpainting base
    warmup_steps: int
    # of the CLIP encoder and of chapter 2's probes
    encoder_learning_rate: float
    # sampling
    sample_steps: int
    guidance_scale: float
    n_eval: int
    # the appearance loss decodes this many samples of each batch (0: all, as the paper)
    appearance_samples: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image the models see."""
        return (self.height, self.width)

    @property
    def vae_factor(self) -> int:
        """Spatial down-sampling factor of the VAE."""
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> tuple[int, int]:
        """``(height, width)`` of the VAE latent."""
        return (self.height // self.vae_factor, self.width // self.vae_factor)

    def to_dict(self) -> dict:
        """A JSON-friendly copy (for provenance)."""
        return asdict(self)

    def training_fields(self) -> dict:
        """:meth:`to_dict` without the fields that only sampling and evaluation read
        (:data:`EVALUATION_FIELDS`): what a training run's identity may depend on, so that
        evaluating on more pairs or with another guidance scale reuses the trained runs."""
        return {k: v for k, v in asdict(self).items() if k not in EVALUATION_FIELDS}


EVALUATION_FIELDS = ("n_eval", "sample_steps", "guidance_scale")

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci", height=64, width=48, n_train=96, n_test=16,
        vae_channels=(16, 32, 32), latent_channels=4,
        clip_width=32, clip_layers=2, clip_heads=2, clip_patch=8, clip_embed_dim=32,
        unet_channels=(32, 32), unet_layers_per_block=1, unet_head_dim=8,
        cross_attention_dim=32, clip_tokens=2,
        batch_size=8, vae_steps=1500, clip_steps=20, probe_steps=20, base_steps=300,
        diffusion_steps=20,
        learning_rate=1e-3, warmup_steps=5, encoder_learning_rate=1e-3,
        sample_steps=5, guidance_scale=2.0, n_eval=8, appearance_samples=2,
    ),
    "cpu": Profile(
        name="cpu", height=128, width=96, n_train=2000, n_test=128,
        vae_channels=(32, 64, 64), latent_channels=8,
        clip_width=64, clip_layers=3, clip_heads=4, clip_patch=8, clip_embed_dim=64,
        unet_channels=(32, 64), unet_layers_per_block=1, unet_head_dim=16,
        cross_attention_dim=64, clip_tokens=4,
        batch_size=8, vae_steps=4000, clip_steps=400, probe_steps=300,
        base_steps=3000, diffusion_steps=1200,
        learning_rate=2e-3, warmup_steps=50, encoder_learning_rate=5e-4,
        # 10 DDIM steps: on held-out training pairs as good as 25 or 50 (SSIM 0.820 against
        # 0.818 and 0.817, detail error 0.3447 against 0.3446 and 0.3449), in less than half
        # the time (book/results/held-out-sampling-cpu-computed-warp.json); 5 steps lose detail
        # (0.3481). On the book's recipe and the carved warp 10 steps still sit on the plateau
        # (held-out-sampling-cpu.json)
        sample_steps=10, guidance_scale=2.0, n_eval=128, appearance_samples=2,
    ),
    # sized for a free T4 (tools/time_estimate.py, book/results/time-gpu-t4.json): every
    # chapter within 20 minutes and the book within 90 at 15 TFLOP/s, estimated
    "gpu": Profile(
        name="gpu", height=256, width=192, n_train=4000, n_test=256,
        vae_channels=(64, 128, 256, 256), latent_channels=4,
        clip_width=256, clip_layers=6, clip_heads=8, clip_patch=16, clip_embed_dim=256,
        unet_channels=(128, 256, 256), unet_layers_per_block=2, unet_head_dim=32,
        cross_attention_dim=256, clip_tokens=4,
        batch_size=16, vae_steps=2000, clip_steps=4000, probe_steps=2000,
        base_steps=8000, diffusion_steps=1000,
        learning_rate=2e-4, warmup_steps=100, encoder_learning_rate=2e-4,
        sample_steps=25, guidance_scale=2.5, n_eval=128, appearance_samples=2,
    ),
    "paper": Profile(
        name="paper", height=512, width=384, n_train=11647, n_test=2032,
        vae_channels=(128, 256, 512, 512), latent_channels=4,
        clip_width=1280, clip_layers=32, clip_heads=16, clip_patch=14, clip_embed_dim=1024,
        unet_channels=(320, 640, 1280, 1280), unet_layers_per_block=2, unet_head_dim=64,
        cross_attention_dim=1024, clip_tokens=4,
        batch_size=8, vae_steps=0, clip_steps=0, probe_steps=2000,
        base_steps=0, diffusion_steps=200000,
        learning_rate=5e-5, warmup_steps=500, encoder_learning_rate=5e-5,
        sample_steps=100, guidance_scale=7.5, n_eval=2032,
        extra={
            "unet_id": "stabilityai/stable-diffusion-2-inpainting",
            "vae_id": "stabilityai/stable-diffusion-2-inpainting",
            "clip_id": "h94/IP-Adapter",
        },
    ),
}


def norm_groups(channels: tuple[int, ...] | list[int]) -> int:
    """The ``GroupNorm`` group count for a network of these widths: at least 4 channels a group.

    Stable Diffusion normalises 32 groups of its 128 (VAE) or 320 (UNet) channels. Keeping
    32 groups in a 32-channel network would make each group a single channel, i.e. instance
    normalisation, which subtracts every feature map's mean per image and with it the
    image's global colour. A VAE built that way learns shapes quickly but greys out colours
    (measured on ToyVITON at the ``cpu`` profile after 400 steps: mean saturation of the
    reconstructions 0.07 with 32 groups, 0.22 with 8, 0.29 in the photos; both VAEs
    started from the posterior of ``vae.INITIAL_LOG_VARIANCE``).
    ``min(32, min(channels) // 4)`` groups, which is 32 at Stable Diffusion's sizes, keep at
    least four channels in each.
    """
    if not channels or min(channels) < 4:
        raise ValueError(f"channels must be a non-empty sequence of widths >= 4, got {channels}")
    return math.gcd(min(32, min(channels) // 4), *channels)


DRY_RUN_ENV = "GARDIFF_DRY_RUN"
# what a dry run cuts every step count and data size to (min with the profile's own)
DRY_RUN_LIMITS = {
    "n_train": 16, "n_test": 8, "batch_size": 2, "vae_steps": 2, "clip_steps": 2,
    "probe_steps": 2, "base_steps": 2, "diffusion_steps": 2, "warmup_steps": 1,
    "sample_steps": 2, "n_eval": 4,
}


def dry_run(profile: Profile) -> Profile:
    """``profile`` at its own shapes (image size, widths, latent channels, tokens) with every
    step count and data-set size cut to a few (:data:`DRY_RUN_LIMITS`): a check that the code
    runs end to end at those shapes, in minutes on a CPU, not a result."""
    return replace(profile, **{key: min(getattr(profile, key), limit)
                               for key, limit in DRY_RUN_LIMITS.items()})


def get_profile(name: str | Profile | None = None, **overrides) -> Profile:
    """Return the profile called ``name`` (default: ``$GARDIFF_PROFILE``, else ``cpu``).

    Keyword ``overrides`` replace single fields, e.g. ``get_profile("cpu", n_train=500)``.
    With ``$GARDIFF_DRY_RUN`` set (to anything but ``0``), the result is cut to a
    :func:`dry_run`: ``make dryrun PROFILE=gpu`` runs every chapter so.
    """
    if isinstance(name, Profile):
        profile = name
    else:
        name = name or os.environ.get("GARDIFF_PROFILE", "cpu")
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; expected one of {sorted(PROFILES)}")
        profile = PROFILES[name]
    profile = replace(profile, **overrides) if overrides else profile
    return dry_run(profile) if os.environ.get(DRY_RUN_ENV, "0") != "0" else profile
