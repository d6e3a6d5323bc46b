"""Training throughput of each try-on variant: steps/s and peak memory.

    python benchmarks/train_speed.py --profile cpu --steps 20

Uses the profile's ToyVITON and trained encoders (generated/trained if missing), times
``--steps`` optimiser steps after ``--warmup`` untimed ones, and prints one line per
variant. On a GPU it reports peak CUDA memory; on a CPU the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from gardiffmini import objective, train
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.features import default_features
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.profiles import get_profile
from gardiffmini.runs import step_generator


def measure(variant_name: str, profile, cache, vae, steps: int, warmup: int, device) -> dict:
    variant = train.get_variant(variant_name)
    unet, adapter = train.build_model(profile, variant)
    unet.to(device).train()
    adapter.to(device).train()
    vae.to(device)
    params = [p for m in (unet, adapter) for p in m.parameters()]
    optimizer = train.variant_optimizer(params, profile, objective.DEFAULT_RECIPE)
    features = default_features().to(device) if variant.appearance_loss else None
    scheduler = objective.noise_scheduler()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        generator = step_generator(0, step)
        index = torch.randint(0, len(cache["x0"]), (profile.batch_size,), generator=generator)
        loss = train.diffusion_step_loss(unet, adapter, cache, index, generator, scheduler,
                                         variant, vae=vae, features=features,
                                         appearance_samples=profile.appearance_samples)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - start
    return {"variant": variant.name, "steps_per_s": round(steps / seconds, 3),
            "images_per_s": round(steps * profile.batch_size / seconds, 2),
            "peak_memory_mib": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", nargs="*", default=list(train.VARIANTS))
    args = parser.parse_args()
    profile = get_profile(args.profile)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = ensure_toyviton(profile)
    vae, image_encoder = load_or_train_encoders(profile)
    cache = train.cached_training_set(root, profile, vae, image_encoder,
                                      train.weights_hash(vae, image_encoder))
    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    for name in args.variants:
        result = measure(name, profile, cache, vae, args.steps, args.warmup, device)
        print(json.dumps({"profile": profile.name, "device": device_name,
                          "batch_size": profile.batch_size, **result}))


if __name__ == "__main__":
    main()
