"""What needs no training, beside every try-on result: the baselines and the occluded subset.

- **agnostic**: the garment-agnostic person ``I_a`` as it is (the try-on region left grey);
- **warp+paste**: the warped garment ``I_w`` pasted into ``I_a`` inside its mask ``m_w``;
  everything else of the agnostic region (arms, neck, background) stays grey;
- **skin-primed** (:func:`skin_primed`, beside the recipe's ``skin_input`` only): both of the
  above on the agnostic image painted in the person's skin colour;
- **VAE round trip**: the VAE's reconstruction of the truth (the photo; for unpaired pairs
  ToyVITON's rendered truth where the batch has it), pasted back outside the agnostic mask,
  as the pipeline pastes its outputs: the ceiling of any latent model.

A try-on model that does not beat warp+paste has not learnt to try on. Where an arm lies in
front of the torso, ``m_w`` covers the arm, so pasting the garment there must fail:
:func:`occlusion_fraction` finds those pairs (the *occluded subset*).

Batches are dicts of tensors as :func:`gardiffmini.evaluate.evaluation_sets` makes them
(images in [-1, 1], masks in {0, 1}); every function returns images in [0, 1].
"""

from __future__ import annotations

import torch

from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.data.warp import paste_warped_garment
from gardiffmini.models.vae import pasted_round_trip
from gardiffmini.skin import face_skin_colour, skin_primed_agnostic

OCCLUDED_FRACTION = 0.05  # a pair is occluded when more than this share of m_w is not garment


def agnostic(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The agnostic image ``I_a`` as it is."""
    return batch["agnostic"].add(1).div(2)


def warp_and_paste(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``m_w * I_w + (1 - m_w) * I_a``: the warped garment pasted into the agnostic image."""
    pasted = paste_warped_garment(batch["agnostic"], batch["warped_cloth"], batch["warped_mask"])
    return pasted.add(1).div(2)


def skin_primed(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``batch`` with its agnostic image painted in the person's skin colour inside the agnostic
    mask (:mod:`gardiffmini.skin`): the input of the recipe's ``skin_input``, so that
    :func:`agnostic` and :func:`warp_and_paste` of it are what that cue gives with no model."""
    colour = face_skin_colour(batch["agnostic"], batch["parse"])
    return batch | {"agnostic": skin_primed_agnostic(batch["agnostic"], batch["agnostic_mask"],
                                                     colour)}


def vae_round_trip(vae, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The VAE's round trip of the truth (``batch["truth"]``, else the photo), pasted back
    outside the agnostic mask (the ceiling)."""
    truth = batch.get("truth", batch["person"])
    return pasted_round_trip(vae, truth, batch["agnostic_mask"]).add(1).div(2)


def occlusion_fraction(warped_mask: torch.Tensor, parse: torch.Tensor) -> torch.Tensor:
    """The share ``(B,)`` of each warped-garment mask ``m_w`` where the photo shows no garment.

    ``warped_mask`` is ``(B, 1, H, W)``, ``parse`` the person's label map ``(B, H, W)`` (LIP
    labels). In paired pairs this is where an arm (or hair) lies in front of the garment.
    """
    if warped_mask.ndim != 4 or parse.shape != (warped_mask.shape[0], *warped_mask.shape[-2:]):
        raise ValueError(f"warped_mask must be (B, 1, H, W) and parse (B, H, W); got "
                         f"{tuple(warped_mask.shape)} and {tuple(parse.shape)}")
    garment = torch.isin(parse, torch.tensor(GARMENT_LABELS, device=parse.device))
    inside = warped_mask[:, 0] > 0.5
    hidden = (inside & ~garment).sum(dim=(1, 2)).float()
    return hidden / inside.sum(dim=(1, 2)).clamp(min=1).float()


def occluded(batch: dict[str, torch.Tensor], threshold: float = OCCLUDED_FRACTION) -> torch.Tensor:
    """Boolean ``(B,)``: pairs whose garment is partly hidden (:func:`occlusion_fraction`)."""
    return occlusion_fraction(batch["warped_mask"], batch["parse"]) > threshold
