"""The training benchmark: how fast every variant trains at a profile on the device at hand.

``python -m gardiffmini.bench --profile P`` times the library's own training step (the
step of :func:`gardiffmini.train.train_variant`: :func:`~gardiffmini.train.diffusion_step_loss`
through :func:`~gardiffmini.runs.fit`, with AdamW, the warm-up schedule, EMA and, for ``+AL``,
the appearance loss through the VAE decoder) for each of the four variants, and beside them
the *peer*: the same UNet trained by a plain fp32 diffusers-style loop (UNet forward, noise
MSE, AdamW; no adapter, no appearance loss, no EMA, no recipe). The ratio of the two says
what GarDiff's extras and the loop cost. It prints the table and writes
``book/results/bench-<device>-<profile>.json`` with its provenance. ``--set KEY=VALUE``
(repeatable) benches the profile with one field replaced, e.g. ``--set unet_head_dim=32``, and
names the file for it (``bench-cpu-cpu-unet_head_dim-32.json``); the JSON records the fields
that differ from the named profile.

Throughput does not depend on what the weights are, so the models start at random and the
training set is random latents of the profile's shapes (nothing is generated, trained or
downloaded). Each timing starts after ``--warmup`` steps (allocator, caches, compilation)
and ends before the run's last step, so checkpoint writing is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import diffusers
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from gardiffmini import train
from gardiffmini.features import default_features
from gardiffmini.models.unet import make_unet
from gardiffmini.models.vae import make_vae
from gardiffmini.objective import DEFAULT_RECIPE, noise_scheduler
from gardiffmini.pipeline import POSE_CHANNELS, tryon_unet_input
from gardiffmini.profiles import PROFILES, Profile, get_profile
from gardiffmini.reproduce import git_commit
from gardiffmini.runs import (
    DEFAULT_SPEED,
    Run,
    Speed,
    device_cache,
    fit,
    peak_memory_gb,
    step_generator,
)

DEFAULT_STEPS = {"ci": 10, "cpu": 30, "gpu": 100, "paper": 50}
N_PAIRS = 64  # random training pairs the steps draw their batches from


def synthetic_cache(profile: Profile, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """What :func:`gardiffmini.train.encode_split` caches, for ``n`` random pairs of
    ``profile``'s shapes: latents, CLIP embeddings, masks and uint8 photos, and the person
    inputs of the book's recipe (the DensePose on the latent grid, the skin-primed latent)."""
    generator = torch.Generator().manual_seed(seed)
    latent = (n, profile.latent_channels, *profile.latent_size)
    mask = (n, 1, *profile.image_size)
    return {
        "x0": torch.randn(latent, generator=generator),
        "warped": torch.randn(latent, generator=generator),
        "agnostic": torch.randn(latent, generator=generator),
        "clip": torch.randn(n, profile.clip_embed_dim, generator=generator),
        "warped_mask": (torch.rand(mask, generator=generator) > 0.5).float(),
        "agnostic_mask": (torch.rand(mask, generator=generator) > 0.5).float(),
        "person": torch.randint(0, 256, (n, 3, *profile.image_size), generator=generator,
                                dtype=torch.uint8),
        "garment_mask": torch.rand(mask, generator=generator) > 0.5,
        "pose": torch.rand((n, POSE_CHANNELS, *profile.latent_size), generator=generator) * 2 - 1,
        "skin": torch.randn(latent, generator=generator),
    }


def device_slug(device: torch.device) -> str:
    """``cpu``, or the GPU's name in lower case without its vendor (``tesla-t4``, ``h100-...``)."""
    if device.type != "cuda":
        return device.type
    name = torch.cuda.get_device_name(device).lower().replace("nvidia", "")
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


class StepClock:
    """Wraps a ``loss_fn(step)`` and notes when each step starts (after the device's queue
    has drained), so that ``steps_per_s`` covers whole steps: loss, backward, optimizer."""

    def __init__(self, loss_fn: Callable[[int], dict], device: torch.device) -> None:
        self.loss_fn, self.device, self.starts = loss_fn, device, []

    def __call__(self, step: int) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.starts.append(time.perf_counter())
        return self.loss_fn(step)

    def steps_per_s(self, warmup: int) -> float:
        """Steps per second from the start of step ``warmup`` to the start of the last."""
        return (len(self.starts) - 1 - warmup) / (self.starts[-1] - self.starts[warmup])


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def bench_variant(
    profile: Profile, variant: train.Variant, steps: int, warmup: int,
    accelerator: Accelerator, speed: Speed, folder: Path,
) -> dict:
    """Time ``steps`` steps of ``variant`` as :func:`~gardiffmini.train.train_variant` trains
    it (after ``warmup`` steps), on random weights and latents."""
    device = accelerator.device
    _reset_peak(device)
    torch.manual_seed(0)
    unet, adapter = train.build_model(profile, variant)
    vae = make_vae(profile).to(device).requires_grad_(False)
    if speed.gradient_checkpointing:
        vae.enable_gradient_checkpointing()
    cache = device_cache(synthetic_cache(profile, N_PAIRS), device)
    scheduler = noise_scheduler(DEFAULT_RECIPE.prediction_type)
    params = [p for m in (unet, adapter) for p in m.parameters() if p.requires_grad]
    optimizer = train.variant_optimizer(params, profile, DEFAULT_RECIPE)
    lr_schedule = train.learning_rate_schedule(optimizer, DEFAULT_RECIPE, profile.warmup_steps,
                                               warmup + steps)
    unet, adapter, optimizer = accelerator.prepare(unet, adapter, optimizer)
    ema = EMAModel(params, decay=DEFAULT_RECIPE.ema_decay, use_ema_warmup=True)
    ema.to(device)
    features = default_features().to(device) if variant.appearance_loss else None

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        generator = step_generator(0, step)
        index = torch.randint(0, N_PAIRS, (profile.batch_size,), generator=generator)
        return train.diffusion_step_loss(unet, adapter, cache, index, generator, scheduler,
                                         variant, vae=vae, features=features,
                                         appearance_samples=profile.appearance_samples)

    clock = StepClock(loss_fn, device)
    total = warmup + steps + 1
    run = Run.open(f"bench-{variant.name}", profile.name, 0, {}, root=folder)
    fit(run, {"unet": unet, "adapter": adapter}, optimizer, clock, total, lr_schedule,
        checkpoint_every=total, log_every=total, accelerator=accelerator, progress=False,
        ema=ema, speed=speed)
    accelerator.free_memory()  # the accelerator holds what it prepared
    steps_per_s = clock.steps_per_s(warmup)
    return {"steps_per_s": round(steps_per_s, 4),
            "images_per_s": round(steps_per_s * profile.batch_size, 3),
            "peak_memory_gb": peak_memory_gb(device)}


def bench_peer(profile: Profile, steps: int, warmup: int, device: torch.device) -> dict:
    """Time the plain fp32 loop on the same UNet: ``x_t`` from the cached latents, the UNet's
    noise prediction, ``F.mse_loss``, AdamW; no adapter (the CLIP embedding repeated as the
    tokens), no appearance loss, no EMA, no schedule, no checkpoints."""
    _reset_peak(device)
    torch.manual_seed(0)
    unet = make_unet(profile).to(device).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=profile.learning_rate,
                                  weight_decay=0.01)
    scheduler = noise_scheduler("epsilon")
    cache = device_cache(synthetic_cache(profile, N_PAIRS), device)
    cache["tokens"] = torch.randn(N_PAIRS, profile.clip_tokens, profile.cross_attention_dim,
                                  device=device)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        index = torch.randint(0, N_PAIRS, (profile.batch_size,), device=device)
        x0 = cache["x0"][index]
        noise = torch.randn_like(x0)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),),
                                  device=device)
        x_t = scheduler.add_noise(x0, noise, timesteps)
        prediction = unet(tryon_unet_input(x_t, cache["warped"][index],
                                           cache["agnostic"][index]),
                          timesteps, encoder_hidden_states=cache["tokens"][index]).sample
        return {"loss": F.mse_loss(prediction, noise)}

    clock = StepClock(loss_fn, device)
    for step in range(warmup + steps + 1):
        loss = clock(step)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    steps_per_s = clock.steps_per_s(warmup)
    return {"steps_per_s": round(steps_per_s, 4),
            "images_per_s": round(steps_per_s * profile.batch_size, 3),
            "peak_memory_gb": peak_memory_gb(device)}


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict:
    """Where and with what the numbers were made."""
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU ({_cpu_name()})")
    return {"device": name, "threads": torch.get_num_threads(), "commit": git_commit(),
            "torch": torch.__version__, "diffusers": diffusers.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def profile_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> ``(KEY, VALUE)`` for :func:`~gardiffmini.profiles.get_profile`: KEY a
    field of :class:`~gardiffmini.profiles.Profile`, VALUE JSON (lists become tuples), e.g.
    ``unet_head_dim=32`` or ``unet_channels=[64,128]``."""
    key, sep, value = text.partition("=")
    names = [f.name for f in dataclasses.fields(Profile)]
    if not sep or key not in names:
        raise ValueError(f"profile override {text!r}: expected KEY=VALUE with KEY one of {names}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"profile override {text!r}: VALUE must be JSON ({error})") from error
    return key, tuple(parsed) if isinstance(parsed, list) else parsed


def overridden(profile: Profile) -> dict:
    """The fields in which ``profile`` differs from the named profile it is a variant of."""
    named = PROFILES[profile.name]
    return {f.name: getattr(profile, f.name) for f in dataclasses.fields(Profile)
            if getattr(profile, f.name) != getattr(named, f.name)}


def bench(profile: str | Profile, steps: int | None = None, warmup: int = 3,
          mixed_precision: str = "no", speed: Speed = DEFAULT_SPEED,
          variants: list[str] | None = None) -> dict:
    """The benchmark's numbers: per variant and for the peer, steps/s, images/s and peak
    memory (where the device reports it), and each variant's speed relative to the peer.
    ``profile``, a :class:`~gardiffmini.profiles.Profile` or its name, is resolved here, once."""
    profile = get_profile(profile)
    steps = steps or DEFAULT_STEPS.get(profile.name, 30)
    accelerator = Accelerator(mixed_precision=mixed_precision,
                              cpu=not torch.cuda.is_available())
    device = accelerator.device
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in variants or list(train.VARIANTS):
            variant = train.get_variant(name)
            results[name] = bench_variant(profile, variant, steps, warmup, accelerator, speed,
                                          Path(folder))
    peer = bench_peer(profile, steps, warmup, device)
    for numbers in results.values():
        numbers["vs_peer"] = round(numbers["steps_per_s"] / peer["steps_per_s"], 3)
    return {
        "what": "training steps/s of each variant (the library's loop) beside a plain fp32 "
                "diffusers loop on the same UNet (the peer); random weights and latents",
        "profile": profile.name, "overrides": overridden(profile),
        "batch_size": profile.batch_size,
        "image_size": list(profile.image_size), "steps": steps, "warmup": warmup,
        "mixed_precision": mixed_precision,
        "speed": {"gradient_checkpointing": speed.gradient_checkpointing,
                  "compile_backend": speed.compile_backend},
        "variants": results, "peer": peer,
        "host_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
        "provenance": provenance(device),
    }


def table(result: dict) -> str:
    """The numbers as a Markdown table."""
    def memory(gb: float | None) -> str:
        return "-" if gb is None else f"{gb:.2f}"

    lines = ["| loop | steps/s | images/s | peak GB | vs peer |", "|---|---|---|---|---|"]
    for name, row in result["variants"].items():
        lines.append(f"| {train.get_variant(name).name} | {row['steps_per_s']:.3f} | "
                     f"{row['images_per_s']:.2f} | {memory(row['peak_memory_gb'])} | "
                     f"{row['vs_peer']:.2f} |")
    peer = result["peer"]
    lines.append(f"| plain fp32 loop (peer) | {peer['steps_per_s']:.3f} | "
                 f"{peer['images_per_s']:.2f} | {memory(peer['peak_memory_gb'])} | 1.00 |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options, for this module's :func:`main` and for the ``bench``
    subcommand of :mod:`gardiffmini.cli`."""
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed steps per loop (default per profile: {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", default=None, metavar="BACKEND",
                        help="torch.compile the modules with this backend, e.g. inductor")
    parser.add_argument("--variants", nargs="+", default=None, choices=sorted(train.VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        type=profile_override, metavar="KEY=VALUE",
                        help="replace one field of the profile (JSON value), e.g. "
                             "unet_head_dim=32; the file's name gains -KEY-VALUE")
    parser.add_argument("--out", type=Path, default=Path("book/results"),
                        help="folder of bench-<device>-<profile>.json")


def run_from_args(args: argparse.Namespace) -> Path:
    """Run the benchmark as ``args`` say, print its table and write its JSON; return the path."""
    speed = Speed(gradient_checkpointing=args.gradient_checkpointing,
                  compile_backend=args.compile)
    profile = get_profile(args.profile, **dict(args.overrides))
    result = bench(profile, args.steps, args.warmup, args.mixed_precision, speed, args.variants)
    print(table(result))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "".join(f"-{key}-{re.sub(r'[^A-Za-z0-9.]+', '-', str(value)).strip('-')}"
                     for key, value in args.overrides)
    path = args.out / f"bench-{device_slug(device)}-{result['profile']}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m gardiffmini.bench --profile P``."""
    parser = argparse.ArgumentParser(prog="python -m gardiffmini.bench",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    main()
