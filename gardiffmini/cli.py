"""``python -m gardiffmini data | train | sample | evaluate | reproduce``.

Every sub-command takes ``--profile`` (ci, cpu, gpu, paper) and ``--seed``; the rest
follows from the profile.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gardiffmini.profiles import PROFILES, get_profile


def _data(args: argparse.Namespace) -> None:
    from gardiffmini.data.toyviton import generate
    from gardiffmini.paths import toyviton_root

    root = args.root or toyviton_root(args.profile)
    generate(root, args.profile, seed=args.seed, n_train=args.n_train, n_test=args.n_test,
             workers=args.workers)
    print(f"ToyVITON ({args.profile}) is at {root}")


def _train(args: argparse.Namespace) -> None:
    from gardiffmini.train import train_variant

    train_variant(args.variant, args.profile, seed=args.seed, data_root=args.root,
                  mixed_precision=args.mixed_precision)


def _sample(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import sample_variant

    paths = sample_variant(args.variant, args.profile, seed=args.seed, out=args.out,
                           pairing=args.pairing, n=args.n, data_root=args.root)
    print(f"wrote {len(paths)} images to {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import evaluate_variant

    result = evaluate_variant(args.variant, get_profile(args.profile), seed=args.seed,
                              data_root=args.root)
    print(json.dumps(result, indent=2))


def _reproduce(args: argparse.Namespace) -> None:
    from gardiffmini.reproduce import reproduce

    out = reproduce(args.profile, seeds=args.seeds, out=args.out, data_root=args.root)
    print(f"ablation table, figure and numbers are in {out}")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run one sub-command."""
    from gardiffmini.train import VARIANTS

    parser = argparse.ArgumentParser(prog="gardiffmini", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
        sub.add_argument("--seed", type=int, default=0)
        sub.add_argument("--root", type=Path, default=None,
                         help="data set folder (default: ToyVITON of the profile)")
        sub.set_defaults(run=run)
        return sub

    data = command("data", _data, "write ToyVITON in the VITON-HD layout")
    data.add_argument("--n-train", type=int, default=None)
    data.add_argument("--n-test", type=int, default=None)
    data.add_argument("--workers", type=int, default=None)

    train = command("train", _train, "train one variant (resumes, reuses a finished run)")
    train.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    train.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")

    sample = command("sample", _sample, "try garments on test persons with a trained variant")
    sample.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    sample.add_argument("--pairing", choices=["paired", "unpaired"], default="unpaired")
    sample.add_argument("--n", type=int, default=8)
    sample.add_argument("--out", type=Path, default=Path("samples"))

    evaluate = command("evaluate", _evaluate, "metrics of one variant on the test split")
    evaluate.add_argument("--variant", choices=sorted(VARIANTS), required=True)

    reproduce = command("reproduce", _reproduce, "the ablation: four variants, several seeds")
    reproduce.add_argument("--seeds", type=int, default=3)
    reproduce.add_argument("--out", type=Path, default=None)

    args = parser.parse_args(argv)
    args.run(args)
