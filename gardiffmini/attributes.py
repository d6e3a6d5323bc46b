"""The garment attributes of ToyVITON and the network that recognises them on persons.

The evaluation (:mod:`gardiffmini.evaluate`) reads the requested garment's pattern, category
and colour off each try-on result with :class:`~gardiffmini.features.ToyVitonFeatureNet`,
trained once on the training persons and their garments' attributes
(``cloth-attributes.json``, :func:`attribute_labels`); its penultimate features also give
FID_toy and KID_toy. At ``ci`` and ``cpu`` the trained network ships inside the package
(:func:`load_shipped_feature_net`, made by ``tools/ship_featurenet.py``). Data without
ToyVITON's attributes (the real releases) has no such network: :func:`attribute_network`
says so once and the metrics of :data:`ATTRIBUTE_METRICS` are left out.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from pathlib import Path

import torch

from gardiffmini.data import layout
from gardiffmini.data.garments import CATEGORIES, COLOR_NAMES, PATTERNS
from gardiffmini.data.toyviton import METADATA_FILE as TOYVITON_RECORD
from gardiffmini.data.vitonhd import VitonHD
from gardiffmini.features import ToyVitonFeatureNet, train_feature_net
from gardiffmini.profiles import Profile
from gardiffmini.runs import Run, config_hash
from gardiffmini.shipped import WEIGHTS_DIR, load_shipped

log = logging.getLogger(__name__)
ATTRIBUTES = {"pattern": PATTERNS, "category": CATEGORIES, "colour": COLOR_NAMES}
ATTRIBUTE_CLASSES = {name: len(values) for name, values in ATTRIBUTES.items()}  # the net's heads
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
        images = torch.stack([persons[i]["person"] for i in range(len(persons))]).add(1).div(2)
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
