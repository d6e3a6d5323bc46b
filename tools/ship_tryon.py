"""Train a profile's Base + GFA try-on model (or reuse its finished run) and ship it.

    python tools/ship_tryon.py --profile cpu  # then commit gardiffmini/weights/tryon-cpu.*

Writes ``gardiffmini/weights/tryon-<profile>.safetensors`` (the UNet with its garment
processors, the adapter and the CLIP image encoder, float32) and ``.json`` (their configs,
the DDIM scheduler's config, the VAE's hash, the run's identity and provenance), loads them
back and checks that the loaded pipeline samples what the trained one does. The book's
"Try it" page is built from these two files (``gardiffmini.export.page``); after shipping,
rebuild the book. The model is ``gardiffmini.train.train_variant("base+gfa", profile,
seed=0, recipe=RECIPE, warp=WARP)`` (:mod:`gardiffmini.export.weights`: the book's recipe
on the book's warp, so the run of seed 0 that chapter 4 trains is reused where
``$GARDIFF_DATA`` holds it), training only where no finished run exists.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from gardiffmini.export.weights import RECIPE, VARIANT, WARP, load_tryon, save_tryon
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance
from gardiffmini.train import train_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=["ci", "cpu"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    started = time.perf_counter()
    pipeline = train_variant(VARIANT, profile, seed=args.seed, recipe=RECIPE, warp=WARP)
    pipeline.set_progress_bar_config(disable=True)
    run = pipeline.run
    summary = run.metrics.get("summary", {})
    path = save_tryon(pipeline, profile, {
        "seed": args.seed, "run": run.folder.name, "run_config": run.config,
        "train_seconds": summary.get("train_seconds"), "steps": run.config.get("steps"),
        "provenance": provenance(profile, [args.seed], time.perf_counter() - started),
    })
    loaded = load_tryon(profile)
    images = {}
    for name, pipe in (("trained", pipeline), ("shipped", loaded)):
        g = torch.Generator().manual_seed(0)
        size = profile.image_size
        inputs = torch.Generator().manual_seed(1)
        agnostic = torch.rand(1, 3, *size, generator=inputs) * 2 - 1
        cloth = torch.rand(1, 3, *size, generator=inputs) * 2 - 1
        mask = (torch.rand(1, 1, *size, generator=inputs) > 0.5).float()
        person = {}  # the person conditions the book's recipe reads
        if pipe.needs_densepose:
            person["densepose"] = torch.rand(1, 3, *size, generator=inputs) * 2 - 1
        if pipe.needs_skin_colour:
            person["skin_colour"] = torch.rand(1, 3, generator=inputs) * 2 - 1
        images[name] = pipe(agnostic=agnostic, warped_cloth=cloth, warped_mask=mask,
                            cloth=cloth, agnostic_mask=1 - mask, **person,
                            num_inference_steps=3, guidance_scale=profile.guidance_scale,
                            generator=g).images
    difference = (images["trained"] - images["shipped"]).abs().max().item()
    if difference > 1e-4:
        raise RuntimeError(f"{path} loads back into a pipeline that samples differently "
                           f"(max difference {difference:.2e})")
    print(json.dumps({"weights": str(path), "bytes": path.stat().st_size, "run": run.folder.name,
                      "load_back_max_difference": difference}, indent=2))


if __name__ == "__main__":
    main()
