"""The reproduction of GarDiff's ablation (chapter 7): every variant, several seeds, one table.

Each variant is trained (or its finished run reused) per seed and evaluated by
:mod:`gardiffmini.evaluate` beside the baselines that need no training; the seeds are
summarised as mean ± std, the table, the qualitative figure and a JSON of every number are
written with their provenance (device, commit, profile, seeds, wall time, each metric's
toolchain).

The data is ToyVITON, a folder in the real VITON-HD release's layout, or one DressCode
category folder (:func:`gardiffmini.data.datasets.open_dataset`). Only ToyVITON has garment
attributes (``cloth-attributes.json``): elsewhere the metrics that need them (the attribute
accuracy, and FID_toy / KID_toy, whose network learns those attributes) are left out of
every result and table, with a one-line notice
(:func:`gardiffmini.attributes.attribute_network`).
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from gardiffmini import metrics
from gardiffmini.attributes import (
    ATTRIBUTE_METRICS,
    attribute_network,
    missing_attributes,
)
from gardiffmini.data.datasets import default_warp, is_toyviton
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import (
    BASELINES,
    baseline_images,
    cached_evaluation,
    evaluation_sets,
    reference_points,
    score,
)
from gardiffmini.losses import sobel_edges
from gardiffmini.models.encoders import load_or_train_encoders
from gardiffmini.models.vae import round_trip_report
from gardiffmini.paths import data_root as default_data_root
from gardiffmini.profiles import Profile, get_profile
from gardiffmini.train import VARIANTS, train_variant

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
SAMPLES_FILE = "samples-unpaired.safetensors"  # reproduce's try-on images (seed 0), per variant
# The direction of every metric reported here and in the paper. The high-frequency energy
# ratio has none: 1 is the truth's, and a result above the VAE round trip's (about 0.67 at
# cpu) carries noise or artefacts, not more detail, so it is in the JSON and not in a table.
HIGHER_IS_BETTER = {
    "SSIM": True, "LPIPS": False, "garment_detail_error": False,
    "SSIM_occluded": True, "garment_detail_error_occluded": False,
    "SSIM_u": True, "LPIPS_u": False, "garment_detail_error_u": False, "skin_error_u": False,
    "unpaired_colour_match": True, "surround_error": False, "surround_error_u": False,
    "attribute_accuracy_p": True, "attribute_accuracy_u": True, "FID_toy_p": False,
    "KID_toy_p": False, "FID_toy_u": False, "KID_toy_u": False,
    "FID_p": False, "KID_p": False, "FID_u": False, "KID_u": False,  # the paper's columns
}


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
    """Mean, standard deviation and count ``n`` over seeds of every metric of every variant."""
    return {
        variant: {
            key: {"mean": float(np.mean([r[key] for r in runs])),
                  "std": float(np.std([r[key] for r in runs])), "n": len(runs)}
            for key in runs[0]
        }
        for variant, runs in per_seed.items()
    }


TABLE_COLUMNS = (  # p: paired, against the photo; u: unpaired, against the rendered truth
    ("SSIM", "SSIM p ↑"), ("SSIM_occluded", "SSIM occl. p ↑"), ("LPIPS", "LPIPS p ↓"),
    ("garment_detail_error", "detail err p ↓"), ("SSIM_u", "SSIM u ↑"),
    ("LPIPS_u", "LPIPS u ↓"), ("garment_detail_error_u", "detail err u ↓"),
    ("skin_error_u", "skin err u ↓"),
    ("FID_toy_p", "FID_toy p ↓"), ("FID_toy_u", "FID_toy u ↓"),
    ("attribute_accuracy_u", "attr acc u ↑"), ("unpaired_colour_match", "colour match u ↑"),
)
# KID_toy stays in the records but not in the tables: in the attribute network's raw features
# the cubic kernel runs to thousands (x100), it goes negative for warp + paste (-528 at cpu)
# and its spread over seeds (Base 7,897 ± 1,258) exceeds the gaps between variants (920).


def compare(a: dict[str, float], b: dict[str, float], key: str) -> dict:
    """Whether ``a`` beats ``b`` on metric ``key``, each ``{"mean", "std", "n"}`` over seeds.

    ``margin`` is the improvement of ``a`` over ``b`` (positive: better, whatever the
    metric's direction, :data:`HIGHER_IS_BETTER`), ``noise`` twice the spread of the
    difference, ``2 sqrt(std_a^2 + std_b^2)``. ``verdict``: ``"better"`` or ``"worse"`` only
    beyond that noise, else ``"no measurable effect"``. A spread of 0 means something only
    over several seeds (``n``, taken as 1 where a summary does not say): there the seeds
    agreed exactly and any difference counts; from one seed nothing can be told from noise,
    so the verdict is ``"unknown (one seed)"``.
    """
    sign = 1.0 if HIGHER_IS_BETTER[key] else -1.0
    margin = sign * (a[key]["mean"] - b[key]["mean"])
    noise = 2 * math.hypot(a[key]["std"], b[key]["std"])
    seeds = min(a[key].get("n", 1), b[key].get("n", 1))
    if noise == 0 and seeds < 2:
        verdict = "unknown (one seed)"
    elif margin > noise:
        verdict = "better"
    elif margin < -noise:
        verdict = "worse"
    else:
        verdict = "no measurable effect"
    return {"margin": margin, "noise": noise, "verdict": verdict}


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


def ablation_markdown(record: dict) -> str:
    """The tables of an ``ablation.json`` record, as ``ablation.md`` holds them: the headline
    table with its baselines, then the oracle-warp table where the record has one, each
    rendered from its summaries by :func:`ablation_table`."""
    text = ablation_table(record["summary"], record["baselines"]["summary"]) + "\n"
    if record.get("oracle"):
        text += ("\nOracle warp (ToyVITON's exact warp at test time; seed 0):\n\n"
                 + ablation_table(record["oracle"]["summary"],
                                  record["oracle"]["baselines"]["summary"]) + "\n")
    return text


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


def showcase_rows(sets: dict, n: int = 3) -> list[int]:
    """Up to ``n`` unpaired test rows for the qualitative figure, each showing what a metric
    alone can miss: the person whose requested garment bares the most skin that their own
    garment covered (:func:`~gardiffmini.metrics.newly_bared_skin`), the first person with a
    forearm in front of the torso (``sets["paired"]["occluded"]``), then the rows in order.
    Without the rendered truth, the rows in order."""
    unpaired, chosen = sets["unpaired"], []
    if "truth_parse" in unpaired:
        bared = metrics.newly_bared_skin(unpaired["parse"], unpaired["truth_parse"])
        chosen.append(int(bared.sum(dim=(1, 2, 3)).argmax()))
    occluded = [i for i in sets["paired"]["occluded"].nonzero().flatten().tolist()
                if i not in chosen]
    chosen += occluded[:1]
    chosen += [i for i in range(len(unpaired["person"])) if i not in chosen]
    return chosen[:n]


def qualitative_grid(sets: dict, samples: dict[str, torch.Tensor], names: dict[str, str],
                     n: int = 3, zoom: int = 4):
    """The qualitative figure: person | garment | truth | each variant, with zoom-ins.

    ``sets``: the evaluation sets (:func:`evaluation_sets`; the unpaired one is drawn, its rows
    chosen by :func:`showcase_rows`), ``samples``: each variant's unpaired try-on images
    ``(N, 3, H, W)`` in [0, 1], ``names``: their titles. Two rows per person: the full
    images (the rendered truth where the set has it), then a ``1/zoom`` crop (the window of
    :func:`fine_detail_box`, outlined above) of the warped garment, the truth and every result.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if not samples or set(samples) != set(names):
        raise ValueError(f"samples {sorted(samples)} and names {sorted(names)} must name the "
                         "same, non-empty set of variants")
    unpaired = sets["unpaired"]
    rows = showcase_rows(sets, min(n, *(len(images) for images in samples.values())))
    height, width = unpaired["person"].shape[-2:]
    size = (max(4, height // zoom), max(4, width // zoom))
    truth = [("truth", unpaired["truth"].add(1).div(2))] if "truth" in unpaired else []
    columns = 2 + len(truth) + len(samples)
    panel = 1.5  # inches per panel's width
    figsize = (panel * columns, 2 * len(rows) * panel * height / width + 0.6)
    fig, axes = plt.subplots(2 * len(rows), columns, squeeze=False, figsize=figsize)
    for line, row in enumerate(rows):
        top, left, h, w = fine_detail_box(unpaired["warped_cloth"][row],
                                          unpaired["warped_mask"][row], size)
        shown = [*((title, images[row]) for title, images in truth),
                 *((names[v], images[row]) for v, images in samples.items())]
        full = [("person", unpaired["person"][row].add(1).div(2)),
                ("garment", unpaired["cloth"][row].add(1).div(2)), *shown]
        crops = [(None, None), ("warped garment", unpaired["warped_cloth"][row].add(1).div(2)),
                 *shown]
        for col, (title, image) in enumerate(full):
            ax = axes[2 * line, col]
            ax.imshow(image.clamp(0, 1).permute(1, 2, 0).numpy())
            ax.set_title(title, fontsize=7)
            if col >= 2:
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False,
                                       edgecolor="yellow", linewidth=1))
        for col, (title, image) in enumerate(crops):
            ax = axes[2 * line + 1, col]
            if image is not None:
                crop = image[:, top:top + h, left:left + w].clamp(0, 1)
                ax.imshow(crop.permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_title(f"zoom: {title}", fontsize=7)
        for ax in axes[2 * line:2 * line + 2].flat:
            ax.axis("off")
    fig.suptitle("Unpaired try-on: every variant on the same persons and garments (zoom: the "
                 "most detailed garment window)", fontsize=9)
    fig.tight_layout()
    return fig


def reproduce(profile: str | Profile = "cpu", seeds: int = 3, out: Path | str | None = None,
              data_root: Path | str | None = None, variants: tuple[str, ...] = tuple(VARIANTS),
              progress: bool = True, pairs_file: Path | str | None = None,
              oracle: bool = True) -> Path:
    """Train and evaluate every variant for ``seeds`` seeds, reusing finished runs; write results.

    The headline protocol is what a user of real data has: every variant trains and is
    tested on a warp computed from the keypoints (the data's
    :func:`~gardiffmini.data.datasets.default_warp`: on ToyVITON the carved warp, the arms in
    front of it), and warp + paste pastes that warp. On ToyVITON the models of seed 0 are also
    given the exact warp at test time, beside warp + paste on the exact warp: the *oracle
    warp* table, which no real data set can make (a reference point: the spread over seeds is
    the headline's); ``oracle=False`` leaves it out (it samples every variant twice more).
    Evaluates on the test pairs of ``pairs_file`` where given (:func:`evaluation_sets`).

    Writes into ``out`` (default ``<data root>/reproduce-<profile>``): ``ablation.md`` (mean
    ± std over seeds, the baselines of :data:`BASELINES` above the variants; the oracle
    table below it), ``qualitative.png`` (:func:`qualitative_grid`, seed 0), the unpaired
    try-on images of seed 0 behind it (:data:`SAMPLES_FILE`, one tensor per variant) and
    ``ablation.json`` (the summary, every per-seed number, the baselines' numbers per seed,
    the occluded subset's and the unpaired colour match's numbers, the attribute network's
    ceiling and chance level, the VAE's round-trip errors, the oracle-warp results, the
    paper's numbers, each run's training time and speed, the metrics skipped for want of
    ToyVITON's attributes and why, and the provenance with each metric's toolchain; its wall
    time counts this call only, the training runs it reused report their own). Evaluations
    are cached by :func:`cached_evaluation`. Returns ``out``. ``profile``, a
    :class:`~gardiffmini.profiles.Profile` or its name, is resolved here, once.
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
    user_warp = default_warp(root)
    protocols = {user_warp: evaluation_sets(root, profile, pairs_file, warp=user_warp)}
    if oracle and is_toyviton(root):
        protocols["oracle"] = evaluation_sets(root, profile, pairs_file, warp="oracle")
    net = attribute_network(profile, root)
    vae, _ = load_or_train_encoders(profile, progress=progress)
    results = {warp: {"per_seed": {}, "baselines": {}} for warp in protocols}
    training: dict[str, list[dict]] = {}
    samples: dict[str, torch.Tensor] = {}
    # the oracle warp is a reference point, not the protocol whose spread decides: seed 0 only
    protocol_seeds = {warp: range(seeds) if warp == user_warp else range(1) for warp in protocols}
    for warp, sets in protocols.items():
        references = baseline_images(vae, sets)
        for seed in protocol_seeds[warp]:
            for name, images in references.items():
                results[warp]["baselines"].setdefault(name, []).append(
                    score(images, sets, net, root, seed))
    for variant in variants:
        for seed in range(seeds):
            pipeline = train_variant(variant, profile, seed=seed, data_root=root,
                                     progress=progress)
            pipeline.set_progress_bar_config(disable=True)
            for warp, sets in protocols.items():
                if seed not in protocol_seeds[warp]:
                    continue
                result = cached_evaluation(pipeline, profile, root, seed, net, sets, pairs_file)
                results[warp]["per_seed"].setdefault(variant, []).append(result["metrics"])
                if seed == 0 and warp == user_warp:
                    samples[variant] = result["images"]["unpaired"]
            training.setdefault(variant, []).append(
                {"run": pipeline.run.folder.name, **pipeline.run.metrics["summary"]})
    tables = {}
    for warp, found in results.items():
        found["summary"] = summarize(found["per_seed"])
        found["baseline_summary"] = summarize(found["baselines"])
        tables[warp] = ablation_table(found["summary"], found["baseline_summary"])
    headline = results[user_warp]
    save_file({v: images.contiguous() for v, images in samples.items()},
              str(out / SAMPLES_FILE))
    figure = qualitative_grid(protocols[user_warp], samples,
                              {v: VARIANTS[v].name for v in samples})
    figure.savefig(out / "qualitative.png", dpi=150, bbox_inches="tight")
    plt.close(figure)
    summary, n_pairs = headline["summary"], len(protocols[user_warp]["paired"]["person"])
    occluded_keys = ("SSIM_occluded", "garment_detail_error_occluded")
    record = {"protocol": f"{user_warp} warp, in training and at test (paired and unpaired)",
              "warp": user_warp,
              "summary": summary, "per_seed": headline["per_seed"], "table": tables[user_warp],
              "baselines": {"summary": headline["baseline_summary"],
                            "per_seed": headline["baselines"]},
              "occluded": {v: {k: summary[v][k] for k in occluded_keys} for v in summary},
              "unpaired_colour_match": {v: summary[v]["unpaired_colour_match"] for v in summary},
              "reference_points": reference_points(net, protocols[user_warp], root),
              "vae": round_trip_report(vae, profile, n=n_pairs),
              "oracle": ({"protocol": f"trained on the {user_warp} warp, given ToyVITON's exact "
                                      "warp at test time (seed 0 only)",
                          "summary": results["oracle"]["summary"], "table": tables["oracle"],
                          "per_seed": results["oracle"]["per_seed"],
                          "baselines": {"summary": results["oracle"]["baseline_summary"],
                                        "per_seed": results["oracle"]["baselines"]}}
                         if "oracle" in results else None),
              "paper": PAPER_ABLATION, "training": training,
              "skipped": ({"metrics": list(ATTRIBUTE_METRICS), "reason": missing_attributes(root)}
                          if net is None else None),
              "provenance": provenance(profile, list(range(seeds)), time.perf_counter() - start)}
    (out / "ablation.json").write_text(json.dumps(record, indent=2))
    (out / "ablation.md").write_text(ablation_markdown(record))
    return out
