"""The try-on model shipped, exported to ONNX and written into the Try it page's assets.

A ``ci``-sized Base + GFA pipeline of the book's recipe (random weights, the profile's shipped
VAE; DensePose and skin colour inputs) stands in for the shipped ``cpu`` model: the graphs
must compute what PyTorch computes (1e-4, onnxruntime for Python), the page's loop must be
:class:`GarDiffPipeline`'s (guidance, DDIM step, paste-back), and each DDIM step must be
diffusers' for every spacing and prediction type.
"""

from __future__ import annotations

import base64
import gzip
import json

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from gardiffmini.export import graphs, page, weights  # noqa: E402
from gardiffmini.models.encoders import (  # noqa: E402
    build_tokenizer,
    clip_image_embeds,
    clip_image_encoder,
    make_clip,
)
from gardiffmini.models.vae import load_shipped_vae  # noqa: E402
from gardiffmini.objective import PLAIN_RECIPE, Recipe, noise_scheduler  # noqa: E402
from gardiffmini.pipeline import GarDiffPipeline  # noqa: E402
from gardiffmini.profiles import get_profile  # noqa: E402
from gardiffmini.train import build_model, get_variant  # noqa: E402

TOLERANCE = 1e-4  # ONNX in onnxruntime against PyTorch (issue 21)
PROFILE = get_profile("ci")


def make_pipeline(prediction_type: str = "v_prediction", spacing: str = "leading",
                  seed: int = 0, recipe: Recipe = weights.RECIPE) -> GarDiffPipeline:
    """A ci Base + GFA pipeline of the page's recipe (the book's: DensePose and skin colour
    inputs), every weight perturbed (so that no branch starts at zero and hides a
    difference), with the ci profile's shipped VAE."""
    torch.manual_seed(seed)
    unet, adapter = build_model(PROFILE, get_variant(weights.VARIANT), recipe=recipe)
    with torch.no_grad():
        for p in [*unet.parameters(), *adapter.parameters()]:
            p.add_(torch.randn_like(p) * 0.02)
    encoder = clip_image_encoder(make_clip(PROFILE, build_tokenizer()))
    scheduler = DDIMScheduler.from_config(noise_scheduler(prediction_type).config,
                                          timestep_spacing=spacing)
    pipeline = GarDiffPipeline(unet=unet.eval(), vae=load_shipped_vae(PROFILE),
                               image_encoder=encoder.eval(), adapter=adapter.eval(),
                               scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def batch(pipeline: GarDiffPipeline, seed: int = 1) -> dict[str, torch.Tensor]:
    """The pipeline's keyword arguments for one random person and garment: images, masks and
    the person conditions ``pipeline`` reads (DensePose image, skin colour)."""
    g = torch.Generator().manual_seed(seed)
    size = PROFILE.image_size
    images = {k: torch.rand(1, 3, *size, generator=g) * 2 - 1
              for k in ("agnostic", "warped_cloth", "cloth", "densepose")}
    masks = {k: (torch.rand(1, 1, *size, generator=g) > 0.5).float()
             for k in ("warped_mask", "agnostic_mask")}
    person = {"skin_colour": torch.rand(1, 3, generator=g) * 2 - 1}
    if not pipeline.needs_densepose:
        del images["densepose"]
    if not pipeline.needs_skin_colour:
        del person["skin_colour"]
    return images | masks | person


@pytest.fixture(scope="module")
def pipeline() -> GarDiffPipeline:
    return make_pipeline()


@pytest.fixture(scope="module")
def runners(pipeline):
    return graphs.sessions(graphs.export_graphs(pipeline))


@torch.no_grad()
def test_the_graphs_compute_what_pytorch_computes(pipeline, runners):
    inputs = graphs.example_inputs(pipeline, torch.Generator().manual_seed(3))
    for scale in (1.0, 2.0, 4.5):
        inputs["denoise"]["guidance_scale"] = torch.tensor([scale])
        for t in (999, 500, 1):
            inputs["denoise"]["timestep"] = torch.tensor([t])
            want = graphs.DenoiseGraph(pipeline)(*inputs["denoise"].values()).numpy()
            got = runners["denoise"].run(None, {k: v.numpy()
                                                for k, v in inputs["denoise"].items()})[0]
            assert np.abs(want).max() > 0.1
            np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    want = graphs.DecodeGraph(pipeline)(*[inputs["decode"][k]
                                          for k in graphs.DECODE_INPUTS]).numpy()
    got = runners["decode"].run(None, {k: v.numpy() for k, v in inputs["decode"].items()})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


@torch.no_grad()
def test_the_page_loop_is_the_pipeline(pipeline, runners):
    """Guidance, DDIM steps read off diffusers and the paste-back, run on the exported
    graphs, give GarDiffPipeline's image; and the garment changes it."""
    pick = batch(pipeline)
    vae, scale = pipeline.vae, pipeline.vae.config.scaling_factor
    pose, skin = pipeline.person_latents(pick["agnostic"], pick["agnostic_mask"],
                                         pick.get("densepose"), pick.get("skin_colour"))
    condition = {
        "pose_latents": pose.numpy(), "skin_latents": skin.numpy(),
        "warped_latents": (vae.encode(pick["warped_cloth"]).latent_dist.mean * scale).numpy(),
        "agnostic_latents": (vae.encode(pick["agnostic"]).latent_dist.mean * scale).numpy(),
        "clip_embeds": clip_image_embeds(pipeline.image_encoder, pick["cloth"]).numpy(),
        "warped_mask": pick["warped_mask"].numpy(), "agnostic": pick["agnostic"].numpy(),
        "agnostic_mask": pick["agnostic_mask"].numpy(),
    }
    for guidance in (2.0, 1.0):
        noise = page.shipped_noise(pipeline, seeds=1)
        table = graphs.ddim_table(pipeline.scheduler, 4)
        got = graphs.onnx_try_on(runners, condition, noise, table, guidance)
        want = pipeline(**pick, num_inference_steps=4, guidance_scale=guidance,
                        generator=torch.Generator().manual_seed(0)).images.numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    without_pose = {k: v for k, v in condition.items() if k != "pose_latents"}
    with pytest.raises(ValueError, match=r"lacks \['pose_latents'\]"):
        graphs.onnx_try_on(runners, without_pose, noise, table, 2.0)
    other = dict(condition, clip_embeds=condition["clip_embeds"] * -1,
                 warped_latents=condition["warped_latents"][..., ::-1].copy())
    changed = graphs.onnx_try_on(runners, other, noise, table, 2.0)
    assert np.abs(changed - got).max() > 1e-2


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_each_ddim_step_is_diffusers_step(prediction_type, spacing):
    scheduler = DDIMScheduler.from_config(noise_scheduler(prediction_type).config,
                                          timestep_spacing=spacing)
    table = graphs.ddim_table(scheduler, 7)
    scheduler.set_timesteps(7)
    assert table["timesteps"] == scheduler.timesteps.tolist()
    g = torch.Generator().manual_seed(0)
    for i, t in enumerate(scheduler.timesteps):
        x, eps = torch.randn(2, 4, 3, generator=g), torch.randn(2, 4, 3, generator=g)
        out = scheduler.step(eps, t, x)
        (a, b), (c, d) = table["prev"][i], table["x0"][i]
        torch.testing.assert_close(a * x + b * eps, out.prev_sample, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(c * x + d * eps, out.pred_original_sample, rtol=1e-6,
                                   atol=1e-6)
        assert table["sqrt_alpha_cumprod"][i] == pytest.approx(
            float(scheduler.alphas_cumprod[int(t)]) ** 0.5)


def test_the_graph_takes_the_person_conditions_the_unet_reads(pipeline):
    """The book's recipe reads DensePose and skin colour: the graph takes both, and they
    change its output; a UNet trained without them gets a graph without those inputs."""
    assert graphs.denoise_inputs(pipeline) == graphs.DENOISE_INPUTS + graphs.PERSON_INPUTS
    inputs = graphs.example_inputs(pipeline)["denoise"]
    graph = graphs.DenoiseGraph(pipeline)
    with torch.no_grad():
        noise = graph(*inputs.values())
        for name in graphs.PERSON_INPUTS:
            changed = graph(*(dict(inputs, **{name: -inputs[name]})).values())
            assert (changed - noise).abs().max() > 1e-3, name
    with pytest.raises(ValueError, match="reads the person conditions"):
        graph(*list(inputs.values())[:-1])
    plain = make_pipeline(recipe=PLAIN_RECIPE)
    assert graphs.denoise_inputs(plain) == graphs.DENOISE_INPUTS
    assert tuple(graphs.example_inputs(plain)["denoise"]) == graphs.DENOISE_INPUTS


def test_a_scheduler_the_page_cannot_follow_is_refused():
    scheduler = DDIMScheduler.from_config(noise_scheduler().config, clip_sample=True,
                                          clip_sample_range=0.5)
    with pytest.raises(ValueError, match="not linear"):
        graphs.ddim_table(scheduler, 5)


@torch.no_grad()
def test_shipped_weights_load_back_into_the_same_pipeline(pipeline, tmp_path):
    path = weights.save_tryon(pipeline, PROFILE, {"run": "test"}, tmp_path / "tryon-ci.safetensors")
    record = weights.tryon_record(PROFILE, path)
    assert record["scheduler_config"]["prediction_type"] == "v_prediction"
    assert record["parameters"]["unet"] == sum(p.numel() for p in pipeline.unet.parameters())
    loaded = weights.load_tryon(PROFILE, path)
    for name in weights.COMPONENTS:
        want, got = getattr(pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), name
    pick = batch(pipeline, 2)
    images = [p(**pick, num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images
              for p in (pipeline, loaded)]
    # the same weights, bit for bit (above), compute the same images up to fp32 rounding: on
    # an AMD EPYC, MKL's fp32 GEMM gave a Linear with bit-equal inputs and weights outputs
    # 3.6e-7 apart depending on where the two models lie in memory, 3.9e-6 after the two
    # steps (Intel Xeon: 0). The bound is 5x that.
    torch.testing.assert_close(images[0], images[1], rtol=0, atol=2e-5)

    record["vae_hash"] = "0" * 12
    path.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="ship_tryon.py --profile ci"):
        weights.load_tryon(PROFILE, path)
    with pytest.raises(FileNotFoundError, match="ship_tryon.py --profile ci"):
        weights.load_tryon(PROFILE, tmp_path / "none.safetensors")


def _script_value(path) -> dict:
    text = path.read_text()
    return json.loads(text[text.index("] = ") + 4:].rstrip().rstrip(";"))


def test_page_assets_carry_the_model_and_its_gallery(pipeline, tmp_path, monkeypatch):
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))
    path = weights.save_tryon(pipeline, PROFILE, {"run": "test"}, tmp_path / "tryon-ci.safetensors")
    html, repo = tmp_path / "html", tmp_path / "repo"
    manifest = page.write_page_assets(html, PROFILE, repo=repo, reference=tmp_path / "ref.json",
                                      weights=path)
    # no node_modules in this repo: the page names what is missing and how to get it
    assert len(manifest["missing"]) == 1 and "npm ci" in manifest["missing"][0]
    folder = html / "tryit"
    assert {"gallery.js", "models.js", "manifest.js", "tryit.js", "tryit.css"} <= set(
        p.name for p in folder.iterdir())
    assert manifest["files"]["models.js"] == (folder / "models.js").stat().st_size
    assert manifest["reference"]["onnx_python_max_difference"] < TOLERANCE

    gallery = _script_value(folder / "gallery.js")
    assert len(gallery["persons"]) == page.N_PERSONS and len(gallery["garments"]) == page.N_GARMENTS
    assert str(PROFILE.sample_steps) in gallery["scheduler"]["tables"]
    blob = gzip.decompress(base64.b64decode(gallery["arrays"]["gzip"]))
    entry = gallery["arrays"]["index"]["noise"]
    noise = np.frombuffer(blob[entry["offset"]:entry["offset"] + entry["bytes"]], "<f4")
    np.testing.assert_array_equal(noise.reshape(entry["shape"]), page.shipped_noise(pipeline))
    entry = gallery["arrays"]["index"]["warped_latents"]
    assert entry["shape"][0] == page.N_PERSONS * page.N_GARMENTS

    models = _script_value(folder / "models.js")
    runners = graphs.sessions({k: gzip.decompress(base64.b64decode(v)) for k, v in models.items()})
    assert set(runners) == {"denoise", "decode"}
    reference = json.loads((tmp_path / "ref.json").read_text())
    image = np.frombuffer(base64.b64decode(reference["image"]), "<f4").reshape(reference["shape"])
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.01


def test_page_without_a_shipped_model_says_so(tmp_path):
    manifest = page.write_page_assets(tmp_path / "html", PROFILE, repo=tmp_path,
                                      weights=tmp_path / "missing.safetensors")
    assert any("ship_tryon.py --profile ci" in why for why in manifest["missing"])
    assert not (tmp_path / "html" / "tryit" / "models.js").exists()
    assert (tmp_path / "html" / "tryit" / "manifest.js").is_file()


def test_a_paste_warp_pipeline_ships_and_its_page_reads_the_skin_latent_per_pair(
        pipeline, tmp_path, monkeypatch):
    """With the recipe's paste_warp the skin latent depends on the garment: the shipped record
    keeps the flag, the gallery holds one skin latent per pair, and the page's pick of it
    gives the PyTorch pipeline's try-on (checked by write_page_assets on the way)."""
    monkeypatch.setenv("GARDIFF_DATA", str(tmp_path / "data"))
    pasted = GarDiffPipeline(**pipeline.components, paste_warp=True)
    path = weights.save_tryon(pasted, PROFILE, {"run": "test"}, tmp_path / "tryon-ci.safetensors")
    assert weights.tryon_record(PROFILE, path)["paste_warp"] is True
    assert weights.load_tryon(PROFILE, path).config.paste_warp is True
    pairs = page.gallery_set(PROFILE, n_persons=2, n_garments=3)
    cond = page.conditioning(pasted, pairs, 2, 3)
    plain = page.conditioning(pipeline, pairs, 2, 3)
    assert cond["skin_latents"].shape[0] == 6 and plain["skin_latents"].shape[0] == 2
    assert cond["pose_latents"].shape[0] == 2
    picked = page.onnx_inputs(cond, 3, person=1, garment=2)
    np.testing.assert_array_equal(picked["skin_latents"], cond["skin_latents"][5:6])
    np.testing.assert_array_equal(page.onnx_inputs(plain, 3, 1, 2)["skin_latents"],
                                  plain["skin_latents"][1:2])
    manifest = page.write_page_assets(tmp_path / "html", PROFILE, repo=tmp_path / "repo",
                                      weights=path)
    assert manifest["reference"]["onnx_python_max_difference"] < TOLERANCE
