"""The "Try it" page's assets: the gallery's conditioning, the graphs and onnxruntime-web.

The page (``book/tryit.md``, its code in ``book/tryit/``) runs the shipped try-on model
(:mod:`gardiffmini.export.weights`) in the reader's browser. A browser opening the book from
``file://`` may neither ``fetch`` files nor import modules, so every asset is a classic
script that puts its data on ``window.GARDIFF_TRYIT``: binary data gzipped and base64-encoded
(the page unpacks it with ``DecompressionStream``). They sit in ``tryit/`` beside the book's
pages, outside ``_static`` (Jupyter Book links every script there into every page), and the
page loads the large ones only when the reader presses the button:

- ``manifest.js``: what was built, the model's identity, file sizes, what is missing;
- ``gallery.js``: persons and garments (pictures), every model input computed here in
  Python (latents, CLIP embeddings, masks, the person conditions: DensePose and skin-primed
  latents), warp + paste, the DDIM tables, shipped noise;
- ``models.js``: the two ONNX graphs of :mod:`gardiffmini.export.graphs`;
- ``ort.js`` and ``ort-wasm.js``: onnxruntime-web's classic script, its wasm and glue,
  from ``node_modules`` (``npm ci`` at the repository root installs the pinned version).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from gardiffmini.baselines import warp_and_paste
from gardiffmini.data.datasets import open_dataset
from gardiffmini.data.toyviton import generate
from gardiffmini.data.vitonhd import read_pairs
from gardiffmini.evaluate import PIPELINE_KEYS, person_conditions
from gardiffmini.export import graphs
from gardiffmini.export.weights import WARP, load_tryon, shipped_tryon_path, tryon_record
from gardiffmini.models.encoders import clip_image_embeds
from gardiffmini.paths import data_root
from gardiffmini.pipeline import GarDiffPipeline, encode_latents
from gardiffmini.profiles import Profile

ROOT = Path(__file__).resolve().parents[2]
PAGE_SOURCES = ROOT / "book" / "tryit"  # tryit.js, tryit.css
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
ORT_FILES = {"script": "ort.wasm.min.js", "wasm": "ort-wasm-simd-threaded.wasm",
             "glue": "ort-wasm-simd-threaded.mjs"}
PAGE_PROFILE = "cpu"  # the model the page runs, whatever profile the book is built at
N_PERSONS = N_GARMENTS = 8
NOISE_SEEDS = 8  # seeds 0..7 start from PyTorch's noise (torch.Generator), shipped
STEP_COUNTS = (5, 10, 25, 50)
REFERENCE = {"person": 1, "garment": 4, "seed": 0, "steps": 5}  # the browser test's try-on


def gallery_root(profile: Profile) -> Path:
    """The gallery's own small ToyVITON test set, in ``$GARDIFF_DATA``."""
    return data_root() / f"toyviton-{profile.name}-tryit"


def gallery_set(profile: Profile, n_persons: int = N_PERSONS, n_garments: int = N_GARMENTS
                ) -> dict[str, torch.Tensor]:
    """Every (person, garment) pair of the first test persons and garments, as the library's
    loader gives them (warped garments by the shipped model's warp,
    :data:`~gardiffmini.export.weights.WARP`), in person-major order."""
    root = generate(gallery_root(profile), profile, n_train=0,
                    n_test=max(n_persons, n_garments), progress=False)
    pairs = read_pairs(root / "test_pairs.txt")
    persons = [p.person for p in pairs[:n_persons]]
    garments = [p.cloth for p in pairs[:n_garments]]
    pairs_file = root / "tryit_pairs.txt"
    pairs_file.write_text("".join(f"{p} {g}\n" for p in persons for g in garments))
    dataset = open_dataset(root, split="test", pairing="unpaired", size=profile.image_size,
                           pairs_file=pairs_file, warp=WARP)
    samples = [dataset[i] for i in range(len(dataset))]
    keys = ("person", "agnostic", "agnostic_mask", "cloth", "warped_cloth", "warped_mask",
            "densepose", "parse")
    stacked = {k: torch.stack([s[k] for s in samples]) for k in keys}
    out = {k: v if k == "parse" else v.float() for k, v in stacked.items()}  # parse: labels
    out["names"] = [(s["person_name"], s["cloth_name"]) for s in samples]
    return out


@torch.no_grad()
def conditioning(pipeline: GarDiffPipeline, pairs: dict, n_persons: int, n_garments: int
                 ) -> dict[str, np.ndarray]:
    """The model inputs of the page, computed as :class:`GarDiffPipeline` computes them:
    per person ``agnostic``, ``agnostic_mask``, ``E(I_a)`` and the person conditions the
    model reads (``pose_latents``, ``skin_latents``: :meth:`GarDiffPipeline.person_latents`
    of the person's DensePose and face skin colour, as the book's evaluation passes them;
    ``skin_latents`` per pair where the UNet reads the warp pasted into them, the pipeline's
    ``paste_warp``); per garment ``CLIP(I_c)``; per pair ``E(I_w)``, ``m_w`` and warp + paste
    (uint8, for display). :func:`onnx_inputs` and the page tell the two kinds of
    ``skin_latents`` apart by their rows."""
    vae, encoder = pipeline.vae, pipeline.image_encoder
    persons = slice(0, n_persons * n_garments, n_garments)
    person_rows = {k: v[persons] for k, v in pairs.items() if isinstance(v, torch.Tensor)}
    agnostic = person_rows["agnostic"]
    # with paste_warp the skin latent depends on the garment: computed for every pair
    rows = pairs if pipeline.config.paste_warp else person_rows
    pose, skin = pipeline.person_latents(
        rows["agnostic"], rows["agnostic_mask"], **person_conditions(pipeline, rows),
        warped_cloth=rows["warped_cloth"], warped_mask=rows["warped_mask"])
    if pose is not None and rows is pairs:
        pose = pose[persons]
    person_latents = {name: latents.numpy() for name, latents
                      in zip(graphs.PERSON_INPUTS, (pose, skin), strict=True)
                      if latents is not None}
    return {
        "agnostic": agnostic.numpy(),
        "agnostic_mask": person_rows["agnostic_mask"].numpy(),
        "agnostic_latents": encode_latents(vae, agnostic).numpy(),
        **person_latents,
        "clip_embeds": clip_image_embeds(encoder, pairs["cloth"][:n_garments]).numpy(),
        "warped_latents": encode_latents(vae, pairs["warped_cloth"]).numpy(),
        "warped_mask": pairs["warped_mask"].numpy(),
        "warp_paste": _uint8(warp_and_paste(pairs)),
    }


def shipped_noise(pipeline: GarDiffPipeline, seeds: int = NOISE_SEEDS) -> np.ndarray:
    """The pipeline's initial latents for seeds ``0..seeds-1``: (seeds, C, h, w)."""
    channels = pipeline.vae.config.latent_channels
    shape = (1, channels, *pipeline.unet.config.sample_size)
    return torch.cat([randn_tensor(shape, generator=torch.Generator().manual_seed(seed),
                                   dtype=torch.float32) * pipeline.scheduler.init_noise_sigma
                      for seed in range(seeds)]).numpy()


def _uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (B, 3, H, W) -> uint8 (B, 3, H, W)."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def _png_uri(image: torch.Tensor) -> str:
    """An image in [-1, 1] (3, H, W) as a PNG data URI."""
    array = _uint8(image[None].add(1).div(2))[0].transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def packed(arrays: dict[str, np.ndarray]) -> dict:
    """Arrays as one gzipped, base64 blob and an index of name -> dtype, shape, offset."""
    index, chunks, offset = {}, [], 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        index[name] = {"dtype": str(array.dtype), "shape": list(array.shape), "offset": offset,
                       "bytes": len(data)}
        chunks.append(data)
        offset += len(data)
    return {"index": index, "gzip": _gzip64(b"".join(chunks))}


def _gzip64(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode()


def _script(key: str, value) -> str:
    """A classic script that puts ``value`` on ``window.GARDIFF_TRYIT[key]``."""
    data = json.dumps(value, separators=(",", ":"))
    return ("window.GARDIFF_TRYIT = window.GARDIFF_TRYIT || {};\n"
            f"window.GARDIFF_TRYIT[{json.dumps(key)}] = {data};\n")


def reference_try_on(pipeline: GarDiffPipeline, pairs: dict, n_garments: int, profile: Profile,
                     person: int, garment: int, seed: int, steps: int) -> np.ndarray:
    """The PyTorch pipeline's try-on of one gallery pair, as ``try_on`` calls it (pasted back
    outside the agnostic mask, with the person conditions the model reads): (3, H, W) in
    [0, 1]."""
    i = person * n_garments + garment
    rows = {k: v[i:i + 1] for k, v in pairs.items() if isinstance(v, torch.Tensor)}
    return pipeline(**{k: rows[k] for k in PIPELINE_KEYS}, **person_conditions(pipeline, rows),
                    num_inference_steps=steps, guidance_scale=profile.guidance_scale,
                    generator=torch.Generator().manual_seed(seed)).images[0].numpy()


def onnx_inputs(cond: dict[str, np.ndarray], n_garments: int, person: int, garment: int
                ) -> dict[str, np.ndarray]:
    """The arrays one page run feeds the graphs, picked from the gallery as the page picks them."""
    i = person * n_garments + garment
    n_pairs = len(cond["warped_latents"])
    rows = {name: i if len(cond[name]) == n_pairs else person  # per pair, or per person
            for name in graphs.PERSON_INPUTS if name in cond}
    person_latents = {name: cond[name][row:row + 1] for name, row in rows.items()}
    return {"warped_latents": cond["warped_latents"][i:i + 1],
            "agnostic_latents": cond["agnostic_latents"][person:person + 1], **person_latents,
            "clip_embeds": cond["clip_embeds"][garment:garment + 1],
            "warped_mask": cond["warped_mask"][i:i + 1],
            "agnostic": cond["agnostic"][person:person + 1],
            "agnostic_mask": cond["agnostic_mask"][person:person + 1]}


def _ort_assets(repo: Path) -> tuple[dict[str, str] | None, str | None]:
    """onnxruntime-web's script, wasm and glue from ``node_modules``, or why they are missing."""
    dist = repo / ORT_DIST
    missing = [name for name in ORT_FILES.values() if not (dist / name).is_file()]
    if missing:
        return None, (f"onnxruntime-web is not installed ({dist / missing[0]} not found): "
                      "install Node.js and npm, run `npm ci` at the repository root and "
                      "build the book again")
    version = json.loads((dist.parent / "package.json").read_text())["version"]
    return {
        "ort.js": (dist / ORT_FILES["script"]).read_text(encoding="utf-8"),
        "ort-wasm.js": _script("wasm", {
            "version": version,
            "binary": _gzip64((dist / ORT_FILES["wasm"]).read_bytes()),
            "glue": _gzip64((dist / ORT_FILES["glue"]).read_bytes()),
        }),
    }, None


def write_page_assets(html: Path, profile: Profile, repo: Path = ROOT,
                      reference: Path | None = None, weights: Path | None = None) -> dict:
    """Write the page's assets into ``html/tryit/`` and return the manifest.

    ``reference`` (a JSON path, outside the book) receives the PyTorch pipeline's image of
    :data:`REFERENCE` and the ONNX graphs' difference from it in onnxruntime for Python,
    for the browser test. ``weights``: the shipped model's safetensors (default: the
    package's, :func:`~gardiffmini.export.weights.shipped_tryon_path`). Anything missing
    (the shipped model, onnxruntime-web) is named in the manifest, and the page says it,
    instead of failing the build.
    """
    started = time.perf_counter()
    folder = html / "tryit"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for source in sorted(PAGE_SOURCES.glob("*")):
        if source.suffix in (".js", ".css"):
            shutil.copy2(source, folder / source.name)
    manifest: dict = {"profile": profile.name, "missing": [], "files": {}}
    if reference is not None:
        reference.unlink(missing_ok=True)  # a stale one would test a page that cannot run
    assets, why = _ort_assets(repo)
    if why:
        manifest["missing"].append(why)
    try:
        record = tryon_record(profile, weights)
        pipeline = load_tryon(profile, weights)
    except (FileNotFoundError, ValueError) as error:
        manifest["missing"].append(str(error))
        pipeline = None
    if pipeline is not None:
        assets = assets or {}
        model_assets, details = _model_assets(pipeline, profile, reference)
        assets.update(model_assets)
        manifest.update(details)
        manifest["model"] = {
            "weights": (weights or shipped_tryon_path(profile)).name, "variant": record["variant"],
            "run": record.get("run"), "parameters": record["parameters"],
            "commit": record.get("provenance", {}).get("commit"),
            "date": record.get("provenance", {}).get("date"),
        }
    for name, text in (assets or {}).items():
        (folder / name).write_text(text, encoding="utf-8")
        manifest["files"][name] = (folder / name).stat().st_size
    manifest["files"].update({p.name: p.stat().st_size for p in folder.glob("tryit.*")})
    manifest["build_seconds"] = round(time.perf_counter() - started, 1)
    (folder / "manifest.js").write_text(_script("manifest", manifest), encoding="utf-8")
    return manifest


def _model_assets(pipeline: GarDiffPipeline, profile: Profile, reference: Path | None
                  ) -> tuple[dict[str, str], dict]:
    """``gallery.js`` and ``models.js``, the graphs checked against PyTorch on the way."""
    pairs = gallery_set(profile)
    cond = conditioning(pipeline, pairs, N_PERSONS, N_GARMENTS)
    onnx = graphs.export_graphs(pipeline)
    steps = tuple(sorted({*STEP_COUNTS, profile.sample_steps}))
    schedule = graphs.scheduler_record(pipeline.scheduler, steps)
    noise = shipped_noise(pipeline)
    pick = REFERENCE
    torch_image = reference_try_on(pipeline, pairs, N_GARMENTS, profile, pick["person"],
                                   pick["garment"], pick["seed"], pick["steps"])
    onnx_image = graphs.onnx_try_on(
        graphs.sessions(onnx), onnx_inputs(cond, N_GARMENTS, pick["person"], pick["garment"]),
        noise[pick["seed"]:pick["seed"] + 1], schedule["tables"][str(pick["steps"])],
        profile.guidance_scale)[0]
    difference = float(np.abs(onnx_image - torch_image).max())
    if difference > 1e-3:
        raise RuntimeError(f"the ONNX graphs' try-on differs from the PyTorch pipeline's by "
                           f"{difference:.2e} (more than 1e-3): the export is wrong")
    if reference is not None:
        reference.write_text(json.dumps({
            **pick, "guidance_scale": profile.guidance_scale, "shape": list(torch_image.shape),
            "image": base64.b64encode(torch_image.astype("<f4").tobytes()).decode(),
            "onnx_python_max_difference": difference,
        }))
    persons = slice(0, N_PERSONS * N_GARMENTS, N_GARMENTS)
    gallery = {
        "persons": [{"name": n[0], "image": _png_uri(im)}
                    for n, im in zip(pairs["names"][persons], pairs["person"][persons],
                                     strict=True)],
        "garments": [{"name": n[1], "image": _png_uri(im)}
                     for n, im in zip(pairs["names"][:N_GARMENTS], pairs["cloth"][:N_GARMENTS],
                                      strict=True)],
        "size": list(profile.image_size),
        "guidance_scale": profile.guidance_scale, "sample_steps": profile.sample_steps,
        "noise_seeds": NOISE_SEEDS, "scheduler": schedule,
        "arrays": packed({**cond, "noise": noise}),
    }
    models = {name: _gzip64(data) for name, data in onnx.items()}
    details = {"onnx_bytes": {name: len(data) for name, data in onnx.items()},
               "reference": {**pick, "onnx_python_max_difference": difference}}
    return {"gallery.js": _script("gallery", gallery), "models.js": _script("models", models)}, \
        details
