"""Evaluation metrics, each with its toolchain stated (:data:`TOOLCHAIN`), as chapter 7 prints it.

Images here are ``(B, 3, H, W)`` in ``[0, 1]`` (map model outputs with ``(x + 1) / 2`` and clamp).

- ``SSIM``: torchmetrics, Gaussian window 11, sigma 1.5, ``data_range=1.0`` (as LaDI-VTON).
- ``LPIPS``: torchmetrics, AlexNet, ``normalize=True`` (as LaDI-VTON); only where torchvision and
  its ImageNet AlexNet checkpoint are present locally, else :class:`MetricUnavailable`.
- ``FID``/``KID`` (Inception): torchmetrics' InceptionV3 (torch-fidelity's ``2015-12-05``
  weights, 2048-d pool features); opt-in, only where torch-fidelity and the weights are present.
- ``FID_toy``/``KID_toy``: the same Frechet and kernel distances measured in the penultimate
  features of :class:`gardiffmini.features.ToyVitonFeatureNet`, a network trained on ToyVITON.
  These are NOT Inception FID/KID and never comparable with the paper's numbers.
- ``attribute_accuracy``: that network's accuracy at recognising the garment's attributes on
  generated images (a garment-fidelity score).
- ``garment_detail_error`` and ``high_frequency_energy_ratio``: the garment-detail measures of
  chapters 2-5 (Sobel edge magnitudes; share of high-frequency power kept).
- ``skin_error``: the colour error on skin that the requested garment bares and the
  person's own garment covered (unpaired, against ToyVITON's rendered truth).

KID is reported x100, as in the paper's Table 1 (``scale`` argument).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torchmetrics
from torchmetrics.functional.image import structural_similarity_index_measure

from gardiffmini.data.layout import GARMENT_LABELS, SKIN_LABELS
from gardiffmini.features import ToyVitonFeatureNet
from gardiffmini.losses import check_image_batch, sobel_edges

KID_SCALE = 100.0
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"

_TM = f"torchmetrics {torchmetrics.__version__}"
TOOLCHAIN: dict[str, str] = {
    "colour_match": "mean RGB inside m_w of the result vs the in-shop garment (inside its mask) "
                    "and the person's own garment (parse labels); nearest wins",
    "SSIM": f"{_TM} structural_similarity_index_measure, gaussian 11, sigma 1.5, data_range=1.0",
    "LPIPS": f"{_TM} LearnedPerceptualImagePatchSimilarity, net_type=alex, normalize=True",
    "FID": f"{_TM} InceptionV3 (torch-fidelity 2015-12-05 weights, 2048-d), Frechet distance "
           "float64 scipy.linalg.sqrtm",
    "KID": f"{_TM} InceptionV3 (2048-d), unbiased MMD^2, kernel (x.y/d+1)^3, x{KID_SCALE:g}",
    "FID_toy": "Frechet distance (float64, scipy.linalg.sqrtm) in ToyVitonFeatureNet "
               "penultimate features; not Inception FID",
    "KID_toy": f"unbiased MMD^2, kernel (x.y/d+1)^3, in ToyVitonFeatureNet penultimate "
               f"features, x{KID_SCALE:g}; not Inception KID",
    "attribute_accuracy": "ToyVitonFeatureNet attribute accuracy on generated person images",
    "garment_detail_error": "mean |Sobel magnitude(pred) - Sobel magnitude(target)| in the "
                            "garment mask, images in [0, 1]",
    "hf_energy_ratio": "FFT power above the cutoff (cycles/pixel), pred / target, "
                       "mean-removed, in the garment mask",
    "skin_error": "mean |pred - truth| (RGB, [0, 1]) where the truth's labels are skin (neck, "
                  "arms) and the person's own labels garment; images with fewer than "
                  "SKIN_MIN_PIXELS such pixels left out",
}
SKIN_MIN_PIXELS = 20  # fewer newly bared pixels than this (at 128x96: 0.16 %) is no case


class MetricUnavailable(RuntimeError):
    """A metric's network or weights are not present locally (nothing is ever downloaded)."""


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    check_image_batch("pred", pred, value_range=(0.0, 1.0))
    check_image_batch("target", target, value_range=(0.0, 1.0))
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must have the same shape")


def _check_optional_mask(mask: torch.Tensor | None, images: torch.Tensor) -> None:
    if mask is None:
        return
    check_image_batch("mask", mask, channels=1, value_range=(0.0, 1.0))
    if mask.shape[0] != images.shape[0] or mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} must be (B, 1, H, W) for images "
                         f"{tuple(images.shape)}")


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image ``(B,)`` (toolchain: ``TOOLCHAIN["SSIM"]``); ``.mean()`` for the table.

    Images in ``[0, 1]``, at least 11 pixels on each side.
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 pixels; got {tuple(pred.shape)}")
    return structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")


def _hub_checkpoint(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def lpips_status() -> str | None:
    """``None`` if LPIPS (AlexNet) can run offline here, else why it cannot."""
    if importlib.util.find_spec("torchvision") is None:
        return "LPIPS needs torchvision (for AlexNet), which is not installed"
    if not _hub_checkpoint(ALEXNET_WEIGHTS).is_file():
        return (f"LPIPS needs torchvision's ImageNet AlexNet weights at "
                f"{_hub_checkpoint(ALEXNET_WEIGHTS)}; they are not downloaded automatically")
    return None


@cache
def _lpips_module() -> torch.nn.Module:
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)


def lpips(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """LPIPS per image ``(B,)`` (toolchain: ``TOOLCHAIN["LPIPS"]``), images in ``[0, 1]``.

    Raises :class:`MetricUnavailable` (with the reason) where the AlexNet weights or
    torchvision are missing: nothing is downloaded.
    """
    _check_pair(pred, target)
    reason = lpips_status()
    if reason is not None:
        raise MetricUnavailable(reason)
    metric = _lpips_module().to(pred.device)
    scores = []
    for one_pred, one_target in zip(pred, target, strict=True):
        metric.reset()
        scores.append(metric(one_pred[None], one_target[None]))
    return torch.stack(scores)


def inception_features(images: torch.Tensor, weights_path: str | Path | None = None,
                       batch_size: int = 32) -> torch.Tensor:
    """2048-d InceptionV3 pool features (toolchain: ``TOOLCHAIN["FID"]``), images in ``[0, 1]``.

    Opt-in: needs torch-fidelity and its weights file (default: torch hub's checkpoints folder,
    ``weights-inception-2015-12-05-6726825d.pth``); raises :class:`MetricUnavailable` otherwise.
    """
    check_image_batch("images", images, value_range=(0.0, 1.0))
    path = Path(weights_path) if weights_path else _hub_checkpoint(INCEPTION_WEIGHTS)
    if importlib.util.find_spec("torch_fidelity") is None:
        raise MetricUnavailable("Inception FID/KID need torch-fidelity, which is not installed")
    if not path.is_file():
        raise MetricUnavailable(f"Inception weights not found at {path}; they are not "
                                "downloaded automatically")
    from torchmetrics.image.fid import NoTrainInceptionV3

    net = NoTrainInceptionV3("inception-v3-compat", ["2048"], str(path)).to(images.device)
    uint8 = (images * 255).round().to(torch.uint8)
    return torch.cat([net(chunk) for chunk in uint8.split(batch_size)]).double().cpu()


def _as_float64_matrix(name: str, feats: torch.Tensor | np.ndarray) -> np.ndarray:
    array = feats.detach().cpu().double().numpy() if torch.is_tensor(feats) else np.asarray(feats)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"{name} must be a matrix (N, D) with N >= 2; got shape {array.shape}")
    return array.astype(np.float64)


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray,
                     eps: float = 1e-6) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (Heusel et al. 2017).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, float64, ``scipy.linalg.sqrtm``;
    covariances with ``N - 1``. If the product is singular, ``eps * I`` is added to both
    covariances (as pytorch-fid does). FID_toy in ToyVitonFeatureNet features, FID in Inception's.
    """
    a, b = _as_float64_matrix("feats_a", feats_a), _as_float64_matrix("feats_b", feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a {a.shape} and feats_b {b.shape} need the same dimension")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    root = scipy.linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        offset = np.eye(cov_a.shape[0]) * eps
        root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = root.real
    distance = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root)
    return float(max(distance, 0.0))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    dim = x.shape[1]
    k_xx = (x @ x.T / dim + 1) ** 3
    k_yy = (y @ y.T / dim + 1) ** 3
    k_xy = (x @ y.T / dim + 1) ** 3
    m, n = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray,
                    subset_size: int | None = None, n_subsets: int = 100, seed: int = 0,
                    scale: float = KID_SCALE) -> tuple[float, float]:
    """Kernel distance (KID, Binkowski et al. 2018): ``(mean, std)`` over subsets, times ``scale``.

    Unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` on
    ``n_subsets`` random subsets of ``subset_size`` rows of each set (drawn without replacement,
    from ``seed``); ``subset_size`` defaults to ``min(N_a, N_b, 1000)``. ``scale=100`` as in the
    paper's Table 1. KID_toy in ToyVitonFeatureNet features, KID in Inception's.
    """
    a, b = _as_float64_matrix("feats_a", feats_a), _as_float64_matrix("feats_b", feats_b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a {a.shape} and feats_b {b.shape} need the same dimension")
    size = subset_size or min(len(a), len(b), 1000)
    if not 2 <= size <= min(len(a), len(b)) or n_subsets < 1:
        raise ValueError(f"subset_size must lie in [2, {min(len(a), len(b))}] and n_subsets >= 1;"
                         f" got {subset_size}, {n_subsets}")
    rng = np.random.default_rng(seed)
    values = [
        _polynomial_mmd2(a[rng.choice(len(a), size, replace=False)],
                         b[rng.choice(len(b), size, replace=False)])
        for _ in range(n_subsets)
    ]
    return float(np.mean(values) * scale), float(np.std(values) * scale)


@torch.no_grad()
def toy_distribution_metrics(net: ToyVitonFeatureNet, generated: torch.Tensor,
                             real: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """``FID_toy``, ``KID_toy`` (x100) and its std between generated and real person images.

    Toolchain: ``TOOLCHAIN["FID_toy"]`` and ``TOOLCHAIN["KID_toy"]``; images in ``[0, 1]``.
    """
    check_image_batch("generated", generated, value_range=(0.0, 1.0))
    check_image_batch("real", real, value_range=(0.0, 1.0))
    net.eval()
    feats_gen, feats_real = net.features(generated), net.features(real)
    kid, kid_std = kernel_distance(feats_gen, feats_real, seed=seed)
    return {"FID_toy": frechet_distance(feats_gen, feats_real), "KID_toy": kid,
            "KID_toy_std": kid_std}


@torch.no_grad()
def attribute_accuracy(net: ToyVitonFeatureNet, images: torch.Tensor,
                       labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Share of images whose garment attributes ``net`` recognises, per attribute and ``mean``.

    On generated try-on images this is a garment-fidelity score (toolchain:
    ``TOOLCHAIN["attribute_accuracy"]``); images in ``[0, 1]``, labels LongTensors ``(N,)``.
    """
    check_image_batch("images", images, value_range=(0.0, 1.0))
    missing = set(net.attribute_classes) - set(labels)
    if missing:
        raise ValueError(f"labels lack the attributes {sorted(missing)} that the network predicts")
    net.eval()
    predicted = net.predict(images)
    scores = {}
    for name in net.attribute_classes:
        if labels[name].shape != (images.shape[0],):
            raise ValueError(f"labels[{name!r}] must have shape ({images.shape[0]},); "
                             f"got {tuple(labels[name].shape)}")
        correct = predicted[name] == labels[name].to(predicted[name].device)
        scores[name] = correct.double().mean().item()
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def garment_detail_error(pred: torch.Tensor, target: torch.Tensor,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean ``|Sobel magnitude(pred) - Sobel magnitude(target)|`` in the garment mask, ``(B,)``.

    Lower is better; 0 for identical images. Magnitude ``sqrt(gx^2 + gy^2)`` of
    :func:`gardiffmini.losses.sobel_edges`, per channel; images in ``[0, 1]``, ``mask``
    ``(B, 1, H, W)`` (``None``: the whole image).
    """
    _check_pair(pred, target)
    _check_optional_mask(mask, pred)
    pred_x, pred_y = sobel_edges(pred)
    target_x, target_y = sobel_edges(target)
    difference = (torch.sqrt(pred_x**2 + pred_y**2 + 1e-12)
                  - torch.sqrt(target_x**2 + target_y**2 + 1e-12)).abs()
    weights = torch.ones_like(pred[:, :1]) if mask is None else mask.to(pred.dtype)
    weights = weights.expand_as(difference)
    return (difference * weights).sum(dim=(1, 2, 3)) / weights.sum(dim=(1, 2, 3)).clamp_min(1e-8)


def _spatial_frequencies(height: int, width: int) -> torch.Tensor:
    fy = torch.fft.fftfreq(height, dtype=torch.float64)
    fx = torch.fft.fftfreq(width, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def _power(images: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """2-D power spectrum, averaged over channels, of the (masked) mean-removed images."""
    images = images.double()
    weights = torch.ones_like(images[:, :1]) if mask is None else mask.double()
    mean = (images * weights).sum(dim=(2, 3), keepdim=True) / weights.sum(
        dim=(2, 3), keepdim=True).clamp_min(1e-12)
    spectrum = torch.fft.fft2((images - mean) * weights)
    return (spectrum.abs() ** 2).mean(dim=1) / (images.shape[-2] * images.shape[-1])


def radial_power_spectrum(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Radially averaged power spectrum: ``freqs (n_bins,)`` in cycles/pixel, ``power (B, n_bins)``.

    The image mean is removed, channels averaged; bins of width ``1 / max(H, W)`` centred on
    ``0, 1/max(H, W), ..., 0.5`` (Nyquist; the corners beyond it are left out). Images
    ``(B, C, H, W)``.
    """
    check_image_batch("images", images, channels=None)
    power = _power(images, None)
    radius = _spatial_frequencies(*images.shape[-2:])
    bin_width = 1.0 / max(images.shape[-2:])
    n_bins = int(round(0.5 / bin_width))
    index = (radius / bin_width).round().long().flatten()  # bin k is centred on k * bin_width
    inside = index <= n_bins  # the corners beyond Nyquist are left out
    sums = torch.zeros(images.shape[0], n_bins + 1, dtype=torch.float64)
    sums.index_add_(1, index[inside], power.flatten(1).cpu()[:, inside])
    counts = torch.bincount(index[inside], minlength=n_bins + 1).double()
    keep = counts > 0
    freqs = torch.arange(n_bins + 1, dtype=torch.float64) * bin_width
    return freqs[keep], sums[:, keep] / counts[keep]


def high_frequency_energy_ratio(pred: torch.Tensor, target: torch.Tensor,
                                mask: torch.Tensor | None = None,
                                cutoff: float = 0.25) -> torch.Tensor:
    """Share of the target's spectral power above ``cutoff`` that ``pred`` keeps, ``(B,)``.

    ``sum_{|f| > cutoff} P_pred(f) / sum_{|f| > cutoff} P_target(f)`` with ``P`` the FFT power
    of the mean-removed image times the mask, channels averaged, ``|f|`` in cycles/pixel.
    1 means the fine detail's energy is kept, below 1 blurred, above 1 extra detail (noise or
    artifacts). Images in ``[0, 1]``; ``cutoff`` in ``(0, 0.5)`` (default: half of Nyquist).
    """
    _check_pair(pred, target)
    _check_optional_mask(mask, pred)
    if not 0.0 < cutoff < 0.5:
        raise ValueError(f"cutoff must lie in (0, 0.5) cycles/pixel; got {cutoff}")
    high = (_spatial_frequencies(*pred.shape[-2:]) > cutoff).to(pred.device)
    pred_high = (_power(pred, mask) * high).sum(dim=(1, 2))
    target_high = (_power(target, mask) * high).sum(dim=(1, 2))
    return (pred_high / target_high.clamp_min(1e-12)).float()


def _masked_mean_colour(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.float()
    return (images * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp(min=1)


@torch.no_grad()
def colour_match_rate(results: torch.Tensor, result_mask: torch.Tensor, requested: torch.Tensor,
                      requested_mask: torch.Tensor, original: torch.Tensor,
                      original_mask: torch.Tensor) -> float:
    """Share of try-on results whose garment colour is nearer the requested garment's than the
    person's own garment's (unpaired try-on; toolchain ``TOOLCHAIN["colour_match"]``).

    Each colour is the mean RGB inside its mask: the result inside ``result_mask`` (the warped
    requested garment, ``m_w``), the in-shop garment inside its ``requested_mask`` and the
    person's photo inside ``original_mask`` (its garment labels). Images ``(B, 3, H, W)`` in
    [0, 1], masks ``(B, 1, H, W)``. A model that ignores the garment and repaints the person's
    own colour scores near 0; one that puts the requested colour on the person scores 1.
    """
    for name, images in (("results", results), ("requested", requested), ("original", original)):
        check_image_batch(name, images, value_range=(0.0, 1.0))
    result = _masked_mean_colour(results, result_mask)
    to_requested = (result - _masked_mean_colour(requested, requested_mask)).norm(dim=1)
    to_original = (result - _masked_mean_colour(original, original_mask)).norm(dim=1)
    return float((to_requested < to_original).double().mean())


def label_region(parse: torch.Tensor, labels: tuple[int, ...]) -> torch.Tensor:
    """``(B, 1, H, W)`` float mask of the pixels of label maps ``parse`` ``(B, H, W)`` whose
    label is one of ``labels`` (e.g. :data:`~gardiffmini.data.layout.GARMENT_LABELS`)."""
    if parse.ndim != 3:
        raise ValueError(f"parse must be (B, H, W) label maps; got {tuple(parse.shape)}")
    return torch.isin(parse, torch.tensor(labels, device=parse.device))[:, None].float()


def newly_bared_skin(own_parse: torch.Tensor, truth_parse: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` mask of the skin a requested garment bares that the person's own
    garment covered: skin in the truth's labels (:data:`SKIN_LABELS`), garment in the
    person's own (:data:`GARMENT_LABELS`). A t-shirt wearer in a tank top: the upper arms."""
    if own_parse.shape != truth_parse.shape:
        raise ValueError(f"own_parse {tuple(own_parse.shape)} and truth_parse "
                         f"{tuple(truth_parse.shape)} must have the same shape")
    return label_region(truth_parse, SKIN_LABELS) * label_region(own_parse, GARMENT_LABELS)


def skin_error(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor,
               min_pixels: int = SKIN_MIN_PIXELS) -> torch.Tensor:
    """Mean ``|pred - truth|`` over the RGB channels and the pixels of ``region`` ``(B,)``
    (toolchain: ``TOOLCHAIN["skin_error"]``), NaN for an image with fewer than
    ``min_pixels`` pixels in ``region``. ``region``: :func:`newly_bared_skin`; images in
    [0, 1]. Orange-brown or whitish skin, and a garment's halo, each show here."""
    _check_pair(pred, truth)
    _check_optional_mask(region, pred)
    count = region.sum(dim=(1, 2, 3))
    error = ((pred - truth).abs().mean(dim=1, keepdim=True) * region).sum(dim=(1, 2, 3))
    return torch.where(count >= min_pixels, error / count.clamp_min(1),
                       torch.full_like(count, float("nan")))


def surrounding_band(region: torch.Tensor, width: int,
                     within: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 1, H, W)`` mask of the pixels at most ``width`` pixels from ``region`` (a square
    neighbourhood: the region dilated by a ``(2 width + 1)``-pixel max-pool) and not in it,
    times ``within`` where given (e.g. the agnostic mask: the pixels a model paints).

    Around a garment's labels it is the skin and background next to the garment: where a
    garment's texture would leak to (chapter 5's measure of masked attention)."""
    check_image_batch("region", region, channels=1, value_range=(0.0, 1.0))
    if width < 1:
        raise ValueError(f"width must be at least 1 pixel, got {width}")
    inside = (region > 0.5).float()
    grown = torch.nn.functional.max_pool2d(inside, 2 * width + 1, stride=1, padding=width)
    band = grown * (1 - inside)
    if within is not None:
        _check_optional_mask(within, region)
        band = band * within.to(band.dtype)
    return band


def surround_error(pred: torch.Tensor, truth: torch.Tensor, region: torch.Tensor, width: int,
                   within: torch.Tensor | None = None,
                   min_pixels: int = SKIN_MIN_PIXELS) -> torch.Tensor:
    """Mean ``|pred - truth|`` (RGB, images in [0, 1]) over :func:`surrounding_band` of
    ``region`` ``(B,)``: the colour error on the skin and background within ``width`` pixels
    of the garment (``region``: the truth's garment labels), inside ``within`` where given.
    NaN for an image with fewer than ``min_pixels`` such pixels. Lower is better; a garment
    texture painted past the garment's edge raises it. The mean is :func:`skin_error`'s, over
    the band instead of the newly bared skin."""
    _check_optional_mask(region, pred)
    return skin_error(pred, truth, surrounding_band(region, width, within), min_pixels)
