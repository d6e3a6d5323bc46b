"""``python -m gardiffmini data | warp | train | sample | evaluate | reproduce``.

Every sub-command takes ``--profile`` (ci, cpu, gpu, paper), ``--seed`` and ``--root``
(default: the profile's ToyVITON); the rest follows from the profile. ``--root`` is a folder
in the VITON-HD layout (the real release as downloaded, or ToyVITON) or one DressCode
category folder (``DressCode/upper_body``; or ``--root DressCode --category upper_body``),
told apart by its folders (:mod:`gardiffmini.data.datasets`). Every command that reads data
takes ``--pairs-file``. Arguments, paths and counts are checked before any data is generated
or any model trained, and a mistake is reported in one line, without a traceback.
The ``--profile`` name is resolved once: here for ``data`` and ``train``, whose library
functions take a :class:`~gardiffmini.profiles.Profile`, and at the top of the entry point
that ``sample``, ``evaluate``, ``reproduce`` and ``bench`` call.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from gardiffmini.data import dresscode
from gardiffmini.data.datasets import WARPS
from gardiffmini.data.layout import VitonHDLayoutError
from gardiffmini.profiles import PROFILES, get_profile

MAX_SEED = 2**32 - 1  # numpy's seeds
ROOT_HELP = ("data: a folder in the VITON-HD layout (the release or ToyVITON), a DressCode "
             "category folder, or the DressCode root with --category (default: ToyVITON of "
             "the profile)")


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


def _resolve_category(args: argparse.Namespace) -> None:
    """``--root DressCode --category C`` becomes ``--root DressCode/C``, the folder read."""
    category = getattr(args, "category", None)
    if category is None:
        return
    if args.root is None:
        raise CommandLineError("--category needs --root: the DressCode folder to read")
    folder = args.root / category
    if not dresscode.is_category_folder(folder):
        raise CommandLineError(f"--category {category}: {folder} is not a DressCode category "
                               "folder (expected images/, keypoints/ and label_maps/ in it)")
    args.root = folder


def _check_data(args: argparse.Namespace, needs: tuple[tuple[str, str], ...]) -> None:
    """``--root`` (when given) holds the ``(split, pairing)`` pairs ``needs``, in either
    layout, with ``--pairs-file`` for the pairs of ``args.pairs_split``."""
    from gardiffmini.data.datasets import check_data

    pairs_file = args.pairs_file
    if pairs_file is not None and not (pairs_file.is_file() or
                                       (args.root and (args.root / pairs_file).is_file())):
        raise CommandLineError(f"--pairs-file {pairs_file} not found (nor under --root)")
    if args.root is None:
        return
    for split, pairing in needs:
        own = pairs_file if split == args.pairs_split else None
        check_data(args.root, split, pairing, own)


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
    elif command == "bench":
        _check_count("--steps", args.steps, 1)
        _check_count("--warmup", args.warmup, 0)
        _check_writable_folder("--out", args.out)
    elif command == "warp":
        _check_count("--workers", args.workers, 1)
        if args.root is None:
            raise CommandLineError("--root is required: the data set whose warps to write")
        if args.pairs_file is not None:
            if len(args.splits) != 1:
                raise CommandLineError("--pairs-file names the pairs of one split: pass "
                                       "--splits train or --splits test with it")
            args.pairs_split = args.splits[0]
        if dresscode.is_category_folder(args.root):
            raise CommandLineError(
                f"--root {args.root} is a DressCode category: warp writes VITON-HD's "
                "cloth-warp/ (DressCode's upper_body is warped by the loader as it reads)")
        _check_data(args, tuple((split, "paired") for split in args.splits))
    else:  # train, sample, evaluate, reproduce: a variant trained, the test pairs read
        if command == "sample":
            _check_count("--n", args.n, 1)
            _check_writable_folder("--out", args.out)
        if command == "reproduce":
            _check_count("--seeds", args.seeds, 1)
            _check_writable_folder("--out", args.out)
        _resolve_category(args)
        tests = {"train": (), "sample": (getattr(args, "pairing", ""),)}.get(
            command, ("paired", "unpaired"))  # the test pairings the command reads
        _check_data(args, (("train", "paired"), *(("test", pairing) for pairing in tests)))


# ---- the commands -------------------------------------------------------------------------

def _data(args: argparse.Namespace) -> None:
    from gardiffmini.data.toyviton import generate
    from gardiffmini.paths import toyviton_root

    root = args.root or toyviton_root(args.profile)
    generate(root, get_profile(args.profile), seed=args.seed, n_train=args.n_train,
             n_test=args.n_test, workers=args.workers)
    print(f"ToyVITON ({args.profile}) is at {root}")


def _warp(args: argparse.Namespace) -> None:
    from gardiffmini.data.write_warps import write_warps

    counts = write_warps(args.root, tuple(args.splits), pairs_file=args.pairs_file,
                         workers=args.workers, overwrite=args.overwrite)
    print(f"warps of {counts['pairs']} pairs in {args.root}: {counts['written']} written, "
          f"{counts['kept']} already there")


def _train(args: argparse.Namespace) -> None:
    from gardiffmini.train import train_variant

    pipeline = train_variant(args.variant, get_profile(args.profile), seed=args.seed,
                             data_root=args.root,
                             mixed_precision=(None if args.mixed_precision == "auto"
                                              else args.mixed_precision),
                             pairs_file=args.pairs_file,
                             warp=args.warp)
    print(f"{args.variant} ({args.profile}, seed {args.seed}) is in {pipeline.run.folder}")


def _sample(args: argparse.Namespace) -> None:
    from gardiffmini.evaluate import sample_variant

    paths = sample_variant(args.variant, args.profile, seed=args.seed, out=args.out,
                           pairing=args.pairing, n=args.n, data_root=args.root,
                           pairs_file=args.pairs_file, warp=args.warp)
    print(f"wrote {len(paths)} images to {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from gardiffmini.evaluate import evaluate_variant

    result = evaluate_variant(args.variant, args.profile, seed=args.seed,
                              data_root=args.root, pairs_file=args.pairs_file, warp=args.warp)
    print(json.dumps(result, indent=2))


def _reproduce(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import reproduce

    out = reproduce(args.profile, seeds=args.seeds, out=args.out, data_root=args.root,
                    pairs_file=args.pairs_file, oracle=not args.no_oracle)
    print(f"ablation table, figure and numbers are in {out}")


def _bench(args: argparse.Namespace) -> None:
    from gardiffmini.bench import run_from_args

    run_from_args(args)


WARP_HELP = ("the warped garment: computed (TPS torso, sleeves along the arms: what real data "
             "has), carved (the same, its torso behind the arms drawn from the keypoints) or "
             "oracle (ToyVITON's exact warp); default: carved on ToyVITON (the book's protocol), "
             "computed elsewhere")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command."""
    from gardiffmini.bench import add_arguments as add_bench_arguments
    from gardiffmini.train import VARIANTS

    parser = argparse.ArgumentParser(prog="gardiffmini", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, help: str, pairs_split: str | None = None,
                root: str = ROOT_HELP) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--root", type=Path, default=None, help=root)
        if pairs_split:
            sub.add_argument("--pairs-file", type=Path, default=None,
                             help=f"pair file of the {pairs_split} split (a path, or a name "
                                  "under --root) instead of the layout's default")
        if pairs_split in ("train", "test"):
            sub.add_argument("--category", choices=dresscode.CATEGORIES, default=None,
                             help="with --root the DressCode root: the category to read "
                                  "(same as --root DressCode/CATEGORY)")
        sub.set_defaults(run=run, pairs_split=pairs_split, pairs_file=None)
        return sub

    data = command("data", _data, "write ToyVITON in the VITON-HD layout",
                   root="folder to write ToyVITON into (default: data/toyviton-PROFILE)")
    data.add_argument("--n-train", type=int, default=None)
    data.add_argument("--n-test", type=int, default=None)
    data.add_argument("--workers", type=int, default=None)

    warp = command("warp", _warp, "write the computed warp of every pair (cloth-warp/) once",
                   pairs_split="one",
                   root="the folder in the VITON-HD layout whose warps to write (required)")
    warp.add_argument("--splits", nargs="+", choices=["train", "test"], default=["train", "test"])
    warp.add_argument("--workers", type=int, default=None,
                      help="worker processes (default: one per CPU)")
    warp.add_argument("--overwrite", action="store_true", help="rewrite warps already there")

    train = command("train", _train, "train one variant on the training pairs (resumes, "
                    "reuses a finished run)", pairs_split="train")
    train.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    train.add_argument("--mixed-precision", choices=["auto", "no", "fp16", "bf16"],
                       default="auto", help="auto: bf16 on GPUs that have it, fp16 with loss "
                       "scaling on older ones (a T4), fp32 on the CPU")
    train.add_argument("--warp", choices=WARPS, default=None, help=WARP_HELP)

    sample = command("sample", _sample, "try garments on test persons with a trained variant",
                     pairs_split="test")
    sample.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    sample.add_argument("--pairing", choices=["paired", "unpaired"], default="unpaired")
    sample.add_argument("--n", type=int, default=8)
    sample.add_argument("--out", type=Path, default=Path("samples"))
    sample.add_argument("--warp", choices=WARPS, default=None,
                        help=WARP_HELP + " given at test time (the model trains on the default)")

    evaluate = command("evaluate", _evaluate, "train (or reuse) one variant, then its metrics "
                       "on the test pairs (those needing ToyVITON's garment attributes are "
                       "skipped elsewhere, with a notice)", pairs_split="test")
    evaluate.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    evaluate.add_argument("--warp", choices=WARPS, default=None,
                          help=WARP_HELP + " given at test time (the model trains on the default)")

    reproduce = command("reproduce", _reproduce, "the ablation: four variants, several seeds, "
                        "evaluated on the test pairs", pairs_split="test")
    reproduce.add_argument("--seeds", type=int, default=3)
    reproduce.add_argument("--out", type=Path, default=None)
    reproduce.add_argument("--no-oracle", action="store_true",
                           help="leave out the oracle-warp table (ToyVITON's exact warp at "
                           "test time, seed 0), which samples every variant twice more")

    bench_help = ("training throughput of every variant and of a plain fp32 loop on this "
                  "device; writes book/results/bench-DEVICE-PROFILE.json")
    bench = commands.add_parser("bench", help=bench_help, description=bench_help)
    add_bench_arguments(bench)
    bench.set_defaults(run=_bench, seed=0)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, check it, and run one sub-command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"gardiffmini {args.command}"
    try:
        check_args(args)
    except (CommandLineError, VitonHDLayoutError) as error:
        parser.exit(2, f"{prog}: error: {error}\n")
    try:
        args.run(args)
    except VitonHDLayoutError as error:  # bad data found while working: still one line
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
