"""Evaluation of a trained try-on model and of the baselines on one test set.

The first ``profile.n_eval`` test persons are dressed paired (their own garment: compared
pixel by pixel with the photo) and unpaired (another garment). On ToyVITON the unpaired
results are compared pixel by pixel too, with the rendered truth (the person wearing the
requested garment, :mod:`gardiffmini.data.toyviton`), and the skin the requested garment bares
is scored (:func:`~gardiffmini.metrics.skin_error`); on real data, which has no such truth,
unpaired results are judged as a distribution (FID/KID) and, on ToyVITON, by the attribute
network (:mod:`gardiffmini.attributes`) against the *requested* garment. The model is given
the warp of a warp protocol (:data:`~gardiffmini.data.datasets.WARPS`): by default the data's
(:func:`~gardiffmini.data.datasets.default_warp`: on ToyVITON the carved warp, computed from
the keypoints as a user of real data would, the headline), or ToyVITON's exact ``"oracle"``
warp.

Outputs are pasted back outside the agnostic mask, as the try-on region is all the model is
asked to paint. The baselines that need no training (the agnostic image, warp-and-paste, the
VAE round trip of the truth) are scored by the same :func:`score`, and the occluded subset is
reported beside all pairs. :func:`cached_evaluation` stores a model's numbers and images in its
run folder, so chapters and :mod:`gardiffmini.reproduce` share them.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from gardiffmini import baselines, metrics
from gardiffmini.attributes import ATTRIBUTES, attribute_labels, attribute_network
from gardiffmini.data.datasets import is_toyviton, open_dataset
from gardiffmini.data.fingerprint import data_fingerprint
from gardiffmini.data.layout import GARMENT_LABELS
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.features import ToyVitonFeatureNet
from gardiffmini.profiles import Profile, get_profile
from gardiffmini.runs import atomic_save_tensors, atomic_write_text, config_hash
from gardiffmini.skin import face_skin_colour
from gardiffmini.train import train_variant, weights_hash


def _stack(dataset: torch.utils.data.Dataset, n: int, keys: tuple[str, ...]) -> dict:
    """The first ``n`` items of ``dataset``: the tensors of ``keys`` that it has stacked,
    names as lists."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    stacked = {key: torch.stack([item[key] for item in items]) for key in keys if key in items[0]}
    return stacked | {"cloth_name": [item["cloth_name"] for item in items]}


@torch.no_grad()
def try_on(pipeline, batch: dict[str, torch.Tensor], profile: Profile, seed: int,
           batch_size: int = 16) -> torch.Tensor:
    """Images in [0, 1] for every row of ``batch``, pasted back outside the agnostic mask.
    The person's ``densepose`` is passed where the pipeline needs it (a UNet trained with the
    recipe's ``pose_input``), and their skin colour, read off the face in their label map
    ``parse`` (:func:`~gardiffmini.skin.face_skin_colour`), where it needs that (its
    ``skin_input``)."""
    out = []
    for start in range(0, len(batch["agnostic"]), batch_size):
        rows = {key: value[start:start + batch_size] for key, value in batch.items()
                if isinstance(value, torch.Tensor)}
        part = {key: rows[key] for key in PIPELINE_KEYS} | person_conditions(pipeline, rows)
        generator = torch.Generator().manual_seed(seed * 100_003 + start)
        out.append(pipeline(
            **part, num_inference_steps=profile.sample_steps,
            guidance_scale=profile.guidance_scale, generator=generator,
        ).images.cpu())
    return torch.cat(out).clamp(0, 1)


def person_conditions(pipeline, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The person conditions ``pipeline`` reads beyond :data:`PIPELINE_KEYS`, for the rows of
    ``batch``, as keyword arguments of the pipeline (and of its ``person_latents``): the
    ``densepose`` where it :attr:`~gardiffmini.pipeline.GarDiffPipeline.needs_densepose`, the
    ``skin_colour`` read off the face in the label map ``parse``
    (:func:`~gardiffmini.skin.face_skin_colour`) where it needs that."""
    conditions = {}
    if pipeline.needs_densepose:
        conditions["densepose"] = batch["densepose"]
    if pipeline.needs_skin_colour:
        conditions["skin_colour"] = face_skin_colour(batch["agnostic"], batch["parse"])
    return conditions


PIPELINE_KEYS = ("agnostic", "agnostic_mask", "warped_cloth", "warped_mask", "cloth")
EVAL_KEYS = ("person", "agnostic", "agnostic_mask", "warped_cloth", "warped_mask", "cloth",
             "cloth_mask", "parse", "truth", "truth_parse", "densepose")
BASELINES = {"agnostic": "agnostic image", "warp+paste": "warp + paste",
             "vae round trip": "VAE round trip (ceiling)"}


def evaluation_sets(root: Path, profile: Profile, pairs_file: Path | str | None = None,
                    warp: str | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The first ``profile.n_eval`` test pairs, paired and unpaired, as tensors: the pairs of
    ``pairs_file`` (a path, or a name under ``root``) where given, else the layout's; their
    garments warped by the protocol ``warp`` (:data:`~gardiffmini.data.datasets.WARPS`;
    ``None``: the data's :func:`~gardiffmini.data.datasets.default_warp`).
    ``truth`` and ``truth_parse`` are there where the data has them (the photo for paired
    pairs; ToyVITON's rendered truth for unpaired ones). The paired set's ``occluded`` flags
    the occluded subset (:func:`occluded_subset`)."""
    sets = {
        pairing: _stack(open_dataset(root, split="test", pairing=pairing,
                                     size=profile.image_size, pairs_file=pairs_file, warp=warp),
                        profile.n_eval, EVAL_KEYS)
        for pairing in ("paired", "unpaired")
    }
    sets["paired"]["occluded"] = occluded_subset(root, profile, pairs_file, sets["paired"])
    return sets


def occluded_subset(root: Path, profile: Profile, pairs_file: Path | str | None,
                    paired: dict[str, torch.Tensor]) -> torch.Tensor:
    """Boolean ``(N,)``: the pairs of ``paired`` where an arm lies in front of the garment
    (:func:`gardiffmini.baselines.occluded`), judged on ToyVITON's exact warp where the data has
    it (so that the subset does not depend on the warp the model is given), else on the
    set's own warp."""
    if not is_toyviton(root):
        return baselines.occluded(paired)
    exact = _stack(open_dataset(root, split="test", pairing="paired", size=profile.image_size,
                                pairs_file=pairs_file, warp="oracle"),
                   len(paired["person"]), ("warped_mask", "parse"))
    return baselines.occluded(exact)


def score(images: dict[str, torch.Tensor], sets: dict, net: ToyVitonFeatureNet | None,
          root: Path, seed: int = 0) -> dict[str, float]:
    """Every metric of try-on ``images`` (``{"paired", "unpaired"}``, in [0, 1]) on ``sets``.

    Against the truth (the photo; for unpaired pairs ToyVITON's rendered truth, where the
    set has it: keys ending in ``_u``): SSIM, LPIPS where available, and the garment-detail
    error inside the truth's garment labels; on the paired occluded subset
    (``sets["paired"]["occluded"]``) too; unpaired, the skin error where the requested
    garment bares skin (:func:`~gardiffmini.metrics.skin_error`, with ``skin_pairs``, how
    many pairs have such skin). The high-frequency energy ratio (paired; 1 is the truth's,
    so it has no better direction). Unpaired: the share of results whose colour is the
    requested garment's (:func:`~gardiffmini.metrics.colour_match_rate`). With ``net`` (data
    with ToyVITON's attributes; without, the metrics of :data:`ATTRIBUTE_METRICS` are left
    out): the attribute accuracy, and FID_toy/KID_toy against the test photos.
    """
    paired, unpaired = sets["paired"], sets["unpaired"]
    real = paired["person"].add(1).div(2)
    hidden = paired["occluded"]
    result: dict[str, float] = {}
    for pairing, batch in sets.items():
        if "truth" not in batch:
            continue
        suffix = "" if pairing == "paired" else "_u"
        truth = batch["truth"].add(1).div(2)
        garment = metrics.label_region(batch["truth_parse"], GARMENT_LABELS)
        ssim = metrics.ssim(images[pairing], truth)
        detail = metrics.garment_detail_error(images[pairing], truth, garment)
        result[f"SSIM{suffix}"] = ssim.mean().item()
        result[f"garment_detail_error{suffix}"] = detail.mean().item()
        if pairing == "paired":
            result["SSIM_occluded"] = ssim[hidden].mean().item() if hidden.any() else math.nan
            result["garment_detail_error_occluded"] = (
                detail[hidden].mean().item() if hidden.any() else math.nan)
            result["hf_energy_ratio"] = metrics.high_frequency_energy_ratio(
                images[pairing], truth, garment).mean().item()
        else:
            bared = metrics.newly_bared_skin(batch["parse"], batch["truth_parse"])
            skin = metrics.skin_error(images[pairing], truth, bared)
            cases = ~skin.isnan()
            result["skin_error_u"] = skin[cases].mean().item() if cases.any() else math.nan
            result["skin_pairs_u"] = int(cases.sum())
        if metrics.lpips_status() is None:
            result[f"LPIPS{suffix}"] = metrics.lpips(images[pairing], truth).mean().item()
    own_garment = metrics.label_region(unpaired["parse"], GARMENT_LABELS)
    result["unpaired_colour_match"] = metrics.colour_match_rate(
        images["unpaired"], unpaired["warped_mask"], unpaired["cloth"].add(1).div(2),
        unpaired["cloth_mask"], unpaired["person"].add(1).div(2), own_garment)
    if net is None:
        return result
    for pairing, batch in sets.items():
        result[f"attribute_accuracy_{pairing[0]}"] = metrics.attribute_accuracy(
            net, images[pairing], attribute_labels(root, "test", batch["cloth_name"]))["mean"]
    for name, generated in images.items():
        toy = metrics.toy_distribution_metrics(net, generated, real, seed=seed)
        suffix = "p" if name == "paired" else "u"
        result[f"FID_toy_{suffix}"], result[f"KID_toy_{suffix}"] = toy["FID_toy"], toy["KID_toy"]
    return result


def evaluate_pipeline(pipeline, profile: Profile, root: Path, seed: int = 0,
                      net: ToyVitonFeatureNet | None | str = "auto",
                      sets: dict | None = None) -> dict:
    """All metrics (:func:`score`) of one trained pipeline on the test split (``sets``,
    default :func:`evaluation_sets`). ``net``: the attribute network, ``None`` to leave its
    metrics out, or ``"auto"``: :func:`~gardiffmini.attributes.attribute_network` (which
    says once why it is none)."""
    sets = evaluation_sets(root, profile) if sets is None else sets
    net = attribute_network(profile, root) if isinstance(net, str) else net
    generated = {name: try_on(pipeline, s, profile, seed) for name, s in sets.items()}
    return {"metrics": score(generated, sets, net, root, seed), "images": generated}


def baseline_images(vae, sets: dict) -> dict[str, dict[str, torch.Tensor]]:
    """The images of every baseline of :data:`BASELINES`, paired and unpaired, in [0, 1]."""
    makers = {"agnostic": baselines.agnostic, "warp+paste": baselines.warp_and_paste,
              "vae round trip": lambda batch: baselines.vae_round_trip(vae, batch)}
    return {name: {pairing: make(batch).clamp(0, 1) for pairing, batch in sets.items()}
            for name, make in makers.items()}


def reference_points(net: ToyVitonFeatureNet | None, sets: dict, root: Path) -> dict:
    """The size of the test set and of its occluded subset and, with ``net``, what the
    attribute scores mean: the network's accuracy on the real test photos (its ceiling) and
    the chance level (mean of 1 / classes)."""
    paired = sets["paired"]
    points = {"n_pairs": len(paired["person"]),
              "n_occluded": int(paired["occluded"].sum())}
    if net is None:
        return points
    labels = attribute_labels(root, "test", paired["cloth_name"])
    ceiling = metrics.attribute_accuracy(net, paired["person"].add(1).div(2), labels)["mean"]
    chance = float(np.mean([1 / len(classes) for classes in ATTRIBUTES.values()]))
    return {"attribute_ceiling": ceiling, "attribute_chance": chance, **points}


def warps_digest(sets: dict) -> str:
    """SHA-256 of the warped garments and their masks in ``sets`` (every pairing): the part of
    the model's input that code computes rather than reads (the TPS warp of the unpaired
    pairs, :mod:`gardiffmini.data.warp`), so that a changed warp gets a new evaluation."""
    digest = hashlib.sha256()
    for pairing in sorted(sets):
        for key in ("warped_cloth", "warped_mask"):
            digest.update(sets[pairing][key].contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_evaluation(pipeline, profile: Profile, root: Path, seed: int,
                      net: ToyVitonFeatureNet | None, sets: dict,
                      pairs_file: Path | str | None = None) -> dict:
    """:func:`evaluate_pipeline`, stored in the pipeline's run folder and reused when asked again.

    The key is everything the numbers depend on besides the run: the evaluation settings of
    ``profile``, the sampler's configuration (its timestep spacing among it), the data root,
    the test pairs' ``pairs_file`` where one is given (the fingerprint of its pairs), the
    warps the model is given (:func:`warps_digest`), the feature network's weights (or none)
    and the metrics' toolchain.
    """
    key = config_hash({
        "n_eval": profile.n_eval, "sample_steps": profile.sample_steps,
        "guidance_scale": profile.guidance_scale, "seed": seed,
        # the config's own bookkeeping ("_use_default_values") lists a set: its order changes
        # from one process to the next, so it would make every key new
        "sampler": {k: v for k, v in pipeline.scheduler.config.items() if not k.startswith("_")},
        "root": str(Path(root).resolve()), "warps": warps_digest(sets),
        "feature_net": weights_hash(net) if net is not None else None,
        "toolchain": metrics.TOOLCHAIN,
    } | ({"test_pairs": data_fingerprint(root, "test", pairs_file)} if pairs_file else {}))
    numbers = pipeline.run.folder / f"evaluation-{key}.json"
    images = numbers.with_suffix(".safetensors")
    if numbers.is_file() and images.is_file():
        return {"metrics": json.loads(numbers.read_text()), "images": load_file(str(images))}
    result = evaluate_pipeline(pipeline, profile, root, seed=seed, net=net, sets=sets)
    atomic_save_tensors(images, result["images"])
    atomic_write_text(numbers, json.dumps(result["metrics"], indent=2))
    return result


def evaluate_variant(variant: str, profile: str | Profile = "cpu", seed: int = 0,
                     data_root: Path | str | None = None,
                     pairs_file: Path | str | None = None, warp: str | None = None) -> dict:
    """Train (or reuse) one variant at one seed on the training pairs (on the data's
    :func:`~gardiffmini.data.datasets.default_warp`) and return its metrics on the test pairs
    (of ``pairs_file`` where given: :func:`evaluation_sets`), given the warp of protocol
    ``warp``. ``profile``, a :class:`~gardiffmini.profiles.Profile` or its name, is resolved
    here, once."""
    profile = get_profile(profile)
    root = Path(data_root) if data_root else ensure_toyviton(profile)
    sets = evaluation_sets(root, profile, pairs_file, warp)
    pipeline = train_variant(variant, profile, seed=seed, data_root=root)
    return evaluate_pipeline(pipeline, profile, root, seed=seed, sets=sets)["metrics"]


def sample_variant(variant: str, profile: str | Profile = "cpu", seed: int = 0,
                   out: Path | str = "samples", pairing: str = "unpaired", n: int = 8,
                   data_root: Path | str | None = None,
                   pairs_file: Path | str | None = None, warp: str | None = None) -> list[Path]:
    """Dress the first ``n`` test persons (of ``pairs_file`` where given), given the warp of
    protocol ``warp`` (``None``: the data's default), with a trained variant; write PNGs,
    return paths. ``profile``, a :class:`~gardiffmini.profiles.Profile` or its name, is
    resolved here, once."""
    from PIL import Image

    profile = get_profile(profile)
    root = Path(data_root) if data_root else ensure_toyviton(profile)
    test = open_dataset(root, split="test", pairing=pairing, size=profile.image_size,
                        pairs_file=pairs_file, warp=warp)
    pipeline = train_variant(variant, profile, seed=seed, data_root=root)
    batch = _stack(test, n, EVAL_KEYS)
    images = try_on(pipeline, batch, profile, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for image, name in zip(images, batch["cloth_name"], strict=True):
        path = out / f"{variant}-{pairing}-{len(paths):03d}-{Path(name).stem}.png"
        pixels = image.permute(1, 2, 0).mul(255).round().byte().numpy()
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths
