"""Mixed precision: chosen per device, and the fp16 path (autocast + loss scaling) on a CPU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gardiffmini import train
from gardiffmini.bench import synthetic_cache
from gardiffmini.features import L2Pooling, default_features
from gardiffmini.losses import spatial_loss
from gardiffmini.models.vae import make_vae
from gardiffmini.objective import DEFAULT_RECIPE, noise_scheduler
from gardiffmini.precision import mixed_precision_for
from gardiffmini.profiles import get_profile
from gardiffmini.runs import step_generator


@pytest.mark.parametrize("capability, expected", [
    ((7, 5), "fp16"),  # T4 (free Colab)
    ((7, 0), "fp16"),  # V100
    ((8, 0), "bf16"),  # A100
    ((8, 9), "bf16"),  # L4
    ((9, 0), "bf16"),  # H100
])
def test_bf16_where_the_gpu_has_it_else_fp16(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # emulation
    assert mixed_precision_for("cuda:0") == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mixed_precision_for() == expected


def test_fp32_on_the_cpu_and_an_error_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mixed_precision_for() == mixed_precision_for("cpu") == "no"
    with pytest.raises(ValueError, match="neither a CUDA GPU nor the CPU"):
        mixed_precision_for("meta")


def test_an_fp16_training_step_with_loss_scaling_runs_on_the_cpu():
    """What accelerate does with ``mixed_precision="fp16"`` on a T4, done by hand on the CPU
    (accelerate runs fp32 there): the GFA + AL loss under fp16 autocast, scaled, unscaled,
    stepped; a step whose gradients overflow is skipped and the scale halved."""
    profile = get_profile("ci", batch_size=2)
    variant = train.get_variant("base+gfa+al")
    torch.manual_seed(0)
    unet, adapter = train.build_model(profile, variant)
    vae = make_vae(profile).requires_grad_(False)
    params = [p for m in (unet, adapter) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    cache, features = synthetic_cache(profile, 2), default_features()
    for step in range(2):
        with torch.autocast("cpu", dtype=torch.float16):
            losses = train.diffusion_step_loss(
                unet, adapter, cache, torch.arange(2), step_generator(0, step),
                noise_scheduler(DEFAULT_RECIPE.prediction_type), variant, vae=vae,
                features=features, appearance_samples=1)
            probe = torch.zeros(1, unet.config.in_channels, 4, 4)
            assert unet.conv_in(probe).dtype == torch.float16
        assert torch.isfinite(losses["loss"]) and losses["spatial"] > 0
        scaler.scale(losses["loss"]).backward()
        before = unet.conv_out.weight.detach().clone()
        if step == 1:  # an overflow, as fp16 gradients of an unscaled loss may have
            unet.conv_out.weight.grad[0, 0, 0, 0] = float("inf")
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        moved = not torch.equal(unet.conv_out.weight, before)
        assert moved == (step == 0)  # the overflowing step is skipped ...
        assert scaler.get_scale() == (scale if step == 0 else scale / 2)  # ... and scale halved


def test_the_spatial_loss_has_finite_gradients_under_fp16_autocast():
    """The filter bank's Gabor energy sqrt(even^2 + odd^2 + 1e-12) is taken in float32: in
    fp16, 1e-12 rounds to 0 and the gradient was NaN for every input (measured before the
    fix: NaN on random, flat grey and near-target predictions; bf16 and fp32 were finite)."""
    torch.manual_seed(0)
    target = torch.rand(2, 3, 64, 48) * 2 - 1
    mask = torch.zeros(2, 1, 64, 48)
    mask[..., 16:48, 8:40] = 1
    gradients = {}
    for dtype in (None, torch.float16):
        pred = (torch.rand(2, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 2
                - 1).requires_grad_()
        with torch.autocast("cpu", dtype=torch.float16, enabled=dtype is not None):
            spatial_loss(pred, target, mask, default_features()).backward()
        gradients[dtype] = pred.grad
    assert torch.isfinite(gradients[torch.float16]).all()
    # fp16 rounds the features, not the direction: cosine 0.9999 measured between the two
    # (0.986 for a prediction near the target, 0.65 for a flat grey one)
    cosine = F.cosine_similarity(gradients[None].flatten(), gradients[torch.float16].flatten(),
                                 dim=0)
    assert cosine > 0.99


def test_dists_l2_pooling_has_finite_gradients_under_fp16_autocast():
    """VGG16's L2 pooling, sqrt(hanning * x^2 + 1e-12), is taken in float32: a feature map that a
    ReLU zeroed makes the sum 0, and in fp16 the 1e-12 rounds to 0 (the gradient of sqrt at 0
    is infinite). Its value matches the fp32 pooling of the same input."""
    x = torch.zeros(1, 2, 8, 8)
    x[:, 0, 2:6, 2:6] = 0.5  # channel 1 is all zeros, as after a ReLU
    pool = L2Pooling(2)
    expected = pool(x)
    x.requires_grad_()
    with torch.autocast("cpu", dtype=torch.float16):
        pooled = pool(x)
    pooled.sum().backward()
    assert pooled.dtype == torch.float32
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(pooled, expected)
