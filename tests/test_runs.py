import json
import os
import subprocess
import sys

import pytest
import torch

from gardiffmini.runs import (
    NonFiniteLossError,
    Run,
    architecture,
    fit,
    step_generator,
    warmup_schedule,
)


def _setup(tmp_path, name="run"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = warmup_schedule(optimizer, 3)
    run = Run.open("toy", "ci", seed=1, config={"lr": 1e-2}, root=tmp_path / name)
    data = torch.randn(64, 4)

    def loss_fn(step, fail_at=None):
        if step == fail_at:
            raise KeyboardInterrupt
        index = torch.randint(0, 64, (8,), generator=step_generator(run.seed, step))
        x = data[index]
        return {"loss": (model(x) - x.sum(1, keepdim=True)).pow(2).mean()}

    return model, optimizer, schedule, run, loss_fn


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    model, opt, sched, run, loss_fn = _setup(tmp_path, "a")
    fit(run, {"model": model}, opt, loss_fn, 20, sched, checkpoint_every=4, progress=False)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model, opt, sched, run, loss_fn = _setup(tmp_path, "b")
    with pytest.raises(KeyboardInterrupt):
        fit(run, {"model": model}, opt, lambda s: loss_fn(s, fail_at=10), 20, sched,
            checkpoint_every=4, progress=False)
    assert run.state == {"step": 8, "status": "running"}
    model, opt, sched, run, loss_fn = _setup(tmp_path, "b")  # a fresh process
    fit(run, {"model": model}, opt, loss_fn, 20, sched, checkpoint_every=4, progress=False)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)
    assert run.finished


def test_finished_run_is_reused_not_retrained(tmp_path):
    model, opt, sched, run, loss_fn = _setup(tmp_path)
    fit(run, {"model": model}, opt, loss_fn, 6, sched, progress=False)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    model, opt, sched, run, _ = _setup(tmp_path)

    def must_not_run(step):
        raise AssertionError("a finished run trained again")

    history = fit(run, {"model": model}, opt, must_not_run, 6, sched, progress=False)
    assert history and history[-1]["step"] == 5
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, trained[key])
    config = json.loads((run.folder / "config.json").read_text())
    assert config == {"kind": "toy", "profile": "ci", "seed": 1, "lr": 1e-2}


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, opt, sched, run, loss_fn = _setup(tmp_path)

    def explodes(step):
        out = loss_fn(step)
        return {"loss": out["loss"] * (float("nan") if step == 7 else 1.0)}

    with pytest.raises(NonFiniteLossError, match="step 7"):
        fit(run, {"model": model}, opt, explodes, 20, sched, checkpoint_every=5, progress=False)
    assert run.state == {"step": 5, "status": "running"}
    saved = Run.open("toy", "ci", 1, {"lr": 1e-2}, root=tmp_path / "run")
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    assert saved.load({"model": fresh}) == 5
    assert all(torch.isfinite(p).all() for p in fresh.parameters())


def test_different_config_gives_a_different_folder(tmp_path):
    a = Run.open("toy", "ci", 0, {"lr": 1e-3}, root=tmp_path)
    b = Run.open("toy", "ci", 0, {"lr": 1e-4}, root=tmp_path)
    assert a.folder != b.folder and a.folder.name.startswith("toy-ci-seed0-")


def test_warmup_schedule_is_linear_then_constant():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_schedule(opt, 4)
    rates = []
    for _ in range(6):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_architecture_drops_private_entries():
    config = {"block_out_channels": (32, 64), "_use_default_values": ["b", "a"]}
    assert architecture(config) == {"block_out_channels": (32, 64)}


def test_model_run_configs_hash_alike_in_every_process():
    """A set-ordered private entry once gave each Python process its own run folder."""
    code = ("from gardiffmini.models.unet import make_unet; "
            "from gardiffmini.runs import architecture, config_hash; "
            "print(config_hash(architecture(make_unet('ci').config)))")
    hashes = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(hashes) == 1
