"""Probes of chapter 2: freeze a garment encoder and ask what its features kept.

- **Reconstruction probe.** Two decoders of equal capacity (the same convolutional trunk)
  learn to rebuild garments from a frozen feature: the CLIP embedding ``(E,)`` enters through
  a linear map to a small spatial grid, the VAE latent ``(C, h, w)`` through a 1x1
  convolution to the same grid. Trained on train-split garments, scored on the test split
  with PSNR, SSIM and the high-frequency measures of :mod:`gardiffmini.metrics`.
- **Attribute probe.** Logistic regression (linear) from each frozen feature to colour,
  category, pattern kind and stripe-frequency bin; accuracy on the test split. The VAE
  feature is its latent *flattened* (every position kept: the adapter sees it as tokens).

Everything returns plain dicts and tensors, so the notebook can print and plot them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio
from transformers import CLIPVisionModelWithProjection

from gardiffmini import metrics
from gardiffmini.data import garments
from gardiffmini.models.encoders import (
    FREQUENCY_BINS,
    clip_image_embeds,
    frequency_bin,
    load_attributes,
    load_images,
    to_float,
)
from gardiffmini.profiles import Profile
from gardiffmini.runs import Run, fit, step_generator, warmup_schedule

PROBE_GRID_CHANNELS = 16
ATTRIBUTES = ("colour", "category", "pattern", "stripe frequency")


@dataclass
class GarmentSet:
    """The garments of one split: uint8 images ``(N, 3, H, W)``, masks ``(N, 1, H, W)``."""

    images: torch.Tensor
    masks: torch.Tensor
    attributes: list[dict]

    @property
    def patterns(self) -> list[str]:
        """The pattern kind of each garment."""
        return [a["pattern"] for a in self.attributes]


def load_garments(root: Path | str, split: str, profile: Profile) -> GarmentSet:
    """The in-shop garments of ``split``, their masks and attributes, at the profile's size."""
    size = profile.image_size
    masks = (load_images(root, split, "cloth-mask", size)[:, :1] > 127).float()
    return GarmentSet(load_images(root, split, "cloth", size), masks, load_attributes(root, split))


@torch.no_grad()
def encode_garments(
    vae: AutoencoderKL, clip_encoder: CLIPVisionModelWithProjection, images: torch.Tensor,
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """Frozen features of uint8 garments: ``{"CLIP": (N, E), "VAE": (N, C, h, w)}``.

    CLIP: the projected pooled embedding the try-on model uses. VAE: the posterior mean.
    """
    clip, vae_latents = [], []
    for chunk in images.split(batch_size):
        pixels = to_float(chunk)
        clip.append(clip_image_embeds(clip_encoder, pixels))
        vae_latents.append(vae.encode(pixels).latent_dist.mode())
    return {"CLIP": torch.cat(clip), "VAE": torch.cat(vae_latents)}


def standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature zero mean and unit variance, with the train split's statistics."""
    mean, std = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


# ---- reconstruction probe ---------------------------------------------------------------

class ProbeDecoder(nn.Module):
    """A feature -> image decoder: an entry layer onto a grid, then a shared conv trunk.

    The grid is ``(PROBE_GRID_CHANNELS, h, w)`` with ``(h, w)`` the profile's latent size.
    A vector feature ``(E,)`` enters by a linear map, a spatial one ``(C, h, w)`` by a 1x1
    convolution. The trunk has half the widths of the profile's VAE decoder (to train in a
    minute on a CPU): one 3x3 conv per resolution, nearest up-sampling by 2 between them, up
    to the image size.
    """

    def __init__(self, feature_shape: tuple[int, ...], profile: Profile) -> None:
        super().__init__()
        h, w = profile.latent_size
        grid = PROBE_GRID_CHANNELS
        if len(feature_shape) == 1:
            self.entry = nn.Sequential(nn.Linear(feature_shape[0], grid * h * w),
                                       nn.Unflatten(1, (grid, h, w)))
        elif len(feature_shape) == 3 and tuple(feature_shape[1:]) == (h, w):
            self.entry = nn.Conv2d(feature_shape[0], grid, kernel_size=1)
        else:
            raise ValueError(
                f"feature_shape must be (E,) or (C, {h}, {w}) at profile {profile.name}, "
                f"got {tuple(feature_shape)}"
            )
        widths = [width // 2 for width in reversed(profile.vae_channels)]
        layers: list[nn.Module] = [nn.Conv2d(grid, widths[0], 3, padding=1), nn.SiLU()]
        for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(width_in, width_out, 3, padding=1),
                       nn.GroupNorm(8, width_out), nn.SiLU()]
        layers.append(nn.Conv2d(widths[-1], 3, 3, padding=1))
        self.trunk = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Images in (about) [-1, 1], ``(B, 3, H, W)``."""
        return self.trunk(self.entry(features))


def _fingerprint(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().float().contiguous().numpy().tobytes()).hexdigest()[:12]


def train_reconstruction_probe(
    name: str, features: torch.Tensor, images: torch.Tensor, profile: Profile,
    seed: int = 0, progress: bool = True,
) -> ProbeDecoder:
    """Train a :class:`ProbeDecoder` from frozen ``features`` to the uint8 ``images`` (L1).

    ``profile.probe_steps`` steps of batch ``profile.batch_size`` through a resumable run
    (named ``probe-<name>``; the features' fingerprint is part of its configuration).
    """
    if len(features) != len(images):
        raise ValueError(f"{len(features)} features but {len(images)} images: expected one each")
    config = {"profile_fields": profile.training_fields(), "features": _fingerprint(features),
              "grid_channels": PROBE_GRID_CHANNELS}
    run = Run.open(f"probe-{name.lower()}", profile.name, seed, config)
    torch.manual_seed(seed)
    decoder = ProbeDecoder(tuple(features.shape[1:]), profile)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        index = torch.randint(len(images), (profile.batch_size,),
                              generator=step_generator(seed, step))
        return {"loss": F.l1_loss(decoder(features[index]), to_float(images[index]))}

    optimizer = torch.optim.AdamW(decoder.parameters(), lr=profile.encoder_learning_rate)
    fit(run, {"decoder": decoder}, optimizer, loss_fn, profile.probe_steps,
        warmup_schedule(optimizer, profile.warmup_steps), desc=f"probe {name}",
        progress=progress)
    return decoder.eval().requires_grad_(False)


def reconstruction_scores(
    pred: torch.Tensor, target: torch.Tensor, masks: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-garment scores of images in [-1, 1]: PSNR (dB), SSIM, edge error, HF energy kept."""
    pred01, target01 = ((pred.clamp(-1, 1) + 1) / 2), ((target + 1) / 2)
    return {
        "PSNR": peak_signal_noise_ratio(pred01, target01, data_range=1.0, reduction="none",
                                        dim=(1, 2, 3)),
        "SSIM": metrics.ssim(pred01, target01),
        "edge error": metrics.garment_detail_error(pred01, target01, masks),
        "HF energy kept": metrics.high_frequency_energy_ratio(pred01, target01, masks),
    }


def summarize(scores: dict[str, torch.Tensor], groups: list[str]) -> dict[str, dict[str, float]]:
    """Mean of each score over all items (``"all"``) and over each group (e.g. pattern kind)."""
    table = {"all": {key: float(value.mean()) for key, value in scores.items()}}
    for group in sorted(set(groups)):
        chosen = torch.tensor([g == group for g in groups])
        table[group] = {key: float(value[chosen].mean()) for key, value in scores.items()}
    return table


def reconstruction_probe(
    features_train: dict[str, torch.Tensor], features_test: dict[str, torch.Tensor],
    train: GarmentSet, test: GarmentSet, profile: Profile, seed: int = 0,
    progress: bool = True,
) -> dict:
    """Rebuild the test garments from each frozen feature and score them.

    Returns ``{"reconstructions": {name: (N, 3, H, W) in [-1, 1]}, "scores": {name:
    {score: (N,)}}, "table": {name: {"all" | pattern: {score: mean}}}}``.
    """
    result: dict[str, dict] = {"reconstructions": {}, "scores": {}, "table": {}}
    target = to_float(test.images)
    for name in features_train:
        x_train, x_test = standardize(features_train[name], features_test[name])
        decoder = train_reconstruction_probe(name, x_train, train.images, profile, seed,
                                             progress)
        with torch.no_grad():
            rebuilt = torch.cat([decoder(chunk) for chunk in x_test.split(64)]).clamp(-1, 1)
        scores = reconstruction_scores(rebuilt, target, test.masks)
        result["reconstructions"][name] = rebuilt
        result["scores"][name] = scores
        result["table"][name] = summarize(scores, test.patterns)
    return result


# ---- attribute probe --------------------------------------------------------------------

def attribute_labels(attributes: list[dict]) -> dict[str, tuple[torch.Tensor, tuple[str, ...]]]:
    """``{attribute: (labels (N,), class names)}``; label -1 where it does not apply.

    Colour is the garment's main colour; stripe frequency (thin/medium/wide) applies to
    striped garments only.
    """
    def index(values: list[str], names: tuple[str, ...]) -> torch.Tensor:
        return torch.tensor([names.index(v) if v in names else -1 for v in values])

    stripes = [frequency_bin(a["stripe_frequency"]) if a["pattern"] == "stripes" else ""
               for a in attributes]
    return {
        "colour": (index([a["colors"][0] for a in attributes], garments.COLOR_NAMES),
                   garments.COLOR_NAMES),
        "category": (index([a["category"] for a in attributes], garments.CATEGORIES),
                     garments.CATEGORIES),
        "pattern": (index([a["pattern"] for a in attributes], garments.PATTERNS),
                    garments.PATTERNS),
        "stripe frequency": (index(stripes, FREQUENCY_BINS), FREQUENCY_BINS),
    }


def linear_probe_accuracies(
    x_train: torch.Tensor, labels_train: dict[str, torch.Tensor], x_test: torch.Tensor,
    labels_test: dict[str, torch.Tensor], n_classes: dict[str, int], steps: int = 300,
    weight_decay: float = 1e-3, seed: int = 0,
) -> dict[str, float]:
    """Test accuracy of one multinomial logistic regression per attribute (linear probes).

    Features are flattened and standardized; each attribute has its own linear layer
    ``softmax(W x + b)``, fitted by full-batch AdamW on the cross-entropy for ``steps``
    steps. The layers are trained side by side, which changes nothing (AdamW updates each
    parameter on its own gradient). Items labelled -1 are left out of that attribute.
    """
    x_train, x_test = standardize(x_train.flatten(1), x_test.flatten(1))
    for name, labels in {**labels_train, **labels_test}.items():
        if not (labels >= 0).any():
            raise ValueError(f"linear probe for {name!r} needs labelled items (label >= 0)")
    torch.manual_seed(seed)
    heads = nn.ModuleDict({name: nn.Linear(x_train.shape[1], n_classes[name])
                           for name in labels_train})
    optimizer = torch.optim.AdamW(heads.parameters(), lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(F.cross_entropy(head(x_train), labels_train[name], ignore_index=-1)
                   for name, head in heads.items())
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracies = {}
        for name, head in heads.items():
            keep = labels_test[name] >= 0
            correct = head(x_test[keep]).argmax(1) == labels_test[name][keep]
            accuracies[name] = float(correct.float().mean())
    return accuracies


def majority_accuracy(y_train: torch.Tensor, y_test: torch.Tensor) -> float:
    """Accuracy of always answering the train split's most common class (the floor)."""
    y_train, y_test = y_train[y_train >= 0], y_test[y_test >= 0]
    return float((y_test == torch.mode(y_train).values).float().mean())


def attribute_probe(
    features_train: dict[str, torch.Tensor], features_test: dict[str, torch.Tensor],
    train: GarmentSet, test: GarmentSet, steps: int = 300, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{feature name | "majority": {attribute: test accuracy}}`` of linear probes.

    Attributes without labelled garments in both splits are left out.
    """
    labels_train = attribute_labels(train.attributes)
    labels_test = attribute_labels(test.attributes)
    present = [a for a in ATTRIBUTES
               if (labels_train[a][0] >= 0).any() and (labels_test[a][0] >= 0).any()]
    y_train = {a: labels_train[a][0] for a in present}
    y_test = {a: labels_test[a][0] for a in present}
    n_classes = {a: len(labels_train[a][1]) for a in present}
    table = {name: linear_probe_accuracies(features_train[name], y_train, features_test[name],
                                           y_test, n_classes, steps, seed=seed)
             for name in features_train}
    table["majority"] = {a: majority_accuracy(y_train[a], y_test[a]) for a in present}
    return table


# ---- spectra and zoom-ins ---------------------------------------------------------------

def power_spectra(images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean radially averaged power spectrum of each image set in [-1, 1]; key ``"freqs"``."""
    spectra: dict[str, torch.Tensor] = {}
    for name, batch in images.items():
        freqs, power = metrics.radial_power_spectrum((batch.clamp(-1, 1) + 1) / 2)
        spectra["freqs"], spectra[name] = freqs, power.mean(0)
    return spectra


def detail_examples(attributes: list[dict]) -> dict[str, int]:
    """Indices of garments worth a zoom: printed text, and the finest stripes."""
    chosen = {}
    texts = [i for i, a in enumerate(attributes) if a["pattern"] == "text"]
    if texts:
        chosen["printed text"] = texts[0]
    stripes = [i for i, a in enumerate(attributes) if a["pattern"] == "stripes"]
    if stripes:
        chosen["fine stripes"] = max(stripes, key=lambda i: attributes[i]["stripe_frequency"])
    return chosen
