"""Metrics (chapter 7): each against a known value; offline feature network; clear errors."""

import importlib.util
import math

import numpy as np
import pytest
import torch
from imaging import gaussian_blur

from gardiffmini import metrics
from gardiffmini.features import ToyVitonFeatureNet, train_feature_net
from gardiffmini.metrics import (
    TOOLCHAIN,
    MetricUnavailable,
    attribute_accuracy,
    frechet_distance,
    garment_detail_error,
    high_frequency_energy_ratio,
    inception_features,
    kernel_distance,
    lpips,
    lpips_status,
    radial_power_spectrum,
    ssim,
    toy_distribution_metrics,
)

H, W = 64, 48


@pytest.fixture
def textured():
    """Striped noisy images in [0, 1] and a garment mask."""
    generator = torch.Generator().manual_seed(0)
    x = torch.arange(W).float()
    stripes = 0.25 * torch.sin(2 * math.pi * x / 5).expand(2, 3, H, W)
    image = (0.5 + stripes + 0.3 * torch.rand(2, 3, H, W, generator=generator) - 0.15)
    mask = torch.zeros(2, 1, H, W)
    mask[..., 16:48, 10:38] = 1
    return image.clamp(0, 1), mask


def test_toolchain_names_every_metric():
    for name in ("SSIM", "LPIPS", "FID", "KID", "FID_toy", "KID_toy", "attribute_accuracy",
                 "garment_detail_error", "hf_energy_ratio"):
        assert name in TOOLCHAIN
    assert "x100" in TOOLCHAIN["KID_toy"] and "not Inception" in TOOLCHAIN["FID_toy"]
    assert "data_range=1.0" in TOOLCHAIN["SSIM"]


def test_ssim_known_values(textured):
    image, _ = textured
    torch.testing.assert_close(ssim(image, image), torch.ones(2))
    # constant images a, b: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * data_range)^2
    a, b = 0.3, 0.7
    as_image = lambda v: torch.full((1, 3, H, W), v, dtype=torch.float64)  # noqa: E731
    value = ssim(as_image(a), as_image(b))  # float64: the variances are exactly 0
    c1 = 0.01**2
    assert value.item() == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), rel=1e-5)
    blurred = gaussian_blur(image, 2.0).clamp(0, 1)
    assert (ssim(blurred, image) < 1).all()


def test_ssim_rejects_bad_inputs(textured):
    image, _ = textured
    with pytest.raises(ValueError, match=r"pred must lie in \[0.0, 1.0\]"):
        ssim(image * 2 - 1, image)
    with pytest.raises(ValueError, match="same shape"):
        ssim(image, image[:1])
    with pytest.raises(ValueError, match="11x11"):
        ssim(image[..., :8, :8], image[..., :8, :8])
    with pytest.raises(ValueError, match="target"):
        ssim(image, image[:, :1])


def test_lpips_reports_when_unavailable(textured, monkeypatch, tmp_path):
    image, _ = textured
    # torchvision found or not, and an empty torch hub folder, whatever this machine holds
    real_find_spec = importlib.util.find_spec
    for torchvision, reason in ((False, "torchvision"),
                                (True, str(tmp_path / "checkpoints" / metrics.ALEXNET_WEIGHTS))):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, found=torchvision: (object() if found else None)
                            if name == "torchvision" else real_find_spec(name, *a))
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
        assert reason in lpips_status()
        with pytest.raises(MetricUnavailable, match="LPIPS"):
            lpips(image, image)


def test_inception_features_report_when_unavailable(textured, tmp_path):
    image, _ = textured
    with pytest.raises(MetricUnavailable, match="torch-fidelity|not found"):
        inception_features(image, weights_path=tmp_path / "missing.pth")


def reference_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """tr sqrt(S_a S_b) through the symmetric form S_a^1/2 S_b S_a^1/2 (eigenvalues)."""
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = vecs @ np.diag(np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def test_frechet_distance_against_hand_computation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 3)), rng.normal(size=(15, 3)) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(reference_frechet(a, b), rel=1e-6)
    # 1-D: (mu_a - mu_b)^2 + (sd_a - sd_b)^2
    x, y = rng.normal(size=(30, 1)), rng.normal(size=(40, 1)) * 2 + 1
    expected = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(torch.tensor(x), torch.tensor(y)) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifts = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    assert shifts == pytest.approx([3 * s**2 for s in (0.5, 1.0, 2.0)], rel=1e-6)


def test_frechet_distance_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same dimension"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="feats_a"):
        frechet_distance(np.zeros(4), np.zeros((4, 2)))


def reference_kid(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_distance_against_hand_computation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3)) + 0.5
    mean, std = kernel_distance(a, b, subset_size=6, n_subsets=3, scale=1.0)
    assert mean == pytest.approx(reference_kid(a, b), rel=1e-9) and std == pytest.approx(0.0)
    assert kernel_distance(a, b, subset_size=6, n_subsets=3)[0] == pytest.approx(100 * mean)


def test_kernel_distance_same_distribution_and_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = kernel_distance(a, b, subset_size=200, n_subsets=20, scale=1.0)[0]
    shifted = [kernel_distance(a, b + s, subset_size=200, n_subsets=20, scale=1.0)[0]
               for s in (0.25, 0.5, 1.0)]
    assert abs(same) < 0.02 < shifted[0] < shifted[1] < shifted[2]
    assert kernel_distance(a, b, 50, 4, seed=7) == kernel_distance(a, b, 50, 4, seed=7)
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(a[:5], b, subset_size=10)


def coloured_people(n: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Grey 'people' whose garment (a central box) is red or blue, plain or striped."""
    generator = torch.Generator().manual_seed(seed)
    colour = torch.randint(0, 2, (n,), generator=generator)
    pattern = torch.randint(0, 2, (n,), generator=generator)
    images = torch.full((n, 3, 32, 24), 0.5)
    stripes = (torch.arange(24) % 4 < 2).float()
    for i in range(n):
        garment = torch.zeros(3, 12, 12)
        garment[0 if colour[i] == 0 else 2] = 0.9
        if pattern[i] == 1:
            garment = garment * stripes[6:18]
        images[i, :, 10:22, 6:18] = garment
    images = images + 0.05 * torch.rand(images.shape, generator=generator)
    return images.clamp(0, 1), {"colour": colour, "pattern": pattern}


def test_feature_net_trains_deterministically_and_recognises_attributes():
    images, labels = coloured_people(48, seed=0)
    rng_before = torch.random.get_rng_state()
    net = train_feature_net(images, labels, steps=25, batch_size=16, seed=3, width=8,
                            feature_dim=16)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    again = train_feature_net(images, labels, steps=25, batch_size=16, seed=3, width=8,
                              feature_dim=16)
    for p, q in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    assert net.features(images).shape == (48, 16)
    assert set(net.predict(images)) == {"colour", "pattern"}
    test_images, test_labels = coloured_people(32, seed=1)
    accuracy = attribute_accuracy(net, test_images, test_labels)
    assert accuracy["colour"] == 1.0 and accuracy["pattern"] >= 0.9
    assert accuracy["mean"] == pytest.approx((accuracy["colour"] + accuracy["pattern"]) / 2)
    with pytest.raises(ValueError, match="labels"):
        attribute_accuracy(net, test_images, {"colour": test_labels["colour"]})
    with pytest.raises(ValueError, match="pattern"):
        train_feature_net(images, {**labels, "pattern": labels["pattern"][:3]}, 1, 4, 0)


def test_toy_distribution_metrics():
    images, _ = coloured_people(24, seed=0)
    torch.manual_seed(0)
    net = ToyVitonFeatureNet({"colour": 2}, width=8, feature_dim=16).eval()
    same = toy_distribution_metrics(net, images, images)
    assert set(same) == {"FID_toy", "KID_toy", "KID_toy_std"}
    assert same["FID_toy"] == pytest.approx(0.0, abs=1e-6)
    darker = toy_distribution_metrics(net, images * 0.3, images)
    assert darker["FID_toy"] > 0 and darker["KID_toy"] > 0
    with pytest.raises(ValueError, match="attribute_classes"):
        ToyVitonFeatureNet({"colour": 1})


def test_garment_detail_error_known_values(textured):
    image, mask = textured
    assert torch.all(garment_detail_error(image, image, mask) == 0)
    errors = [garment_detail_error(gaussian_blur(image, s).clamp(0, 1), image, mask).mean()
              for s in (0.5, 1.0, 2.0)]
    assert errors[0] < errors[1] < errors[2]
    # a ramp of slope a: Sobel magnitude 8a inside; against a flat image the error is 8a
    slope = 0.01
    ramp = (torch.arange(W).float() * slope).expand(1, 3, H, W)
    flat = torch.full((1, 3, H, W), 0.2)
    inner = torch.zeros(1, 1, H, W)
    inner[..., 4:-4, 4:-4] = 1
    assert garment_detail_error(flat, ramp, inner).item() == pytest.approx(8 * slope, rel=1e-4)
    with pytest.raises(ValueError, match="mask"):
        garment_detail_error(image, image, mask[:, :, :10])


def test_radial_power_spectrum_peaks_at_the_sinusoid_frequency():
    frequency = 8 / W  # cycles per pixel, a whole number of periods across the width
    x = torch.arange(W).float()
    wave = (0.5 + 0.4 * torch.cos(2 * math.pi * frequency * x)).expand(2, 3, H, W)
    freqs, power = radial_power_spectrum(wave)
    assert freqs.ndim == 1 and power.shape == (2, len(freqs))
    assert freqs[0] == 0 and freqs[-1] == pytest.approx(0.5)
    peak = power[0].argmax()
    assert abs(freqs[peak].item() - frequency) <= 0.5 / max(H, W)
    assert power[0, peak] > 100 * power[0].clone().index_fill_(0, peak, 0).max()
    with pytest.raises(ValueError, match="images"):
        radial_power_spectrum(wave[0])


def test_high_frequency_energy_ratio_known_values(textured):
    image, mask = textured
    torch.testing.assert_close(high_frequency_energy_ratio(image, image), torch.ones(2))
    # halving the contrast around the mean quarters the power at every frequency
    mean = image.mean(dim=(2, 3), keepdim=True)
    halved = mean + 0.5 * (image - mean)
    torch.testing.assert_close(high_frequency_energy_ratio(halved, image), torch.full((2,), 0.25))
    ratios = [high_frequency_energy_ratio(gaussian_blur(image, s).clamp(0, 1), image, mask)
              for s in (0.5, 1.0, 2.0)]
    assert (ratios[0] < 1).all() and (ratios[1] < ratios[0]).all()
    assert (ratios[2] < ratios[1]).all()
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_energy_ratio(image, image, cutoff=0.6)


def test_surrounding_band_against_a_hand_drawn_ring():
    region = torch.zeros(1, 1, 9, 9)
    region[..., 3:6, 3:6] = 1  # a 3x3 garment in the middle
    band = metrics.surrounding_band(region, width=1)
    ring = torch.zeros(9, 9)
    ring[2:7, 2:7] = 1
    ring[3:6, 3:6] = 0  # the 16 pixels around the garment, corners included
    torch.testing.assert_close(band[0, 0], ring)
    # a region at the image's edge grows only inwards
    edge = torch.zeros(1, 1, 4, 4)
    edge[..., 0, :] = 1
    torch.testing.assert_close(metrics.surrounding_band(edge, 2)[0, 0, :, 0],
                               torch.tensor([0.0, 1, 1, 0]))
    within = torch.zeros(1, 1, 9, 9)
    within[..., :, :5] = 1  # only the left part is painted
    assert metrics.surrounding_band(region, 1, within).sum() == 16 - 7
    with pytest.raises(ValueError, match="width"):
        metrics.surrounding_band(region, 0)


def test_surround_error_against_a_hand_computation():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 3, 12, 10, generator=generator)
    pred = torch.rand(2, 3, 12, 10, generator=generator)
    region = torch.zeros(2, 1, 12, 10)
    region[0, :, 4:8, 3:7] = 1
    region[1, :, 0:2, 0:2] = 1  # a corner: its band has 5 pixels within 1, 12 within 2
    width = 2
    expected = []
    for b in range(2):
        inside = [(i, j) for i in range(12) for j in range(10) if region[b, 0, i, j] == 1]
        ring = [(i, j) for i in range(12) for j in range(10) if region[b, 0, i, j] == 0
                and any(max(abs(i - y), abs(j - x)) <= width for y, x in inside)]
        expected.append(sum((pred[b, :, i, j] - truth[b, :, i, j]).abs().mean()
                            for i, j in ring) / len(ring))
    got = metrics.surround_error(pred, truth, region, width, min_pixels=1)
    torch.testing.assert_close(got, torch.stack(expected))
    assert metrics.surround_error(truth, truth, region, width, min_pixels=1).eq(0).all()
    # fewer band pixels than min_pixels: no case
    assert metrics.surround_error(pred, truth, region, 1, min_pixels=6)[1].isnan()
