"""GarDiffPipeline checks its inputs' values before sampling: nothing silently wrong."""

from __future__ import annotations

import math

import pytest
import torch
from test_pipeline import person_batch, tiny_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline()


def call(pipe, **changes):
    inputs = {**person_batch(1), **changes}
    return pipe(**inputs, num_inference_steps=1, guidance_scale=2.0,
                generator=torch.Generator().manual_seed(0)).images


@pytest.mark.parametrize("name", ["agnostic", "warped_cloth", "cloth"])
def test_images_in_0_255_are_rejected(pipe, name):
    images = (person_batch(1)[name] + 1) * 127.5
    with pytest.raises(ValueError, match=rf"{name} has values in \[.*\]: expected \[-1, 1\] "
                       r"\(pixels in \[0, 255\]\?"):
        call(pipe, **{name: images})


@pytest.mark.parametrize("name", ["warped_mask", "agnostic_mask"])
def test_masks_of_0_and_255_are_rejected(pipe, name):
    mask = person_batch(1)["warped_mask"] * 255
    with pytest.raises(ValueError, match=rf"{name} has values in \[0, 255\]: expected \[0, 1\] "
                       r"\(a mask of 0 and 255\? divide it by 255\)"):
        call(pipe, **{name: mask})


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_input_is_rejected(pipe, bad):
    agnostic = person_batch(1)["agnostic"].clone()
    agnostic[0, 1, 5, 5] = bad
    with pytest.raises(ValueError, match="agnostic holds NaN or infinite values"):
        call(pipe, agnostic=agnostic)


def test_integer_images_are_rejected(pipe):
    cloth = ((person_batch(1)["cloth"] + 1) * 127.5).to(torch.uint8)
    with pytest.raises(ValueError, match="cloth has dtype torch.uint8: expected float values"):
        call(pipe, cloth=cloth)


@pytest.mark.parametrize("scale", [math.nan, -0.5, math.inf, "7.5"])
def test_guidance_scale_must_be_finite_and_not_negative(pipe, scale):
    with pytest.raises(ValueError, match="guidance_scale must be a finite number >= 0"):
        pipe(**person_batch(1), num_inference_steps=1, guidance_scale=scale)


def test_empty_batch_is_rejected(pipe):
    empty = {key: value[:0] for key, value in person_batch(1).items()}
    with pytest.raises(ValueError, match="agnostic has batch 0: expected at least one person"):
        pipe(**empty, num_inference_steps=1)


def test_float16_inputs_on_cpu_give_the_float32_result(pipe):
    half = {key: value.half() for key, value in person_batch(1).items()}
    reference = {key: value.float() for key, value in half.items()}
    generator = torch.Generator().manual_seed(0)
    out = pipe(**half, num_inference_steps=1, guidance_scale=2.0, generator=generator).images
    generator = torch.Generator().manual_seed(0)
    expected = pipe(**reference, num_inference_steps=1, guidance_scale=2.0,
                    generator=generator).images
    torch.testing.assert_close(out, expected)


def test_valid_inputs_still_sample(pipe):
    images = call(pipe, agnostic_mask=person_batch(1)["warped_mask"])
    assert images.shape == (1, 3, 64, 48) and bool(torch.isfinite(images).all())
