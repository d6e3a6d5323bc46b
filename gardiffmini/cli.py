"""``python -m gardiffmini data | warp | train | sample | evaluate | reproduce``.

Every sub-command takes ``--profile`` (ci, cpu, gpu, paper), ``--seed`` and ``--root``
(a folder in the VITON-HD layout; default: the profile's ToyVITON); the rest follows from
the profile. Arguments, paths and counts are checked before any data is generated or any
model trained, and a mistake is reported in one line, without a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from pathlib import Path

from gardiffmini.data.layout import ATTRIBUTES_FILE, VitonHDLayoutError
from gardiffmini.profiles import PROFILES, get_profile

MAX_SEED = 2**32 - 1  # numpy's seeds


class CommandLineError(ValueError):
    """An argument that cannot work; reported in one line."""


# ---- checks, before any work ------------------------------------------------------------

def _check_count(name: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise CommandLineError(f"{name} must be >= {minimum}, got {value}")


def _check_writable_folder(name: str, path: Path | None) -> None:
    """``path`` is a folder, or can be made one (its nearest existing parent is writable)."""
    if path is None:
        return
    if path.exists():
        if not path.is_dir():
            raise CommandLineError(f"{name} {path} is a file: expected a folder to write into")
        existing = path
    else:
        existing = next(parent for parent in path.parents if parent.exists())
        if not existing.is_dir():
            raise CommandLineError(f"{name} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandLineError(f"{name} {path}: {existing} is not writable")


def _check_data(args: argparse.Namespace, needs: tuple[tuple[str, str], ...],
                attributes: bool = False) -> None:
    """``--root`` (when given) holds the ``(split, pairing)`` pairs ``needs``, with
    ``--pairs-file`` for the test split's pairs, and ToyVITON's attributes if asked."""
    from gardiffmini.data.vitonhd import check_layout

    pairs_file = getattr(args, "pairs_file", None)
    if pairs_file is not None and not (pairs_file.is_file() or
                                       (args.root and (args.root / pairs_file).is_file())):
        raise CommandLineError(f"--pairs-file {pairs_file} not found (nor under --root)")
    if args.root is None:
        return
    for split, pairing in needs:
        own = pairs_file if split == args.pairs_split else None
        check_layout(args.root, split, pairing, own)
        if attributes and not (args.root / split / ATTRIBUTES_FILE).is_file():
            raise CommandLineError(
                f"{args.root / split / ATTRIBUTES_FILE} not found: {args.command} measures "
                "garment attributes, which only ToyVITON has"
            )


def _check_passes_pairs_file(args: argparse.Namespace, function) -> dict:
    """``{"pairs_file": ...}`` for ``function`` when ``--pairs-file`` was given."""
    if args.pairs_file is None:
        return {}
    if "pairs_file" not in inspect.signature(function).parameters:
        raise CommandLineError(
            f"--pairs-file: {function.__module__}.{function.__name__} does not take a pair "
            "file yet; name the pairs in the layout's default file instead"
        )
    return {"pairs_file": args.pairs_file}


def check_args(args: argparse.Namespace) -> None:
    """Every check that needs no data generated and no model trained; raises
    :class:`CommandLineError` or :class:`VitonHDLayoutError` with a one-line message."""
    if not 0 <= args.seed <= MAX_SEED:
        raise CommandLineError(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    command = args.command
    if command == "data":
        for name in ("n_train", "n_test"):
            _check_count(f"--{name.replace('_', '-')}", getattr(args, name), 0)
        _check_count("--workers", args.workers, 1)
        _check_writable_folder("--root", args.root)
    elif command == "warp":
        _check_count("--workers", args.workers, 1)
        if args.root is None:
            raise CommandLineError("--root is required: the data set whose warps to write")
        if args.pairs_file is not None:
            if len(args.splits) != 1:
                raise CommandLineError("--pairs-file names the pairs of one split: pass "
                                       "--splits train or --splits test with it")
            args.pairs_split = args.splits[0]
        _check_data(args, tuple((split, "paired") for split in args.splits))
    elif command == "train":
        _check_data(args, (("train", "paired"),))
    elif command == "sample":
        _check_count("--n", args.n, 1)
        _check_writable_folder("--out", args.out)
        _check_data(args, (("train", "paired"), ("test", args.pairing)))
    elif command in ("evaluate", "reproduce"):
        if command == "reproduce":
            _check_count("--seeds", args.seeds, 1)
            _check_writable_folder("--out", args.out)
        needs = (("train", "paired"), ("test", "paired"), ("test", "unpaired"))
        _check_data(args, needs, attributes=True)


# ---- the commands -------------------------------------------------------------------------

def _data(args: argparse.Namespace) -> None:
    from gardiffmini.data.toyviton import generate
    from gardiffmini.paths import toyviton_root

    root = args.root or toyviton_root(args.profile)
    generate(root, args.profile, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
             workers=args.workers)
    print(f"ToyVITON ({args.profile}) is at {root}")


def _warp(args: argparse.Namespace) -> None:
    from gardiffmini.data.write_warps import write_warps

    counts = write_warps(args.root, tuple(args.splits), pairs_file=args.pairs_file,
                         workers=args.workers, overwrite=args.overwrite)
    print(f"warps of {counts['pairs']} pairs in {args.root}: {counts['written']} written, "
          f"{counts['kept']} already there")


def _train(args: argparse.Namespace) -> None:
    from gardiffmini.train import train_variant

    extra = _check_passes_pairs_file(args, train_variant)
    train_variant(args.variant, args.profile, seed=args.seed, data_root=args.root,
                  mixed_precision=args.mixed_precision, **extra)


def _sample(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import sample_variant

    extra = _check_passes_pairs_file(args, sample_variant)
    paths = sample_variant(args.variant, args.profile, seed=args.seed, out=args.out,
                           pairing=args.pairing, n=args.n, data_root=args.root, **extra)
    print(f"wrote {len(paths)} images to {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import evaluate_variant

    extra = _check_passes_pairs_file(args, evaluate_variant)
    result = evaluate_variant(args.variant, get_profile(args.profile), seed=args.seed,
                              data_root=args.root, **extra)
    print(json.dumps(result, indent=2))


def _reproduce(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import reproduce

    extra = _check_passes_pairs_file(args, reproduce)
    out = reproduce(args.profile, seeds=args.seeds, out=args.out, data_root=args.root, **extra)
    print(f"ablation table, figure and numbers are in {out}")


PRE_CHECKS = {  # the library functions a command calls, for checks of --pairs-file
    "train": ("gardiffmini.train", "train_variant"),
    "sample": ("gardiffmini.reproduce", "sample_variant"),
    "evaluate": ("gardiffmini.reproduce", "evaluate_variant"),
    "reproduce": ("gardiffmini.reproduce", "reproduce"),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command."""
    from gardiffmini.train import VARIANTS

    parser = argparse.ArgumentParser(prog="gardiffmini", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, help: str, pairs_split: str | None = None
                ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--root", type=Path, default=None,
                         help="data set folder (default: ToyVITON of the profile)")
        if pairs_split:
            sub.add_argument("--pairs-file", type=Path, default=None,
                             help=f"pair file of the {pairs_split} split (a path, or a name "
                                  "under --root) instead of the layout's default")
        sub.set_defaults(run=run, pairs_split=pairs_split, pairs_file=None)
        return sub

    data = command("data", _data, "write ToyVITON in the VITON-HD layout")
    data.add_argument("--n-train", type=int, default=None)
    data.add_argument("--n-test", type=int, default=None)
    data.add_argument("--workers", type=int, default=None)

    warp = command("warp", _warp, "write the TPS warp of every pair (cloth-warp/) once",
                   pairs_split="one")
    warp.add_argument("--splits", nargs="+", choices=["train", "test"], default=["train", "test"])
    warp.add_argument("--workers", type=int, default=None,
                      help="worker processes (default: one per CPU)")
    warp.add_argument("--overwrite", action="store_true", help="rewrite warps already there")

    train = command("train", _train, "train one variant (resumes, reuses a finished run)",
                    pairs_split="train")
    train.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    train.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")

    sample = command("sample", _sample, "try garments on test persons with a trained variant",
                     pairs_split="test")
    sample.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    sample.add_argument("--pairing", choices=["paired", "unpaired"], default="unpaired")
    sample.add_argument("--n", type=int, default=8)
    sample.add_argument("--out", type=Path, default=Path("samples"))

    evaluate = command("evaluate", _evaluate, "metrics of one variant on the test split",
                       pairs_split="test")
    evaluate.add_argument("--variant", choices=sorted(VARIANTS), required=True)

    reproduce = command("reproduce", _reproduce, "the ablation: four variants, several seeds",
                        pairs_split="test")
    reproduce.add_argument("--seeds", type=int, default=3)
    reproduce.add_argument("--out", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, check it, and run one sub-command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"gardiffmini {args.command}"
    try:
        check_args(args)
        if args.pairs_file is not None and args.command in PRE_CHECKS:
            module, name = PRE_CHECKS[args.command]
            _check_passes_pairs_file(args, getattr(__import__(module, fromlist=[name]), name))
    except (CommandLineError, VitonHDLayoutError) as error:
        parser.exit(2, f"{prog}: error: {error}\n")
    try:
        args.run(args)
    except VitonHDLayoutError as error:  # bad data found while working: still one line
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
