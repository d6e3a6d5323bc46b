"""Where a training step's time goes: the library's step of one variant under ``torch.profiler``.

    python benchmarks/step_profile.py --profile cpu --variant base+gfa --steps 10 \
        --out book/results/step-profile-cpu-amd-epyc.json

Runs :func:`gardiffmini.bench.bench_variant` (random weights and latents of the profile's
shapes, the step of ``train_variant``: loss, backward, AdamW, EMA) for ``--warmup`` untimed
steps, then ``--steps`` steps under the profiler, and reports each operator's share of the
self CPU time (the time spent in the operator itself, not in the operators it calls), the
scaled-dot-product attention's share (forward and backward kernels together) and the
steps/s the profiled run reached. The profiler's own overhead slows the run a little, so the
steps/s are those of ``python -m gardiffmini bench`` only roughly; the shares are what it is for.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import profiler as torch_profiler

from gardiffmini import bench, train
from gardiffmini.profiles import PROFILES, get_profile
from gardiffmini.runs import DEFAULT_SPEED

ATTENTION = "scaled_dot_product"  # aten::_scaled_dot_product_*: every backend, both directions


def operator_shares(events, top: int) -> tuple[list[dict], float]:
    """The ``top`` operators by self CPU time, each with its share, and the attention's
    share, from the profiler's ``key_averages()``."""
    rows = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows)
    table = [{"operator": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3),
              "share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
             for e in rows[:top]]
    attention = sum(e.self_cpu_time_total for e in rows if ATTENTION in e.key) / total
    return table, round(attention, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--variant", default="base+gfa", choices=sorted(train.VARIANTS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    with tempfile.TemporaryDirectory() as folder, torch_profiler.profile(
            activities=[torch_profiler.ProfilerActivity.CPU]) as profiler:
        speed = bench.bench_variant(profile, train.get_variant(args.variant), args.steps,
                                    args.warmup, accelerator, DEFAULT_SPEED, Path(folder))
    table, attention = operator_shares(profiler.key_averages(), args.top)
    result = {
        "what": f"self CPU time per operator of {args.steps + args.warmup + 1} training steps "
                f"of {train.get_variant(args.variant).name} at {profile.name} (batch "
                f"{profile.batch_size}, random weights and latents), under torch.profiler",
        "variant": args.variant, "profile": profile.name, "steps_per_s": speed["steps_per_s"],
        "attention_share": attention, "operators": table,
        "provenance": bench.provenance(accelerator.device),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
