"""What a ToyVITON VAE with more latent channels keeps: the lever for issue 9's VAE bar.

    python benchmarks/vae_latent_channels.py --profile cpu --channels 8 \
        --out book/results/vae-latent-channels-cpu.json

Trains (or reuses the finished run of) the profile's VAE with ``--channels`` latent channels,
same data, recipe and steps as the shipped one, and reports beside the shipped VAE: the worst
palette colour's round-trip error, the pasted round-trip SSIM on held-out persons rendered in
memory (the gate of ``tests/test_vae.py``) and on the test pairs' files (the "vae round trip"
row of the ablation table, the bar of 0.95), and the training time. Writes them with
provenance to ``--out``. A VAE with other latent channels is another latent space: adopting
it means re-shipping the inpainting base and retraining every variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gardiffmini import baselines, metrics
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import evaluation_sets
from gardiffmini.models.encoders import train_vae
from gardiffmini.models.vae import load_shipped_vae, round_trip_report, shipped_weights_path
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance


def measure(vae, profile, paired: dict, train_seconds: float | None) -> dict:
    report = round_trip_report(vae, profile, n=profile.n_eval)
    files = metrics.ssim(baselines.vae_round_trip(vae, paired).clamp(0, 1),
                         paired["person"].add(1).div(2)).mean().item()
    return {"latent_channels": profile.latent_channels, "train_seconds": train_seconds,
            "colour_max": report["colour_max"], "ssim_pasted_heldout": report["ssim_pasted"],
            "ssim_pasted_test_files": round(files, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=["ci", "cpu", "gpu"])
    parser.add_argument("--channels", type=int, nargs="+", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    profile = get_profile(args.profile)
    paired = evaluation_sets(ensure_toyviton(profile), profile)["paired"]
    shipped = json.loads(shipped_weights_path(profile).with_suffix(".json").read_text())
    rows = [{"vae": "shipped", **measure(load_shipped_vae(profile), profile, paired,
                                         shipped.get("train_seconds"))}]
    for channels in args.channels:
        wider = get_profile(profile, latent_channels=channels)
        vae = train_vae(wider, 0, use_shipped=False)
        rows.append({"vae": f"{channels} latent channels",
                     **measure(vae, wider, paired,
                               vae.run.metrics["summary"].get("train_seconds"))})
    record = {"rows": rows, "steps": profile.vae_steps,
              "provenance": provenance(profile, [0], time.perf_counter() - started)}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
