import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gardiffmini import objective, train
from gardiffmini.features import default_features
from gardiffmini.models.attention import garment_processors
from gardiffmini.pipeline import POSE_CHANNELS, GarDiffPipeline, extra_input_channels, pose_latent
from gardiffmini.profiles import get_profile
from gardiffmini.runs import NonFiniteLossError, config_hash, step_generator

TINY = dict(n_train=8, n_test=4, vae_steps=2, clip_steps=2, base_steps=2, diffusion_steps=4,
            batch_size=2, n_eval=2, sample_steps=2)


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    """A private data folder: ToyVITON and runs of the tiny profile go there."""
    home = tmp_path_factory.mktemp("gardiff-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GARDIFF_DATA", str(home))
        yield home


@pytest.fixture(scope="module")
def profile(data_home):
    return get_profile("ci", **TINY)


@pytest.fixture(scope="module")
def cache(profile):
    from gardiffmini.data.toyviton import ensure_toyviton
    from gardiffmini.models.encoders import load_or_train_encoders

    root = ensure_toyviton(profile, progress=False)
    vae, image_encoder = load_or_train_encoders(profile, progress=False)
    data = train.cached_training_set(root, profile, vae, image_encoder,
                                     train.weights_hash(vae, image_encoder), pose=False,
                                     skin=False)  # the plain recipe's
    return data, vae


def _condition_cache(profile, **conditions) -> tuple[dict, dict]:
    """The training set cached with the person conditions ``conditions`` asks for
    (``pose=True``, ``skin=True``: :func:`gardiffmini.train.cached_training_set`), and its
    dataset's first item."""
    from gardiffmini.data.datasets import open_dataset
    from gardiffmini.data.toyviton import ensure_toyviton
    from gardiffmini.models.encoders import load_or_train_encoders

    root = ensure_toyviton(profile, progress=False)
    vae, image_encoder = load_or_train_encoders(profile, progress=False)
    data = train.cached_training_set(root, profile, vae, image_encoder,
                                     train.weights_hash(vae, image_encoder),
                                     **({"pose": False, "skin": False} | conditions))
    first = open_dataset(root, split="train", pairing="paired", size=profile.image_size)[0]
    return data, first


@pytest.fixture(scope="module")
def pose_cache(cache, profile):
    """With the DensePose on the latent grid (the recipe's ``pose_input``)."""
    return _condition_cache(profile, pose=True)


@pytest.fixture(scope="module")
def skin_cache(cache, profile):
    """With the skin-primed agnostic latent (the recipe's ``skin_input``)."""
    return _condition_cache(profile, skin=True)


@pytest.fixture(scope="module")
def book_cache(profile):
    """With both, as the book's recipe (``DEFAULT_RECIPE``) reads them."""
    return _condition_cache(profile, pose=True, skin=True)


CACHED_KEYS = {"x0", "warped", "agnostic", "clip", "warped_mask", "agnostic_mask",
               "garment_mask", "person"}
POSE_RECIPE = replace(objective.PLAIN_RECIPE, pose_input=True)


def test_training_noise_adds_one_constant_per_sample_and_channel():
    generator = torch.Generator().manual_seed(0)
    noise = objective.training_noise((64, 4, 16, 12), generator, offset=0.5)
    generator = torch.Generator().manual_seed(0)
    plain = torch.randn((64, 4, 16, 12), generator=generator)
    constant = noise - plain
    assert torch.allclose(constant, constant[..., :1, :1].expand_as(constant))
    assert constant[..., 0, 0].std().item() == pytest.approx(0.5, rel=0.15)
    no_offset = objective.training_noise((2, 4, 3, 3), torch.Generator().manual_seed(1), 0.0)
    assert torch.equal(no_offset,
                       torch.randn((2, 4, 3, 3), generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="shape"):
        objective.training_noise((4, 3, 3), generator)


def test_variants_and_bad_names():
    assert set(train.VARIANTS) == {"base", "base+al", "base+gfa", "base+gfa+al"}
    assert train.get_variant("base+gfa").garment_adapter
    assert not train.get_variant("base+al").garment_adapter
    with pytest.raises(ValueError, match="unknown variant 'gfa'"):
        train.get_variant("gfa")


def test_cached_training_set_shapes(cache, profile):
    data, _ = cache
    h, w = profile.latent_size
    assert data["x0"].shape == (TINY["n_train"], profile.latent_channels, h, w)
    assert data["warped"].shape == data["agnostic"].shape == data["x0"].shape
    assert data["clip"].shape == (TINY["n_train"], profile.clip_embed_dim)
    assert data["warped_mask"].shape == (TINY["n_train"], 1, profile.height, profile.width)
    assert data["person"].dtype == torch.uint8


@pytest.mark.parametrize("name", list(train.VARIANTS))
def test_each_variant_builds_and_gives_a_finite_loss(cache, book_cache, profile, name):
    (_, vae), (data, _) = cache, book_cache  # the book's recipe reads DensePose and skin
    variant = train.get_variant(name)
    unet, adapter = train.build_model(profile, variant)
    assert bool(garment_processors(unet)) == variant.garment_adapter
    features = default_features() if variant.appearance_loss else None
    generator = step_generator(0, 0)
    losses = train.diffusion_step_loss(unet, adapter, data, torch.tensor([0, 1]), generator,
                                       objective.noise_scheduler(), variant, vae=vae,
                                       features=features)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(p.grad is None for p in vae.parameters())
    assert any(p.grad is not None for p in unet.parameters())
    if variant.appearance_loss:
        expected = losses["mse"] + variant.appearance_weight * (losses["spatial"]
                                                                + losses["high_freq"])
        torch.testing.assert_close(losses["loss"], expected)


def test_the_recipe_s_appearance_max_timestep_reaches_the_appearance_loss(cache, book_cache,
                                                                          profile):
    """A threshold below every drawn timestep leaves the noise term alone; one above every
    timestep gives the appearance terms on every sample, as without a threshold."""
    (_, vae), (data, _) = cache, book_cache
    variant = replace(train.get_variant("base+al"), appearance_weight=0.5)
    unet, adapter = train.build_model(profile, variant)
    index, features = torch.tensor([0, 1]), default_features()
    with torch.no_grad():
        loss = {limit: train.diffusion_step_loss(
            unet, adapter, data, index, step_generator(0, 0), objective.noise_scheduler(),
            variant, vae=vae, features=features,
            recipe=replace(objective.DEFAULT_RECIPE, appearance_max_timestep=limit))
            for limit in (None, 1, 1000)}
    assert loss[1]["spatial"].item() == loss[1]["high_freq"].item() == 0
    torch.testing.assert_close(loss[1]["loss"], loss[1]["mse"])
    assert loss[None]["spatial"].item() > 0
    for key in ("loss", "spatial", "high_freq"):
        torch.testing.assert_close(loss[1000][key], loss[None][key])


def _weights(pipeline: GarDiffPipeline) -> dict[str, torch.Tensor]:
    state = {f"unet.{k}": v for k, v in pipeline.unet.state_dict().items()}
    return state | {f"adapter.{k}": v for k, v in pipeline.adapter.state_dict().items()}


def test_killed_training_resumes_to_the_same_weights(cache, profile, monkeypatch):
    import shutil

    reference = train.train_variant("base+gfa", profile, seed=3, progress=False)
    expected = {k: v.clone() for k, v in _weights(reference).items()}
    shutil.rmtree(reference.run.folder)

    real_loss, calls = train.diffusion_step_loss, []

    def killed_at_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train, "diffusion_step_loss", killed_at_third_step)
    with pytest.raises(KeyboardInterrupt):
        train.train_variant("base+gfa", profile, seed=3, progress=False)
    monkeypatch.setattr(train, "diffusion_step_loss", real_loss)
    resumed = train.train_variant("base+gfa", profile, seed=3, progress=False)
    assert resumed.run.folder == reference.run.folder and resumed.run.finished
    for key, value in _weights(resumed).items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_non_finite_loss_stops_training(cache, profile, monkeypatch):
    def nan_loss(*args, **kwargs):
        return {"loss": torch.tensor(float("nan"), requires_grad=True)}

    monkeypatch.setattr(train, "diffusion_step_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="step 0"):
        train.train_variant("base", profile, seed=5, progress=False)


def test_trained_pipeline_samples_images(cache, profile):
    pipeline = train.train_variant("base", profile, seed=0, progress=False,
                                 recipe=objective.PLAIN_RECIPE)
    assert isinstance(pipeline, GarDiffPipeline) and pipeline.run.finished
    h, w = profile.image_size
    agnostic = torch.zeros(1, 3, h, w)
    out = pipeline(agnostic=agnostic, warped_cloth=agnostic, warped_mask=torch.ones(1, 1, h, w),
                   cloth=agnostic, num_inference_steps=2, guidance_scale=2.0,
                   generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 3, h, w)
    # postprocess clamps to [0, 1]: check what the clamp cannot hide, NaN and a sample that
    # diverged to the ends (measured here: 97.5 % of the pixels strictly inside, mean 0.50)
    assert torch.isfinite(out).all()
    assert ((out > 0) & (out < 1)).float().mean() > 0.9


def test_the_cache_without_pose_keeps_its_keys_and_file(cache, profile):
    from gardiffmini.data.datasets import default_warp
    from gardiffmini.data.fingerprint import data_fingerprint
    from gardiffmini.data.toyviton import ensure_toyviton
    from gardiffmini.models.encoders import load_or_train_encoders
    from gardiffmini.paths import runs_root

    data, _ = cache
    assert set(data) == CACHED_KEYS
    root = ensure_toyviton(profile, progress=False)
    encoders_id = train.weights_hash(*load_or_train_encoders(profile, progress=False))
    key = config_hash({"root": str(Path(root).resolve()), "encoders": encoders_id,  # as before
                       "size": profile.image_size, "data": data_fingerprint(root, "train"),
                       "warp": default_warp(root)})
    assert (runs_root() / "cache" / f"train-{profile.name}-{key}.safetensors").is_file()


def _assert_cache_adds_only(plain: dict, cached: dict, added: str) -> None:
    """``cached`` holds ``plain``'s tensors unchanged, and ``added`` besides."""
    assert set(cached) == CACHED_KEYS | {added}
    for key in CACHED_KEYS:
        assert torch.equal(cached[key], plain[key]), key


def test_the_pose_cache_adds_the_densepose_on_the_latent_grid(cache, pose_cache, profile):
    posed, first = pose_cache
    _assert_cache_adds_only(cache[0], posed, "pose")
    h, w = profile.latent_size
    assert posed["pose"].shape == (TINY["n_train"], POSE_CHANNELS, h, w)
    assert posed["pose"].min() >= -1 and posed["pose"].max() <= 1
    torch.testing.assert_close(posed["pose"][0], pose_latent(first["densepose"][None], (h, w))[0])


@pytest.mark.parametrize("name", ["base", "base+gfa"])
def test_the_pose_model_starts_as_the_model_without_pose(profile, name):
    variant = train.get_variant(name)
    torch.manual_seed(0)
    plain, plain_adapter = train.build_model(profile, variant, recipe=objective.PLAIN_RECIPE)
    torch.manual_seed(0)
    posed, posed_adapter = train.build_model(profile, variant, recipe=POSE_RECIPE)
    c = 3 * profile.latent_channels
    assert posed.config.in_channels == c + POSE_CHANNELS
    weights, expected = posed.state_dict(), plain.state_dict()
    assert weights.keys() == expected.keys()
    for key, value in weights.items():
        if key != "conv_in.weight":
            assert torch.equal(value, expected[key]), key
    assert torch.equal(weights["conv_in.weight"][:, :c], expected["conv_in.weight"])
    assert weights["conv_in.weight"][:, c:].eq(0).all()
    generator = torch.Generator().manual_seed(1)
    h, w = profile.latent_size
    latents = torch.randn(2, c, h, w, generator=generator)
    pose = torch.rand(2, POSE_CHANNELS, h, w, generator=generator) * 2 - 1
    tokens = posed_adapter(torch.randn(2, profile.clip_embed_dim, generator=generator),
                           torch.randn(2, profile.latent_channels, h, w, generator=generator))
    kwargs = ({"garment_mask": torch.ones(2, 1, profile.height, profile.width)}
              if variant.garment_adapter else None)
    with torch.no_grad():
        want = plain(latents, 500, encoder_hidden_states=tokens, cross_attention_kwargs=kwargs)
        got = posed(torch.cat([latents, pose], 1), 500, encoder_hidden_states=tokens,
                    cross_attention_kwargs=kwargs)
    assert torch.equal(got.sample, want.sample)


def _assert_step_reaches_the_new_inputs(profile, variant, cached: dict, recipe) -> None:
    """One training step of ``recipe`` on ``cached`` gives a finite loss whose gradient
    reaches the input weights the recipe's person conditions add."""
    unet, adapter = train.build_model(profile, variant, recipe=recipe)
    scheduler, index = objective.noise_scheduler("v_prediction"), torch.tensor([0, 1])
    losses = train.diffusion_step_loss(unet, adapter, cached, index, step_generator(0, 0),
                                       scheduler, variant, recipe=recipe)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert unet.conv_in.weight.grad[:, 3 * profile.latent_channels:].abs().sum() > 0


def test_a_pose_step_gives_a_finite_loss_that_reaches_the_pose_weights(cache, pose_cache,
                                                                       profile):
    posed, _ = pose_cache
    variant = train.get_variant("base+gfa")
    _assert_step_reaches_the_new_inputs(profile, variant, posed, POSE_RECIPE)
    scheduler, index = objective.noise_scheduler("v_prediction"), torch.tensor([0, 1])
    # the plain recipe ignores a cached pose: the loss is the plain cache's
    plain = objective.PLAIN_RECIPE
    torch.manual_seed(0)
    plain_unet, plain_adapter = train.build_model(profile, variant, recipe=plain)
    with torch.no_grad():
        loss = {name: train.diffusion_step_loss(plain_unet, plain_adapter, data, index,
                                                step_generator(0, 0), scheduler, variant,
                                                recipe=plain)["loss"]
                for name, data in (("plain", cache[0]), ("posed", posed))}
    assert torch.equal(loss["plain"], loss["posed"])


def test_the_shipped_run_config_is_what_run_config_gives_today():
    """The shipped cpu model's run is the book's recipe, and its config is what run_config
    gives today with that recipe and a UNet widened for its person inputs (without the data,
    warp and base train_variant adds): shipping it again reuses the same run."""
    from gardiffmini.export.weights import RECIPE, WARP

    shipped = json.loads((Path(train.__file__).parent / "weights" / "tryon-cpu.json").read_text())
    profile = get_profile("cpu")
    unet, _ = train.build_model(profile, train.VARIANTS["base+gfa"], recipe=RECIPE)
    config = train.run_config(profile, train.VARIANTS["base+gfa"], 1200,
                              shipped["run_config"]["encoders"], unet.config, RECIPE)
    assert RECIPE == objective.DEFAULT_RECIPE and shipped["run_config"]["warp"] == WARP
    assert config["recipe"]["pose_input"] and config["recipe"]["skin_input"]
    assert json.loads(json.dumps(config)) == {key: shipped["run_config"][key] for key in config}


def test_an_adapter_rate_run_trains_with_its_average_and_a_run_of_its_own(book_cache, profile):
    book = train.train_variant("base+gfa", profile, seed=0, progress=False)
    one_rate = train.train_variant("base+gfa", profile, seed=0, progress=False,
                                   recipe=replace(objective.DEFAULT_RECIPE,
                                                  adapter_learning_rate_scale=1.0))
    assert one_rate.run.finished and one_rate.run.folder != book.run.folder
    assert book.run.config["recipe"]["adapter_learning_rate_scale"] == 10.0
    assert "adapter_learning_rate_scale" not in one_rate.run.config["recipe"]
    # the EMA (on in the book's recipe) averages each weight with its own, and the adapter's
    # kept weights lie further from their start (train_variant's, same seed) in the book's
    # run, whose adapter learns at 10 times the rate, than at one rate
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        start = train.build_model(profile, train.get_variant("base+gfa"))[1].state_dict()
    moved = {name: sum(float((value - start[key]).abs().sum())
                       for key, value in pipe.adapter.state_dict().items())
             for name, pipe in (("book", book), ("one rate", one_rate))}
    assert moved["book"] > moved["one rate"] > 0


def test_a_pose_run_trains_and_samples_with_the_densepose(pose_cache, profile):
    from gardiffmini.data.datasets import open_dataset
    from gardiffmini.data.toyviton import ensure_toyviton
    from gardiffmini.evaluate import EVAL_KEYS, _stack, try_on

    plain = train.train_variant("base", profile, seed=0, progress=False,
                                 recipe=objective.PLAIN_RECIPE)
    posed = train.train_variant("base", profile, seed=0, progress=False, recipe=POSE_RECIPE)
    assert posed.run.finished and posed.run.folder != plain.run.folder
    assert posed.needs_densepose and not plain.needs_densepose
    assert posed.run.config["recipe"]["pose_input"] is True
    assert posed.unet.config.in_channels == plain.unet.config.in_channels + POSE_CHANNELS
    reloaded = train.train_variant("base", profile, seed=0, progress=False, recipe=POSE_RECIPE)
    assert reloaded.run.folder == posed.run.folder
    for key, value in reloaded.unet.state_dict().items():
        assert torch.equal(value, posed.unet.state_dict()[key]), key
    test = open_dataset(ensure_toyviton(profile, progress=False), split="test",
                        pairing="unpaired", size=profile.image_size)
    batch = _stack(test, 2, EVAL_KEYS)
    assert batch["densepose"].shape == (2, 3, profile.height, profile.width)
    for pipeline in (plain, posed):
        images = try_on(pipeline, batch, profile, seed=0)
        assert images.shape == (2, 3, profile.height, profile.width)
        assert torch.isfinite(images).all()


def test_extra_input_channels_counts_each_person_condition(profile):
    recipe = objective.PLAIN_RECIPE
    assert extra_input_channels(recipe, profile) == 0
    assert (extra_input_channels(objective.DEFAULT_RECIPE, profile)
            == POSE_CHANNELS + profile.latent_channels)
    assert extra_input_channels(replace(recipe, pose_input=True), profile) == POSE_CHANNELS
    skin = replace(recipe, skin_input=True)
    assert extra_input_channels(skin, profile) == profile.latent_channels
    both = replace(skin, pose_input=True)
    assert extra_input_channels(both, profile) == POSE_CHANNELS + profile.latent_channels
    three = get_profile("ci", latent_channels=POSE_CHANNELS)
    with pytest.raises(ValueError, match="skin_input needs latent_channels != 3"):
        extra_input_channels(skin, three)


def test_the_skin_cache_adds_the_skin_primed_agnostic_latent(cache, skin_cache, profile):
    from gardiffmini.pipeline import encode_latents
    from gardiffmini.skin import face_skin_colour, skin_primed_agnostic

    data, vae = cache
    skinned, first = skin_cache
    _assert_cache_adds_only(data, skinned, "skin")
    assert skinned["skin"].shape == data["agnostic"].shape
    colour = face_skin_colour(first["agnostic"][None], first["parse"][None])
    primed = skin_primed_agnostic(first["agnostic"][None], first["agnostic_mask"][None], colour)
    with torch.no_grad():
        expected = encode_latents(vae, primed)[0]
    # the cache encodes a batch, this one image: 1.5e-6 apart on a Xeon (latents up to 2.5);
    # other CPUs pick other kernels for other batch sizes
    torch.testing.assert_close(skinned["skin"][0], expected, atol=1e-4, rtol=0)
    assert not torch.allclose(skinned["skin"], skinned["agnostic"])


def test_a_skin_step_reaches_the_skin_weights(skin_cache, profile):
    skinned, _ = skin_cache
    _assert_step_reaches_the_new_inputs(profile, train.get_variant("base+gfa"), skinned,
                                        replace(objective.PLAIN_RECIPE, skin_input=True))


def test_a_skin_run_trains_and_samples_with_the_face_colour(skin_cache, profile):
    from gardiffmini.data.datasets import open_dataset
    from gardiffmini.data.toyviton import ensure_toyviton
    from gardiffmini.evaluate import EVAL_KEYS, _stack, try_on

    recipe = replace(objective.PLAIN_RECIPE, skin_input=True)
    plain = train.train_variant("base", profile, seed=0, progress=False,
                                 recipe=objective.PLAIN_RECIPE)
    skinned = train.train_variant("base", profile, seed=0, progress=False, recipe=recipe)
    assert skinned.run.finished and skinned.run.folder != plain.run.folder
    assert skinned.needs_skin_colour and not plain.needs_skin_colour
    assert skinned.run.config["recipe"]["skin_input"] is True
    assert (skinned.unet.config.in_channels
            == plain.unet.config.in_channels + profile.latent_channels)
    test = open_dataset(ensure_toyviton(profile, progress=False), split="test",
                        pairing="unpaired", size=profile.image_size)
    batch = _stack(test, 2, EVAL_KEYS)
    images = try_on(skinned, batch, profile, seed=0)
    assert images.shape == (2, 3, profile.height, profile.width)
    assert torch.isfinite(images).all()


def test_the_paste_cache_holds_the_warp_pasted_into_the_primed_image(cache, skin_cache, profile):
    from gardiffmini.data.warp import paste_warped_garment
    from gardiffmini.pipeline import encode_latents
    from gardiffmini.skin import face_skin_colour, skin_primed_agnostic

    data, vae = cache
    skinned, _ = skin_cache
    pasted, first = _condition_cache(profile, skin=True, paste_warp=True)
    _assert_cache_adds_only(data, pasted, "skin")
    colour = face_skin_colour(first["agnostic"][None], first["parse"][None])
    primed = skin_primed_agnostic(first["agnostic"][None], first["agnostic_mask"][None], colour)
    with torch.no_grad():
        expected = encode_latents(vae, paste_warped_garment(
            primed, first["warped_cloth"][None], first["warped_mask"][None]))[0]
    # one image against a batch: the tolerance of the skin cache's test
    torch.testing.assert_close(pasted["skin"][0], expected, atol=1e-4, rtol=0)
    assert not torch.allclose(pasted["skin"], skinned["skin"])
    with pytest.raises(ValueError, match="paste_warp pastes the warp into the skin-primed "
                                         "agnostic image: it needs skin"):
        train.encode_split([], vae, None, skin=False, paste_warp=True)


@pytest.mark.parametrize("kind, last_factor", [("constant", 1.0), ("cosine", 0.0)])
def test_learning_rate_schedule_follows_the_recipe(kind, last_factor):
    """Warm-up to the full rate, then constant, or a cosine down to zero at the last step."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    recipe = replace(objective.DEFAULT_RECIPE, lr_schedule=kind)
    schedule = train.learning_rate_schedule(optimizer, recipe, warmup_steps=2, steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:2] == pytest.approx([0.25, 0.5])
    assert rates[2] == pytest.approx(0.5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * last_factor, abs=1e-12)
    if kind == "cosine":  # halfway through the decay, half the rate
        assert rates[6] == pytest.approx(0.25)


def test_variant_optimizer_scales_the_profile_s_rate_by_the_recipe_s():
    profile = get_profile("cpu")
    params = [torch.nn.Parameter(torch.zeros(1))]
    book = train.variant_optimizer(params, profile, objective.DEFAULT_RECIPE)
    faster = train.variant_optimizer(
        params, profile, replace(objective.DEFAULT_RECIPE, learning_rate_scale=2.0))
    assert book.defaults["lr"] == profile.learning_rate
    assert faster.defaults["lr"] == pytest.approx(2 * profile.learning_rate)
    assert (faster.defaults["betas"], faster.defaults["weight_decay"]) == ((0.9, 0.999), 0.01)


def test_the_adapter_s_parameters_are_its_own_and_its_processors_vae_stream():
    profile = get_profile("ci")
    unet, adapter = train.build_model(profile, train.get_variant("base+gfa"))
    added = {id(p) for p in train.adapter_parameters(unet, adapter)}
    names = {name for name, p in unet.named_parameters() if id(p) in added}
    assert names and all(name.endswith(("to_k_vae.weight", "to_v_vae.weight", "to_k_vae.bias",
                                        "to_v_vae.bias")) for name in names)
    assert {id(p) for p in adapter.parameters()} <= added
    assert len(added) == len(names) + len(list(adapter.parameters()))
    base_unet, base_adapter = train.build_model(profile, train.get_variant("base"))
    assert {id(p) for p in train.adapter_parameters(base_unet, base_adapter)} == {
        id(p) for p in base_adapter.parameters()}


def test_the_adapter_learns_at_its_own_rate_only_when_the_recipe_asks():
    profile = get_profile("cpu")
    unet_weight, adapter_weight = (torch.nn.Parameter(torch.zeros(2)) for _ in range(2))
    params = [unet_weight, adapter_weight]
    one_rate = replace(objective.DEFAULT_RECIPE, adapter_learning_rate_scale=1.0)
    single = train.variant_optimizer(params, profile, one_rate, [adapter_weight])
    assert len(single.param_groups) == 1 and single.param_groups[0]["params"] == params
    recipe = replace(objective.DEFAULT_RECIPE, learning_rate_scale=2.0,
                     adapter_learning_rate_scale=4.0)
    split = train.variant_optimizer(params, profile, recipe, [adapter_weight])
    rates = {id(p): group["lr"] for group in split.param_groups for p in group["params"]}
    assert rates == {id(unet_weight): pytest.approx(2 * profile.learning_rate),
                     id(adapter_weight): pytest.approx(8 * profile.learning_rate)}
    schedule = train.learning_rate_schedule(split, recipe, warmup_steps=2, steps=10)
    assert [g["lr"] for g in split.param_groups] == pytest.approx(  # the warm-up's first half
        [profile.learning_rate, 4 * profile.learning_rate])
    split.step()
    schedule.step()
    assert [g["lr"] for g in split.param_groups] == pytest.approx(
        [2 * profile.learning_rate, 8 * profile.learning_rate])
