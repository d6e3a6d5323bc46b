"""Evaluation of the try-on variants and the reproduction of GarDiff's ablation (chapter 7).

Each variant is trained (or its finished run reused) per seed, then asked to dress the
first ``profile.n_eval`` test persons, paired (their own garment: compared pixel by pixel
with the photo) and unpaired (another garment: compared as a distribution with the test
photos). Outputs are pasted back outside the agnostic mask, as the try-on region is all the
model is asked to paint. Every number is stored with the toolchain that measured it.

The data is ToyVITON, a folder in the real VITON-HD release's layout, or one DressCode
category folder (:func:`gardiffmini.data.datasets.open_dataset`). Only ToyVITON has garment
attributes (``cloth-attributes.json``): elsewhere the metrics that need them (the attribute
accuracy, and FID_toy / KID_toy, whose network learns those attributes) are left out of
every result and table, with a one-line notice (:func:`attribute_network`).
"""

from __future__ import annotations

import inspect
import json
import logging
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from gardiffmini import baselines, metrics
from gardiffmini.data import layout
from gardiffmini.data.datasets import open_dataset
from gardiffmini.data.fingerprint import data_fingerprint
from gardiffmini.data.garments import CATEGORIES, COLOR_NAMES, PATTERNS
from gardiffmini.data.toyviton import METADATA_FILE as TOYVITON_RECORD
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.data.vitonhd import VitonHD
from gardiffmini.features import ToyVitonFeatureNet, train_feature_net
from gardiffmini.losses import sobel_edges
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.models.vae import round_trip_report
from gardiffmini.paths import data_root as default_data_root
from gardiffmini.profiles import Profile, get_profile
from gardiffmini.runs import Run, atomic_save_tensors, atomic_write_text, config_hash
from gardiffmini.shipped import WEIGHTS_DIR, load_shipped
from gardiffmini.train import VARIANTS, train_variant, weights_hash

PAPER_ABLATION = {  # GarDiff, Table 3 (VITON-HD; KID x100), for the side-by-side table
    "base": {"SSIM": 0.809, "LPIPS": 0.117, "FID_p": 10.03, "KID_p": 0.190, "FID_u": 10.96,
             "KID_u": 0.473},
    "base+al": {"SSIM": 0.829, "LPIPS": 0.090, "FID_p": 8.72, "KID_p": 0.103, "FID_u": 10.22,
                "KID_u": 0.300},
    "base+gfa": {"SSIM": 0.898, "LPIPS": 0.052, "FID_p": 6.61, "KID_p": 0.047, "FID_u": 8.21,
                 "KID_u": 0.069},
    "base+gfa+al": {"SSIM": 0.912, "LPIPS": 0.036, "FID_p": 6.02, "KID_p": 0.019, "FID_u": 7.89,
                    "KID_u": 0.027},
}
log = logging.getLogger(__name__)
SAMPLES_FILE = "samples-unpaired.safetensors"  # reproduce's try-on images (seed 0), per variant
ATTRIBUTES = {"pattern": PATTERNS, "category": CATEGORIES, "colour": COLOR_NAMES}
ATTRIBUTE_CLASSES = {name: len(values) for name, values in ATTRIBUTES.items()}  # the net's heads
HIGHER_IS_BETTER = {  # the direction of every metric reported here and in the paper
    "SSIM": True, "LPIPS": False, "garment_detail_error": False, "hf_energy_ratio": True,
    "SSIM_occluded": True, "garment_detail_error_occluded": False,
    "unpaired_colour_match": True,
    "attribute_accuracy_p": True, "attribute_accuracy_u": True, "FID_toy_p": False,
    "KID_toy_p": False, "FID_toy_u": False, "KID_toy_u": False,
    "FID_p": False, "KID_p": False, "FID_u": False, "KID_u": False,  # the paper's columns
}
FEATURE_NET_STEPS_PER_PROBE_STEP = 10
FEATURE_NET_BATCH = 32
ATTRIBUTE_METRICS = ("attribute_accuracy_p", "attribute_accuracy_u", "FID_toy_p", "KID_toy_p",
                     "FID_toy_u", "KID_toy_u")  # need ToyVITON's garment attributes


def _attribute_value(row: dict, attribute: str) -> str:
    """The class name of one attribute of a ``cloth-attributes.json`` row (colour: the first)."""
    return row["colors"][0] if attribute == "colour" else row[attribute]


def attribute_labels(root: Path | str, split: str, cloth_names: list[str]) -> dict:
    """Class indices ``(N,)`` of the pattern, category and first colour of each named garment.

    Read from ToyVITON's ``<split>/cloth-attributes.json``; the classes are :data:`ATTRIBUTES`.
    """
    path = Path(root) / split / layout.ATTRIBUTES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; expected ToyVITON's garment attributes "
                                "(real VITON-HD has none: the attribute metrics need ToyVITON)")
    table = json.loads(path.read_text())
    keys = [layout.CLOTH_FILES["cloth"].format(stem=layout.stem(name)) for name in cloth_names]
    missing = [key for key in keys if key not in table]
    if missing:
        raise KeyError(f"{path} has no attributes for the garments {missing[:5]}")
    return {
        attribute: torch.tensor([classes.index(_attribute_value(table[key], attribute))
                                 for key in keys], dtype=torch.long)
        for attribute, classes in ATTRIBUTES.items()
    }


def _stack(dataset: torch.utils.data.Dataset, n: int, keys: tuple[str, ...]) -> dict:
    """The first ``n`` items of ``dataset``: tensors stacked, names as lists."""
    items = [dataset[i] for i in range(min(n, len(dataset)))]
    stacked = {key: torch.stack([item[key] for item in items]) for key in keys}
    return stacked | {"cloth_name": [item["cloth_name"] for item in items]}


def feature_net_hash(profile: Profile, root: Path | str, seed: int = 0) -> str | None:
    """What determines :func:`feature_net`'s weights on the data at ``root``: ToyVITON's record
    there (``toyviton.json``: the data's bytes follow from it), the image size, the classes,
    the steps, and the batch size, learning rate and widths that :func:`train_feature_net`
    trains with; ``None`` where ``root`` holds no ToyVITON record."""
    record = Path(root) / TOYVITON_RECORD
    if not record.is_file():
        return None
    training = {name: parameter.default
                for name, parameter in inspect.signature(train_feature_net).parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    return config_hash({
        "toyviton": json.loads(record.read_text()), "size": profile.image_size, "seed": seed,
        "classes": ATTRIBUTE_CLASSES,
        "steps": FEATURE_NET_STEPS_PER_PROBE_STEP * profile.probe_steps,
        "training": training | {"batch_size": FEATURE_NET_BATCH},
    })


def shipped_feature_net_path(profile: Profile) -> Path:
    """Where the package keeps the attribute network of ``profile`` (may not exist)."""
    return WEIGHTS_DIR / f"featurenet-{profile.name}.safetensors"


def load_shipped_feature_net(profile: Profile, root: Path | str, seed: int = 0
                             ) -> ToyVitonFeatureNet | None:
    """The package's attribute network of ``profile`` where it was trained on the data at
    ``root`` as today's code trains it (:func:`feature_net_hash`), else ``None``."""
    shipped = load_shipped(shipped_feature_net_path(profile), "feature_net_hash",
                           feature_net_hash(profile, root, seed))
    if shipped is None:
        return None
    net = ToyVitonFeatureNet(ATTRIBUTE_CLASSES)
    net.load_state_dict(shipped[0])
    return net.eval()


def feature_net(profile: Profile, root: Path, seed: int = 0,
                use_shipped: bool = True) -> ToyVitonFeatureNet:
    """The network behind FID_toy / KID_toy, trained once on the training persons (a run,
    ``net.run``), or the package's (:func:`load_shipped_feature_net`) where it matches.

    :data:`FEATURE_NET_STEPS_PER_PROBE_STEP` times the profile's probe steps, batches of
    :data:`FEATURE_NET_BATCH`: at ``cpu``, 300 steps of 8 left it at chance on the test photos
    (mean attribute accuracy 0.224, chance 0.190) and 1,000 of 32 reached 0.56.
    """
    shipped = load_shipped_feature_net(profile, root, seed) if use_shipped else None
    if shipped is not None:
        return shipped
    classes = ATTRIBUTE_CLASSES
    steps = FEATURE_NET_STEPS_PER_PROBE_STEP * profile.probe_steps
    run = Run.open("featurenet", profile.name, seed,
                   {"steps": steps, "batch_size": FEATURE_NET_BATCH, "classes": classes,
                    "root": str(Path(root).resolve())})
    if run.finished:
        net = ToyVitonFeatureNet(classes)
        run.load({"net": net})
    else:
        started = time.perf_counter()
        persons = VitonHD(root, split="train", size=profile.image_size)
        images = _stack(persons, len(persons), ("person",))["person"].add(1).div(2)
        labels = attribute_labels(root, "train", [pair.cloth for pair in persons.pairs])
        net = train_feature_net(images, labels, steps=steps, batch_size=FEATURE_NET_BATCH,
                                seed=seed, attribute_classes=classes)
        run.save(steps, {"net": net})
        run.write_metrics(summary={"train_seconds": round(time.perf_counter() - started, 1)})
        run.finish(steps)
    net.run = run
    return net.eval()


def missing_attributes(root: Path | str) -> str | None:
    """Why the attribute metrics cannot be measured on the data at ``root`` (the attribute
    files it lacks), or ``None`` where it has ToyVITON's attributes for both splits."""
    missing = [str(Path(root) / split / layout.ATTRIBUTES_FILE) for split in layout.SPLITS
               if not (Path(root) / split / layout.ATTRIBUTES_FILE).is_file()]
    return f"no {' nor '.join(missing)} (ToyVITON's garment attributes)" if missing else None


def attribute_network(profile: Profile, root: Path | str) -> ToyVitonFeatureNet | None:
    """:func:`feature_net` where the data has ToyVITON's attributes; else ``None``, after a
    one-line notice that the metrics of :data:`ATTRIBUTE_METRICS` are skipped."""
    reason = missing_attributes(root)
    if reason is None:
        return feature_net(profile, Path(root))
    log.warning("%s: attribute accuracy and FID_toy/KID_toy skipped", reason)
    return None


@torch.no_grad()
def try_on(pipeline, batch: dict[str, torch.Tensor], profile: Profile, seed: int,
           batch_size: int = 16) -> torch.Tensor:
    """Images in [0, 1] for every row of ``batch``, pasted back outside the agnostic mask."""
    out = []
    for start in range(0, len(batch["agnostic"]), batch_size):
        part = {k: batch[k][start:start + batch_size] for k in EVAL_KEYS}
        generator = torch.Generator().manual_seed(seed * 100_003 + start)
        out.append(pipeline(
            agnostic=part["agnostic"], warped_cloth=part["warped_cloth"],
            warped_mask=part["warped_mask"], cloth=part["cloth"],
            agnostic_mask=part["agnostic_mask"], num_inference_steps=profile.sample_steps,
            guidance_scale=profile.guidance_scale, generator=generator,
        ).images.cpu())
    return torch.cat(out).clamp(0, 1)


EVAL_KEYS = ("person", "agnostic", "agnostic_mask", "warped_cloth", "warped_mask", "cloth",
             "cloth_mask", "parse")
BASELINES = {"agnostic": "agnostic image", "warp+paste": "warp + paste",
             "vae round trip": "VAE round trip (ceiling)"}


def evaluation_sets(root: Path, profile: Profile, pairs_file: Path | str | None = None
                    ) -> dict[str, dict[str, torch.Tensor]]:
    """The first ``profile.n_eval`` test pairs, paired and unpaired, as tensors: the pairs of
    ``pairs_file`` (a path, or a name under ``root``) where given, else the layout's."""
    return {
        pairing: _stack(open_dataset(root, split="test", pairing=pairing,
                                     size=profile.image_size, pairs_file=pairs_file),
                        profile.n_eval, EVAL_KEYS)
        for pairing in ("paired", "unpaired")
    }


def score(images: dict[str, torch.Tensor], sets: dict, net: ToyVitonFeatureNet | None,
          root: Path, seed: int = 0) -> dict[str, float]:
    """Every metric of try-on ``images`` (``{"paired", "unpaired"}``, in [0, 1]) on ``sets``.

    Paired: SSIM, garment-detail error and high-frequency energy against the photos, on all
    pairs and on the occluded subset (:func:`gardiffmini.baselines.occluded`), the attribute
    accuracy and LPIPS where available. Unpaired: the attribute network's accuracy at
    recognising the *requested* garment and :func:`~gardiffmini.metrics.colour_match_rate`.
    Both: FID_toy/KID_toy against the test photos. Without ``net`` (data without ToyVITON's
    attributes) the metrics of :data:`ATTRIBUTE_METRICS` are left out.
    """
    paired, unpaired = sets["paired"], sets["unpaired"]
    real = paired["person"].add(1).div(2)
    mask = paired["warped_mask"]
    hidden = baselines.occluded(paired)
    ssim = metrics.ssim(images["paired"], real)
    detail = metrics.garment_detail_error(images["paired"], real, mask)
    own_garment = torch.isin(unpaired["parse"], torch.tensor(baselines.GARMENT_LABELS))[:, None]
    result = {
        "SSIM": ssim.mean().item(),
        "garment_detail_error": detail.mean().item(),
        "SSIM_occluded": ssim[hidden].mean().item() if hidden.any() else float("nan"),
        "garment_detail_error_occluded": (detail[hidden].mean().item() if hidden.any()
                                          else float("nan")),
        "hf_energy_ratio": metrics.high_frequency_energy_ratio(
            images["paired"], real, mask).mean().item(),
        "unpaired_colour_match": metrics.colour_match_rate(
            images["unpaired"], unpaired["warped_mask"], unpaired["cloth"].add(1).div(2),
            unpaired["cloth_mask"], unpaired["person"].add(1).div(2), own_garment),
    }
    if metrics.lpips_status() is None:
        result["LPIPS"] = metrics.lpips(images["paired"], real).mean().item()
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
    metrics out, or ``"auto"``: :func:`attribute_network` (which says once why it is none)."""
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
              "n_occluded": int(baselines.occluded(paired).sum())}
    if net is None:
        return points
    labels = attribute_labels(root, "test", paired["cloth_name"])
    ceiling = metrics.attribute_accuracy(net, paired["person"].add(1).div(2), labels)["mean"]
    chance = float(np.mean([1 / len(classes) for classes in ATTRIBUTES.values()]))
    return {"attribute_ceiling": ceiling, "attribute_chance": chance, **points}


def cached_evaluation(pipeline, profile: Profile, root: Path, seed: int,
                      net: ToyVitonFeatureNet | None, sets: dict,
                      pairs_file: Path | str | None = None) -> dict:
    """:func:`evaluate_pipeline`, stored in the pipeline's run folder and reused when asked again.

    The key is everything the numbers depend on besides the run: the evaluation settings of
    ``profile``, the data root, the test pairs' ``pairs_file`` where one is given (the
    fingerprint of its pairs), the feature network's weights (or none) and the metrics'
    toolchain.
    """
    key = config_hash({
        "n_eval": profile.n_eval, "sample_steps": profile.sample_steps,
        "guidance_scale": profile.guidance_scale, "seed": seed,
        "root": str(Path(root).resolve()),
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
                     pairs_file: Path | str | None = None) -> dict:
    """Train (or reuse) one variant at one seed on the training pairs and return its metrics
    on the test pairs (of ``pairs_file`` where given: :func:`evaluation_sets`)."""
    profile = get_profile(profile)
    root = Path(data_root) if data_root else ensure_toyviton(profile)
    sets = evaluation_sets(root, profile, pairs_file)
    pipeline = train_variant(variant, profile, seed=seed, data_root=root)
    return evaluate_pipeline(pipeline, profile, root, seed=seed, sets=sets)["metrics"]


def sample_variant(variant: str, profile: str | Profile = "cpu", seed: int = 0,
                   out: Path | str = "samples", pairing: str = "unpaired", n: int = 8,
                   data_root: Path | str | None = None,
                   pairs_file: Path | str | None = None) -> list[Path]:
    """Dress the first ``n`` test persons (of ``pairs_file`` where given) with a trained
    variant; write PNGs, return paths."""
    from PIL import Image

    profile = get_profile(profile)
    root = Path(data_root) if data_root else ensure_toyviton(profile)
    test = open_dataset(root, split="test", pairing=pairing, size=profile.image_size,
                        pairs_file=pairs_file)
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


def git_commit() -> str:
    """The commit of the library's checkout (``"unknown"`` outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(profile: Profile, seeds: list[int], wall_time_s: float) -> dict:
    """Where and how a set of numbers was made."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else (
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    return {"device": device, "commit": git_commit(), "profile": profile.name, "seeds": seeds,
            "wall_time_s": round(wall_time_s, 1), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "toolchain": metrics.TOOLCHAIN}


def summarize(per_seed: dict[str, list[dict]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and standard deviation over seeds of every metric of every variant."""
    return {
        variant: {
            key: {"mean": float(np.mean([r[key] for r in runs])),
                  "std": float(np.std([r[key] for r in runs]))}
            for key in runs[0]
        }
        for variant, runs in per_seed.items()
    }


TABLE_COLUMNS = (
    ("SSIM", "SSIM ↑"), ("SSIM_occluded", "SSIM occl. ↑"), ("LPIPS", "LPIPS ↓"),
    ("garment_detail_error", "detail err ↓"), ("hf_energy_ratio", "HF kept ↑"),
    ("FID_toy_p", "FID_toy p ↓"), ("FID_toy_u", "FID_toy u ↓"),
    ("attribute_accuracy_u", "attr acc u ↑"), ("unpaired_colour_match", "colour match u ↑"),
)


def ablation_table(summary: dict, baseline_summary: dict | None = None) -> str:
    """The ablation as a markdown table, ``mean ± std`` over seeds (LPIPS only if measured),
    with the baselines of :data:`BASELINES` in italics above the variants."""
    first = next(iter(summary.values()))
    columns = [(key, title) for key, title in TABLE_COLUMNS if key in first]
    head = "| images | " + " | ".join(title for _, title in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"

    def row(title: str, numbers: dict) -> str:
        return f"| {title} | " + " | ".join(
            f"{numbers[key]['mean']:.3f} ± {numbers[key]['std']:.3f}" for key, _ in columns) + " |"

    rows = [row(f"*{BASELINES[b]}*", numbers) for b, numbers in (baseline_summary or {}).items()]
    rows += [row(VARIANTS[v].name, summary[v]) for v in summary]
    return "\n".join([head, rule, *rows])


def paper_table() -> str:
    """The paper's ablation (VITON-HD, KID x100) as a markdown table."""
    keys = ("SSIM", "LPIPS", "FID_p", "KID_p", "FID_u", "KID_u")
    rows = [f"| {VARIANTS[v].name} | " + " | ".join(f"{PAPER_ABLATION[v][k]:g}" for k in keys)
            + " |" for v in PAPER_ABLATION]
    return "\n".join(["| variant | " + " | ".join(keys) + " |", "|---" * 7 + "|", *rows])


def fine_detail_box(warped_cloth: torch.Tensor, warped_mask: torch.Tensor,
                    size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the garment window with the most fine detail.

    The window of ``size`` where the warped garment ``I_w`` (``(3, H, W)`` in [-1, 1]) has the
    largest mean Sobel magnitude inside its mask ``m_w`` (``(1, H, W)``, eroded by two pixels so
    that the garment's outline does not count): stripes, text and logos, where blur shows first.
    """
    height, width = size
    if warped_cloth.ndim != 3 or warped_mask.shape != (1, *warped_cloth.shape[-2:]):
        raise ValueError(f"warped_cloth must be (3, H, W) and warped_mask (1, H, W); got "
                         f"{tuple(warped_cloth.shape)} and {tuple(warped_mask.shape)}")
    if not (0 < height <= warped_cloth.shape[-2] and 0 < width <= warped_cloth.shape[-1]):
        raise ValueError(f"size {size} must fit in the image {tuple(warped_cloth.shape[-2:])}")
    gx, gy = sobel_edges(warped_cloth[None])
    inside = -F.max_pool2d(-warped_mask[None], 5, stride=1, padding=2)  # eroded: no outline
    magnitude = torch.sqrt(gx**2 + gy**2).mean(dim=1, keepdim=True) * inside
    window_sums = F.avg_pool2d(magnitude, (height, width), stride=1)[0, 0]
    top, left = divmod(int(window_sums.argmax()), window_sums.shape[1])
    return top, left, height, width


def qualitative_grid(sets_unpaired: dict, samples: dict[str, torch.Tensor],
                     names: dict[str, str], n: int = 3, zoom: int = 4):
    """The qualitative figure: person | garment | each variant, with zoom-ins on fine detail.

    ``sets_unpaired``: the unpaired evaluation set (:func:`evaluation_sets`), ``samples``:
    each variant's try-on images ``(N, 3, H, W)`` in [0, 1], ``names``: their titles. Two rows
    per person: the full images, then a ``1/zoom`` crop (the window of
    :func:`fine_detail_box`, outlined above) of the warped garment and of every result.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if not samples or set(samples) != set(names):
        raise ValueError(f"samples {sorted(samples)} and names {sorted(names)} must name the "
                         "same, non-empty set of variants")
    n = min(n, *(len(images) for images in samples.values()))
    height, width = sets_unpaired["person"].shape[-2:]
    size = (max(4, height // zoom), max(4, width // zoom))
    columns = 2 + len(samples)
    panel = 1.5  # inches per panel's width
    fig, axes = plt.subplots(2 * n, columns, squeeze=False,
                             figsize=(panel * columns, 2 * n * panel * height / width + 0.6))
    for row in range(n):
        top, left, h, w = fine_detail_box(sets_unpaired["warped_cloth"][row],
                                          sets_unpaired["warped_mask"][row], size)
        person = sets_unpaired["person"][row].add(1).div(2)
        cloth = sets_unpaired["cloth"][row].add(1).div(2)
        warped = sets_unpaired["warped_cloth"][row].add(1).div(2)
        full = [("person", person), ("garment", cloth),
                *((names[v], images[row]) for v, images in samples.items())]
        crops = [(None, None), ("warped garment", warped),
                 *((names[v], images[row]) for v, images in samples.items())]
        for col, (title, image) in enumerate(full):
            ax = axes[2 * row, col]
            ax.imshow(image.clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_title(title, fontsize=7)
            if col >= 2:
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False,
                                       edgecolor="yellow", linewidth=1))
        for col, (title, image) in enumerate(crops):
            ax = axes[2 * row + 1, col]
            if image is not None:
                crop = image[:, top:top + h, left:left + w].clamp(0, 1)
                ax.imshow(crop.permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(f"zoom: {title}", fontsize=7)
        for ax in axes[2 * row:2 * row + 2].flat:
            ax.axis("off")
    fig.suptitle("Unpaired try-on: every variant on the same persons and garments "
                 "(zoom: the most detailed garment window)", fontsize=9)
    fig.tight_layout()
    return fig


def reproduce(profile: str | Profile = "cpu", seeds: int = 3, out: Path | str | None = None,
              data_root: Path | str | None = None, variants: tuple[str, ...] = tuple(VARIANTS),
              progress: bool = True, pairs_file: Path | str | None = None) -> Path:
    """Train and evaluate every variant for ``seeds`` seeds, reusing finished runs; write results.

    Evaluates on the test pairs of ``pairs_file`` where given (:func:`evaluation_sets`).

    Writes into ``out`` (default ``<data root>/reproduce-<profile>``): ``ablation.md`` (mean
    ± std over seeds, the baselines of :data:`BASELINES` above the variants),
    ``qualitative.png`` (:func:`qualitative_grid`, seed 0), the unpaired try-on images of
    seed 0 behind it (:data:`SAMPLES_FILE`, one tensor per variant) and
    ``ablation.json`` (the summary, every per-seed number, the baselines' numbers per seed,
    the occluded subset's and the unpaired colour match's numbers, the attribute network's
    ceiling and chance level, the VAE's round-trip errors, the paper's numbers, each run's
    training time and speed, the metrics skipped for want of ToyVITON's attributes and why,
    and the provenance with each metric's toolchain; its wall time counts this call only,
    the training runs it reused report their own). Evaluations are cached by
    :func:`cached_evaluation`. Returns ``out``.
    """
    import matplotlib.pyplot as plt

    if seeds < 1:
        raise ValueError(f"seeds must be >= 1; got {seeds}")
    start = time.perf_counter()
    profile = get_profile(profile)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; expected names from {sorted(VARIANTS)}")
    root = Path(data_root) if data_root else ensure_toyviton(profile, progress=progress)
    out = Path(out) if out else default_data_root() / f"reproduce-{profile.name}"
    out.mkdir(parents=True, exist_ok=True)
    sets, net = evaluation_sets(root, profile, pairs_file), attribute_network(profile, root)
    vae, _ = load_or_train_encoders(profile, progress=progress)
    per_seed: dict[str, list[dict]] = {}
    baseline_per_seed: dict[str, list[dict]] = {}
    training: dict[str, list[dict]] = {}
    samples: dict[str, torch.Tensor] = {}
    references = baseline_images(vae, sets)
    for seed in range(seeds):
        for name, images in references.items():
            baseline_per_seed.setdefault(name, []).append(score(images, sets, net, root, seed))
    for variant in variants:
        for seed in range(seeds):
            pipeline = train_variant(variant, profile, seed=seed, data_root=root,
                                     progress=progress)
            pipeline.set_progress_bar_config(disable=True)
            result = cached_evaluation(pipeline, profile, root, seed, net, sets, pairs_file)
            per_seed.setdefault(variant, []).append(result["metrics"])
            training.setdefault(variant, []).append(
                {"run": pipeline.run.folder.name, **pipeline.run.metrics["summary"]})
            if seed == 0:
                samples[variant] = result["images"]["unpaired"]
    summary, baseline_summary = summarize(per_seed), summarize(baseline_per_seed)
    table = ablation_table(summary, baseline_summary)
    (out / "ablation.md").write_text(table + "\n")
    save_file({v: images.contiguous() for v, images in samples.items()},
              str(out / SAMPLES_FILE))
    figure = qualitative_grid(sets["unpaired"], samples, {v: VARIANTS[v].name for v in samples})
    figure.savefig(out / "qualitative.png", dpi=150, bbox_inches="tight")
    plt.close(figure)
    occluded_keys = ("SSIM_occluded", "garment_detail_error_occluded")
    record = {"summary": summary, "per_seed": per_seed, "table": table,
              "baselines": {"summary": baseline_summary, "per_seed": baseline_per_seed},
              "occluded": {v: {k: summary[v][k] for k in occluded_keys} for v in summary},
              "unpaired_colour_match": {v: summary[v]["unpaired_colour_match"] for v in summary},
              "reference_points": reference_points(net, sets, root),
              "vae": round_trip_report(vae, profile, n=len(sets["paired"]["person"])),
              "paper": PAPER_ABLATION, "training": training,
              "skipped": ({"metrics": list(ATTRIBUTE_METRICS), "reason": missing_attributes(root)}
                          if net is None else None),
              "provenance": provenance(profile, list(range(seeds)), time.perf_counter() - start)}
    (out / "ablation.json").write_text(json.dumps(record, indent=2))
    return out
