"""Train a profile's shared inpainting base once and ship its weights inside the package.

    python tools/ship_base.py --profile cpu  # then commit gardiffmini/weights/inpainting-base-cpu.*

Writes ``gardiffmini/weights/inpainting-base-<profile>.safetensors`` (float16) and ``.json``:
the :func:`~gardiffmini.inpainting_base.base_hash` that ``load_shipped_base`` checks, the
training time and loss curve, and provenance. Uses the profile's shipped VAE; nothing is
downloaded; ToyVITON is generated if missing.
"""

from __future__ import annotations

import argparse
import json
import time

from safetensors.torch import save_file

from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.inpainting_base import base_hash, load_shipped_base, shipped_base_path, train_base
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance
from gardiffmini.train import cached_training_set, weights_hash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=["ci", "cpu", "gpu"])
    args = parser.parse_args()
    profile = get_profile(args.profile)
    started = time.perf_counter()
    root = ensure_toyviton(profile)
    vae, encoder = load_or_train_encoders(profile)
    vae_id = weights_hash(vae)
    unet = train_base(profile, vae_id, lambda: cached_training_set(
        root, profile, vae, encoder, weights_hash(vae, encoder)))
    path = shipped_base_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in unet.state_dict().items()}, str(path))
    summary, history = unet.run.metrics["summary"], unet.run.metrics["history"]
    record = {
        "base_hash": base_hash(profile, vae_id), "profile": profile.name,
        "steps": profile.base_steps, "train_seconds": summary.get("train_seconds"),
        "steps_per_s": summary.get("steps_per_s"),
        "curve": [{"step": h["step"], "loss": round(h["loss"], 4)}
                  for h in history[:: max(1, len(history) // 40)]],
        "provenance": provenance(profile, [0], time.perf_counter() - started),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    if load_shipped_base(profile, vae_id) is None:
        raise RuntimeError(f"{path} was written but does not load back")
    print(json.dumps({k: record[k] for k in ("steps", "train_seconds", "base_hash")}, indent=2))


if __name__ == "__main__":
    main()
