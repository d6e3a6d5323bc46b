"""The shared inpainting base: what Stable Diffusion 2 inpainting is to the paper, at toy scale.

GarDiff starts every variant of its ablation from one pretrained inpainting UNet (GARDIFF.md,
"UNet input and base model"), whose extra input channels start at zero. How a person looks
and how a hole in one is filled, it already knows; the variants learn only to dress the
person. The small profiles have no such model, so the book makes one: the profile's UNet,
trained once on ToyVITON's training persons as an inpainting model with its garment inputs
empty (``E(I_w) = 0`` and all-zero tokens). It learns to denoise a person and to fill the
agnostic region from the person alone (body, arms, background, shading; the garment only as
a guess). Every variant then starts from its weights: the ``E(I_w)`` channels of the first
convolution at zero, as :func:`~gardiffmini.models.unet.widen_conv_in` leaves SD's new
channels, and the adapter as :func:`~gardiffmini.train.build_model` makes it.

The ``ci`` and ``cpu`` bases ship in the package (``python tools/ship_base.py --profile P``),
identified by :func:`base_hash`; another profile trains its base on first use and keeps it as
a run. ``profile.base_steps == 0`` means no base: the ``paper`` profile starts from SD.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import EMAModel

from gardiffmini.data.toyviton import TOYVITON_VERSION
from gardiffmini.models.unet import make_unet
from gardiffmini.objective import (
    PLAIN_RECIPE,
    Recipe,
    noise_scheduler,
    noised_latents,
    recipe_mse,
)
from gardiffmini.pipeline import add_person_inputs, tryon_unet_input
from gardiffmini.profiles import Profile
from gardiffmini.runs import Run, architecture, config_hash, fit, step_generator, warmup_schedule
from gardiffmini.shipped import WEIGHTS_DIR, load_shipped

BASE_SEED = 0  # one base for every seed of the variants, as the paper has one SD


def garment_channels(profile: Profile) -> slice:
    """The input channels of the UNet that carry ``E(I_w)`` (the second of the three latents
    of :func:`~gardiffmini.pipeline.tryon_unet_input`)."""
    return slice(profile.latent_channels, 2 * profile.latent_channels)


def make_base_unet(profile: Profile, recipe: Recipe = PLAIN_RECIPE) -> UNet2DConditionModel:
    """The profile's try-on UNet with its ``E(I_w)`` input weights at zero: an inpainting UNet
    that ignores the garment channels until a variant trains them; given the inputs of
    ``recipe``'s person conditions where it has them, as a variant is
    (:func:`~gardiffmini.pipeline.add_person_inputs`), to be trained with the rest."""
    unet = make_unet(profile)
    with torch.no_grad():
        unet.conv_in.weight[:, garment_channels(profile)] = 0
    return add_person_inputs(unet, recipe, profile)


def base_step_loss(
    unet: UNet2DConditionModel, cache: dict[str, torch.Tensor], index: torch.Tensor,
    generator: torch.Generator, scheduler: DDPMScheduler, n_tokens: int,
    recipe: Recipe = PLAIN_RECIPE,
) -> dict[str, torch.Tensor]:
    """One inpainting step on the cached pairs ``index``: the recipe's diffusion MSE
    (:func:`~gardiffmini.objective.recipe_mse`) of the UNet on ``[x_t, 0, E(I_a)]`` (then the
    cached DensePose and skin-primed latent where ``recipe`` reads them) with ``n_tokens``
    all-zero cross-attention tokens, i.e. with no garment at all."""
    device = next(unet.parameters()).device
    x0 = cache["x0"][index].to(device)
    noise, timesteps, x_t = noised_latents(x0, generator, scheduler)
    person = [cache[key][index].to(device) if wanted else None
              for key, wanted in (("pose", recipe.pose_input), ("skin", recipe.skin_input))]
    unet_input = tryon_unet_input(x_t, torch.zeros_like(x0), cache["agnostic"][index].to(device),
                                  *person)
    tokens = torch.zeros(len(index), n_tokens, unet.config.cross_attention_dim, device=device)
    prediction = unet(unet_input, timesteps, encoder_hidden_states=tokens).sample
    return {"loss": recipe_mse(prediction, x0, noise, timesteps,
                               cache["agnostic_mask"][index].to(device), scheduler, recipe)}


def base_config(profile: Profile, vae_id: str, recipe: Recipe = PLAIN_RECIPE) -> dict:
    """What determines the base's weights: data, VAE, architecture, recipe and schedule. The
    base that ships has no person inputs: its recipe is
    :data:`~gardiffmini.objective.PLAIN_RECIPE` (a variant's is
    :func:`~gardiffmini.objective.base_recipe` of its own)."""
    return {
        "toyviton": TOYVITON_VERSION, "seed": BASE_SEED, "size": profile.image_size,
        "n_train": profile.n_train, "vae": vae_id,
        "unet": architecture(make_base_unet(profile, recipe).config), "steps": profile.base_steps,
        "batch_size": profile.batch_size, "lr": profile.learning_rate,
        "warmup": profile.warmup_steps, "tokens": profile.clip_tokens, "recipe": recipe.identity(),
    }


def base_hash(profile: Profile, vae_id: str, recipe: Recipe = PLAIN_RECIPE) -> str:
    """The identity of the profile's base trained with ``recipe`` on the VAE ``vae_id`` (a
    weights hash)."""
    return config_hash(base_config(profile, vae_id, recipe))


def shipped_base_path(profile: Profile) -> Path:
    """Where the package keeps the inpainting base of ``profile`` (may not exist)."""
    return WEIGHTS_DIR / f"inpainting-base-{profile.name}.safetensors"


def load_shipped_base(profile: Profile, vae_id: str, recipe: Recipe = PLAIN_RECIPE
                      ) -> dict[str, torch.Tensor] | None:
    """The package's base of ``profile`` as a float32 state dict, or ``None`` when none was
    made by today's :func:`base_config` with ``recipe`` (then the caller trains one)."""
    shipped = load_shipped(shipped_base_path(profile), "base_hash",
                           base_hash(profile, vae_id, recipe))
    return None if shipped is None else shipped[0]


def train_base(
    profile: Profile, vae_id: str, training_set: Callable[[], dict[str, torch.Tensor]],
    progress: bool = True, recipe: Recipe = PLAIN_RECIPE,
) -> UNet2DConditionModel:
    """Train the profile's base with ``recipe`` (or load its finished run) on the cached
    ToyVITON training pairs that ``training_set()`` returns (called only when it must train;
    with the DensePose and skin-primed latents where ``recipe`` reads them); the returned
    UNet keeps its EMA weights and has ``.run``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BASE_SEED)
        unet = make_base_unet(profile, recipe)
    run = Run.open("inpainting-base", profile.name, BASE_SEED,
                   base_config(profile, vae_id, recipe))
    if run.finished:
        run.load({"unet": unet})
    else:
        cache = training_set()
        scheduler = noise_scheduler(recipe.prediction_type)
        params = [p for p in unet.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=profile.learning_rate, weight_decay=0.01)
        ema = EMAModel(params, decay=recipe.ema_decay, use_ema_warmup=True)

        def loss_fn(step: int) -> dict[str, torch.Tensor]:
            generator = step_generator(BASE_SEED, step)
            index = torch.randint(0, len(cache["x0"]), (profile.batch_size,), generator=generator)
            return base_step_loss(unet, cache, index, generator, scheduler, profile.clip_tokens,
                                  recipe)

        fit(run, {"unet": unet}, optimizer, loss_fn, profile.base_steps,
            warmup_schedule(optimizer, profile.warmup_steps), ema=ema,
            desc=f"inpainting base ({profile.name})", progress=progress)
    unet.run = run
    return unet.eval()


def inpainting_base(
    profile: Profile, vae_id: str, training_set: Callable[[], dict[str, torch.Tensor]],
    progress: bool = True, use_shipped: bool = True, recipe: Recipe = PLAIN_RECIPE,
) -> dict[str, torch.Tensor] | None:
    """The weights every variant of ``profile`` starts from: the shipped base where it was made
    with ``recipe`` (the one that ships, with :data:`~gardiffmini.objective.PLAIN_RECIPE`),
    else :func:`train_base` with ``recipe``; ``None`` when the profile has no base
    (``base_steps == 0``)."""
    if profile.base_steps == 0:
        return None
    shipped = load_shipped_base(profile, vae_id, recipe) if use_shipped else None
    if shipped is not None:
        return shipped
    return train_base(profile, vae_id, training_set, progress, recipe).state_dict()
