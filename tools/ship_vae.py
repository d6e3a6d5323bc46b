"""Train a profile's ToyVITON VAE once and ship its weights inside the package.

    python tools/ship_vae.py --profile cpu      # then commit gardiffmini/weights/vae-cpu.*

Writes ``gardiffmini/weights/vae-<profile>.safetensors`` (float16) and ``.json``: the recipe
hash that :func:`gardiffmini.models.vae.load_shipped_vae` checks, the latent scaling factor,
the training time and curve, the round-trip report of the shipped (float16) weights, and
provenance. Nothing is downloaded; ToyVITON is generated if missing.
"""

from __future__ import annotations

import argparse
import json
import time

from safetensors.torch import save_file

from gardiffmini.models.encoders import train_vae
from gardiffmini.models.vae import (
    load_shipped_vae,
    recipe_hash,
    round_trip_report,
    shipped_weights_path,
)
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=["ci", "cpu", "gpu"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    started = time.perf_counter()
    vae = train_vae(profile, args.seed, use_shipped=False)
    path = shipped_weights_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in vae.state_dict().items()}, str(path))
    summary = vae.run.metrics["summary"]
    history = vae.run.metrics["history"]
    record = {
        "recipe_hash": recipe_hash(profile, args.seed, vae),
        "scaling_factor": vae.config.scaling_factor,
        "profile": profile.name, "seed": args.seed, "steps": profile.vae_steps,
        "train_seconds": summary.get("train_seconds"), "steps_per_s": summary.get("steps_per_s"),
        "curve": [{"step": h["step"], "reconstruction": round(h["reconstruction"], 4)}
                  for h in history[:: max(1, len(history) // 40)]],
        "provenance": provenance(profile, [args.seed], time.perf_counter() - started),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2))
    shipped = load_shipped_vae(profile, args.seed)
    if shipped is None:
        raise RuntimeError(f"{path} was written but does not load back")
    record["round_trip"] = round_trip_report(shipped, profile)
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("steps", "train_seconds", "round_trip")}, indent=2))


if __name__ == "__main__":
    main()
