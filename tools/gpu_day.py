"""One command for the day a GPU is lent: what the book needs measured, in minutes.

    python tools/gpu_day.py                           # gpu profile, writes book/results/
    python tools/gpu_day.py --profile ci --dry-run    # the same steps, cut to a few, on a CPU

1. ``bench``: training steps/s and peak memory of every variant beside the plain fp32 loop
   (:func:`gardiffmini.bench.bench`), in the mixed precision the device calls for
   (:func:`gardiffmini.precision.mixed_precision_for`: bf16 on an H100, fp16 on a T4);
2. a short training run of Base + GFA + AL, the heaviest variant, on a small ToyVITON at the
   profile's shapes (:data:`SHORT`), from data generation to the last step, with its loss
   curve and its peak memory beside the estimate of ``tools/memory_estimate.py``;
3. ``book/results/gpu-day-<device>-<profile>.json`` (every number, each stage's wall time,
   the provenance), ``bench-<device>-<profile>.json`` and the loss curve as a PNG.

Budget: 8 minutes on one H100 (**estimated**, the stages' wall times are in the JSON). A
``--dry-run`` keeps the profile's shapes and cuts every step count and data size to a few
(:func:`gardiffmini.profiles.dry_run`); CI runs it at ``ci`` (tests/test_gpu_day.py).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from gardiffmini.bench import bench, device_slug
from gardiffmini.precision import mixed_precision_for
from gardiffmini.profiles import PROFILES, Profile, dry_run, get_profile
from gardiffmini.train import train_variant

# the short run: enough data and steps for a loss curve that falls, few enough for minutes
SHORT = {"n_train": 512, "n_test": 32, "vae_steps": 300, "clip_steps": 300, "base_steps": 0,
         "diffusion_steps": 600, "warmup_steps": 50}
VARIANT = "base+gfa+al"
BENCH_STEPS = {"full": (30, 5), "dry": (2, 1)}  # (timed, warm-up) steps per loop


def short_profile(name: str, dry: bool) -> Profile:
    """The profile of the short training run: ``name`` at :data:`SHORT`, or its dry run."""
    profile = get_profile(name, **SHORT)
    return dry_run(profile) if dry else profile


def loss_curve(history: list[dict], title: str, path: Path) -> None:
    """Plot the logged training loss against the step into ``path``."""
    fig = Figure(figsize=(6, 3.2), layout="tight")
    ax = fig.subplots()
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], marker=".")
    ax.set(xlabel="training step", ylabel="loss", title=title)
    fig.savefig(path, dpi=120)


def memory_estimate(out: Path, profile: str) -> float | None:
    """The peak memory ``tools/memory_estimate.py`` estimated for ``profile``, if committed."""
    path = out / f"memory-{profile}.json"
    return json.loads(path.read_text()).get("peak_gb") if path.is_file() else None


def gpu_day(profile_name: str, out: Path, dry: bool = False) -> dict:
    """Run the three stages and write their results into ``out``; return the summary."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = mixed_precision_for(device)
    slug = f"{device_slug(device)}-{profile_name}"
    out.mkdir(parents=True, exist_ok=True)
    seconds, start = {}, time.perf_counter()

    steps, warmup = BENCH_STEPS["dry" if dry else "full"]
    speed = bench(dry_run(get_profile(profile_name)) if dry else profile_name, steps, warmup,
                  precision)
    (out / f"bench-{slug}.json").write_text(json.dumps(speed, indent=2) + "\n")
    seconds["bench"] = round(time.perf_counter() - start, 1)

    start = time.perf_counter()
    profile = short_profile(profile_name, dry)
    pipeline = train_variant(VARIANT, profile, seed=0, mixed_precision=precision,
                             progress=False)
    seconds["short training (data, encoders, variant)"] = round(time.perf_counter() - start, 1)
    metrics = pipeline.run.metrics
    curve = out / f"gpu-day-loss-{slug}.png"
    loss_curve(metrics["history"], f"{VARIANT} at {profile_name}'s shapes, {precision} "
               f"({speed['provenance']['device']})", curve)

    summary = {
        "what": f"the GPU day's measurements at the {profile_name} profile's shapes"
                + (" (dry run: step counts and data cut to a few; the numbers mean nothing)"
                   if dry else ""),
        "mixed_precision": precision,
        "bench": {name: {k: row[k] for k in ("steps_per_s", "images_per_s", "peak_memory_gb")}
                  for name, row in speed["variants"].items()},
        "short_run": {
            "variant": VARIANT, "profile": profile.to_dict(),
            "history": metrics["history"], "summary": metrics["summary"],
            "peak_memory_gb": metrics["summary"].get("peak_memory_gb"),
            "estimated_peak_gb": memory_estimate(out, profile_name),
            "loss_curve": curve.name,
        },
        "wall_seconds": seconds,
        "provenance": speed["provenance"] | {"host_threads": os.cpu_count()},
    }
    (out / f"gpu-day-{slug}.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="gpu", choices=sorted(PROFILES))
    parser.add_argument("--out", type=Path, default=Path("book/results"))
    parser.add_argument("--dry-run", action="store_true",
                        help="the profile's shapes with every step count and data size cut")
    args = parser.parse_args(argv)
    summary = gpu_day(args.profile, args.out, args.dry_run)
    print(json.dumps({"bench": summary["bench"], "wall_seconds": summary["wall_seconds"],
                      "peak_memory_gb": summary["short_run"]["peak_memory_gb"]}, indent=2))


if __name__ == "__main__":
    main()
