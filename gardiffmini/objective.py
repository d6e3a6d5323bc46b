"""The denoising objective every try-on UNet of the book is trained on, and its recipe.

The paper's objective is the noise MSE ``L_mse = ||eps - eps_theta(x_t, t)||^2`` (GARDIFF.md,
claim 4, the first term of ``L``) on ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``.
:class:`Recipe` says how the book departs from it to converge on a CPU (chapter 3 measures
each change): Min-SNR weighting, a weight on the try-on region, v-prediction, EMA weights.
:func:`noised_latents` draws a step's ``(eps, t, x_t)`` and :func:`recipe_mse` scores a
UNet's output against them; the variants (:mod:`gardiffmini.train`) and the shared inpainting
base (:mod:`gardiffmini.inpainting_base`) both train on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

OFFSET_NOISE = 0.1  # std of the per-channel constant added to the training noise


@dataclass(frozen=True)
class Recipe:
    """How the try-on UNet is trained, beyond the paper's equations (chapter 3 measures each).

    - ``min_snr_gamma``: Min-SNR-gamma loss weighting (Hang et al., 2023), ``None`` for the
      paper's unweighted noise MSE;
    - ``region_weight``: the weight of latent positions inside the agnostic mask against 1
      outside it (the output is pasted back there, so only the try-on region is asked for);
    - ``garment_weight``: a further factor on the positions of the garment the person wears
      (its labels in the person's label map), where the garment's detail is;
    - ``drop_warped_latent``: drop ``E(I_w)`` from the UNet's input together with the garment
      tokens, so that classifier-free guidance has a garment to guide towards;
    - ``ema_decay``: the largest decay of the EMA weights (diffusers' ``EMAModel`` with its
      warm-up), which are the weights the run keeps; ``None``: keep the last weights;
    - ``prediction_type``: what the UNet predicts, ``"epsilon"`` (the paper's noise) or
      ``"v_prediction"`` (``v = sqrt(abar) eps - sqrt(1 - abar) x0``, Salimans & Ho, 2022),
      whose x0 estimate does not divide the UNet's error by ``sqrt(abar_t)`` (0.07 at t=999);
    - ``pose_input``: give the UNet the person's DensePose (resized to the latent grid,
      :func:`~gardiffmini.pipeline.pose_latent`) as three more input channels, last, as
      IDM-VTON does. The agnostic image greys out the arms, so nothing else says where bare
      arms go when the requested garment is shorter than the person's own. Not in the paper
      (GARDIFF.md names no pose channel): a lever of chapter 7, on in the book's recipe;
    - ``skin_input``: give the UNet ``E`` of the agnostic image painted in the person's skin
      colour, read off the face (:mod:`gardiffmini.skin`), as ``latent_channels`` more input
      channels, after the DensePose's. The agnostic image greys out the arms, so nothing
      near them says what colour bare arms are. Not in the paper (ACGPN's skin colour cue):
      a lever of chapter 7, on in the book's recipe;
    - ``skin_init``: how those channels start: ``"zero"``, at zero (the model starts as the
      one without them); ``"agnostic"``, with ``E(I_a)``'s weights, ``E(I_a)``'s own at
      zero (the model starts as the one without them would on the skin-primed image);
    - ``person_base``: the shared inpainting base (:mod:`gardiffmini.inpainting_base`) reads
      those person inputs too, so that a variant starts from a UNet that has already learnt
      to read them over the base's steps (where bare arms go, what colour they are),
      instead of from zero over its own (the base is given them as a variant is, so with
      ``skin_init="agnostic"`` it reads the skin-primed agnostic image where it would read
      the grey one). ``False``: the base has no person inputs (:data:`PLAIN_RECIPE`'s, the
      base that ships);
    - ``paste_warp``: the skin-primed agnostic image carries the warped garment too, pasted
      inside ``m_w`` (:func:`~gardiffmini.data.warp.paste_warped_garment`), as DCI-VTON (Gou
      et al., 2023) hands its diffusion model the warp pasted into the agnostic image: with
      ``skin_init="agnostic"`` the UNet starts by reading warp + paste where it read the
      grey image, so it need not learn to move the garment in from ``E(I_w)`` first. Not in
      the paper (its warp enters as ``E(I_w)`` only); a lever of chapter 7;
    - ``appearance_max_timestep``: ``+AL`` variants take the appearance loss only on samples
      whose timestep is below it (:func:`~gardiffmini.losses.gardiff_loss`), as diffusers'
      latent perceptual loss example does below t = 200; ``None``: at every timestep, as in
      the paper. A lever of chapter 6;
    - ``lr_schedule``: the learning rate after the warm-up: ``"constant"`` (the paper's) or
      ``"cosine"``, decaying to zero at the run's last step (Loshchilov & Hutter, 2017). A
      lever of chapter 7: at ``cpu`` the decay raised SSIM and lowered the skin error, and
      cost garment detail and FID_toy (``book/results/learning-rate-cpu.json``);
    - ``learning_rate_scale``: a factor on the profile's learning rate for the variant (the
      shared base keeps the profile's): the profile's rate was chosen on Base's SSIM, and the
      garment's detail is what a variant learns last. A lever of chapter 7: at ``cpu`` twice
      the rate moved no detail error measurably over three seeds, four times was worse
      (``book/results/learning-rate-x2-cpu.json``, ``learning-rate-cpu.json``);
    - ``adapter_learning_rate_scale``: a further factor for the parameters the adapter adds
      (:func:`~gardiffmini.train.adapter_parameters`: the garment adapter's and the UNet's
      garment cross-attention processors'), which start fresh while the rest of the UNet
      starts from the shared base, as IP-Adapter trains only its new weights; the paper
      trains every weight at one rate. A lever of chapter 7, in the book's recipe since
      2026-12-07 at 10: at ``cpu`` it lowered the detail error at each of three seeds, by
      less than twice the spread, left SSIM and the skin error alone, and made Base + GFA's
      unpaired detail beat warp + paste beyond twice the spread
      (``book/results/adapter-learning-rate-x10-cpu.json``).

    The defaults are the book's recipe (:data:`DEFAULT_RECIPE`). Chapter 7 measured the
    DensePose and the skin colour as levers against :data:`PLAIN_RECIPE` before they became
    defaults (``book/results/carved-pose-skin-cpu.json``).
    """

    min_snr_gamma: float | None = 5.0
    region_weight: float = 4.0
    garment_weight: float = 1.0
    drop_warped_latent: bool = True
    ema_decay: float | None = 0.999
    prediction_type: str = "v_prediction"
    pose_input: bool = True
    skin_input: bool = True
    skin_init: str = "agnostic"
    person_base: bool = False
    paste_warp: bool = False
    appearance_max_timestep: int | None = None
    lr_schedule: str = "constant"
    learning_rate_scale: float = 1.0
    adapter_learning_rate_scale: float = 10.0

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got "
                             f"{self.prediction_type!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{self.lr_schedule!r}")
        for name in ("learning_rate_scale", "adapter_learning_rate_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.skin_init not in SKIN_INITS:
            raise ValueError(f"skin_init must be one of {SKIN_INITS}, got {self.skin_init!r}")
        if self.person_base and not (self.pose_input or self.skin_input):
            raise ValueError("person_base needs a person input (pose_input or skin_input) for "
                             "the base to read")
        if self.paste_warp and not self.skin_input:
            raise ValueError("paste_warp pastes the warp into the skin-primed agnostic image: "
                             "it needs skin_input")
        if self.appearance_max_timestep is not None and self.appearance_max_timestep < 1:
            raise ValueError("appearance_max_timestep must be a positive timestep or None, got "
                             f"{self.appearance_max_timestep!r}")
        if self.paste_warp and self.person_base:
            raise ValueError("paste_warp with person_base: the shared base is trained without "
                             "a garment, so it has no warp to paste")

    def identity(self) -> dict:
        """The fields for a run's identity: every field, less those added after runs were
        shipped (:data:`LATER_FIELDS`) while they hold the value that changes nothing, so that
        the shipped runs keep their identity."""
        return {key: value for key, value in asdict(self).items()
                if LATER_FIELDS.get(key, object()) != value}


# fields added to Recipe after runs were shipped, with the value that leaves the loss as it was
LATER_FIELDS = {"garment_weight": 1.0, "pose_input": False, "skin_input": False,
                "skin_init": "zero", "person_base": False, "paste_warp": False,
                "appearance_max_timestep": None, "lr_schedule": "constant",
                "learning_rate_scale": 1.0, "adapter_learning_rate_scale": 1.0}


PREDICTION_TYPES = ("epsilon", "v_prediction")
SKIN_INITS = ("zero", "agnostic")
LR_SCHEDULES = ("constant", "cosine")
PAPER_RECIPE = Recipe(min_snr_gamma=None, region_weight=1.0, drop_warped_latent=False,
                      ema_decay=None, prediction_type="epsilon", pose_input=False,
                      skin_input=False, skin_init="zero", adapter_learning_rate_scale=1.0)
DEFAULT_RECIPE = Recipe()
# the book's recipe with every later field at the value that changes nothing: the recipe of
# the shared inpainting base (it has no person inputs) and of the runs shipped before the
# later fields existed, and the one chapter 7's levers were measured against
PLAIN_RECIPE = replace(DEFAULT_RECIPE, **LATER_FIELDS)


def base_recipe(recipe: Recipe) -> Recipe:
    """The recipe the shared inpainting base of a variant trained with ``recipe`` is trained
    with: :data:`PLAIN_RECIPE`, with ``recipe``'s person inputs where ``recipe.person_base``
    asks for a base that reads them (the base that ships has none)."""
    if not recipe.person_base:
        return PLAIN_RECIPE
    return replace(PLAIN_RECIPE, pose_input=recipe.pose_input, skin_input=recipe.skin_input,
                   skin_init=recipe.skin_init, person_base=True)


def training_noise(
    shape: tuple[int, ...], generator: torch.Generator, offset: float = OFFSET_NOISE
) -> torch.Tensor:
    """The noise ``epsilon`` of a training step: ``N(0, I)`` plus *offset noise*.

    ``epsilon = n + offset * c`` with ``n ~ N(0, I)`` of ``shape`` (B, C, H, W) and
    ``c ~ N(0, I)`` of shape (B, C, 1, 1), one constant per sample and channel (Guttenberg,
    2023). Stable Diffusion's schedule never destroys the signal entirely: at t = 999,
    ``sqrt(alpha_bar) = 0.07``, so a model trained on plain noise learns to read an image's
    mean colour from ``x_t`` itself, and at sampling, starting from pure noise, it reads a
    random one (Lin et al., 2024). The offset makes the mean of ``x_t`` unreliable, so the
    mean colour is taken from the conditions. At the ``cpu`` profile one seed on 16 test pairs
    measured the generated garments' mean colour error at 0.16 without it and 0.11 with it (a
    hint, not a committed result); chapter 3b measures the mechanism: how much of the clean
    mean colour a model could read off ``x_t`` at the first sampling step, with and without.
    """
    if len(shape) != 4:
        raise ValueError(f"training_noise: shape must be (B, C, H, W), got {tuple(shape)}")
    noise = torch.randn(shape, generator=generator)
    return noise + offset * torch.randn((shape[0], shape[1], 1, 1), generator=generator)


def min_snr_weights(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor,
                    gamma: float, prediction_type: str = "epsilon") -> torch.Tensor:
    """Min-SNR-gamma weights of the diffusion MSE (Hang et al., 2023), shape ``(B,)``:
    ``w_t = min(SNR_t, gamma) / SNR_t`` for epsilon, ``min(SNR_t, gamma) / (SNR_t + 1)`` for
    v, with ``SNR_t = abar_t / (1 - abar_t)``.

    Both weigh every step's x0 error by ``min(SNR_t, gamma)``: low-noise steps, whose target
    is easy and whose gradients conflict with the rest, are weighted down.
    """
    if gamma <= 0:
        raise ValueError(f"min_snr_gamma must be positive, got {gamma}")
    abar = alphas_cumprod.to(timesteps.device)[timesteps]
    snr = abar / (1 - abar)
    return snr.clamp(max=gamma) / (snr if prediction_type == "epsilon" else snr + 1)


def region_weights(mask: torch.Tensor, latent_size: tuple[int, int],
                   weight: float) -> torch.Tensor:
    """Per-position loss weights ``(B, 1, h, w)``: ``weight`` where the latent cell touches
    ``mask`` (``(B, 1, H, W)``, max-pooled to the latent grid), 1 elsewhere. The recipe's
    region weight uses the agnostic mask, its garment weight the person's garment."""
    if weight < 1:
        raise ValueError(f"a region's loss weight must be >= 1, got {weight}")
    inside = F.adaptive_max_pool2d(mask.float(), latent_size)
    return 1 + (weight - 1) * inside


def weighted_noise_mse(prediction: torch.Tensor, target: torch.Tensor, per_sample: torch.Tensor,
                       per_position: torch.Tensor) -> torch.Tensor:
    """``mean_b w_b sum_p u_p |target - prediction|^2 / sum_p u_p`` (target: eps or v).

    With all weights 1 and epsilon as the target this is
    :func:`~gardiffmini.losses.noise_mse`, the paper's L_mse.
    """
    squared = (prediction.float() - target.float()).square().mean(dim=1, keepdim=True)
    per_image = (squared * per_position).sum(dim=(1, 2, 3)) / per_position.sum(dim=(1, 2, 3))
    return (per_sample * per_image).mean()


def noise_scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    """The training noise schedule: Stable Diffusion's (1000 steps, scaled linear betas),
    for a UNet that predicts ``prediction_type`` (its sampler reads it from this config)."""
    return DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule="scaled_linear", clip_sample=False, prediction_type=prediction_type,
    )


def noised_latents(
    x0: torch.Tensor, generator: torch.Generator, scheduler: DDPMScheduler
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One training step's ``(eps, t, x_t)`` for the latents ``x0`` (B, C, h, w):
    ``eps`` from :func:`training_noise`, ``t`` uniform over the schedule's steps, and
    ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (the forward process). Drawn from
    ``generator`` in that order, on ``x0``'s device."""
    device = x0.device
    noise = training_noise(tuple(x0.shape), generator).to(device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),),
                              generator=generator).to(device)
    return noise, timesteps, scheduler.add_noise(x0, noise, timesteps)


def recipe_mse(
    prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
    agnostic_mask: torch.Tensor, scheduler: DDPMScheduler, recipe: Recipe,
    garment_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The diffusion MSE of a UNet ``prediction`` as ``recipe`` weighs it
    (:func:`weighted_noise_mse`): against ``eps`` or ``v``, with Min-SNR-gamma weights per
    sample and :func:`region_weights` per position: ``recipe.region_weight`` in the agnostic
    mask, times ``recipe.garment_weight`` on the person's own garment (``garment_mask``,
    ``(B, 1, H, W)``; required when that weight is not 1). :data:`PAPER_RECIPE` gives the
    paper's ``L_mse``."""
    alphas_cumprod = scheduler.alphas_cumprod.to(x0.device)
    v_model = recipe.prediction_type == "v_prediction"
    target = scheduler.get_velocity(x0, noise, timesteps) if v_model else noise
    per_sample = (min_snr_weights(timesteps, alphas_cumprod, recipe.min_snr_gamma,
                                  recipe.prediction_type)
                  if recipe.min_snr_gamma else torch.ones(len(x0), device=x0.device))
    per_position = region_weights(agnostic_mask, tuple(x0.shape[-2:]), recipe.region_weight)
    if recipe.garment_weight != 1:
        if garment_mask is None:
            raise ValueError("recipe_mse: a garment_weight other than 1 needs the garment_mask")
        per_position = per_position * region_weights(garment_mask, tuple(x0.shape[-2:]),
                                                     recipe.garment_weight)
    return weighted_noise_mse(prediction, target, per_sample, per_position)
