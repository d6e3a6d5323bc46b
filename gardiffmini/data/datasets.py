"""One door to the data: a folder in the VITON-HD layout or one DressCode category folder.

Every command and every function that trains or evaluates takes a data root and opens it
here, so that the two layouts are told apart in one place, by their folders:

- a folder with ``images/``, ``keypoints/`` and ``label_maps/`` is one **DressCode category**
  (``DressCode/upper_body``, ``lower_body`` or ``dresses``: each has its own pair files,
  so one category is one data set) read by :class:`~gardiffmini.data.dresscode.DressCode`;
- the **DressCode root** above them is refused, naming the category folders to pass;
- anything else is read as the **VITON-HD layout** (the real release or ToyVITON) by
  :class:`~gardiffmini.data.vitonhd.VitonHD`, which says what is missing.

Which warped garment ``I_w`` a model is given is the *warp protocol* (:data:`WARPS`):

- ``"computed"``, what a user of real data has: the warp of :mod:`gardiffmini.data.warp`
  (the torso by TPS, the sleeves along the arms). On ToyVITON it is computed from the
  garment and the keypoints, never read from ``cloth-warp/``, which holds ToyVITON's exact
  warp; elsewhere the warps written in ``cloth-warp/`` (by ``python -m gardiffmini warp`` or
  your own warping module) are read, and computed where none is written.
- ``"carved"``: the computed warp with the person's arms, drawn from the keypoints, taken out
  of its torso (:mod:`gardiffmini.data.arms`: the arms are in front of the garment), so that
  the model is not handed garment where an arm shows. Always computed, never read from
  ``cloth-warp/``; VITON-HD layout only.
- ``"oracle"``: ToyVITON's exact warp (the garment as it lies on the body, arms left out),
  which no real data set has: every pair's ``cloth-warp/`` file is required.

Where no protocol is named, :func:`default_warp` picks one: the carved warp on ToyVITON (the
book's protocol), the computed one elsewhere, so that warps written in ``cloth-warp/`` are
read.
"""

from __future__ import annotations

from pathlib import Path

from gardiffmini.data import dresscode
from gardiffmini.data.dresscode import DressCode
from gardiffmini.data.layout import VitonHDLayoutError
from gardiffmini.data.toyviton import METADATA_FILE as TOYVITON_RECORD
from gardiffmini.data.vitonhd import VitonHD, check_layout
from gardiffmini.profiles import Profile

WARPS = ("computed", "carved", "oracle")


def is_toyviton(root: Path | str) -> bool:
    """Whether ``root`` is a ToyVITON data set (it holds ToyVITON's record)."""
    return (Path(root) / TOYVITON_RECORD).is_file()


def default_warp(root: Path | str) -> str:
    """The warp protocol of ``root`` where none is named: ``"carved"`` on ToyVITON, the book's
    protocol (computed from the keypoints, a user's warp, with the arms in front of it;
    chapter 7 measured it against ``"computed"``); ``"computed"`` on any other data, whose
    written warps (``cloth-warp/``, or DressCode's) come first."""
    return "carved" if is_toyviton(root) else "computed"


def loader_warp(root: Path | str, warp: str) -> str:
    """The :class:`VitonHD` ``warp`` option that gives the warp protocol ``warp`` at ``root``
    (see the module's docstring)."""
    if warp not in WARPS:
        raise ValueError(f"warp must be one of {WARPS}, got {warp!r}")
    if warp == "oracle":
        return "given"
    if warp == "carved":
        return "tps-arms"
    return "tps" if is_toyviton(root) else "auto"


def layout_of(root: Path | str) -> str:
    """``"dresscode"`` for a DressCode category folder, else ``"vitonhd"``; a DressCode root
    (the folder of the categories) is an error that names its category folders."""
    root = Path(root)
    if dresscode.is_category_folder(root):
        return "dresscode"
    categories = [root / c for c in dresscode.CATEGORIES if dresscode.is_category_folder(root / c)]
    if categories:
        raise VitonHDLayoutError(
            f"{root} is a DressCode root: expected one category folder, such as "
            f"{' or '.join(str(c) for c in categories)} (each has its own pair files)"
        )
    return "vitonhd"


def check_data(root: Path | str, split: str = "train", pairing: str = "paired",
               pairs_file: str | Path | None = None) -> Path:
    """A quick check of the folders and the pair file of ``split`` and ``pairing`` under
    ``root``, in either layout, before any work; returns the pair file. Reads no image."""
    if layout_of(root) == "dresscode":
        return dresscode.check_category(root, split, pairing, pairs_file)
    return check_layout(root, split, pairing, pairs_file)


def open_dataset(
    root: Path | str, split: str = "train", pairing: str = "paired",
    size: tuple[int, int] | Profile | None = None,
    pairs_file: str | Path | None = None, warp: str | None = None,
) -> VitonHD | DressCode:
    """The dataset of ``split`` and ``pairing`` at ``root`` in its layout (see the module's
    docstring), its images of ``size``, its pairs from ``pairs_file`` where given, its warped
    garments by the protocol ``warp`` (:data:`WARPS`; ``None``: :func:`default_warp`;
    DressCode reads or computes its warps as :class:`~gardiffmini.data.dresscode.DressCode`
    says and has no oracle)."""
    root = Path(root)
    warp = default_warp(root) if warp is None else warp
    if layout_of(root) == "dresscode":
        if warp != "computed":
            raise ValueError(f"{root}: DressCode has its written or computed warps only "
                             f"(no {warp!r} warp); use warp='computed'")
        return DressCode(root.parent, split, pairing, categories=root.name, size=size,
                         pairs_file=pairs_file)
    return VitonHD(root, split, pairing, size=size, pairs_file=pairs_file,
                   warp=loader_warp(root, warp))
