import json
import os
import subprocess
import sys

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from gardiffmini.models.unet import make_unet
from gardiffmini.profiles import get_profile
from gardiffmini.runs import (
    DEFAULT_SPEED,
    NonFiniteLossError,
    Run,
    Speed,
    architecture,
    atomic_write_text,
    device_cache,
    fit,
    optimizer_parameters,
    step_generator,
    temporary_sibling,
    warmup_schedule,
)


def test_optimizer_parameters_run_group_after_group():
    first, second, third = (torch.nn.Parameter(torch.zeros(1)) for _ in range(3))
    optimizer = torch.optim.AdamW([{"params": [third]}, {"params": [first, second], "lr": 1.0}])
    assert [id(p) for p in optimizer_parameters(optimizer)] == [id(third), id(first), id(second)]


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
            "from gardiffmini.profiles import get_profile; "
            "from gardiffmini.runs import architecture, config_hash; "
            "print(config_hash(architecture(make_unet(get_profile('ci')).config)))")
    processes = [  # at once: each spends seconds importing diffusers
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONHASHSEED": str(seed)})
        for seed in (1, 2, 3)
    ]
    hashes = set()
    for process in processes:
        out, err = process.communicate()
        assert process.returncode == 0, err
        hashes.add(out.strip())
    assert len(hashes) == 1


def _unet_fit(folder, speed=DEFAULT_SPEED, steps=3):
    """``steps`` steps of the ci try-on UNet on random latents through :func:`fit`."""
    profile = get_profile("ci")
    torch.manual_seed(0)
    unet = make_unet(profile)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    run = Run.open("unet", "ci", 0, {"speed": str(speed)}, root=folder)
    shape = (2, unet.config.in_channels, *profile.latent_size)
    tokens = (2, profile.clip_tokens, profile.cross_attention_dim)

    def loss_fn(step):
        generator = step_generator(run.seed, step)
        x = torch.randn(shape, generator=generator)
        context = torch.randn(tokens, generator=generator)
        prediction = unet(x, torch.tensor([10, 500]), encoder_hidden_states=context).sample
        return {"loss": prediction.square().mean()}

    fit(run, {"unet": unet}, optimizer, loss_fn, steps, progress=False, speed=speed)
    return unet, loss_fn


def _saved_bytes(loss_fn) -> int:
    """The bytes that autograd keeps for the backward pass of one ``loss_fn(0)``."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_fn(0)
    return total


def test_gradient_checkpointing_keeps_less_and_trains_to_the_same_weights(tmp_path):
    plain, plain_loss = _unet_fit(tmp_path / "plain")
    checkpointed, checkpointed_loss = _unet_fit(tmp_path / "checkpointed",
                                                Speed(gradient_checkpointing=True))
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.modules())
    assert _saved_bytes(checkpointed_loss) < 0.5 * _saved_bytes(plain_loss)
    for (key, value), other in zip(plain.state_dict().items(),
                                   checkpointed.state_dict().values(), strict=True):
        torch.testing.assert_close(other, value, rtol=0, atol=0, msg=key)


def test_gradient_checkpointing_needs_a_module_that_supports_it(tmp_path):
    model, opt, sched, run, loss_fn = _setup(tmp_path)
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        fit(run, {"model": model}, opt, loss_fn, 2, sched, progress=False,
            speed=Speed(gradient_checkpointing=True))


@pytest.fixture
def fresh_accelerator():
    """An ``Accelerator`` factory; accelerate keeps one state per process and refuses another
    precision in it, so the state is reset around the test as accelerate's own tests do."""
    def make(mixed_precision):
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(mixed_precision=mixed_precision, cpu=True)

    yield make
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_fit_runs_the_loss_under_the_accelerators_autocast(tmp_path, fresh_accelerator,
                                                           mixed_precision):
    accelerator = fresh_accelerator(mixed_precision)
    model, opt, sched, run, loss_fn = _setup(tmp_path)
    model, opt = accelerator.prepare(model, opt)
    seen = []

    def observed(step):  # a layer's output: accelerate returns a prepared model's in fp32
        seen.append((torch.is_autocast_enabled("cpu"), model[0](torch.zeros(1, 4)).dtype))
        return loss_fn(step)

    fit(run, {"model": model}, opt, observed, 3, sched, progress=False, accelerator=accelerator)
    bf16 = mixed_precision == "bf16"
    assert seen == [(bf16, torch.bfloat16 if bf16 else torch.float32)] * 3
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def _mlp_fit(folder, speed):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    run = Run.open("mlp", "ci", 0, {}, root=folder)
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))

    def loss_fn(step):
        x = data[torch.randint(0, 64, (8,), generator=step_generator(run.seed, step))]
        return {"loss": (model(x) - x.sum(1, keepdim=True)).pow(2).mean()}

    fit(run, {"model": model}, optimizer, loss_fn, 5, progress=False, speed=speed,
        batch_size=8)
    return model, run


def test_compiled_fit_keeps_weight_names_and_matches_eager(tmp_path):
    eager, _ = _mlp_fit(tmp_path / "eager", Speed())
    compiled, run = _mlp_fit(tmp_path / "compiled", Speed(compile_backend="aot_eager"))
    assert compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    torch.testing.assert_close(compiled.state_dict(), eager.state_dict(), rtol=1e-5, atol=1e-6)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    assert run.load({"model": fresh}) == 5


def test_fit_logs_throughput(tmp_path):
    _, run = _mlp_fit(tmp_path, Speed())
    summary = run.metrics["summary"]
    assert summary["steps_per_s"] > 0 and summary["device"] == "cpu"
    assert summary["images_per_s"] == pytest.approx(8 * summary["steps_per_s"], rel=1e-2)
    assert summary["peak_memory_gb"] is None  # the CPU reports none


def test_device_cache_on_the_cpu_copies_nothing():
    cache = {"x0": torch.randn(4, 4, 2, 2), "person": torch.zeros(4, 3, 8, 6, dtype=torch.uint8)}
    moved = device_cache(cache, "cpu")
    assert all(moved[key] is value for key, value in cache.items())


def test_processes_writing_one_file_at_once_keep_their_own_temporary_files(tmp_path,
                                                                           monkeypatch):
    """Two ranks open the same run: each writes config.json through a temporary file of its
    own, so one renaming first does not take the other's away (it did with a shared name)."""
    path = tmp_path / "config.json"
    monkeypatch.setattr(os, "getpid", lambda: 101)
    first = temporary_sibling(path)
    first.write_text('{"rank": 0}')  # rank 0 has written, not yet renamed
    monkeypatch.setattr(os, "getpid", lambda: 102)
    atomic_write_text(path, '{"rank": 1}')  # rank 1 writes and renames in between
    assert temporary_sibling(path) != first and first.is_file()
    os.replace(first, path)  # rank 0's rename still finds its file
    assert json.loads(path.read_text()) == {"rank": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
