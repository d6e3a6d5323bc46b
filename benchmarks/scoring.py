"""What the benchmarks that score trained variants share: their command line and test sets."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gardiffmini.attributes import attribute_network
from gardiffmini.data.datasets import WARPS
from gardiffmini.data.toyviton import ensure_toyviton
from gardiffmini.evaluate import evaluation_sets
from gardiffmini.features import ToyVitonFeatureNet
from gardiffmini.profiles import Profile, get_profile
from gardiffmini.reproduce import provenance

# the warp protocols a model is trained and scored on (the oracle is a reference point only)
SCORED_WARPS = tuple(warp for warp in WARPS if warp != "oracle")


def scoring_parser(doc: str) -> argparse.ArgumentParser:
    """``--profile``, ``--seed`` and ``--out`` (required), described by ``doc``'s first line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    return parser


def scored_sets(profile_name: str, warp: str | None = None
                ) -> tuple[Profile, Path, dict, ToyVitonFeatureNet | None]:
    """The profile, its ToyVITON (made if missing), the book's test sets (their garments
    warped by the protocol ``warp``; ``None``: the data's default, as the book's models are
    trained) and the attribute network, as the book's evaluation (:mod:`gardiffmini.evaluate`)
    uses them."""
    profile = get_profile(profile_name)
    root = ensure_toyviton(profile)
    return (profile, root, evaluation_sets(root, profile, warp=warp),
            attribute_network(profile, root))


def write_record(out: Path, record: dict, profile: Profile, seeds: list[int],
                 started: float) -> None:
    """Write ``record`` with its provenance (:func:`gardiffmini.reproduce.provenance`, the wall
    time counted from ``started``, a ``time.perf_counter()`` value) as JSON to ``out``."""
    record = record | {"provenance": provenance(profile, seeds, time.perf_counter() - started)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
