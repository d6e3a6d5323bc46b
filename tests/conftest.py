"""Shared fixtures: a tiny folder that looks like the real VITON-HD release, and ToyVITON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gardiffmini.data import layout

RELEASE_SIZE = (128, 96)  # (height, width): the release's 1024x768, eight times smaller
RELEASE_NAMES = ("00001_00", "00002_00", "00003_00")

# BODY_25 of a front-facing person in a 96x128 photo; feet (19-24) undetected
RELEASE_KEYPOINTS = [
    (48, 18, 0.9), (48, 34, 0.9), (33, 36, 0.9), (27, 58, 0.8), (25, 78, 0.8),
    (63, 36, 0.9), (69, 58, 0.8), (71, 78, 0.8), (48, 82, 0.9), (41, 82, 0.9),
    (41, 104, 0.8), (41, 124, 0.7), (55, 82, 0.9), (55, 104, 0.8), (55, 124, 0.7),
    (46, 16, 0.9), (50, 16, 0.9), (44, 17, 0.8), (52, 17, 0.8),
    *[(0, 0, 0)] * 6,
]


def tshirt_polygon(shift: float = 0.0) -> list[tuple[float, float]]:
    """A short-sleeved T-shirt as the release shows it: flat, centred, on white."""
    return [
        (40 + shift, 22), (56 + shift, 22), (68, 26), (84, 44), (76, 52), (66, 42), (66, 102),
        (30, 102), (30, 42), (20, 52), (12, 44), (28, 26),
    ]


def _palette_parse(size: tuple[int, int]) -> Image.Image:
    height, width = size
    labels = np.zeros(size, dtype=np.uint8)
    labels[8:28, 40:56] = layout.PARSE["face"]
    labels[30:84, 33:64] = layout.PARSE["upper-clothes"]
    labels[84:, 38:58] = layout.PARSE["pants"]
    parse = Image.fromarray(labels, mode="P")
    rng = np.random.default_rng(0)
    parse.putpalette(rng.integers(0, 256, 3 * 256, dtype=np.uint8).tolist())
    return parse


def write_release_like(root: Path, size: tuple[int, int] = RELEASE_SIZE) -> Path:
    """Write a tiny folder shaped like the VITON-HD release: JPEG photos and JPEG cloth masks
    (compression noise included), palette parse maps, OpenPose JSON, no ``cloth-warp``;
    ``train_pairs.txt`` (two columns) and ``test_pairs.txt`` (three columns, GP-VTON style)."""
    height, width = size
    rng = np.random.default_rng(0)
    for split in layout.SPLITS:
        for folder in [*layout.PERSON_FILES, *layout.CLOTH_FILES]:
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(RELEASE_NAMES):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            person = Image.new("RGB", (width, height), (200, 190, 180))
            draw = ImageDraw.Draw(person)
            draw.ellipse((38, 6, 58, 30), fill=(220, 180, 150))
            draw.rectangle((33, 32, 63, 84), fill=colour)
            draw.rectangle((38, 84, 58, 127), fill=(40, 40, 90))
            person.save(layout.person_path(root, split, "image", name), quality=90)
            agnostic = person.copy()
            ImageDraw.Draw(agnostic).rectangle((30, 30, 66, 86), fill=(128, 128, 128))
            agnostic.save(layout.person_path(root, split, "agnostic-v3.2", name), quality=90)
            mask = Image.new("L", (width, height), 0)
            ImageDraw.Draw(mask).rectangle((30, 30, 66, 86), fill=255)
            mask.save(layout.person_path(root, split, "agnostic-mask", name))
            noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(noise).save(layout.person_path(root, split, "image-densepose", name))
            _palette_parse(size).save(layout.person_path(root, split, "image-parse-v3", name))
            skeleton = Image.new("RGB", (width, height), 0)
            ImageDraw.Draw(skeleton).line([(33, 36), (48, 34), (63, 36)], fill=(255, 0, 0))
            skeleton.save(layout.person_path(root, split, "openpose_img", name))
            keypoints = [[x, y + i, c] for x, y, c in RELEASE_KEYPOINTS]
            layout.person_path(root, split, "openpose_json", name).write_text(
                json.dumps(layout.openpose_json(keypoints))
            )
            cloth = Image.new("RGB", (width, height), (255, 255, 255))
            ImageDraw.Draw(cloth).polygon(tshirt_polygon(i), fill=colour)
            cloth.save(layout.cloth_path(root, split, "cloth", name), quality=90)
            cloth_mask = Image.new("L", (width, height), 0)
            ImageDraw.Draw(cloth_mask).polygon(tshirt_polygon(i), fill=255)
            cloth_mask.save(layout.cloth_path(root, split, "cloth-mask", name), quality=75)
    names = [f"{name}.jpg" for name in RELEASE_NAMES]
    shifted = names[1:] + names[:1]
    (root / "train_pairs.txt").write_text("".join(f"{n} {n}\n" for n in names))
    (root / "test_pairs.txt").write_text(
        "".join(f"{p} {c} unpaired\n" for p, c in zip(names, shifted, strict=True))
    )
    return root


@pytest.fixture
def release_root(tmp_path: Path) -> Path:
    """A fresh release-like folder per test (tests may break it)."""
    return write_release_like(tmp_path / "viton-hd")


@pytest.fixture(scope="session")
def toyviton_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ToyVITON at the ``ci`` size (4 train, 16 test pairs), shared: do not modify."""
    from gardiffmini.data.toyviton import generate
    from gardiffmini.profiles import get_profile

    root = tmp_path_factory.mktemp("toyviton") / "toyviton-ci"
    return generate(root, get_profile("ci"), seed=0, n_train=4, n_test=16, workers=1,
                    progress=False)
