"""The try-on training recipe: Min-SNR weights, region weights, the weighted MSE, schedules, EMA."""

import math
from dataclasses import replace

import pytest
import torch
from diffusers.training_utils import EMAModel

from gardiffmini import objective
from gardiffmini.losses import noise_mse
from gardiffmini.runs import Run, fit, warmup_cosine_schedule


def test_min_snr_weights_match_the_formula():
    abar = torch.tensor([0.99, 0.5, 0.01])
    t = torch.tensor([0, 1, 2])
    weights = objective.min_snr_weights(t, abar, gamma=5.0)
    snr = [0.99 / 0.01, 1.0, 0.01 / 0.99]
    expected = [min(s, 5.0) / s for s in snr]
    torch.testing.assert_close(weights, torch.tensor(expected))
    with pytest.raises(ValueError, match="positive"):
        objective.min_snr_weights(t, abar, gamma=0)


def test_region_weights_mark_latent_cells_touching_the_agnostic_mask():
    mask = torch.zeros(1, 1, 8, 8)
    mask[:, :, 0, 0] = 1  # one pixel in the top-left latent cell
    weights = objective.region_weights(mask, (2, 2), weight=4.0)
    torch.testing.assert_close(weights, torch.tensor([[[[4.0, 1.0], [1.0, 1.0]]]]))
    with pytest.raises(ValueError, match=">= 1"):
        objective.region_weights(mask, (2, 2), weight=0.5)


def test_weighted_noise_mse_is_the_paper_mse_when_unweighted():
    torch.manual_seed(0)
    pred, eps = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    plain = objective.weighted_noise_mse(pred, eps, torch.ones(3), torch.ones(3, 1, 5, 6))
    torch.testing.assert_close(plain, noise_mse(pred, eps))


def test_weighted_noise_mse_by_hand():
    pred = torch.zeros(2, 1, 1, 2)
    eps = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 3.0]]]])
    per_position = torch.tensor([[[[1.0, 3.0]]], [[[1.0, 1.0]]]])
    loss = objective.weighted_noise_mse(pred, eps, torch.tensor([1.0, 0.5]), per_position)
    first = (1 * 1 + 3 * 4) / 4
    second = (0 + 9) / 2
    assert loss.item() == pytest.approx((first + 0.5 * second) / 2)


def test_warmup_cosine_schedule():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = warmup_cosine_schedule(optimizer, warmup_steps=2, total_steps=6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert rates == pytest.approx(expected)
    with pytest.raises(ValueError):
        warmup_cosine_schedule(optimizer, 0, 0)


def _toy_fit(folder, steps, interrupt_at=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    ema = EMAModel(model.parameters(), decay=0.9, use_ema_warmup=True)
    run = Run.open("toy", "ci", 0, {"steps": steps}, root=folder)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])

    def loss_fn(step):
        if step == interrupt_at:
            raise KeyboardInterrupt
        return {"loss": (model(x) - 1).square().mean()}

    fit(run, {"model": model}, optimizer, loss_fn, steps, checkpoint_every=2, progress=False,
        ema=ema)
    return model, ema


def test_fit_keeps_the_ema_weights_and_resumes_them(tmp_path):
    model, ema = _toy_fit(tmp_path / "straight", 6)
    shadow = [p.clone() for p in ema.shadow_params]
    torch.testing.assert_close(list(model.parameters()), shadow)  # the run keeps the EMA
    with pytest.raises(KeyboardInterrupt):
        _toy_fit(tmp_path / "resumed", 6, interrupt_at=3)
    resumed, _ = _toy_fit(tmp_path / "resumed", 6)
    torch.testing.assert_close(list(resumed.parameters()), shadow)


def test_the_paper_recipe_turns_every_departure_off():
    recipe = objective.PAPER_RECIPE
    assert recipe.min_snr_gamma is None and recipe.region_weight == 1.0
    assert not recipe.drop_warped_latent and recipe.ema_decay is None


def test_epsilon_from_v_inverts_diffusers_velocity():
    from gardiffmini.losses import epsilon_from_v

    scheduler = objective.noise_scheduler("v_prediction")
    generator = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 5, 6, generator=generator), torch.randn(3, 4, 5, 6,
                                                                        generator=generator)
    t = torch.tensor([0, 500, 999])
    x_t = scheduler.add_noise(x0, eps, t)
    v = scheduler.get_velocity(x0, eps, t)
    torch.testing.assert_close(epsilon_from_v(v, x_t, t, scheduler.alphas_cumprod), eps,
                               rtol=1e-4, atol=1e-4)


def test_min_snr_weights_for_v_weigh_the_x0_error_alike():
    abar = torch.tensor([0.99, 0.5, 0.01])
    t = torch.tensor([0, 1, 2])
    snr = abar / (1 - abar)
    v = objective.min_snr_weights(t, abar, 5.0, "v_prediction")
    eps = objective.min_snr_weights(t, abar, 5.0, "epsilon")
    # an x0 error costs snr times as much eps error and snr + 1 times as much v error, so
    # both weightings put min(snr, gamma) on the x0 error: w_eps * snr == w_v * (snr + 1)
    torch.testing.assert_close(eps * snr, v * (snr + 1))


def test_recipe_rejects_an_unknown_prediction_type():
    with pytest.raises(ValueError, match="prediction_type"):
        objective.Recipe(prediction_type="sample")


def test_garment_weight_multiplies_the_region_weight_on_the_garment():
    scheduler = objective.noise_scheduler("epsilon")
    x0, noise = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    prediction = torch.tensor([[[[1.0, 1.0], [2.0, 0.0]]]])  # squared errors 1, 1, 4, 0
    agnostic = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # the top row
    garment = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # its left cell
    recipe = objective.Recipe(min_snr_gamma=None, region_weight=4.0, garment_weight=3.0,
                              prediction_type="epsilon")
    loss = objective.recipe_mse(prediction, x0, noise, torch.tensor([10]), agnostic, scheduler,
                                recipe, garment_mask=garment)
    weights = [12.0, 4.0, 1.0, 1.0]
    expected = (12 * 1 + 4 * 1 + 1 * 4 + 1 * 0) / sum(weights)
    assert loss.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="garment_mask"):
        objective.recipe_mse(prediction, x0, noise, torch.tensor([10]), agnostic, scheduler,
                             recipe)


def test_a_recipe_keeps_its_identity_while_a_later_field_changes_nothing():
    plain = objective.PLAIN_RECIPE
    assert plain.identity().keys().isdisjoint(objective.LATER_FIELDS)
    weighted = replace(plain, garment_weight=2.0).identity()
    assert weighted["garment_weight"] == 2.0
    assert {k: v for k, v in weighted.items() if k != "garment_weight"} == plain.identity()


def test_the_book_recipe_is_the_plain_one_with_person_inputs_and_a_faster_adapter():
    book = objective.DEFAULT_RECIPE
    assert book == objective.Recipe()
    assert (book.pose_input, book.skin_input, book.skin_init) == (True, True, "agnostic")
    assert book.garment_weight == 1.0 and "garment_weight" not in book.identity()
    assert book.identity() == objective.PLAIN_RECIPE.identity() | {
        "pose_input": True, "skin_input": True, "skin_init": "agnostic",
        "adapter_learning_rate_scale": 10.0}
    assert replace(book, **objective.LATER_FIELDS) == objective.PLAIN_RECIPE


def test_the_paper_recipe_has_no_person_inputs():
    paper = objective.PAPER_RECIPE
    assert not (paper.pose_input or paper.skin_input) and paper.skin_init == "zero"
    assert paper.identity().keys().isdisjoint(objective.LATER_FIELDS)


def test_pose_input_is_left_out_of_the_identity_while_off():
    plain = objective.PLAIN_RECIPE
    for recipe in (plain, objective.PAPER_RECIPE, replace(plain, garment_weight=4.0)):
        assert "pose_input" not in recipe.identity()
    posed = replace(plain, pose_input=True).identity()
    assert posed["pose_input"] is True
    assert {k: v for k, v in posed.items() if k != "pose_input"} == plain.identity()


def test_skin_input_is_left_out_of_the_identity_while_off():
    plain = objective.PLAIN_RECIPE
    for recipe in (plain, objective.PAPER_RECIPE, replace(plain, pose_input=True)):
        assert "skin_input" not in recipe.identity()
    skinned = replace(plain, skin_input=True).identity()
    assert skinned["skin_input"] is True
    assert {k: v for k, v in skinned.items() if k != "skin_input"} == plain.identity()


def test_skin_init_is_checked_and_left_out_of_the_identity_at_zero():
    with pytest.raises(ValueError, match="skin_init must be one of"):
        objective.Recipe(skin_input=True, skin_init="ones")
    zero = replace(objective.PLAIN_RECIPE, skin_input=True).identity()
    assert "skin_init" not in zero
    moved = replace(objective.PLAIN_RECIPE, skin_input=True, skin_init="agnostic").identity()
    assert moved == zero | {"skin_init": "agnostic"}


def test_paste_warp_needs_the_skin_input_and_no_person_base_and_is_out_of_the_identity_off():
    book = objective.DEFAULT_RECIPE
    assert not book.paste_warp and "paste_warp" not in book.identity()
    pasted = replace(book, paste_warp=True).identity()
    assert pasted == book.identity() | {"paste_warp": True}
    with pytest.raises(ValueError, match="paste_warp pastes the warp into the skin-primed "
                                         "agnostic image: it needs skin_input"):
        replace(objective.PLAIN_RECIPE, paste_warp=True)
    with pytest.raises(ValueError, match="paste_warp with person_base"):
        replace(book, paste_warp=True, person_base=True)


def test_appearance_max_timestep_is_checked_and_out_of_the_identity_while_unset():
    book = objective.DEFAULT_RECIPE
    assert book.appearance_max_timestep is None
    assert "appearance_max_timestep" not in book.identity()
    low = replace(book, appearance_max_timestep=200).identity()
    assert low == book.identity() | {"appearance_max_timestep": 200}
    with pytest.raises(ValueError, match="appearance_max_timestep must be a positive"):
        objective.Recipe(appearance_max_timestep=0)


def test_lr_schedule_is_checked_and_out_of_the_identity_while_constant():
    book = objective.DEFAULT_RECIPE
    assert book.lr_schedule == "constant"
    assert "lr_schedule" not in book.identity()
    cosine = replace(book, lr_schedule="cosine").identity()
    assert cosine == book.identity() | {"lr_schedule": "cosine"}
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        objective.Recipe(lr_schedule="step")


def test_learning_rate_scale_is_checked_and_out_of_the_identity_while_one():
    book = objective.DEFAULT_RECIPE
    assert "learning_rate_scale" not in book.identity()
    faster = replace(book, learning_rate_scale=2.0)
    assert faster.identity() == book.identity() | {"learning_rate_scale": 2.0}
    assert objective.base_recipe(faster) == objective.PLAIN_RECIPE  # the base keeps its rate
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="learning_rate_scale must be positive"):
            objective.Recipe(learning_rate_scale=bad)


def test_adapter_learning_rate_scale_is_checked_and_out_of_the_identity_while_one():
    book = objective.DEFAULT_RECIPE  # the book trains the adapter's weights 10 times faster
    assert book.identity()["adapter_learning_rate_scale"] == 10.0
    one_rate = replace(book, adapter_learning_rate_scale=1.0)
    assert "adapter_learning_rate_scale" not in one_rate.identity()
    assert book.identity() == one_rate.identity() | {"adapter_learning_rate_scale": 10.0}
    assert objective.base_recipe(book) == objective.PLAIN_RECIPE  # the base has one rate
    assert objective.PLAIN_RECIPE.adapter_learning_rate_scale == 1.0
    for bad in (0.0, -2.0, float("nan")):
        with pytest.raises(ValueError, match="adapter_learning_rate_scale must be positive"):
            objective.Recipe(adapter_learning_rate_scale=bad)
