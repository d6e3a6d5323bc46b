"""Learning curves of the try-on recipe: held-out SSIM against training steps, per recipe.

    python benchmarks/recipe_curves.py --profile cpu --variant base --steps 800 --every 200 \
        --recipes paper default no-min-snr no-region --out book/results/recipe-curves-cpu.json

Each recipe (:class:`gardiffmini.objective.Recipe`: the paper's, today's default, or the default
with one change undone) trains the same variant from the same seed; every ``--every`` steps
the model (its EMA weights where the recipe keeps them, and the raw weights too) dresses the
first ``--n`` held-out paired test persons and is scored by SSIM (torchmetrics, data range 1)
against the photos. Warp-and-paste on the same persons is printed beside it. Writes the curves
with their wall time and provenance to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from diffusers import DDIMScheduler
from diffusers.training_utils import EMAModel

from gardiffmini import metrics, objective, train
from gardiffmini.baselines import warp_and_paste
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import evaluation_sets, try_on
from gardiffmini.features import default_features
from gardiffmini.inpainting_base import inpainting_base
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.pipeline import GarDiffPipeline
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance
from gardiffmini.runs import step_generator
from gardiffmini.train import weights_hash

RECIPES = {
    "paper": objective.PAPER_RECIPE,
    "default": objective.DEFAULT_RECIPE,
    "no-min-snr": replace(objective.DEFAULT_RECIPE, min_snr_gamma=None),
    "no-region": replace(objective.DEFAULT_RECIPE, region_weight=1.0),
    "no-drop-warped": replace(objective.DEFAULT_RECIPE, drop_warped_latent=False),
    "epsilon": replace(objective.DEFAULT_RECIPE, prediction_type="epsilon"),
}


def held_out_ssim(unet, adapter, vae, encoder, profile, pairs, seed: int,
                  prediction_type: str) -> float:
    schedule = objective.noise_scheduler(prediction_type).config
    pipeline = GarDiffPipeline(unet=unet.eval(), vae=vae, image_encoder=encoder,
                               adapter=adapter.eval(),
                               scheduler=DDIMScheduler.from_config(schedule))
    pipeline.set_progress_bar_config(disable=True)
    images = try_on(pipeline, pairs, profile, seed)
    unet.train()
    adapter.train()
    return float(metrics.ssim(images, pairs["person"].add(1).div(2)).mean())


def curve(name: str, args, profile, cache, vae, encoder, pairs, base=None) -> dict:
    recipe, variant = RECIPES[name], train.get_variant(args.variant)
    torch.manual_seed(args.seed)
    unet, adapter = train.build_model(profile, variant, base, recipe)
    params = [p for m in (unet, adapter) for p in m.parameters() if p.requires_grad]
    optimizer = train.variant_optimizer(params, profile, recipe)
    schedule = train.learning_rate_schedule(optimizer, recipe, profile.warmup_steps, args.steps)
    ema = EMAModel(params, decay=recipe.ema_decay, use_ema_warmup=True) if recipe.ema_decay \
        else None
    features = default_features() if variant.appearance_loss else None
    scheduler = objective.noise_scheduler(recipe.prediction_type)
    points, train_seconds = [], 0.0
    for step in range(args.steps):
        started = time.perf_counter()
        generator = step_generator(args.seed, step)
        index = torch.randint(0, len(cache["x0"]), (profile.batch_size,), generator=generator)
        loss = train.diffusion_step_loss(unet, adapter, cache, index, generator, scheduler,
                                         variant, vae=vae, features=features,
                                         appearance_samples=profile.appearance_samples,
                                         recipe=recipe)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(params)
        train_seconds += time.perf_counter() - started
        if (step + 1) % args.every == 0:
            point = {"step": step + 1, "train_seconds": round(train_seconds, 1),
                     "ssim_raw": held_out_ssim(unet, adapter, vae, encoder, profile, pairs,
                                               args.seed, recipe.prediction_type)}
            if ema is not None:
                averaged_unet, averaged_adapter = copy.deepcopy(unet), copy.deepcopy(adapter)
                ema.copy_to([p for m in (averaged_unet, averaged_adapter)
                             for p in m.parameters() if p.requires_grad])
                point["ssim_ema"] = held_out_ssim(averaged_unet, averaged_adapter, vae, encoder,
                                                  profile, pairs, args.seed,
                                                  recipe.prediction_type)
            print(name, json.dumps(point), flush=True)
            points.append(point)
    return {"recipe": asdict(recipe), "points": points}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--variant", default="base")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="override the profile's learning rate")
    parser.add_argument("--base", action="store_true",
                        help="start from the profile's shared inpainting base")
    parser.add_argument("--unet-channels", type=int, nargs="+", default=None,
                        help="override the profile's UNet widths, e.g. 64 128")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    encoders_profile = get_profile(args.profile, n_eval=args.n)
    overrides = {"n_eval": args.n}
    if args.learning_rate is not None:
        overrides["learning_rate"] = args.learning_rate
    if args.unet_channels is not None:
        overrides["unet_channels"] = tuple(args.unet_channels)
    profile = get_profile(args.profile, **overrides)
    # the overrides change only the try-on model: the encoders and their cache are the profile's
    root = ensure_toyviton(encoders_profile)
    vae, encoder = load_or_train_encoders(encoders_profile)
    cache = train.cached_training_set(root, encoders_profile, vae, encoder,
                                      weights_hash(vae, encoder))
    pairs = evaluation_sets(root, profile)["paired"]
    paste = warp_and_paste(pairs)
    baseline = float(metrics.ssim(paste, pairs["person"].add(1).div(2)).mean())
    print("warp+paste", baseline, flush=True)
    record = {"variant": args.variant, "n_pairs": args.n, "warp_and_paste_ssim": baseline,
              "learning_rate": profile.learning_rate, "unet_channels": profile.unet_channels,
              "curves": {}}
    base = inpainting_base(profile, weights_hash(vae), lambda: cache) if args.base else None
    record["base"] = args.base
    for name in args.recipes:
        record["curves"][name] = curve(name, args, profile, cache, vae, encoder, pairs, base)
        record["provenance"] = provenance(profile, [args.seed], time.perf_counter() - started)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
