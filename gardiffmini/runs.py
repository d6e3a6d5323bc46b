"""Training runs that resume after an interruption and are reused once finished.

Every model in the book (the garment encoders of chapter 2, the try-on variants of
chapters 3-7, the feature network behind the offline metrics) trains through :func:`fit`
into a :class:`Run`: a folder named by the model, the profile, the seed and a short hash
of the configuration, holding

- ``config.json``: everything needed to rebuild the model and redo the run;
- ``model.safetensors``: the weights of every module, written atomically;
- ``trainer.safetensors``: optimizer state and learning-rate schedule, for resuming;
- ``state.json``: the last step saved and whether the run finished;
- ``metrics.json``: the training curve and, once finished, a summary.

Each step draws its randomness from ``(seed, step)`` alone, so a run killed at any point
and resumed from its last checkpoint ends with exactly the weights of a run that was
never interrupted.

:class:`Speed` says how :func:`fit` runs its steps on a device (gradient checkpointing,
``torch.compile``); mixed precision is the ``accelerate.Accelerator``'s, and
:func:`device_cache` puts a training set on the device once. Their defaults change no number:
fp32, eager, every activation kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from gardiffmini.paths import runs_root


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def temporary_sibling(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place: a name of its own, so
    that processes writing the same file at once (the ranks of a multi-process run opening
    it) never rename one another's temporary file away."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file of this process, then rename)."""
    tmp = temporary_sibling(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None
) -> None:
    """Write ``tensors`` as safetensors to ``path`` atomically (temporary file, then rename)."""
    tmp = temporary_sibling(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(tmp), metadata={"json": json.dumps(metadata or {})})
    os.replace(tmp, path)


def config_hash(config: dict) -> str:
    """A short, stable hash of a JSON-serialisable configuration."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def architecture(config: dict) -> dict:
    """The public entries of a diffusers model's ``config``, for a run's configuration.

    Private entries are left out: ``_use_default_values`` is a list made from a set, so its
    order, and a hash of it, changes from one Python process to the next.
    """
    return {key: value for key, value in config.items() if not key.startswith("_")}


def step_seed(seed: int, step: int) -> int:
    """The seed of one training step: a function of the run's seed and the step alone."""
    return (seed * 1_000_003 + step * 7_919 + 12_345) % (2**31 - 1)


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for the randomness of one step (batch indices, noise, timesteps)."""
    return torch.Generator().manual_seed(step_seed(seed, step))


def _optimizer_to_tensors(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"state.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class Run:
    """One training run's folder. Use :meth:`Run.open` to create or find one."""

    folder: Path
    config: dict
    seed: int

    @classmethod
    def open(
        cls, kind: str, profile: str, seed: int, config: dict, root: Path | str | None = None
    ) -> Run:
        """The run of model ``kind`` at ``profile`` and ``seed`` with this ``config``.

        The same arguments always give the same folder, so a later chapter that asks for
        the same run finds the finished one instead of training again.
        """
        full = {"kind": kind, "profile": profile, "seed": seed, **config}
        folder = Path(root or runs_root()) / f"{kind}-{profile}-seed{seed}-{config_hash(full)}"
        folder.mkdir(parents=True, exist_ok=True)
        config_file = folder / "config.json"
        if not config_file.exists():
            atomic_write_text(config_file, json.dumps(full, indent=2, default=str))
        return cls(folder=folder, config=full, seed=seed)

    @property
    def state(self) -> dict:
        """``{"step": last saved step, "status": "running" | "finished"}``."""
        path = self.folder / "state.json"
        return json.loads(path.read_text()) if path.exists() else {"step": 0, "status": "new"}

    @property
    def finished(self) -> bool:
        """Whether the run reached its last step (then :func:`fit` only loads it)."""
        return self.state["status"] == "finished"

    @property
    def metrics(self) -> dict:
        """``{"history": [...], "summary": {...}}`` as written so far."""
        path = self.folder / "metrics.json"
        return json.loads(path.read_text()) if path.exists() else {"history": [], "summary": {}}

    def save(
        self,
        step: int,
        modules: dict[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        history: list[dict] | None = None,
        ema=None,
    ) -> None:
        """Write a checkpoint at ``step``; every file is replaced atomically.

        ``ema`` (diffusers' ``EMAModel``): its averaged weights go with the optimizer state.
        """
        weights = {
            f"{name}.{key}": value
            for name, module in modules.items()
            for key, value in module.state_dict().items()
        }
        atomic_save_tensors(self.folder / "model.safetensors", weights, {"step": step})
        if optimizer is not None:
            tensors, meta = _optimizer_to_tensors(optimizer.state_dict())
            meta["lr_scheduler"] = lr_scheduler.state_dict() if lr_scheduler else None
            if ema is not None:
                tensors |= {f"ema.{i}": p.detach().contiguous()
                            for i, p in enumerate(ema.shadow_params)}
                meta["ema_step"] = ema.optimization_step
            meta["step"] = step
            atomic_save_tensors(self.folder / "trainer.safetensors", tensors, meta)
        if history is not None:
            self.write_metrics(history=history)
        atomic_write_text(
            self.folder / "state.json", json.dumps({"step": step, "status": "running"})
        )

    def load(
        self,
        modules: dict[str, torch.nn.Module],
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        ema=None,
    ) -> int:
        """Load the last checkpoint into ``modules`` (and optimizer, EMA); return its step."""
        path = self.folder / "model.safetensors"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no checkpoint in this run yet")
        weights = load_file(str(path))
        for name, module in modules.items():
            prefix = f"{name}."
            own = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
            module.load_state_dict(own)
        trainer = self.folder / "trainer.safetensors"
        if optimizer is not None and trainer.exists():
            from safetensors import safe_open

            with safe_open(str(trainer), "pt") as handle:
                meta = json.loads(handle.metadata()["json"])
            tensors = load_file(str(trainer))
            averaged = {k: v for k, v in tensors.items() if k.startswith("ema.")}
            tensors = {k: v for k, v in tensors.items() if not k.startswith("ema.")}
            optimizer.load_state_dict(_optimizer_from_tensors(tensors, meta))
            if lr_scheduler is not None and meta["lr_scheduler"] is not None:
                lr_scheduler.load_state_dict(meta["lr_scheduler"])
            if ema is not None and averaged:
                for i, p in enumerate(ema.shadow_params):
                    p.data.copy_(averaged[f"ema.{i}"])
                ema.optimization_step = meta["ema_step"]
        return self.state["step"]

    def write_metrics(self, history: list[dict] | None = None, summary: dict | None = None) -> None:
        """Replace the training curve and/or merge into the summary in ``metrics.json``."""
        metrics = self.metrics
        if history is not None:
            metrics["history"] = history
        if summary is not None:
            metrics["summary"] = {**metrics["summary"], **summary}
        atomic_write_text(self.folder / "metrics.json", json.dumps(metrics, indent=2))

    def finish(self, step: int) -> None:
        """Mark the run finished at ``step``."""
        atomic_write_text(
            self.folder / "state.json", json.dumps({"step": step, "status": "finished"})
        )


@dataclass(frozen=True)
class Speed:
    """How :func:`fit` runs its steps; the defaults compute exactly what plain eager code does.

    - ``gradient_checkpointing``: every module that supports it (diffusers'
      ``enable_gradient_checkpointing``) keeps only its blocks' inputs and recomputes their
      activations in the backward pass: the same gradients, bit for bit, for less memory and
      about a third more compute;
    - ``compile_backend``: ``torch.compile`` each module in place with this backend
      (``"inductor"`` on a GPU); ``None``: eager. Weights keep their names.

    Mixed precision is the ``accelerate.Accelerator``'s (``mixed_precision="bf16"``): :func:`fit`
    runs ``loss_fn`` under its autocast.
    """

    gradient_checkpointing: bool = False
    compile_backend: str | None = None


DEFAULT_SPEED = Speed()


def apply_speed(modules: dict[str, torch.nn.Module], speed: Speed) -> None:
    """Turn on ``speed``'s gradient checkpointing and compilation in ``modules``, in place."""
    if speed.gradient_checkpointing:
        able = [m for m in modules.values()
                if getattr(m, "_supports_gradient_checkpointing", False)]
        if not able:
            raise ValueError(f"gradient_checkpointing: none of {sorted(modules)} supports it "
                             "(diffusers models do)")
        for module in able:
            module.enable_gradient_checkpointing()
    if speed.compile_backend is not None:
        for module in modules.values():
            module.compile(backend=speed.compile_backend)


def device_cache(
    tensors: dict[str, torch.Tensor], device: torch.device | str, max_fraction: float = 0.5
) -> dict[str, torch.Tensor]:
    """A training set's tensors on ``device`` once, so that a step indexes them there and
    copies nothing from the host. On a GPU they move only if they take at most
    ``max_fraction`` of its free memory (the ``paper`` profile's full-size masks and photos
    do not fit); otherwise they stay on the host and each step copies its batch."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if size > max_fraction * free:
            return tensors
    return {key: value.to(device) for key, value in tensors.items()}


def peak_memory_gb(device: torch.device) -> float | None:
    """The peak memory the device reports since its last reset, in GB (CUDA only)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)


def optimizer_parameters(optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The parameters ``optimizer`` steps, group after group: the order in which :func:`fit`
    steps an EMA over them, so an ``EMAModel`` for ``fit`` is built over this list."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def fit(
    run: Run,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[int], dict[str, torch.Tensor]],
    total_steps: int,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    checkpoint_every: int | None = None,
    log_every: int = 10,
    max_grad_norm: float | None = 1.0,
    accelerator=None,
    desc: str | None = None,
    progress: bool = True,
    ema=None,
    speed: Speed = DEFAULT_SPEED,
    batch_size: int | None = None,
) -> list[dict]:
    """Train ``modules`` for ``total_steps`` steps of ``loss_fn``, resuming and reusing ``run``.

    ``loss_fn(step)`` returns a dict with at least ``"loss"``; it must draw its batch and
    noise from :func:`step_generator` ``(run.seed, step)`` so that resuming is exact. The
    global torch seed is also set per step (for dropout). A finished run is only loaded.
    A non-finite loss raises :class:`NonFiniteLossError` and leaves the last good
    checkpoint in place. ``accelerator`` (an ``accelerate.Accelerator``) handles devices,
    mixed precision and several processes. ``ema`` (diffusers' ``EMAModel`` over the
    optimizer's parameters) is updated after every step and checkpointed with the optimizer;
    at the last step its averaged weights replace the trained ones, so a finished run keeps
    the EMA weights. ``speed`` turns on gradient checkpointing and ``torch.compile``
    (:class:`Speed`). The summary in ``metrics.json`` gets the throughput of the last session:
    wall time, steps/s, images/s (``batch_size`` images per step and process) and the
    device's peak memory where it reports one. Returns the logged history.
    """
    params = optimizer_parameters(optimizer)
    unwrap = accelerator.unwrap_model if accelerator is not None else (lambda m: m)
    is_main = accelerator is None or accelerator.is_main_process
    plain = {name: unwrap(module) for name, module in modules.items()}
    if run.finished:
        run.load(plain)
        return run.metrics["history"]
    start, history = 0, []
    if (run.folder / "model.safetensors").exists():
        start = run.load(plain, optimizer, lr_scheduler, ema)
        history = [h for h in run.metrics["history"] if h["step"] < start]
    checkpoint_every = checkpoint_every or max(1, total_steps // 5)
    apply_speed(plain, speed)
    for module in modules.values():
        module.train()
    device = accelerator.device if accelerator is not None else params[0].device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    n_processes = accelerator.num_processes if accelerator is not None else 1
    bar = tqdm(
        range(start, total_steps), initial=start, total=total_steps,
        desc=desc or run.folder.name, disable=not (progress and is_main),
    )
    started = time.perf_counter()
    for step in bar:
        torch.manual_seed(step_seed(run.seed, step))
        with autocast():
            logs = loss_fn(step)
        loss = logs["loss"]
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(
                f"loss is {loss.item()} at step {step} of {run.folder}; the last good "
                f"checkpoint (step {run.state['step']}) is kept. Lower the learning rate "
                "or check the data, then run again to resume from it."
            )
        if accelerator is not None:
            accelerator.backward(loss)
            if max_grad_norm:
                accelerator.clip_grad_norm_(params, max_grad_norm)
        else:
            loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
        if ema is not None:
            ema.step(params)
        if lr_scheduler is not None:
            lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == total_steps - 1:
            record = {"step": step, **{k: float(v.detach()) for k, v in logs.items()}}
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}")
        done = step + 1
        if ema is not None and done == total_steps:
            ema.copy_to(params)
        if is_main and (done % checkpoint_every == 0 or done == total_steps):
            run.save(done, plain, optimizer, lr_scheduler, history, ema)
    if is_main:
        if not (run.folder / "model.safetensors").exists():
            run.save(total_steps, plain, optimizer, lr_scheduler, history)
        seconds = time.perf_counter() - started
        earlier = run.metrics["summary"].get("train_seconds", 0.0)
        steps_per_s = (total_steps - start) / seconds if seconds else None
        images = batch_size * n_processes if batch_size else None
        run.write_metrics(summary={
            "train_seconds": round(earlier + seconds, 2),
            "steps_per_s": round(steps_per_s, 3) if steps_per_s else None,
            "images_per_s": round(steps_per_s * images, 3) if steps_per_s and images else None,
            "device": str(device),
            "peak_memory_gb": peak_memory_gb(device),
        })
        run.finish(total_steps)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return history



def warmup_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a constant rate (the paper: 500 steps)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, warmup_steps))
    )


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then a cosine decay to zero at ``total_steps``."""
    if total_steps < 1 or warmup_steps < 0:
        raise ValueError(f"need total_steps >= 1 and warmup_steps >= 0, got {total_steps} "
                         f"and {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
