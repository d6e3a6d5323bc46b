"""Reading one file of a try-on data set as what it is: a photo, a mask or a label map.

Files made by hand come in every mode PIL knows. Each is either converted the way its
content means, or rejected with a :class:`~gardiffmini.data.layout.VitonHDLayoutError`
that names the file and says what was expected; none is read silently wrong:

- **photos** become 8-bit RGB: 16-bit images are scaled (65535 -> 255, not clipped to
  white), transparent ones are laid on white (the background of in-shop photos), CMYK and
  YCbCr are converted; 32-bit integer and float images are rejected.
- **masks** become float in [0, 1]: a mask stored as 0/1 is read as 0/1 (not as 0/255,
  which would be empty), a transparent image whose alpha channel varies is read from its
  alpha (a cut-out), a 16-bit mask is scaled; it must then be grey-valued and near-binary.
- **label maps** (palette or grey) keep their indices, and every label must be one of the
  label set's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gardiffmini.data.layout import VitonHDLayoutError

DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError)
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
ALPHA_MODES = ("LA", "PA", "RGBA", "RGBa", "La")
PHOTO_MODES = ("1", "L", "P", "RGB", "CMYK", "YCbCr", *ALPHA_MODES, *SIXTEEN_BIT)
MASK_MODES = ("1", "L", "P", "RGB", *ALPHA_MODES, *SIXTEEN_BIT)
LABEL_MODES = ("L", "P", *SIXTEEN_BIT)
# A mask is near-binary when this fraction of its pixels lies within MASK_TOLERANCE of 0 or 1
# (JPEG ringing stays well inside), and grey-valued when as many have channels this close.
MASK_TOLERANCE = 0.15
MASK_MIN_FRACTION = 0.95


def open_image(path: Path, decode: bool = False) -> Image.Image:
    """Open ``path`` (its header only unless ``decode``), naming the file on any failure."""
    try:
        image = Image.open(path)
        if decode:
            image.load()
    except FileNotFoundError:
        raise VitonHDLayoutError(f"{path} not found: the pair file names it") from None
    except DECODE_ERRORS as error:
        raise VitonHDLayoutError(
            f"{path} is unreadable or truncated: expected a complete image ({error})"
        ) from error
    return image


def check_mode(image: Image.Image, path: Path, kind: str) -> None:
    """Reject a mode that ``kind`` (``"image"``, ``"mask"`` or ``"labels"``) cannot be read
    from; this needs only the header."""
    modes = {"image": PHOTO_MODES, "mask": MASK_MODES, "labels": LABEL_MODES}[kind]
    if image.mode in modes:
        return
    expected = {
        "image": "an 8- or 16-bit grey, palette, RGB(A), CMYK or YCbCr photo",
        "mask": "an 8- or 16-bit grey, palette or RGB(A) mask",
        "labels": "a palette or grey label image (one label index per pixel)",
    }[kind]
    raise VitonHDLayoutError(f"{path} has mode {image.mode}: expected {expected}")


def _sixteen_bit(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 65535


def _alpha(image: Image.Image) -> np.ndarray | None:
    """The alpha channel in [0, 1] where ``image`` has one that is not fully opaque."""
    if image.mode not in ALPHA_MODES and not (image.mode == "P" and "transparency" in image.info):
        return None
    alpha = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3] / 255
    return None if bool((alpha >= 1).all()) else alpha


def photo_rgb(image: Image.Image, path: Path) -> Image.Image:
    """An 8-bit RGB image of the photo ``image`` (read from ``path``)."""
    check_mode(image, path, "image")
    if image.mode in SIXTEEN_BIT:
        grey = np.round(_sixteen_bit(image) * 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    alpha = _alpha(image)
    if alpha is None:
        return image.convert("RGB")
    rgb = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., :3]
    on_white = rgb * alpha[..., None] + 255 * (1 - alpha[..., None])
    return Image.fromarray(np.round(on_white).astype(np.uint8), mode="RGB")


def _grey_of(rgb: np.ndarray, path: Path) -> np.ndarray:
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    if np.mean(spread <= MASK_TOLERANCE) < MASK_MIN_FRACTION:
        raise VitonHDLayoutError(
            f"{path} is a colour image in a mask's place: expected a grey-valued, "
            "near-binary mask"
        )
    return rgb.mean(axis=2)


def mask_array(image: Image.Image, path: Path) -> np.ndarray:
    """A mask as a float (H, W) array in [0, 1], after checking that it can be a mask.

    The mask is the alpha channel where that varies and the colour channels are constant
    or agree with it; else the grey value (equal R, G, B). Stored as 0/1 (no value above 1
    in 8 or 16 bits), it is read as 0/1. It must be near-binary: at least
    ``MASK_MIN_FRACTION`` of its pixels within ``MASK_TOLERANCE`` of 0 or 1.
    """
    check_mode(image, path, "mask")
    if image.mode in SIXTEEN_BIT:
        raw = np.asarray(image, dtype=np.float32)
        grey = raw if raw.max() <= 1 else raw / 65535
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        grey = rgb if rgb.max() <= 1 else rgb / 255
        grey = grey[..., 0] if image.mode in ("1", "L", "LA", "La") else _grey_of(grey, path)
        alpha = _alpha(image)
        if alpha is not None:
            constant = float(grey.max() - grey.min()) <= MASK_TOLERANCE
            agree = np.mean((grey > 0.5) == (alpha > 0.5)) >= MASK_MIN_FRACTION
            if not (constant or agree):
                raise VitonHDLayoutError(
                    f"{path} has a varying alpha channel that disagrees with its grey "
                    "values: expected the mask in one of them (or both alike)"
                )
            grey = alpha
    near_binary = np.minimum(grey, 1 - grey) <= MASK_TOLERANCE
    if np.mean(near_binary) < MASK_MIN_FRACTION:
        raise VitonHDLayoutError(
            f"{path} is not near-binary ({np.mean(near_binary):.0%} of pixels near 0 or 1): "
            f"expected a mask with at least {MASK_MIN_FRACTION:.0%}"
        )
    return grey


def label_array(image: Image.Image, path: Path, labels: tuple[str, ...]) -> np.ndarray:
    """The label indices of a palette or grey label map, int64 (H, W), every one a valid
    index into ``labels`` (a palette map is read by index, not by colour)."""
    check_mode(image, path, "labels")
    indices = np.array(image, dtype=np.int64)
    found = np.unique(indices)
    outside = found[(found < 0) | (found >= len(labels))]
    if len(outside):
        raise VitonHDLayoutError(
            f"{path} has labels {outside[:8].tolist()} outside the label set: expected "
            f"indices 0..{len(labels) - 1} ({', '.join(labels[:3])}, ...)"
        )
    return indices
