"""The skin-colour cue: the person's skin colour, read off the face, painted into the agnostic
region (the recipe's ``skin_input``; not in the paper).

The agnostic image greys out the arms with the garment, so the only skin a try-on model sees
is the face, far from where a shorter garment bares the arms. ACGPN (Yang et al., 2020) faced
the same gap and filled new arms with the colour of the face and neck. Here
:func:`face_skin_colour` reads that colour from the person's label map, and
:func:`skin_primed_agnostic` paints it over the whole agnostic region: the UNet reads its VAE
latent beside ``E(I_a)`` (:func:`gardiffmini.pipeline.tryon_unet_input`), so where the
requested garment leaves skin bare, the colour to paint is at hand.

Images are (B, 3, H, W) in [-1, 1], label maps (B, H, W) with the LIP labels of VITON-HD's
``image-parse-v3`` (:data:`~gardiffmini.data.layout.PARSE`).
"""

from __future__ import annotations

import torch

from gardiffmini.data.layout import PARSE

FACE_MIN_PIXELS = 16  # fewer face pixels than this: no skin colour can be read


def face_skin_colour(images: torch.Tensor, parse: torch.Tensor,
                     min_pixels: int = FACE_MIN_PIXELS) -> torch.Tensor:
    """``(B, 3)``: the per-channel median of each image's face pixels (label ``face`` in
    ``parse``), the person's skin colour. The median ignores the eyes and mouth a face holds.
    Raises ``ValueError`` naming the images whose label map has fewer than ``min_pixels``
    face pixels (a face turned away, a label map of another person)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"face_skin_colour: images must be (B, 3, H, W), got "
                         f"{tuple(images.shape)}")
    if parse.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"face_skin_colour: parse must be (B, H, W) = "
                         f"{(images.shape[0], *images.shape[-2:])} like images, got "
                         f"{tuple(parse.shape)}")
    face = parse == PARSE["face"]
    counts = face.sum(dim=(1, 2))
    missing = [i for i, count in enumerate(counts.tolist()) if count < min_pixels]
    if missing:
        raise ValueError(f"face_skin_colour: images {missing} have fewer than {min_pixels} "
                         f"face pixels in their label map, so no skin colour can be read")
    return torch.stack([image[:, mask].median(dim=1).values
                        for image, mask in zip(images.float(), face, strict=True)])


def skin_primed_agnostic(agnostic: torch.Tensor, agnostic_mask: torch.Tensor,
                         skin_colour: torch.Tensor) -> torch.Tensor:
    """The agnostic image with its masked region painted ``skin_colour`` ``(B, 3)``:
    ``m * c + (1 - m) * I_a``, for a mask ``m`` ``(B, 1, H, W)`` in [0, 1]."""
    if skin_colour.shape != (agnostic.shape[0], 3):
        raise ValueError(f"skin_colour must be (B, 3) = ({agnostic.shape[0]}, 3), got "
                         f"{tuple(skin_colour.shape)}")
    colour = skin_colour.to(agnostic)[:, :, None, None]
    mask = agnostic_mask.to(agnostic)
    return mask * colour + (1 - mask) * agnostic
