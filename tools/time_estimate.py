"""Estimate each chapter's training and sampling time at a profile on a GPU, without one.

    python tools/time_estimate.py --profile gpu --device t4   # book/results/time-gpu-t4.json

Every model runs once on the meta device (shapes, no data) under torch's
``FlopCounterMode``, and a ``TorchDispatchMode`` counts the operators it dispatches: on a GPU
each is about one kernel launch. A training step costs three forward passes (the backward
twice the forward) in FLOPs and in launches; a step takes ``max(FLOPs / rate, launches x
launch time)``, the arithmetic bound or the launch bound, whichever is slower. The rates
(:data:`DEVICES`) are assumptions, stated in the output: a UNet reaches 25-40 % of a T4's
65 TFLOP/s fp16 peak. What each chapter trains and samples (:func:`chapter_work`) follows the
notebooks; what runs on the CPU (ToyVITON, warps) is scaled from the `cpu` profile's
measured times. Every figure is an estimate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from gardiffmini import train
from gardiffmini.features import default_features
from gardiffmini.models.encoders import build_tokenizer, make_clip
from gardiffmini.models.vae import make_vae
from gardiffmini.probes import ProbeDecoder
from gardiffmini.profiles import PROFILES, Profile, get_profile
from gardiffmini.reproduce import git_commit

# (low, high) sustained TFLOP/s on these models, and microseconds per kernel launch
DEVICES = {
    "t4": {"name": "NVIDIA T4 (16 GB, free Colab)", "precision": "fp16",
           "tflops": (15.0, 25.0), "launch_us": 10.0},
    "h100": {"name": "NVIDIA H100 (80 GB)", "precision": "bf16",
             "tflops": (200.0, 400.0), "launch_us": 5.0},
}
# the cpu profile's measured CPU work (2 cores, cold make book of 2026-12-03): ToyVITON for
# 2,128 pairs at 128x96 in 12 s; chapter 1's warps of its 128 test pairs in 8 s in all
CPU_MEASURED = {"toyviton_s_per_megapixel_pair": 12 / (2128 * 128 * 96 / 1e6),
                "chapter1_s_per_megapixel_pair": 8 / (128 * 128 * 96 / 1e6)}
SEEDS_AT_GPU = 3  # chapter 7 trains every variant for seeds 0, 1 and 2 at gpu and paper


class CountOps(TorchDispatchMode):
    """Counts the operators dispatched: about one GPU kernel launch each."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def measure(fn) -> dict[str, float]:
    """FLOPs and operator count of ``fn()`` (run on the meta device)."""
    with FlopCounterMode(display=False) as flops, CountOps() as ops:
        fn()
    return {"gflop": flops.get_total_flops() / 1e9, "ops": ops.calls}


@torch.no_grad()
def forward_costs(profile: Profile) -> dict[str, dict[str, float]]:
    """Forward FLOPs and operators per image (batch 1) of every model the book trains."""
    h, w = profile.latent_size
    with torch.device("meta"):
        unet, adapter = train.build_model(profile, train.get_variant("base+gfa"))
        vae = make_vae(profile)
        clip = make_clip(profile, build_tokenizer())
        features = default_features()
        probe = ProbeDecoder((profile.latent_channels, h, w), profile)
        latents = torch.zeros(1, profile.latent_channels, h, w)
        image = torch.zeros(1, 3, *profile.image_size)
        tokens = adapter(torch.zeros(1, profile.clip_embed_dim), latents)
        mask = torch.ones(1, 1, *profile.image_size)
        text = torch.zeros(1, 16, dtype=torch.long)
        clip_image = torch.zeros(1, 3, clip.config.vision_config.image_size,
                                 clip.config.vision_config.image_size)
        return {
            "unet": measure(lambda: unet(torch.zeros(1, unet.config.in_channels, h, w),
                                         torch.zeros(1, dtype=torch.long),
                                         encoder_hidden_states=tokens,
                                         cross_attention_kwargs={"garment_mask": mask})),
            "vae_encode": measure(lambda: vae.encode(image)),
            "vae_decode": measure(lambda: vae.decode(latents)),
            "clip": measure(lambda: clip(input_ids=text, pixel_values=clip_image)),
            "features": measure(lambda: features(image)),
            "probe": measure(lambda: probe(latents)),
        }


def step_seconds(gflop: float, ops: float, device: dict, rate: float) -> float:
    """One step's time: the arithmetic bound or the launch bound, whichever is slower."""
    return max(gflop / (rate * 1e3), ops * device["launch_us"] / 1e6)


def chapter_work(profile: Profile, cost: dict) -> dict[str, list[tuple[str, float, float]]]:
    """Per chapter, its GPU jobs as ``(what, GFLOP per step, operators per step)`` repeated
    over their steps: ``(what, gflop_total, ops_total)`` after multiplying out."""
    b = profile.batch_size
    unet, dec, enc = cost["unet"], cost["vae_decode"], cost["vae_encode"]

    def train_steps(steps: int, appearance: bool) -> tuple[float, float]:
        gflop, ops = 3 * unet["gflop"] * b, 3 * unet["ops"]
        if appearance:  # decode x0_hat and compare features of both images, all samples
            n = profile.appearance_samples or b
            gflop += 3 * n * (dec["gflop"] + 2 * cost["features"]["gflop"])
            ops += 3 * (dec["ops"] + 2 * cost["features"]["ops"])
        return steps * gflop, steps * ops

    def evaluation() -> tuple[float, float]:  # paired and unpaired, guided, every step
        persons = 2 * profile.n_eval
        guided = 2 if profile.guidance_scale > 1 else 1
        batches = -(-persons // b)
        gflop = persons * (2 * enc["gflop"] + dec["gflop"]
                           + profile.sample_steps * guided * unet["gflop"])
        ops = batches * (2 * enc["ops"] + dec["ops"] + profile.sample_steps * unet["ops"])
        return gflop, ops

    def job(what: str, pair: tuple[float, float]) -> tuple[str, float, float]:
        return (what, pair[0], pair[1])

    cache = (profile.n_train * (2 * enc["gflop"] + cost["clip"]["gflop"] / 2),
             -(-profile.n_train // 32) * (2 * enc["ops"] + cost["clip"]["ops"]))
    variant = {name: train_steps(profile.diffusion_steps, v.appearance_loss)
               for name, v in train.VARIANTS.items()}
    later_seeds = SEEDS_AT_GPU - 1 if profile.name in ("gpu", "paper") else 0
    return {
        "ch02": [
            job("VAE", (profile.vae_steps * 3 * b * (enc["gflop"] + dec["gflop"]),
                        profile.vae_steps * 3 * (enc["ops"] + dec["ops"]))),
            job("CLIP", (profile.clip_steps * 3 * b * cost["clip"]["gflop"],
                         profile.clip_steps * 3 * cost["clip"]["ops"])),
            job("probes (CLIP, VAE)", (2 * profile.probe_steps * 3 * b * cost["probe"]["gflop"],
                                       2 * profile.probe_steps * 3 * cost["probe"]["ops"])),
        ],
        "ch03": [job("encode the training set", cache),
                 job("inpainting base", train_steps(profile.base_steps, False)),
                 job("Base", variant["base"]), job("evaluate Base", evaluation())],
        "ch04": [job("Base + GFA", variant["base+gfa"]), job("evaluate", evaluation())],
        "ch05": [job("Base + GFA without the mask", variant["base+gfa"]),
                 job("evaluate", evaluation())],
        "ch07": [job("Base + AL", variant["base+al"]), job("Base + GFA + AL",
                                                           variant["base+gfa+al"]),
                 job("evaluate the two", tuple(2 * x for x in evaluation())),
                 *[job(f"seed {s}: {name}", variant[name])
                   for s in range(1, 1 + later_seeds) for name in train.VARIANTS],
                 job(f"evaluate seeds 1-{later_seeds}",
                     tuple(4 * later_seeds * x for x in evaluation()))],
    }


def estimate(profile_name: str, device_name: str) -> dict:
    """Every chapter's estimated minutes, (fast, slow), with the work behind them."""
    profile, device = get_profile(profile_name), DEVICES[device_name]
    cost = forward_costs(profile)
    megapixel_pairs = (profile.n_train + profile.n_test) * profile.height * profile.width / 1e6
    chapters = {}
    for chapter, jobs in chapter_work(profile, cost).items():
        minutes = [sum(step_seconds(gflop, ops, device, rate) for _, gflop, ops in jobs) / 60
                   for rate in sorted(device["tflops"], reverse=True)]
        chapters[chapter] = {"minutes": [round(m, 1) for m in minutes],
                             "jobs": {what: {"pflop": round(gflop / 1e6, 3),
                                             "kernel_launches": int(ops)}
                                      for what, gflop, ops in jobs}}
    ch1 = megapixel_pairs * CPU_MEASURED["toyviton_s_per_megapixel_pair"] + (
        profile.n_test * profile.height * profile.width / 1e6
        * CPU_MEASURED["chapter1_s_per_megapixel_pair"])
    chapters["ch01"] = {"minutes": [round(ch1 / 60, 1)] * 2,
                        "jobs": {"ToyVITON and the warps, on 2 CPU cores (scaled from cpu)": {}}}
    chapters["ch06"] = {"minutes": [1.0, 1.0], "jobs": {"trains nothing (about a minute)": {}}}
    chapters = dict(sorted(chapters.items()))
    total = [round(sum(c["minutes"][i] for c in chapters.values()), 1) for i in (0, 1)]
    return {
        "kind": "estimate (no GPU measured it)",
        "profile": profile.to_dict(), "device": device,
        "method": "FLOPs (torch FlopCounterMode) and dispatched operators (one kernel launch "
                  "each) of one forward per model on the meta device; a training step is 3 "
                  "forwards; a step takes max(FLOPs / rate, launches x launch time); "
                  "chapter 1's CPU work scaled by pixels from the cpu profile's measurement",
        "forward_per_image": {k: {"gflop": round(v["gflop"], 3), "ops": v["ops"]}
                              for k, v in cost.items()},
        "chapters": chapters, "total_minutes": total,
        "provenance": {"commit": git_commit(), "torch": torch.__version__,
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       "script": "tools/time_estimate.py"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="gpu", choices=sorted(PROFILES))
    parser.add_argument("--device", default="t4", choices=sorted(DEVICES))
    parser.add_argument("--out", type=Path, default=None,
                        help="default: book/results/time-<profile>-<device>.json")
    args = parser.parse_args()
    result = estimate(args.profile, args.device)
    out = args.out or Path(f"book/results/time-{args.profile}-{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for chapter, numbers in result["chapters"].items():
        print(f"{chapter}: {numbers['minutes'][0]}-{numbers['minutes'][1]} min")
    print(f"total: {result['total_minutes'][0]}-{result['total_minutes'][1]} min -> {out}")


if __name__ == "__main__":
    main()
