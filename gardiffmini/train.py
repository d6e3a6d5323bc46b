"""One training loop for every variant of the ablation: Base, Base+AL, Base+GFA, Base+GFA+AL.

- **Base**: the 12-channel inpainting UNet ``[x_t, E(I_w), E(I_a)]`` whose cross-attention
  sees only the CLIP tokens of the in-shop garment.
- **+GFA**: the garment-focused adapter: VAE tokens of the warped garment through their
  own key/value projections (decoupled cross-attention), with masked attention.
- **+AL**: the appearance loss on the DDIM estimate of x0 (chapter 6), weighted by lambda.

The garment encoders (chapter 2) are frozen, so every latent and CLIP embedding of the
training set is computed once and cached. The loop is :func:`gardiffmini.runs.fit`:
checkpoints, resume, reuse of finished runs, progress, and a stop on a non-finite loss.
``accelerate`` handles devices, mixed precision and ``accelerate launch`` on several GPUs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file
from tqdm.auto import tqdm

from gardiffmini.baselines import skin_primed
from gardiffmini.data.datasets import default_warp, open_dataset
from gardiffmini.data.fingerprint import data_fingerprint
from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.data.warp import paste_warped_garment
from gardiffmini.features import default_features
from gardiffmini.inpainting_base import base_hash, inpainting_base
from gardiffmini.losses import FrozenDecoder, epsilon_from_v, gardiff_loss
from gardiffmini.metrics import label_region
from gardiffmini.models.adapter import GarmentAdapter
from gardiffmini.models.attention import garment_processors, start_vae_stream_at_zero
from gardiffmini.models.encoders import clip_image_embeds, load_or_train_encoders
from gardiffmini.models.unet import add_input_channels, make_unet
from gardiffmini.objective import (
    DEFAULT_RECIPE,
    OFFSET_NOISE,
    Recipe,
    base_recipe,
    noise_scheduler,
    noised_latents,
    recipe_mse,
)
from gardiffmini.paths import runs_root
from gardiffmini.pipeline import (
    GarDiffPipeline,
    add_person_inputs,
    encode_latents,
    extra_input_channels,
    pose_latent,
    tryon_unet_input,
)
from gardiffmini.precision import mixed_precision_for
from gardiffmini.profiles import Profile
from gardiffmini.runs import (
    DEFAULT_SPEED,
    Run,
    Speed,
    architecture,
    atomic_save_tensors,
    config_hash,
    device_cache,
    fit,
    optimizer_parameters,
    step_generator,
    warmup_cosine_schedule,
    warmup_schedule,
)

CONDITION_DROP = 0.05  # the paper drops the garment conditions with p = 0.05 (for CFG)


@dataclass(frozen=True)
class Variant:
    """A row of the ablation table."""

    name: str
    garment_adapter: bool
    appearance_loss: bool
    mask_branches: tuple[str, ...] = ("vae",)
    appearance_weight: float = 1e-3
    # the VAE stream's values start at zero, so that training starts from the Base model
    # (:func:`~gardiffmini.models.attention.start_vae_stream_at_zero`)
    vae_stream_from_zero: bool = False


VARIANTS: dict[str, Variant] = {
    "base": Variant("Base", garment_adapter=False, appearance_loss=False),
    "base+al": Variant("Base + AL", garment_adapter=False, appearance_loss=True),
    "base+gfa": Variant("Base + GFA", garment_adapter=True, appearance_loss=False),
    "base+gfa+al": Variant("Base + GFA + AL", garment_adapter=True, appearance_loss=True),
}


def get_variant(name: str | Variant) -> Variant:
    """The variant called ``name`` (``base``, ``base+al``, ``base+gfa``, ``base+gfa+al``)."""
    if isinstance(name, Variant):
        return name
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]


@torch.no_grad()
def encode_split(
    dataset: torch.utils.data.Dataset, vae, image_encoder, batch_size: int = 32,
    desc: str = "encoding", pose: bool = False, skin: bool = False, paste_warp: bool = False,
) -> dict[str, torch.Tensor]:
    """Everything a frozen-encoder training step needs, for every pair of ``dataset``.

    Returns latents ``x0 = E(I)``, ``warped = E(I_w)``, ``agnostic = E(I_a)`` (scaled by
    the VAE's scaling factor), the CLIP embedding of the in-shop garment, the warped
    garment mask ``m_w``, the agnostic mask, the garment the person wears (their label map's
    garment labels, a bool mask) and the person image (uint8, for the appearance loss); with
    ``pose``, the person's DensePose on the latent grid too (``"pose"``,
    :func:`~gardiffmini.pipeline.pose_latent`, for the recipe's ``pose_input``); with
    ``skin``, ``E`` of the agnostic image painted in the person's skin colour (``"skin"``,
    :func:`~gardiffmini.baselines.skin_primed`, for its ``skin_input``), with ``paste_warp``
    that image with the warped garment pasted into it
    (:func:`~gardiffmini.data.warp.paste_warped_garment`, for its ``paste_warp``).
    """
    if paste_warp and not skin:
        raise ValueError("paste_warp pastes the warp into the skin-primed agnostic image: it "
                         "needs skin")
    # the computed warp is numpy work per pair: worker processes do it while this one encodes
    workers = min(2, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers, persistent_workers=False)
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in tqdm(loader, desc=desc):
        encoded = {
            "x0": encode_latents(vae, batch["person"]),
            "warped": encode_latents(vae, batch["warped_cloth"]),
            "agnostic": encode_latents(vae, batch["agnostic"]),
            "clip": clip_image_embeds(image_encoder, batch["cloth"]),
            "warped_mask": batch["warped_mask"],
            "agnostic_mask": batch["agnostic_mask"],
            "garment_mask": label_region(batch["parse"], GARMENT_LABELS).bool(),
            "person": ((batch["person"] + 1) * 127.5).round().to(torch.uint8),
        }
        if pose:
            encoded["pose"] = pose_latent(batch["densepose"], tuple(encoded["x0"].shape[-2:]))
        if skin:
            primed = skin_primed(batch)["agnostic"]
            if paste_warp:
                primed = paste_warped_garment(primed, batch["warped_cloth"], batch["warped_mask"])
            encoded["skin"] = encode_latents(vae, primed)
        for key, value in encoded.items():
            parts.setdefault(key, []).append(value.cpu())
    return {key: torch.cat(values) for key, values in parts.items()}


def build_model(
    profile: Profile, variant: Variant, base: dict[str, torch.Tensor] | None = None,
    recipe: Recipe = DEFAULT_RECIPE,
) -> tuple[torch.nn.Module, GarmentAdapter]:
    """A fresh try-on UNet and garment adapter for ``variant`` at ``profile``: the UNet starts
    from the inpainting ``base`` weights where given (:mod:`gardiffmini.inpainting_base`),
    else at random; the adapter's own weights always start fresh. The UNet is then given
    the inputs of ``recipe``'s person conditions
    (:func:`~gardiffmini.pipeline.add_person_inputs`): appended at zero, so that the model
    starts as the one built without them from the same seed, and computes what it does, and
    with ``recipe.skin_init == "agnostic"`` read as it read ``E(I_a)``, so that it starts as
    the one without them would on the skin-primed agnostic image. A base trained with the
    person inputs (``recipe.person_base``) already reads them: the UNet keeps its weights
    for them as they are."""
    unet = make_unet(profile)
    person_base = recipe.person_base and base is not None
    if person_base:  # the base's own input channels
        add_input_channels(unet, extra_input_channels(recipe, profile))
    if base is not None:
        unet.load_state_dict(base)
    adapter = GarmentAdapter.from_profile(
        profile, use_vae_tokens=variant.garment_adapter, mask_branches=variant.mask_branches
    )
    adapter.install(unet)
    if variant.garment_adapter and variant.vae_stream_from_zero:
        start_vae_stream_at_zero(unet)
    if not person_base:
        add_person_inputs(unet, recipe, profile)
    return unet, adapter


def weights_hash(*models: torch.nn.Module) -> str:
    """A short fingerprint of the weights of ``models`` (which frozen encoders a run used)."""
    digest = hashlib.sha256()
    for model in models:
        for name, value in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def adapter_parameters(unet: torch.nn.Module, adapter: torch.nn.Module
                       ) -> list[torch.nn.Parameter]:
    """The trainable parameters the adapter adds to the UNet: the garment adapter's own and
    those of the garment cross-attention processors it installs (their VAE stream)."""
    processors = garment_processors(unet).values()
    return [p for m in (adapter, *processors) for p in m.parameters() if p.requires_grad]


def variant_optimizer(params: list[torch.nn.Parameter], profile: Profile, recipe: Recipe,
                      adapter_params: list[torch.nn.Parameter] = ()) -> torch.optim.AdamW:
    """The paper's AdamW (betas 0.9, 0.999, weight decay 0.01) at the profile's learning rate
    times the recipe's ``learning_rate_scale``; ``adapter_params`` (those of ``params`` that
    the adapter adds, :func:`adapter_parameters`) at that rate times
    ``adapter_learning_rate_scale``."""
    lr = profile.learning_rate * recipe.learning_rate_scale
    groups = [{"params": list(params)}]
    if adapter_params and recipe.adapter_learning_rate_scale != 1:
        added = {id(p) for p in adapter_params}
        groups = [{"params": [p for p in params if id(p) not in added]},
                  {"params": list(adapter_params), "lr": lr * recipe.adapter_learning_rate_scale}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), weight_decay=0.01)


def learning_rate_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, warmup_steps: int,
                           steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipe's learning rate over a run of ``steps``: a linear warm-up, then constant
    or a cosine decay to zero at the last step (``recipe.lr_schedule``)."""
    if recipe.lr_schedule == "cosine":
        return warmup_cosine_schedule(optimizer, warmup_steps, steps)
    return warmup_schedule(optimizer, warmup_steps)


def run_config(
    profile: Profile, variant: Variant, steps: int, encoders_id: str, unet_config: dict,
    recipe: Recipe = DEFAULT_RECIPE,
) -> dict:
    """What identifies a try-on run: variant, recipe, schedule, optimiser, UNet and encoders."""
    return {
        "variant": asdict(variant), "recipe": recipe.identity(),
        "unet": architecture(unet_config), "steps": steps,
        "lr": profile.learning_rate, "warmup": profile.warmup_steps,
        "batch_size": profile.batch_size,
        "condition_drop": CONDITION_DROP, "offset_noise": OFFSET_NOISE, "encoders": encoders_id,
        "profile_settings": profile.training_fields(),
    }


def diffusion_step_loss(
    unet, adapter, cache: dict[str, torch.Tensor], index: torch.Tensor,
    generator: torch.Generator, scheduler: DDPMScheduler, variant: Variant, vae=None,
    features=None, appearance_samples: int = 0, recipe: Recipe = DEFAULT_RECIPE,
) -> dict[str, torch.Tensor]:
    """The loss of one training step on the cached pairs ``index``.

    The diffusion MSE (the paper's noise objective on :func:`training_noise`, or its v
    counterpart), weighted as ``recipe`` says (:func:`weighted_noise_mse`), plus, for
    ``+AL`` variants, ``lambda * (L_spatial + L_high_freq)`` on the decoded DDIM estimate of
    x0 (of the first ``appearance_samples`` samples of the batch, 0: all; of those below
    ``recipe.appearance_max_timestep`` where it is set), a v model's output
    turned into the epsilon of the paper's equation first. With probability
    :data:`CONDITION_DROP` a sample loses its garment: the CLIP embedding and the adapter's
    latent are zeroed, and with ``recipe.drop_warped_latent`` the UNet's ``E(I_w)`` too. With
    ``recipe.pose_input`` the UNet also reads the cached DensePose (``cache["pose"]``), and with
    ``recipe.skin_input`` the skin-primed agnostic latent (``cache["skin"]``), never dropped:
    they describe the person, as ``E(I_a)`` does.
    """
    device = next(unet.parameters()).device
    batch = {key: value[index].to(device) for key, value in cache.items()}
    x0 = batch["x0"]
    noise, timesteps, x_t = noised_latents(x0, generator, scheduler)
    keep = (torch.rand(len(index), generator=generator) >= CONDITION_DROP).float().to(device)
    warped = batch["warped"] * keep[:, None, None, None]
    tokens = adapter(batch["clip"] * keep[:, None], warped)
    unet_warped = warped if recipe.drop_warped_latent else batch["warped"]
    pose = batch["pose"] if recipe.pose_input else None
    skin = batch["skin"] if recipe.skin_input else None
    unet_input = tryon_unet_input(x_t, unet_warped, batch["agnostic"], pose, skin)
    kwargs = {"garment_mask": batch["warped_mask"]} if variant.garment_adapter else None
    prediction = unet(unet_input, timesteps, encoder_hidden_states=tokens,
                      cross_attention_kwargs=kwargs).sample
    mse = recipe_mse(prediction, x0, noise, timesteps, batch["agnostic_mask"], scheduler,
                     recipe, garment_mask=batch["garment_mask"])
    if not variant.appearance_loss:
        return {"loss": mse}
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    eps = (epsilon_from_v(prediction, x_t, timesteps, alphas_cumprod)
           if recipe.prediction_type == "v_prediction" else prediction)
    person = batch["person"].float() / 127.5 - 1
    losses = gardiff_loss(
        eps, noise, x_t, timesteps, alphas_cumprod, person,
        batch["warped_mask"], decoder=FrozenDecoder(vae), features=features,
        lam=variant.appearance_weight, scaling_factor=vae.config.scaling_factor,
        appearance_samples=appearance_samples or None, mse=mse,
        max_timestep=recipe.appearance_max_timestep,
    )
    return {"loss": losses["total"], "mse": mse, "spatial": losses["spatial"],
            "high_freq": losses["high_freq"]}


def train_variant(
    variant: str | Variant, profile: Profile, seed: int = 0,
    data_root: Path | str | None = None, steps: int | None = None,
    mixed_precision: str | None = None, progress: bool = True, recipe: Recipe = DEFAULT_RECIPE,
    pairs_file: Path | str | None = None, speed: Speed = DEFAULT_SPEED,
    warp: str | None = None,
) -> GarDiffPipeline:
    """Train ``variant`` at ``profile`` with ``recipe`` (or reuse the finished run) and
    return its pipeline. ``data_root`` is a folder in the VITON-HD layout or one DressCode
    category folder (:func:`~gardiffmini.data.datasets.open_dataset`; default: the profile's
    ToyVITON). It trains on the pairs of ``pairs_file`` (a path, or a name under
    ``data_root``) where given, else on the layout's training pairs; both are part of the
    run's identity (:func:`~gardiffmini.data.fingerprint.data_fingerprint`), and so is the
    warp protocol ``warp`` (:data:`~gardiffmini.data.datasets.WARPS`: ``"computed"`` or
    ``"carved"``, what a user has, or ToyVITON's exact ``"oracle"`` warp; ``None``: the data's
    :func:`~gardiffmini.data.datasets.default_warp`).
    ``mixed_precision`` (accelerate's: ``"no"``, ``"bf16"``, ``"fp16"``; ``None``: what the
    device calls for, :func:`~gardiffmini.precision.mixed_precision_for`, fp32 on a CPU) is
    part of the identity too, since it changes the weights; ``speed``
    (:class:`~gardiffmini.runs.Speed`) says how the steps run on the device."""
    variant = get_variant(variant)
    mixed_precision = mixed_precision_for() if mixed_precision is None else mixed_precision
    steps = profile.diffusion_steps if steps is None else steps
    root = Path(data_root) if data_root else ensure_toyviton(profile)
    warp = default_warp(root) if warp is None else warp
    vae, image_encoder = load_or_train_encoders(profile, seed=0, progress=progress)
    encoders_id = weights_hash(vae, image_encoder)
    vae_id = weights_hash(vae)
    shared = base_recipe(recipe)
    base = inpainting_base(  # trained, where not shipped, on ToyVITON, as SD was on LAION
        profile, vae_id,
        lambda: cached_training_set(ensure_toyviton(profile), profile, vae, image_encoder,
                                    encoders_id, pose=recipe.pose_input, skin=recipe.skin_input),
        progress=progress, recipe=shared)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, adapter = build_model(profile, variant, base, recipe)
    slug = variant.name.lower().replace(" ", "")
    run = Run.open(f"tryon-{slug}", profile.name, seed,
                   run_config(profile, variant, steps, encoders_id, unet.config, recipe)
                   | {"data": data_fingerprint(root, "train", pairs_file), "warp": warp,
                      "base": base_hash(profile, vae_id, shared) if base is not None else None}
                   # fp32 runs keep the identity they had before mixed precision existed
                   | ({"mixed_precision": mixed_precision} if mixed_precision != "no" else {}))
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())
    if not run.finished:
        cache = cached_training_set(root, profile, vae, image_encoder, encoders_id,
                                    pairs_file, warp, pose=recipe.pose_input,
                                    skin=recipe.skin_input, paste_warp=recipe.paste_warp)
        scheduler = noise_scheduler(recipe.prediction_type)
        params = [p for m in (unet, adapter) for p in m.parameters() if p.requires_grad]
        optimizer = variant_optimizer(params, profile, recipe, adapter_parameters(unet, adapter))
        lr_schedule = learning_rate_schedule(optimizer, recipe, profile.warmup_steps, steps)
        cache = device_cache(cache, accelerator.device)
        vae.to(accelerator.device).requires_grad_(False)
        if speed.gradient_checkpointing:  # the appearance loss back-propagates through D
            vae.enable_gradient_checkpointing()
        unet, adapter, optimizer = accelerator.prepare(unet, adapter, optimizer)
        ema = None
        if recipe.ema_decay:
            ema = EMAModel(optimizer_parameters(optimizer), decay=recipe.ema_decay,
                           use_ema_warmup=True)
            ema.to(accelerator.device)
        features = default_features().to(accelerator.device) if variant.appearance_loss else None
        process_seed = seed + 10_007 * accelerator.process_index

        def loss_fn(step: int) -> dict[str, torch.Tensor]:
            generator = step_generator(process_seed, step)
            index = torch.randint(0, len(cache["x0"]), (profile.batch_size,), generator=generator)
            return diffusion_step_loss(unet, adapter, cache, index, generator, scheduler,
                                       variant, vae=vae, features=features,
                                       appearance_samples=profile.appearance_samples,
                                       recipe=recipe)

        fit(run, {"unet": unet, "adapter": adapter}, optimizer, loss_fn, steps, lr_schedule,
            accelerator=accelerator, desc=f"{variant.name} ({profile.name})", progress=progress,
            ema=ema, speed=speed, batch_size=profile.batch_size)
        unet, adapter = accelerator.unwrap_model(unet), accelerator.unwrap_model(adapter)
    else:
        run.load({"unet": unet, "adapter": adapter})
    pipeline = GarDiffPipeline(
        unet=unet.eval(), vae=vae, image_encoder=image_encoder, adapter=adapter.eval(),
        scheduler=DDIMScheduler.from_config(noise_scheduler(recipe.prediction_type).config),
        paste_warp=recipe.paste_warp,
    )
    pipeline.run = run
    return pipeline


def cached_training_set(
    root: Path, profile: Profile, vae, image_encoder, encoders_id: str,
    pairs_file: Path | str | None = None, warp: str | None = None,
    pose: bool = DEFAULT_RECIPE.pose_input, skin: bool = DEFAULT_RECIPE.skin_input,
    paste_warp: bool = DEFAULT_RECIPE.paste_warp,
) -> dict[str, torch.Tensor]:
    """:func:`encode_split` of the training pairs (of ``pairs_file`` where given), their
    garments warped by the protocol ``warp`` (:data:`~gardiffmini.data.datasets.WARPS`;
    ``None``: the data's :func:`~gardiffmini.data.datasets.default_warp`), with the DensePose
    on the latent grid where ``pose`` asks for it and the skin-primed agnostic latent where
    ``skin`` does, the warp pasted into it where ``paste_warp`` does (by default, what the
    book's recipe reads), cached on disk next to the runs (a cache without them keeps the key
    it had before they existed)."""
    warp = default_warp(root) if warp is None else warp
    data = data_fingerprint(root, "train", pairs_file)
    key = config_hash({"root": str(Path(root).resolve()), "encoders": encoders_id,
                       "size": profile.image_size, "data": data, "warp": warp}
                      | ({"pose": True} if pose else {}) | ({"skin": True} if skin else {})
                      | ({"paste_warp": True} if paste_warp else {}))
    path = runs_root() / "cache" / f"train-{profile.name}-{key}.safetensors"
    if path.exists():
        return load_file(str(path))
    dataset = open_dataset(root, split="train", pairing="paired", size=profile.image_size,
                           pairs_file=pairs_file, warp=warp)
    cache = encode_split(dataset, vae, image_encoder, desc="caching latents", pose=pose,
                         skin=skin, paste_warp=paste_warp)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_tensors(path, cache)
    return cache
