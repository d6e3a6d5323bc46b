"""Train a profile's ToyVITON attribute network once and ship its weights inside the package.

    python tools/ship_featurenet.py --profile cpu  # commit gardiffmini/weights/featurenet-cpu.*

The attribute network is the evaluation's feature space (FID_toy, KID_toy, attribute accuracy;
:func:`gardiffmini.attributes.feature_net`). Shipping it fixes the metric, as Inception's
published weights fix FID, and spares every evaluation its training. Writes
``gardiffmini/weights/featurenet-<profile>.safetensors`` in float32 (the very weights the
training made, so every metric is unchanged) and ``.json``: the
:func:`~gardiffmini.attributes.feature_net_hash` that ``load_shipped_feature_net`` checks, the
training time, the network's accuracy on the test photos and provenance. Nothing is
downloaded; ToyVITON is generated if missing.
"""

from __future__ import annotations

import argparse
import json
import time

from safetensors.torch import save_file

from gardiffmini.attributes import (
    feature_net,
    feature_net_hash,
    load_shipped_feature_net,
    shipped_feature_net_path,
)
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import evaluation_sets, reference_points
from gardiffmini.profiles import get_profile
from gardiffmini.reproduce import provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=["ci", "cpu", "gpu"])
    args = parser.parse_args()
    profile = get_profile(args.profile)
    root = ensure_toyviton(profile)
    started = time.perf_counter()
    net = feature_net(profile, root, use_shipped=False)
    train_seconds = net.run.metrics.get("summary", {}).get("train_seconds")
    if train_seconds is None:
        raise RuntimeError(f"{net.run.folder} was trained before runs recorded their time; "
                           "delete it and ship again")
    path = shipped_feature_net_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    points = reference_points(net, evaluation_sets(root, profile), root)
    record = {
        "feature_net_hash": feature_net_hash(profile, root), "profile": profile.name,
        "train_seconds": train_seconds,
        "test_photos_accuracy": points["attribute_ceiling"],
        "chance": points["attribute_chance"],
        "provenance": provenance(profile, [0], time.perf_counter() - started),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    if load_shipped_feature_net(profile, root) is None:
        raise RuntimeError(f"{path} was written but does not load back")
    print(json.dumps({k: record[k] for k in ("train_seconds", "test_photos_accuracy")}, indent=2))


if __name__ == "__main__":
    main()
