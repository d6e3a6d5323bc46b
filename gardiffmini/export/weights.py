"""A trained try-on pipeline shipped inside the package, and loaded back.

``gardiffmini/weights/tryon-<profile>.safetensors`` holds the UNet (with the garment
processors), the adapter and the CLIP image encoder in float32; the JSON beside it holds
their configurations, the DDIM scheduler's configuration, the hash of the VAE they were
trained with (the profile's shipped VAE, :func:`~gardiffmini.models.vae.load_shipped_vae`),
the training run's identity and provenance, and whether the UNet reads the warp pasted into
its skin-primed image (the recipe's ``paste_warp``; records shipped before it existed: no).
Everything the page needs is rebuilt from these two files: nothing of the model is copied by
hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import DDIMScheduler, UNet2DConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from gardiffmini.models.adapter import GarmentAdapter
from gardiffmini.models.vae import load_shipped_vae
from gardiffmini.objective import DEFAULT_RECIPE
from gardiffmini.pipeline import GarDiffPipeline
from gardiffmini.profiles import Profile
from gardiffmini.shipped import WEIGHTS_DIR
from gardiffmini.train import weights_hash

VARIANT = "base+gfa"
# the book's recipe (DensePose and skin colour, which the page's gallery carries) on the
# book's warp for ToyVITON: the run is the Base + GFA of seed 0 that chapter 4 trains
# and chapter 7 measures
RECIPE = DEFAULT_RECIPE
WARP = "carved"
COMPONENTS = ("unet", "adapter", "image_encoder")


def shipped_tryon_path(profile: Profile) -> Path:
    """``gardiffmini/weights/tryon-<profile>.safetensors`` (the JSON record beside it)."""
    return WEIGHTS_DIR / f"tryon-{profile.name}.safetensors"


def _plain(config) -> dict:
    """A diffusers/transformers config as JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dict(config), default=list))


def save_tryon(pipeline: GarDiffPipeline, profile: Profile, record: dict,
               path: Path | None = None) -> Path:
    """Write ``pipeline``'s UNet, adapter and CLIP image encoder and their record; return the
    safetensors path. ``record`` (run identity, provenance) is stored with the configurations."""
    path = path or shipped_tryon_path(profile)
    tensors = {f"{name}.{key}": value.detach().float().contiguous()
               for name in COMPONENTS
               for key, value in getattr(pipeline, name).state_dict().items()}
    full = {
        "profile": profile.name, "variant": VARIANT, **record,
        "vae_hash": weights_hash(pipeline.vae),
        "unet_config": _plain(pipeline.unet.config),
        "adapter_config": _plain(pipeline.adapter.config),
        "image_encoder_config": pipeline.image_encoder.config.to_dict(),
        "scheduler_config": _plain(pipeline.scheduler.config),
        "paste_warp": bool(pipeline.config.paste_warp),
        "parameters": {name: sum(p.numel() for p in getattr(pipeline, name).parameters())
                       for name in COMPONENTS},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    path.with_suffix(".json").write_text(json.dumps(full, indent=2, default=str) + "\n")
    return path


def tryon_record(profile: Profile, path: Path | None = None) -> dict:
    """The JSON record of the shipped try-on model; a clear error where none is shipped."""
    path = path or shipped_tryon_path(profile)
    record_path = path.with_suffix(".json")
    if not (path.is_file() and record_path.is_file()):
        raise FileNotFoundError(
            f"{path} (and {record_path.name}) not found: ship the {profile.name} "
            f"try-on model with: python tools/ship_tryon.py --profile {profile.name}")
    return json.loads(record_path.read_text())


def load_tryon(profile: Profile, path: Path | None = None) -> GarDiffPipeline:
    """The shipped try-on pipeline of ``profile``, float32, in eval mode.

    Raises where the weights are missing, where the profile's shipped VAE is not the one the
    model was trained with, or where today's classes do not take the weights (the model
    changed since it was shipped): each error names the command that ships it again.
    """
    path = path or shipped_tryon_path(profile)
    record = tryon_record(profile, path)
    again = f"re-run: python tools/ship_tryon.py --profile {profile.name}"
    vae = load_shipped_vae(profile)
    if vae is None or weights_hash(vae) != record["vae_hash"]:
        raise ValueError(f"{path} was trained with VAE {record['vae_hash']}, but the "
                         f"{profile.name} profile's shipped VAE is "
                         f"{'missing' if vae is None else weights_hash(vae)}: {again}")
    weights = load_file(str(path))
    parts = {name: {k.split(".", 1)[1]: v for k, v in weights.items() if k.startswith(name + ".")}
             for name in COMPONENTS}
    adapter = GarmentAdapter.from_config(record["adapter_config"])
    unet = UNet2DConditionModel.from_config(record["unet_config"])
    adapter.install(unet)
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig.from_dict(record["image_encoder_config"]))
    try:
        for name, module in (("unet", unet), ("adapter", adapter), ("image_encoder", encoder)):
            module.load_state_dict(parts[name])
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit today's model ({error}); {again}") from error
    scheduler = DDIMScheduler.from_config(record["scheduler_config"])
    pipeline = GarDiffPipeline(unet=unet.eval().requires_grad_(False), vae=vae,
                               image_encoder=encoder.eval().requires_grad_(False),
                               adapter=adapter.eval().requires_grad_(False), scheduler=scheduler,
                               paste_warp=record.get("paste_warp", False))
    pipeline.set_progress_bar_config(disable=True)
    pipeline.record = record
    return pipeline

