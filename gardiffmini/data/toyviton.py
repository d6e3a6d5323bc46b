"""ToyVITON: a procedural virtual try-on data set, written in the exact VITON-HD layout.

Each pair is a front-facing 2D figure (:mod:`bodies`) wearing an in-shop garment
(:mod:`garments`). The worn garment is the flat garment *deformed* onto the body: every
pixel of the person's garment region is mapped back to the flat garment's texture
coordinates and sampled there (:func:`garments.garment_map`). The same map, without the
arms in front and without shading, is the ground-truth warp (``cloth-warp``,
``cloth-warp-mask``) that a warping module such as a TPS should approach. In about 30% of
the pairs a forearm crosses in front of the torso, so pasting the warp is not enough.

Because every person and garment is drawn here, ToyVITON can also render what no real data
set has: the **unpaired truth**, each unpaired test person wearing the requested garment
(same body, pose, arms and background), written beside the layout (:data:`TRUTH_FILES`,
``NAME__CLOTH``), with its label map and the requested garment's exact warp.

:func:`render_sample` makes one pair in memory; :func:`generate` writes a whole data set
(several processes, deterministic for a seed whatever their number).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm.auto import tqdm

from gardiffmini.data.bodies import Canvas, grid, keypoints, paint_body, sample_body
from gardiffmini.data.garments import (
    FlatGarment,
    draw_flat_garment,
    garment_map,
    sample_attributes,
)
from gardiffmini.data.layout import (
    ATTRIBUTES_FILE,
    CLOTH_FILES,
    PAIR_FILES,
    PARSE,
    PERSON_FILES,
    SPLITS,
    TRUTH_FILES,
    WARP_FILES,
    cloth_path,
    openpose_json,
    person_path,
    truth_path,
    warp_path,
)
from gardiffmini.paths import toyviton_root
from gardiffmini.profiles import Profile

# The version of the bytes of the layout's files. The unpaired truth (added 2026-12-06) leaves
# them unchanged, so the shipped weights identified by this record stay valid; a data set
# written without the truth is incomplete (:func:`_is_complete`) and is written again.
TOYVITON_VERSION = 1
METADATA_FILE = "toyviton.json"
JPEG_QUALITY = 95
AGNOSTIC_GREY = 128
DENSEPOSE_COLORS = np.array([
    (0, 0, 0), (20, 80, 194), (250, 250, 20), (6, 166, 198), (22, 173, 184), (145, 191, 116),
    (170, 190, 105), (8, 110, 222), (4, 98, 224), (192, 188, 96), (216, 187, 87),
    (228, 191, 74), (240, 198, 60),
], np.float32)
BODY_25_LIMBS = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11),
    (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19),
    (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)


def _lip_palette(n: int = 256) -> list[int]:
    """The PASCAL/LIP colour map of the palette PNGs of VITON-HD's ``image-parse-v3``."""
    palette = [0] * (n * 3)
    for label in range(n):
        code, bit = label, 0
        while code:
            for channel in range(3):
                palette[label * 3 + channel] |= ((code >> channel) & 1) << (7 - bit)
            bit, code = bit + 1, code >> 3
    return palette


LIP_PALETTE = _lip_palette()


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    top = rng.uniform(90, 245, 3)
    bottom = top if rng.random() < 0.5 else np.clip(top + rng.uniform(-60, 60, 3), 40, 255)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)).astype(np.float32)


def draw_garment(rng: np.random.Generator, height: int, width: int) -> tuple[dict, FlatGarment]:
    """The attributes and flat garment of the pair whose generator is ``rng``: drawn after the
    body, in :func:`render_sample`'s order, so that another person can wear it."""
    sample_body(rng, height, width)
    attributes = sample_attributes(rng)
    return attributes, draw_flat_garment(attributes, rng, height, width)


def render_sample(rng: np.random.Generator, height: int, width: int,
                  garment_rng: np.random.Generator | None = None) -> dict:
    """Render one ToyVITON pair in memory.

    With ``garment_rng`` (the generator of another pair, :func:`sample_rng`) the person of
    ``rng`` wears that pair's garment instead of their own: same body, pose, arms and
    background. This is the unpaired try-on's ground truth.

    Returns uint8 images ``person``, ``cloth``, ``agnostic``, ``densepose``, ``pose_image``,
    ``warped_cloth`` (``(H, W, 3)``), masks ``cloth_mask``, ``agnostic_mask``,
    ``warped_mask`` (``(H, W)``, 0/255), ``parse`` (``(H, W)`` LIP labels),
    ``keypoints`` (``(25, 3)`` float32, BODY_25) and ``attributes`` (a dict).
    """
    if height < 32 or width < 24:
        raise ValueError(f"height x width must be at least 32 x 24, got {height} x {width}")
    body = sample_body(rng, height, width)
    attributes = sample_attributes(rng)
    flat = draw_flat_garment(attributes, rng, height, width)
    if garment_rng is not None:
        attributes, flat = draw_garment(garment_rng, height, width)
    points = keypoints(body, height, width, rng)
    canvas = Canvas(_background(rng, height, width))
    paint_body(canvas, body)

    # the garment: torso coordinates, overwritten by each sleeve where it lies
    worn = garment_map(body, flat, height, width)
    fy, fx, shade = worn.fy.copy(), worn.fx.copy(), worn.shade.copy()
    torso = worn.cover > 0.5
    warped_mask = torso.copy()
    for sleeve in worn.sleeves:
        on = sleeve.cover > 0.5
        fy[sleeve.box][on], fx[sleeve.box][on] = sleeve.fy[on], sleeve.fx[on]
        shade[sleeve.box][on] = sleeve.shade[on]
        warped_mask[sleeve.box] |= on
    garment = np.full((height, width, 3), 255.0, np.float32)
    coordinates = [fy[warped_mask], fx[warped_mask]]
    garment[warped_mask] = np.stack([
        ndimage.map_coordinates(flat.texture[..., c], coordinates, order=1, mode="nearest")
        for c in range(3)], axis=-1)
    shaded = garment * shade[..., None]
    whole = (slice(0, height), slice(0, width))
    canvas.paint(whole, torso, shaded, PARSE["upper-clothes"])

    # the arms, in front of the torso; each sleeve over its arm; the hands last
    for side in body.arm_order:
        shoulder, elbow, wrist = body.arm(side)
        label = PARSE[f"{side}-arm"]
        canvas.capsule(shoulder, elbow, body.arm_radius, body.skin, label, f"{side} upper arm")
        canvas.capsule(elbow, wrist, body.arm_radius, body.skin, label, f"{side} lower arm")
        for sleeve in worn.sleeves:
            if sleeve.side == side:
                canvas.paint(sleeve.box, sleeve.cover > 0.5, shaded[sleeve.box],
                             PARSE["upper-clothes"])
        forearm = (wrist - elbow) / max(float(np.hypot(*(wrist - elbow))), 1e-6)
        canvas.ellipse(wrist + 0.9 * body.arm_radius * forearm, 1.2 * body.arm_radius,
                       1.2 * body.arm_radius, body.skin, label, f"{side} hand")

    y, x = grid(whole)
    t = body.row_t(y)
    parse = canvas.parse
    core = (t >= 0) & (t <= 1) & (np.abs(x - body.cx) <= 1.1 * body.torso_half(t))
    arms = (parse == PARSE["left-arm"]) | (parse == PARSE["right-arm"])
    grow = max(1, round(height / 64))
    agnostic_mask = ndimage.binary_dilation(warped_mask | arms | core, iterations=grow)
    agnostic_mask &= (parse != PARSE["face"]) & (parse != PARSE["hair"])
    agnostic = canvas.person.copy()
    agnostic[agnostic_mask] = AGNOSTIC_GREY

    densepose = DENSEPOSE_COLORS[canvas.part] * 0.6 + 0.4 * 255 * np.concatenate(
        [np.clip(canvas.uv, 0, 1), np.full((height, width, 1), 0.5, np.float32)], axis=-1)
    densepose[canvas.part == 0] = 0
    return {
        "person": _to_uint8(canvas.person),
        "cloth": flat.image(),
        "cloth_mask": _mask(flat.mask > 0.5),
        "agnostic": _to_uint8(agnostic),
        "agnostic_mask": _mask(agnostic_mask),
        "densepose": _to_uint8(densepose),
        "parse": parse,
        "pose_image": _pose_image(points, height, width),
        "keypoints": points,
        "warped_cloth": _to_uint8(garment),
        "warped_mask": _mask(warped_mask),
        "attributes": attributes,
    }


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).round().astype(np.uint8)


def _mask(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, 255, 0).astype(np.uint8)


def _pose_image(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """The skeleton drawn OpenPose-style: coloured limbs and joints on black."""
    canvas = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(canvas)
    thickness = max(1, round(height / 64))
    for i, (a, b) in enumerate(BODY_25_LIMBS):
        if points[a, 2] > 0 and points[b, 2] > 0:
            hue = np.array([0, 2, 4]) * np.pi / 3 + 2 * np.pi * i / len(BODY_25_LIMBS)
            colour = tuple(int(v) for v in 127.5 + 127.5 * np.cos(hue))
            draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=colour, width=thickness)
    for x, y, confidence in points:
        if confidence > 0:
            dot = (x - thickness, y - thickness, x + thickness, y + thickness)
            draw.ellipse(dot, fill=(255, 0, 0))
    return np.asarray(canvas)


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of pair ``index`` of ``split``: independent of the others."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def pair_name(index: int) -> str:
    """VITON-HD file name of pair ``index``: ``'00003_00.jpg'``."""
    return f"{index:05d}_00.jpg"


def write_sample(root: Path, split: str, name: str, sample: dict) -> None:
    """Write one rendered pair into the VITON-HD layout under ``root/split``."""
    def save(array: np.ndarray, path: Path, mode: str | None = None) -> None:
        image = Image.fromarray(array, mode=mode) if mode else Image.fromarray(array)
        if path.suffix == ".jpg":
            image.save(path, quality=JPEG_QUALITY)
        else:
            image.save(path)

    save(sample["person"], person_path(root, split, "image", name))
    save(sample["agnostic"], person_path(root, split, "agnostic-v3.2", name))
    save(sample["agnostic_mask"], person_path(root, split, "agnostic-mask", name))
    save(sample["densepose"], person_path(root, split, "image-densepose", name))
    parse = Image.fromarray(sample["parse"], mode="P")
    parse.putpalette(LIP_PALETTE)
    parse.save(person_path(root, split, "image-parse-v3", name))
    save(sample["pose_image"], person_path(root, split, "openpose_img", name))
    document = openpose_json(sample["keypoints"].tolist())
    person_path(root, split, "openpose_json", name).write_text(json.dumps(document))
    save(sample["cloth"], cloth_path(root, split, "cloth", name))
    save(sample["cloth_mask"], cloth_path(root, split, "cloth-mask", name))
    save(sample["warped_cloth"], person_path(root, split, "cloth-warp", name))
    save(sample["warped_mask"], person_path(root, split, "cloth-warp-mask", name))


def write_truth(root: Path, split: str, person: str, cloth: str, sample: dict) -> None:
    """Write the rendered truth of ``person`` wearing ``cloth`` (:func:`render_sample` with
    the garment's generator) beside the layout: the photo and label map
    (:data:`~gardiffmini.data.layout.TRUTH_FILES`) and the garment's exact warp
    (``cloth-warp/NAME__CLOTH``), all named by :func:`~gardiffmini.data.layout.pair_stem`."""
    Image.fromarray(sample["person"]).save(truth_path(root, split, "image-tryon", person, cloth),
                                           quality=JPEG_QUALITY)
    parse = Image.fromarray(sample["parse"], mode="P")
    parse.putpalette(LIP_PALETTE)
    parse.save(truth_path(root, split, "image-parse-tryon", person, cloth))
    Image.fromarray(sample["warped_cloth"]).save(
        warp_path(root, split, "cloth-warp", person, cloth), quality=JPEG_QUALITY)
    Image.fromarray(sample["warped_mask"]).save(
        warp_path(root, split, "cloth-warp-mask", person, cloth))


Task = tuple[str, str, int, int, int, int, int | None]


def _render_and_write(task: Task) -> tuple[str, str, dict]:
    root, split, index, seed, height, width, garment = task
    sample = render_sample(sample_rng(seed, split, index), height, width)
    name = pair_name(index)
    write_sample(Path(root), split, name, sample)
    if garment is not None:
        truth = render_sample(sample_rng(seed, split, index), height, width,
                              garment_rng=sample_rng(seed, split, garment))
        write_truth(Path(root), split, name, pair_name(garment), truth)
    return split, name, sample["attributes"]


def _is_complete(root: Path, metadata: dict) -> bool:
    meta_path = root / METADATA_FILE
    if not meta_path.exists() or json.loads(meta_path.read_text()) != metadata:
        return False
    if not all((root / name).exists() for name in PAIR_FILES.values()):
        return False
    n_train, n_test = metadata["n_train"], metadata["n_test"]
    unpaired = n_test if n_test else 0  # the test split's warps include the unpaired truth's
    counts = {(split, folder): {"train": n_train, "test": n_test}[split]
              for split in SPLITS for folder in (*PERSON_FILES, *CLOTH_FILES, *WARP_FILES)}
    counts |= {("test", folder): n_test + unpaired for folder in WARP_FILES}
    counts |= {("test", folder): unpaired for folder in TRUTH_FILES}
    return (all((root / split / ATTRIBUTES_FILE).exists() for split in SPLITS)
            and all(len(os.listdir(root / split / folder)) == count
                    for (split, folder), count in counts.items()))


def _clear(root: Path) -> None:
    """Empty ``root`` of an earlier ToyVITON; refuse a folder that holds anything else."""
    if not root.exists():
        return
    if not (root / METADATA_FILE).exists():
        if any(root.iterdir()):
            raise FileExistsError(
                f"{root} is not empty and holds no {METADATA_FILE}: it is not a ToyVITON data "
                "set, so it is not overwritten; expected an empty or missing folder")
        return
    for split in SPLITS:
        shutil.rmtree(root / split, ignore_errors=True)
    for name in (*PAIR_FILES.values(), METADATA_FILE):
        (root / name).unlink(missing_ok=True)


def unpaired_garments(n: int, seed: int) -> list[int]:
    """A deterministic derangement: garment index for each test person, never its own."""
    if n == 1:
        raise ValueError("n_test must be 0 or at least 2 (an unpaired test set needs two pairs)")
    order = np.random.default_rng([seed, len(SPLITS)]).permutation(n)
    garment = [0] * n
    for j in range(n):
        garment[order[j]] = int(order[(j + 1) % n])
    return garment


def toyviton_record(profile: Profile, seed: int = 0, n_train: int | None = None,
                    n_test: int | None = None) -> dict:
    """What :func:`generate` writes to ``toyviton.json``: everything the data's bytes follow
    from (generator version, profile, image size, seed, split sizes; sizes default to the
    profile's)."""
    n_train = profile.n_train if n_train is None else n_train
    n_test = profile.n_test if n_test is None else n_test
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    return {
        "generator": "gardiffmini.data.toyviton", "version": TOYVITON_VERSION,
        "profile": profile.name, "height": profile.height, "width": profile.width,
        "seed": seed, "n_train": n_train, "n_test": n_test,
    }


def generate(root: str | Path, profile: Profile, seed: int = 0,
             n_train: int | None = None, n_test: int | None = None, workers: int | None = None,
             progress: bool = True) -> Path:
    """Write a ToyVITON data set in the VITON-HD layout under ``root`` and return ``root``.

    Sizes default to the profile's ``n_train`` and ``n_test``. Pair ``i`` of a split is
    drawn from its own generator seeded with ``(seed, split, i)``, so the bytes written do
    not depend on ``workers`` (default: all CPU cores). A ``toyviton.json`` at the root
    records version, profile, size and seed; if ``root`` already holds a complete data set
    with the same record, nothing is written.
    """
    metadata = toyviton_record(profile, seed, n_train, n_test)
    n_train, n_test = metadata["n_train"], metadata["n_test"]
    unpaired = unpaired_garments(n_test, seed) if n_test else []
    root = Path(root)
    if _is_complete(root, metadata):
        return root
    _clear(root)
    for split in SPLITS:
        for folder in (*PERSON_FILES, *CLOTH_FILES, *WARP_FILES):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
    for folder in TRUTH_FILES:
        (root / "test" / folder).mkdir(parents=True, exist_ok=True)
    (root / METADATA_FILE).write_text(json.dumps({**metadata, "complete": False}, indent=1))

    tasks = [(str(root), "train", i, seed, profile.height, profile.width, None)
             for i in range(n_train)]
    tasks += [(str(root), "test", i, seed, profile.height, profile.width, unpaired[i])
              for i in range(n_test)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    attributes: dict[str, dict] = {split: {} for split in SPLITS}
    bar = tqdm(total=len(tasks), desc=f"ToyVITON {profile.name}", unit="pair", disable=not progress)
    if workers == 1:
        results = map(_render_and_write, tasks)
        _collect(results, attributes, bar)
    else:
        with multiprocessing.Pool(workers) as pool:
            chunk = max(1, min(64, len(tasks) // (4 * workers)))
            _collect(pool.imap_unordered(_render_and_write, tasks, chunk), attributes, bar)
    bar.close()

    for split in SPLITS:
        ordered = dict(sorted(attributes[split].items()))
        (root / split / ATTRIBUTES_FILE).write_text(json.dumps(ordered, indent=1))
    names = {"train": [pair_name(i) for i in range(n_train)],
             "test": [pair_name(i) for i in range(n_test)]}
    _write_pairs(root / PAIR_FILES["train", "paired"], names["train"], names["train"])
    _write_pairs(root / PAIR_FILES["test", "paired"], names["test"], names["test"])
    _write_pairs(root / PAIR_FILES["test", "unpaired"], names["test"],
                 [names["test"][j] for j in unpaired])
    (root / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
    return root


def _collect(results, attributes: dict[str, dict], bar: tqdm) -> None:
    for split, name, garment in results:
        attributes[split][name] = garment
        bar.update()


def _write_pairs(path: Path, people: list[str], garments: list[str]) -> None:
    path.write_text("".join(f"{p} {g}\n" for p, g in zip(people, garments, strict=True)))


def ensure_toyviton(profile: Profile, seed: int = 0, progress: bool = True) -> Path:
    """The profile's ToyVITON in :func:`gardiffmini.paths.toyviton_root`; generated if missing."""
    return generate(toyviton_root(profile.name), profile, seed=seed, progress=progress)
