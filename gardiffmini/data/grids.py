"""Pixel grids for ``grid_sample``: every pixel's centre, and a map in pixels normalised.

A backward warp says, for each output pixel, where to read in the source image, in pixels;
``grid_sample`` (``align_corners=False``) wants that position as ``2 (x + 1/2) / width - 1``
and likewise for ``y``. The TPS (:mod:`gardiffmini.data.warp`) and the sleeves
(:mod:`gardiffmini.data.sleeves`) share both steps.
"""

from __future__ import annotations

import torch


def pixel_grid(height: int, width: int) -> torch.Tensor:
    """The centres ``(x, y)`` of all pixels, row by row: (height * width, 2) float64."""
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def normalised(source: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Positions ``(x, y)`` in pixels of a ``height x width`` source, (..., 2), as
    ``grid_sample`` reads them with ``align_corners=False``, float32."""
    scale = torch.tensor([width, height], dtype=source.dtype)
    return (2 * (source + 0.5) / scale - 1).float()
