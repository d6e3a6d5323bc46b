"""Estimate the peak memory of one training step of the ``paper`` configuration, without a GPU.

    python tools/memory_estimate.py                  # writes book/results/memory-paper.json
    python tools/memory_estimate.py --profile gpu    # the gpu profile, at its own batch
    python tools/memory_estimate.py --profile gpu --precision fp16 --no-checkpointing \
        --budget-gb 16                               # as the book trains it on a free T4

The step is the library's own (:func:`gardiffmini.train.diffusion_step_loss` for Base + GFA
+ AL, then AdamW and the EMA update, as :func:`~gardiffmini.train.train_variant` runs it) at
512x384, batch 2, under bf16 autocast, with gradient checkpointing in the UNet and in the VAE
decoder that the appearance loss back-propagates through. The models are the paper's shapes
at random: :func:`~gardiffmini.models.unet.make_unet` at the ``paper`` profile (Stable
Diffusion 2's UNet, 12 input channels) and Stable Diffusion 2's VAE configuration. Another
profile uses its own VAE (:func:`~gardiffmini.models.vae.make_vae`) and batch size.

Method: every tensor is a ``FakeTensor`` (torch's ``FakeTensorMode``: shapes, dtypes and
devices, no data), and a ``TorchDispatchMode`` notes the bytes of every storage that an
operation creates or that was registered before the step, frees them when torch frees them,
and keeps the peak of the live total, each storage rounded up to the CUDA allocator's
512-byte blocks. Two steps are run, so that the peak includes AdamW's moments and the EMA
weights. The few value checks of the step (timesteps in range, masks in [0, 1]) read data,
which fake tensors do not have; the tracker answers them as valid data would, and AdamW's
step count (read as a number for its bias correction) as 1.

Not counted: the CUDA context (about 0.5 GB), the caching allocator's fragmentation, the
CLIP image encoder (its embeddings are cached before training) and the training set (kept
on the host at this size, :func:`~gardiffmini.runs.device_cache`). The figure is an estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import weakref
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from diffusers.training_utils import EMAModel
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from gardiffmini import train
from gardiffmini.bench import synthetic_cache
from gardiffmini.features import default_features
from gardiffmini.models.vae import make_vae
from gardiffmini.objective import DEFAULT_RECIPE, noise_scheduler
from gardiffmini.profiles import PROFILES, get_profile
from gardiffmini.reproduce import git_commit
from gardiffmini.runs import step_generator

BLOCK = 512  # bytes: the CUDA caching allocator rounds every allocation up to this
PAPER_BATCH = 2
GB = 1e9
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def sd2_vae() -> AutoencoderKL:
    """Stable Diffusion 2's VAE (the ``paper`` profile's ``vae_id``), at random."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=768,
        scaling_factor=0.18215,
    )


class PeakMemory(TorchDispatchMode):
    """The live bytes of tensor storages, and their peak, under fake tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[int] = set()
        self.live = 0
        self.peak = 0

    def track(self, *tensors: torch.Tensor) -> None:
        """Count the storages of ``tensors`` (once each) until torch frees them."""
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = id(storage)
            if key in self.seen:
                continue
            size = math.ceil(storage.nbytes() / BLOCK) * BLOCK
            self.seen.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self.seen.discard(key)
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:  # a value read from data:
            return False if args[0].dtype == torch.bool else 1  # checks pass, AdamW's step 1
        out = func(*args, **(kwargs or {}))
        self.track(*(t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)))
        return out


def gigabytes(tensors) -> float:
    return round(sum(t.numel() * t.element_size() for t in tensors) / GB, 3)


def estimate(profile_name: str = "paper", batch: int = PAPER_BATCH,
             mixed_precision: torch.dtype = torch.bfloat16, checkpointing: bool = True) -> dict:
    """The peak of two training steps of Base + GFA + AL at ``profile_name``."""
    profile = get_profile(profile_name)
    variant = train.get_variant("base+gfa+al")
    with FakeTensorMode(allow_non_fake_inputs=True):
        unet, adapter = train.build_model(profile, variant)
        vae = (sd2_vae() if profile.name == "paper" else make_vae(profile)).requires_grad_(False)
        features = default_features()
        if checkpointing:
            unet.enable_gradient_checkpointing()
            vae.enable_gradient_checkpointing()
        params = [p for m in (unet, adapter) for p in m.parameters() if p.requires_grad]
        # torch's default on a GPU: the multi-tensor ("foreach") AdamW
        optimizer = torch.optim.AdamW(params, lr=profile.learning_rate, weight_decay=0.01,
                                      foreach=True)
        cache = synthetic_cache(profile, batch)
        scheduler = noise_scheduler(DEFAULT_RECIPE.prediction_type)
        tracker = PeakMemory()
        with tracker:
            tracker.track(*unet.parameters(), *unet.buffers(), *adapter.parameters(),
                          *vae.parameters(), *features.parameters(), *features.buffers(),
                          *cache.values())
            static = tracker.live
            ema = EMAModel(params, decay=DEFAULT_RECIPE.ema_decay, use_ema_warmup=True)
            for step in range(2):
                with torch.autocast("cpu", dtype=mixed_precision):
                    losses = train.diffusion_step_loss(
                        unet, adapter, cache, torch.arange(batch), step_generator(0, step),
                        scheduler, variant, vae=vae, features=features,
                        appearance_samples=profile.appearance_samples, recipe=DEFAULT_RECIPE)
                losses["loss"].backward()
                optimizer.step()
                ema.step(params)
                optimizer.zero_grad(set_to_none=True)
        n_params = sum(p.numel() for p in params)
        return {
            "peak_gb": round(tracker.peak / GB, 2),
            "breakdown_gb": {
                "weights (fp32 master copy, UNet + adapter)": gigabytes(params),
                "gradients (fp32)": gigabytes(params),
                "AdamW moments (fp32)": round(2 * gigabytes(params), 3),
                "EMA weights (fp32)": gigabytes(ema.shadow_params),
                "frozen VAE, feature network and the batch": round(
                    static / GB - gigabytes(unet.parameters()) - gigabytes(adapter.parameters())
                    - gigabytes(unet.buffers()), 3),
            },
            "trainable_parameters": n_params,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="paper", choices=sorted(PROFILES))
    parser.add_argument("--batch", type=int, default=None,
                        help=f"default: {PAPER_BATCH} at paper, else the profile's batch size")
    parser.add_argument("--precision", default="bf16", choices=sorted(PRECISIONS),
                        help="autocast dtype (fp16 where a GPU has no bf16, as a T4)")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="no gradient checkpointing, as train_variant's default Speed")
    parser.add_argument("--budget-gb", type=float, default=24.0,
                        help="the GPU's memory (24: the paper's GPUs; 16: a T4)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: book/results/memory-<profile>.json")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    batch = args.batch or (PAPER_BATCH if profile.name == "paper" else profile.batch_size)
    out = args.out or Path(f"book/results/memory-{profile.name}.json")
    started = time.perf_counter()
    checkpointing = not args.no_checkpointing
    numbers = estimate(profile.name, batch, PRECISIONS[args.precision], checkpointing)
    result = {
        "kind": "estimate (no GPU measured it)",
        "configuration": f"{profile.name} profile, Base + GFA + AL, {profile.height}x"
                         f"{profile.width}, batch {batch}, {args.precision} autocast, "
                         + ("gradient checkpointing (UNet and VAE decoder)" if checkpointing
                            else "no gradient checkpointing")
                         + ", AdamW (foreach), EMA weights on the device, appearance loss as "
                           "the profile sets it",
        "method": "FakeTensorMode (no data) and a TorchDispatchMode that keeps the peak of "
                  "the live storage bytes over two training steps, each storage rounded up "
                  "to 512 bytes; not counted: CUDA context (~0.5 GB), allocator "
                  "fragmentation, the CLIP image encoder (embeddings cached), the training "
                  "set (on the host)",
        **numbers,
        "budget_gb": args.budget_gb,
        "fits_budget": numbers["peak_gb"] + 0.5 <= args.budget_gb,
        "provenance": {"commit": git_commit(), "torch": torch.__version__,
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "seconds": round(time.perf_counter() - started, 1),
                       "script": "tools/memory_estimate.py"},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
