"""The two garment encoders of GarDiff: a CLIP image encoder and a VAE (chapter 2).

GarDiff's first claim is that the garment should enter the try-on model twice: through
``CLIP_image(I_c)``, an embedding trained for coarse image-text alignment, and through
``E(I_w)``, the latent of a VAE trained to reconstruct pixels. This module gives both, each
two ways:

- *small, trained here*, sized by a profile: :func:`train_vae` (reconstruction + KL, as
  Stable Diffusion's VAE is trained; the model and its objective live in
  :mod:`gardiffmini.models.vae`, which also ships trained weights for ``ci`` and ``cpu``)
  and :func:`train_clip` (contrastive, garment images against captions written from
  ToyVITON's attributes, with a tokenizer built offline);
- *pretrained*, from a model id or a local folder: ``load_pretrained_vae`` (default: the VAE
  of Stable Diffusion 2 inpainting) and :func:`load_pretrained_clip_image_encoder`
  (default: the OpenCLIP ViT-H/14 image encoder that IP-Adapter ships in transformers format).

CLIP's objective lives here once: :func:`clip_contrastive_loss`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTextConfig,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerFast,
)
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from gardiffmini.data import garments, layout
from gardiffmini.data.fingerprint import data_fingerprint
from gardiffmini.data.vitonhd import VitonHDLayoutError, open_image, read_pairs
from gardiffmini.losses import check_image_batch
from gardiffmini.models.vae import (
    VAE_RECIPE,
    load_pretrained_vae,
    load_shipped_vae,
    make_vae,
    vae_loss,
)
from gardiffmini.profiles import Profile
from gardiffmini.runs import (
    Run,
    architecture,
    fit,
    step_generator,
    warmup_cosine_schedule,
    warmup_schedule,
)

DEFAULT_CLIP_ID = "h94/IP-Adapter"
DEFAULT_CLIP_SUBFOLDER = "models/image_encoder"

MAX_CAPTION_TOKENS = 32
SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<bos>",
                  "eos_token": "<eos>"}  # eos is not id 2: CLIP reads id 2 as a legacy eos

# Caption words for ToyVITON's repeat frequencies (cycles per garment width).
FREQUENCY_BINS = ("wide", "medium", "thin")  # stripes; checks and dots use the words below
FREQUENCY_EDGES = (6, 14)  # < 6: wide, 6..13: medium, >= 14: thin
REPEAT_WORDS = {"wide": "large", "medium": "medium", "thin": "small"}
LENGTH_WORDS = {"cropped": "cropped ", "regular": "", "long": "longline "}


# ---- captions and the offline tokenizer -------------------------------------------------

def frequency_bin(frequency: float) -> str:
    """``"wide"``, ``"medium"`` or ``"thin"``: the word for a stripe frequency (cycles/width)."""
    if frequency <= 0:
        raise ValueError(f"stripe frequency must be positive, got {frequency}")
    return FREQUENCY_BINS[int(np.searchsorted(FREQUENCY_EDGES, frequency, side="right"))]


def angle_word(angle: float) -> str:
    """``0 -> "horizontal"``, ``90 -> "vertical"``, anything else ``"diagonal"``."""
    return {0: "horizontal", 90: "vertical"}.get(int(angle) % 180, "diagonal")


def caption(attributes: dict) -> str:
    """A sentence from ToyVITON garment attributes (``cloth-attributes.json``).

    ``{"category": "long-sleeve top", "colors": ["red", "navy"], "pattern": "stripes",
    "stripe_frequency": 16, "stripe_angle": 45, "neckline": "round", "length": "regular"}``
    gives ``"a red long-sleeve top with a round neck and thin diagonal navy stripes"``.
    """
    missing = {"category", "colors", "pattern", "neckline", "length"} - set(attributes)
    if missing:
        raise KeyError(f"garment attributes lack {sorted(missing)}: got {sorted(attributes)}")
    colors, pattern = attributes["colors"], attributes["pattern"]
    length = LENGTH_WORDS[attributes["length"]]
    plain = "plain " if pattern == "plain" else ""
    text = f"a {length}{plain}{colors[0]} {attributes['category']} with a "
    text += f"{attributes['neckline']} neck"
    second = colors[1] if len(colors) > 1 else colors[0]
    if pattern == "stripes":
        bin_word = frequency_bin(attributes["stripe_frequency"])
        text += f" and {bin_word} {angle_word(attributes['stripe_angle'])} {second} stripes"
    elif pattern in ("checks", "dots"):
        size = REPEAT_WORDS[frequency_bin(attributes["stripe_frequency"])]
        text += f" and {size} {second} {pattern}"
    elif pattern == "text":
        text += f" and {second} printed text"
    elif pattern == "logo":
        text += f" and a {second} {attributes.get('logo') or 'small'} logo"
    elif pattern != "plain":
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {garments.PATTERNS}")
    return text


def caption_vocabulary() -> list[str]:
    """Every word :func:`caption` can write: the closed vocabulary of the tokenizer."""
    words = {"a", "with", "and", "neck", "plain", "printed", "text", "logo", "small",
             "stripes", "checks", "dots", "horizontal", "vertical", "diagonal"}
    words |= set(FREQUENCY_BINS) | set(REPEAT_WORDS.values())
    for names in (garments.COLOR_NAMES, garments.CATEGORIES, garments.NECKLINES,
                  LENGTH_WORDS.values(), garments.LOGOS):
        for name in names:
            words |= set(name.split())
    return sorted(words)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over :func:`caption_vocabulary`, built offline.

    ``tokenizers``' WordLevel model with a whitespace pre-tokenizer; every text becomes
    ``<bos> words <eos>``. Save and load it with ``save_pretrained``/``from_pretrained``.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    for word in caption_vocabulary():
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bos, eos = SPECIAL_TOKENS["bos_token"], SPECIAL_TOKENS["eos_token"]
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core, model_max_length=MAX_CAPTION_TOKENS, **SPECIAL_TOKENS
    )


# ---- the models -------------------------------------------------------------------------

def clip_image_side(profile: Profile) -> int:
    """The side of the square CLIP input: the image width, rounded down to whole patches."""
    return (profile.width // profile.clip_patch) * profile.clip_patch


def make_clip(profile: Profile, tokenizer: PreTrainedTokenizerFast) -> CLIPModel:
    """A randomly initialised ``CLIPModel`` sized by the profile, its text side by ``tokenizer``.

    Vision: a ViT of ``clip_layers`` layers of width ``clip_width`` on square images of side
    :func:`clip_image_side` cut in ``clip_patch`` patches. Text: half as deep (captions are
    short sentences over a closed vocabulary). Both project to ``clip_embed_dim``.
    """
    width, heads = profile.clip_width, profile.clip_heads
    vision = CLIPVisionConfig(
        hidden_size=width, intermediate_size=4 * width, num_hidden_layers=profile.clip_layers,
        num_attention_heads=heads, image_size=clip_image_side(profile),
        patch_size=profile.clip_patch, projection_dim=profile.clip_embed_dim, hidden_act="gelu",
    )
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width,
        num_hidden_layers=max(1, profile.clip_layers // 2), num_attention_heads=heads,
        max_position_embeddings=MAX_CAPTION_TOKENS, projection_dim=profile.clip_embed_dim,
        hidden_act="gelu", pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(),
        projection_dim=profile.clip_embed_dim,
    )
    return CLIPModel(config)


def clip_image_encoder(clip_model: CLIPModel) -> CLIPVisionModelWithProjection:
    """The vision tower and projection of a trained ``CLIPModel``, as the try-on model uses it."""
    config = clip_model.config.vision_config
    config.projection_dim = clip_model.config.projection_dim
    encoder = CLIPVisionModelWithProjection(config)
    encoder.vision_model.load_state_dict(clip_model.vision_model.state_dict())
    encoder.visual_projection.load_state_dict(clip_model.visual_projection.state_dict())
    return encoder.eval()


def pretrained_location(id_or_path: str | Path, subfolder: str | None) -> dict:
    """``from_pretrained`` arguments; a local folder may hold the model in ``subfolder`` or not."""
    path = Path(id_or_path)
    if not path.exists():
        return {"pretrained_model_name_or_path": str(id_or_path), "subfolder": subfolder or ""}
    for candidate in ([subfolder] if subfolder else []) + [""]:
        if (path / candidate / "config.json").is_file():
            return {"pretrained_model_name_or_path": str(path), "subfolder": candidate}
    where = f"{path / subfolder} or {path}" if subfolder else str(path)
    raise FileNotFoundError(f"no config.json in {where}: expected a model saved by save_pretrained")


def load_pretrained_clip_image_encoder(
    id_or_path: str | Path = DEFAULT_CLIP_ID, subfolder: str | None = DEFAULT_CLIP_SUBFOLDER
) -> CLIPVisionModelWithProjection:
    """A pretrained CLIP image encoder from a model id (needs the network) or a local folder.

    Default: OpenCLIP ViT-H/14 in transformers format, as IP-Adapter ships it
    (``h94/IP-Adapter``, subfolder ``models/image_encoder``), the paper's image encoder.
    """
    location = pretrained_location(id_or_path, subfolder)
    return CLIPVisionModelWithProjection.from_pretrained(**location).eval()


def clip_pixel_values(images: torch.Tensor, side: int) -> torch.Tensor:
    """CLIP's input from images in [-1, 1]: resized to a ``side`` square, CLIP-normalised.

    The whole garment is squeezed into the square (no centre crop, which would cut its hem).
    """
    check_image_batch("images", images, value_range=(-1.0, 1.0))
    square = F.interpolate(images, size=(side, side), mode="bilinear", antialias=True)
    mean = torch.tensor(OPENAI_CLIP_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, device=images.device).view(1, 3, 1, 1)
    return ((square + 1) / 2 - mean) / std


def clip_image_embeds(
    encoder: CLIPVisionModelWithProjection, images: torch.Tensor
) -> torch.Tensor:
    """``CLIP_image(I_c)``: the projected pooled embedding ``(B, E)`` of images in [-1, 1]."""
    side = encoder.config.image_size
    pixels = clip_pixel_values(images, side).to(encoder.dtype)
    return encoder(pixel_values=pixels).image_embeds


# ---- the objectives ---------------------------------------------------------------------

def clip_contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al., 2021, Fig. 3).

    With ``u_i = I_i / |I_i|``, ``v_j = T_j / |T_j|`` and ``s = exp(logit_scale)``:
    ``L = 1/2 [ CE(s u v^T, arange(B)) + CE(s v u^T, arange(B)) ]``, i.e. each garment must
    pick out its own caption among the batch, and each caption its own garment.
    """
    if image_embeds.shape != text_embeds.shape or image_embeds.ndim != 2:
        raise ValueError(
            f"image_embeds and text_embeds must both be (B, E), got "
            f"{tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


# ---- the data, cached in memory ---------------------------------------------------------

def _read_rgb(path: Path, size: tuple[int, int]) -> np.ndarray:
    image = open_image(path, decode=True).convert("RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(image)


def split_names(root: Path | str, split: str) -> list[str]:
    """The person names of ``split`` (first column of its paired pair file)."""
    pairs_file = Path(root) / layout.PAIR_FILES[(split, "paired")]
    return [pair.person for pair in read_pairs(pairs_file)]


def load_images(
    root: Path | str, split: str, folder: str, size: tuple[int, int]
) -> torch.Tensor:
    """Every image of ``split/folder`` (``"cloth"`` or ``"image"``) as uint8 ``(N, 3, H, W)``."""
    names = split_names(root, split)
    if folder in layout.CLOTH_FILES:
        paths = [layout.cloth_path(root, split, folder, name) for name in names]
    else:
        paths = [layout.person_path(root, split, folder, name) for name in names]
    pixels = np.stack([_read_rgb(path, size) for path in paths])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def load_attributes(root: Path | str, split: str) -> list[dict]:
    """The garment attributes of ``split``, in the order of :func:`split_names`."""
    path = Path(root) / split / layout.ATTRIBUTES_FILE
    if not path.is_file():
        raise VitonHDLayoutError(f"{path} not found: ToyVITON writes garment attributes there")
    table = json.loads(path.read_text())
    attributes = []
    for name in split_names(root, split):
        cloth = Path(layout.CLOTH_FILES["cloth"].format(stem=layout.stem(name))).name
        if cloth not in table:
            raise VitonHDLayoutError(f"{path} has no attributes for garment {cloth}")
        attributes.append(table[cloth])
    return attributes


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float in [-1, 1]."""
    return images.float() / 127.5 - 1


def _data_root(profile: Profile, data_root: Path | str | None) -> Path:
    if data_root is not None:
        return Path(data_root)
    from gardiffmini.data.toyviton import ensure_toyviton

    return ensure_toyviton(profile)


def _training_config(profile: Profile, root: Path, **extra) -> dict:
    return {"data": data_fingerprint(root, "train"), "profile_fields": profile.training_fields(),
            **extra}


# ---- training ---------------------------------------------------------------------------

def _vae_training_images(root: Path, profile: Profile) -> torch.Tensor:
    return torch.cat([load_images(root, "train", "cloth", profile.image_size),
                      load_images(root, "train", "image", profile.image_size)])


@torch.no_grad()
def latent_scaling_factor(
    vae: AutoencoderKL, images: torch.Tensor, seed: int = 0, n: int = 256
) -> float:
    """``1 / std`` of the latents (posterior means) of ``n`` of the uint8 ``images``.

    Stable Diffusion scales its latents this way (0.18215) so that they have unit variance,
    the scale the diffusion model's noise schedule assumes.
    """
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n]
    chunks = to_float(images[order]).split(32)
    latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in chunks])
    return float(1 / latents.std())


def train_vae(
    profile: Profile, seed: int = 0, data_root: Path | str | None = None,
    progress: bool = True, use_shipped: bool = True,
) -> AutoencoderKL:
    """The profile's VAE: the package's trained weights, or trained (or reloaded) here.

    With ToyVITON's default data and ``use_shipped``, the weights shipped for the profile
    (:func:`~gardiffmini.models.vae.load_shipped_vae`) are returned when today's recipe made
    them. Otherwise the VAE trains as a run: each step takes ``profile.batch_size`` images of
    the train split (garments and persons) and a random crop of half their height and width
    from each (the decoder is convolutional, so the VAE still encodes whole images; Stable
    Diffusion's VAE was trained on crops too), for ``profile.vae_steps`` steps of
    :func:`~gardiffmini.models.vae.vae_loss` under :data:`~gardiffmini.models.vae.VAE_RECIPE`.
    After training, the latent ``scaling_factor`` is set to ``1 / std`` of the training
    latents, as Stable Diffusion did.
    """
    if use_shipped and data_root is None:
        shipped = load_shipped_vae(profile, seed)
        if shipped is not None:
            return shipped
    root = _data_root(profile, data_root)
    factor = profile.vae_factor
    crop = (profile.height // 2 // factor * factor, profile.width // 2 // factor * factor)
    torch.manual_seed(seed)
    vae = make_vae(profile)
    config = _training_config(profile, root, crop=list(crop), recipe=VAE_RECIPE,
                              architecture=architecture(vae.config))
    run = Run.open("vae", profile.name, seed, config)
    images = None
    if run.finished:
        run.load({"vae": vae})
    else:
        images = _vae_training_images(root, profile)

        def loss_fn(step: int) -> dict[str, torch.Tensor]:
            generator = step_generator(seed, step)
            index = torch.randint(len(images), (profile.batch_size,), generator=generator)
            top = torch.randint(profile.height - crop[0] + 1, (len(index),), generator=generator)
            left = torch.randint(profile.width - crop[1] + 1, (len(index),), generator=generator)
            rows = zip(index.tolist(), top.tolist(), left.tolist(), strict=True)
            batch = torch.stack([images[i, :, t:t + crop[0], s:s + crop[1]] for i, t, s in rows])
            target = to_float(batch)
            posterior = vae.encode(target).latent_dist
            reconstruction = vae.decode(posterior.sample(generator=generator)).sample
            return vae_loss(reconstruction, target, posterior, kl_weight=VAE_RECIPE["kl_weight"],
                            mse_weight=VAE_RECIPE["mse_weight"])

        optimizer = torch.optim.AdamW(vae.parameters(), lr=VAE_RECIPE["learning_rate"])
        schedule = warmup_cosine_schedule(optimizer, VAE_RECIPE["warmup_steps"], profile.vae_steps)
        fit(run, {"vae": vae}, optimizer, loss_fn, profile.vae_steps, schedule,
            desc="train VAE", progress=progress)
    vae.eval().requires_grad_(False)
    if "scaling_factor" not in run.metrics["summary"]:
        images = _vae_training_images(root, profile) if images is None else images
        run.write_metrics(summary={"scaling_factor": latent_scaling_factor(vae, images, seed)})
    vae.register_to_config(scaling_factor=run.metrics["summary"]["scaling_factor"])
    vae.run = run
    return vae


def train_clip(
    profile: Profile, seed: int = 0, data_root: Path | str | None = None,
    progress: bool = True,
) -> CLIPModel:
    """Train (or reload the finished run of) the profile's CLIP on ToyVITON garments and captions.

    Each step takes ``profile.batch_size`` garments of the train split with their
    :func:`caption`, for ``profile.clip_steps`` steps of :func:`clip_contrastive_loss`.
    The tokenizer (:func:`build_tokenizer`) is saved in the run folder, under ``tokenizer/``.
    """
    root = _data_root(profile, data_root)
    tokenizer = build_tokenizer()
    config = _training_config(profile, root, vocabulary=caption_vocabulary())
    run = Run.open("clip", profile.name, seed, config)
    tokenizer.save_pretrained(run.folder / "tokenizer")
    torch.manual_seed(seed)
    clip = make_clip(profile, tokenizer)
    if run.finished:
        run.load({"clip": clip})
        return clip.eval().requires_grad_(False)
    images = load_images(root, "train", "cloth", profile.image_size)
    captions = [caption(a) for a in load_attributes(root, "train")]
    tokens = tokenizer(captions, padding="max_length", max_length=MAX_CAPTION_TOKENS,
                       truncation=True, return_tensors="pt")
    side = clip_image_side(profile)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        index = torch.randint(len(images), (profile.batch_size,),
                              generator=step_generator(seed, step))
        output = clip(input_ids=tokens["input_ids"][index],
                      attention_mask=tokens["attention_mask"][index],
                      pixel_values=clip_pixel_values(to_float(images[index]), side))
        loss = clip_contrastive_loss(output.image_embeds, output.text_embeds, clip.logit_scale)
        return {"loss": loss, "logit_scale": clip.logit_scale.detach().exp()}

    optimizer = torch.optim.AdamW(clip.parameters(), lr=profile.encoder_learning_rate,
                                  weight_decay=0.1)
    fit(run, {"clip": clip}, optimizer, loss_fn, profile.clip_steps,
        warmup_schedule(optimizer, profile.warmup_steps), desc="train CLIP", progress=progress)
    return clip.eval().requires_grad_(False)


def load_or_train_encoders(
    profile: Profile, seed: int = 0, progress: bool = True
) -> tuple[AutoencoderKL, CLIPVisionModelWithProjection]:
    """``(vae, clip_image_encoder)`` for chapters 3-7, frozen.

    The ``paper`` profile (``profile.extra`` naming ``vae_id`` and ``clip_id``) loads the
    pretrained encoders; every other profile trains them here once and then reuses the runs.
    """
    if "vae_id" in profile.extra:
        vae = load_pretrained_vae(profile.extra["vae_id"])
        encoder = load_pretrained_clip_image_encoder(profile.extra["clip_id"])
        return vae.requires_grad_(False), encoder.requires_grad_(False)
    vae = train_vae(profile, seed, progress=progress)
    encoder = clip_image_encoder(train_clip(profile, seed, progress=progress))
    return vae, encoder.requires_grad_(False)
