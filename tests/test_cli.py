"""The command line checks its arguments before any work, and reports in one line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import RELEASE_NAMES
from test_dresscode import write_dresscode

import gardiffmini.data.toyviton
import gardiffmini.evaluate
import gardiffmini.reproduce
import gardiffmini.train
from gardiffmini.cli import main
from gardiffmini.data import layout
from gardiffmini.data.vitonhd import VitonHD
from gardiffmini.profiles import get_profile

CI = get_profile("ci")


@pytest.fixture
def no_work(monkeypatch):
    """Any training, sampling, evaluation or generation fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("the command started working before its checks")

    for module, name in ((gardiffmini.train, "train_variant"),
                         (gardiffmini.evaluate, "sample_variant"),
                         (gardiffmini.evaluate, "evaluate_variant"),
                         (gardiffmini.reproduce, "reproduce")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(gardiffmini.data.toyviton, "generate", forbidden)


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    line = err.splitlines()[-1]  # after any progress bar
    assert line.startswith(f"gardiffmini {argv[0]}: error: "), err
    return line


def test_negative_seed(no_work, capsys):
    err = one_line_error(capsys, ["data", "--profile", "ci", "--seed", "-1"])
    assert err == "gardiffmini data: error: --seed must be in [0, 4294967295], got -1"


@pytest.mark.parametrize("argv, message", [
    (["data", "--n-test", "-3"], "--n-test must be >= 0, got -3"),
    (["data", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["sample", "--variant", "base", "--n", "0"], "--n must be >= 1, got 0"),
    (["reproduce", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["bench", "--steps", "0"], "--steps must be >= 1, got 0"),
])
def test_bad_counts(no_work, capsys, argv, message):
    assert one_line_error(capsys, [*argv, "--profile", "ci"]).endswith(message)


@pytest.mark.parametrize("command", [["train"], ["sample"], ["evaluate"]])
def test_missing_root_is_found_before_training(no_work, capsys, tmp_path, command):
    argv = [*command, "--variant", "base", "--profile", "ci", "--root", str(tmp_path / "nope")]
    assert one_line_error(capsys, argv).endswith("nope is not a folder: expected a VITON-HD root")


def test_out_that_is_a_file(no_work, capsys, tmp_path, release_root):
    out = tmp_path / "taken"
    out.write_text("")
    argv = ["sample", "--variant", "base", "--profile", "ci", "--root", str(release_root),
            "--out", str(out)]
    assert one_line_error(capsys, argv).endswith(f"--out {out} is a file: expected a folder to "
                                                 "write into")
    argv[-1] = str(out / "inside")
    assert "is a file, not a folder" in one_line_error(capsys, argv)


def test_root_without_a_split_folder(no_work, capsys, release_root):
    for path in (release_root / "train" / "cloth").iterdir():
        path.unlink()
    (release_root / "train" / "cloth").rmdir()
    argv = ["train", "--variant", "base", "--profile", "ci", "--root", str(release_root)]
    assert one_line_error(capsys, argv).endswith("train/cloth/")


def trained(calls: list, **kwargs) -> SimpleNamespace:
    """What a faked train_variant returns: a pipeline whose run has a folder."""
    calls.append(kwargs)
    return SimpleNamespace(run=SimpleNamespace(folder=Path("runs/fake")))


@pytest.mark.parametrize("command", ["evaluate", "reproduce"])
def test_evaluation_of_a_release_folder_is_not_refused(monkeypatch, release_root, command):
    """The real release has no cloth-attributes.json: evaluation runs without those metrics
    (tests/test_release_end_to_end.py runs it for real)."""
    calls = []
    module, name = ((gardiffmini.evaluate, "evaluate_variant") if command == "evaluate"
                    else (gardiffmini.reproduce, "reproduce"))
    monkeypatch.setattr(module, name,
                        lambda *args, **kwargs: calls.append(kwargs) or {})
    argv = [command, "--profile", "ci", "--root", str(release_root),
            "--pairs-file", "test_pairs.txt"]
    main(argv + (["--variant", "base"] if command == "evaluate" else ["--seeds", "1"]))
    assert calls[0]["data_root"] == release_root
    assert calls[0]["pairs_file"] == Path("test_pairs.txt")


def test_missing_pairs_file(no_work, capsys, release_root):
    argv = ["sample", "--variant", "base", "--profile", "ci", "--root", str(release_root),
            "--pairs-file", "elsewhere.txt"]
    assert one_line_error(capsys, argv).endswith("--pairs-file elsewhere.txt not found (nor "
                                                 "under --root)")


def test_pairs_file_reaches_the_library(monkeypatch, capsys, release_root):
    calls = {}

    def sample_variant(variant, profile, seed, out, pairing, n, data_root, pairs_file=None,
                       warp="unset"):
        calls.update(pairs_file=pairs_file, root=data_root, pairing=pairing, warp=warp)
        return []

    monkeypatch.setattr(gardiffmini.evaluate, "sample_variant", sample_variant)
    (release_root / "my_pairs.txt").write_text("00001_00.jpg 00003_00.jpg\n")
    main(["sample", "--variant", "base", "--profile", "ci", "--root", str(release_root),
          "--pairs-file", "my_pairs.txt", "--out", str(release_root / "samples")])
    assert calls == {"pairs_file": Path("my_pairs.txt"), "root": release_root,
                     "pairing": "unpaired", "warp": None}  # the library picks the data's


def test_pairs_file_reaches_training(monkeypatch, capsys, release_root):
    calls = []
    monkeypatch.setattr(gardiffmini.train, "train_variant",
                        lambda *args, **kwargs: trained(calls, **kwargs))
    (release_root / "two.txt").write_text("00001_00.jpg 00001_00.jpg\n00002_00.jpg "
                                          "00002_00.jpg\n")
    main(["train", "--variant", "base", "--profile", "ci", "--root", str(release_root),
          "--pairs-file", "two.txt"])
    assert calls[0]["pairs_file"] == Path("two.txt") and calls[0]["data_root"] == release_root
    assert calls[0]["warp"] is None  # the library picks the data's (datasets.default_warp)
    assert "is in runs/fake" in capsys.readouterr().out


def test_a_bad_pairs_file_is_found_before_training(no_work, capsys, release_root):
    (release_root / "bad.txt").write_text("00001_00.jpg\n")
    argv = ["train", "--variant", "base", "--profile", "ci", "--root", str(release_root),
            "--pairs-file", "bad.txt"]
    assert "bad.txt, line 1: expected 2 or 3 columns" in one_line_error(capsys, argv)


def test_data_error_during_work_is_one_line(monkeypatch, capsys, release_root):
    def train_variant(variant, profile, seed, data_root, mixed_precision, pairs_file, warp):
        VitonHD(data_root, "train")[0]

    monkeypatch.setattr(gardiffmini.train, "train_variant", train_variant)
    path = layout.person_path(release_root, "train", "openpose_json", RELEASE_NAMES[0])
    path.write_text('{"people": [{"pose_keypoints_2d": ["1"]}]}')
    argv = ["train", "--variant", "base", "--profile", "ci", "--root", str(release_root)]
    assert str(path) in one_line_error(capsys, argv, code=1)


def test_release_folder_passes_the_checks(monkeypatch, release_root):
    calls = []
    monkeypatch.setattr(gardiffmini.train, "train_variant",
                        lambda *args, **kwargs: trained(calls, **kwargs))
    main(["train", "--variant", "base", "--profile", "ci", "--root", str(release_root)])
    assert [call["data_root"] for call in calls] == [release_root]


# ---- DressCode: one category folder --------------------------------------------------------


def test_dresscode_category_by_folder_or_by_name(monkeypatch, tmp_path):
    root = write_dresscode(tmp_path / "DressCode")
    calls = []
    monkeypatch.setattr(gardiffmini.train, "train_variant",
                        lambda *args, **kwargs: trained(calls, **kwargs))
    main(["train", "--variant", "base", "--profile", "ci", "--root", str(root / "dresses")])
    main(["train", "--variant", "base", "--profile", "ci", "--root", str(root),
          "--category", "upper_body"])
    assert [call["data_root"] for call in calls] == [root / "dresses", root / "upper_body"]


def test_dresscode_mistakes_are_one_line(no_work, capsys, tmp_path, release_root):
    root = write_dresscode(tmp_path / "DressCode")
    train = ["train", "--variant", "base", "--profile", "ci"]
    err = one_line_error(capsys, [*train, "--root", str(root)])
    assert f"{root} is a DressCode root: expected one category folder, such as " \
           f"{root / 'upper_body'}" in err
    assert "--category needs --root" in one_line_error(capsys, [*train, "--category",
                                                                "dresses"])
    err = one_line_error(capsys, [*train, "--root", str(release_root), "--category", "dresses"])
    assert "is not a DressCode category folder" in err
    (root / "dresses" / "test_pairs_unpaired.txt").unlink()
    err = one_line_error(capsys, ["evaluate", "--variant", "base", "--profile", "ci", "--root",
                                  str(root / "dresses")])
    assert "test_pairs_unpaired.txt not found: expected the DressCode test unpaired" in err
    err = one_line_error(capsys, ["warp", "--root", str(root / "upper_body")])
    assert "is a DressCode category: warp writes VITON-HD's cloth-warp/" in err


# ---- warp: computed once -----------------------------------------------------------------


def test_warp_writes_every_pair_and_the_loader_reads_them(capsys, release_root):
    main(["warp", "--root", str(release_root), "--workers", "1"])
    assert "warps of 9 pairs" in capsys.readouterr().out  # 3 train, 3 + 3 test
    unpaired = VitonHD(release_root, "test", "unpaired", size=CI)
    assert all(unpaired.given_warp) and "3 from cloth-warp/" in unpaired.describe()
    path = layout.warp_path(release_root, "test", "cloth-warp-mask", "00001_00.jpg",
                            "00002_00.jpg")
    assert path.name == "00001_00__00002_00.png" and path.is_file()
    assert all(VitonHD(release_root, "train").given_warp)
    tps = VitonHD(release_root, "test", "unpaired", warp="tps")
    written = VitonHD(release_root, "test", "unpaired")
    iou = (tps[0]["warped_mask"].bool() & written[0]["warped_mask"].bool()).sum() / (
        tps[0]["warped_mask"].bool() | written[0]["warped_mask"].bool()).sum()
    assert iou > 0.98
    main(["warp", "--root", str(release_root), "--workers", "1"])
    assert "0 written, 9 already there" in capsys.readouterr().out


def test_warp_with_worker_processes(capsys, release_root):
    main(["warp", "--root", str(release_root), "--splits", "test", "--workers", "2"])
    assert "6 written" in capsys.readouterr().out
    assert all(VitonHD(release_root, "test", "unpaired", warp="given").given_warp)


def test_warp_reports_pairs_it_cannot_warp(capsys, release_root):
    path = layout.person_path(release_root, "test", "openpose_json", RELEASE_NAMES[1])
    path.write_text('{"people": []}')
    err = one_line_error(capsys, ["warp", "--root", str(release_root), "--splits", "test",
                                  "--workers", "1"], code=1)
    assert "2 of 6 pairs could not be warped (the rest were written)" in err and str(path) in err


def test_warp_needs_a_root_and_one_split_for_a_pairs_file(capsys, release_root):
    assert "--root is required" in one_line_error(capsys, ["warp"])
    argv = ["warp", "--root", str(release_root), "--pairs-file", "test_pairs.txt"]
    assert "pass --splits train or --splits test" in one_line_error(capsys, argv)


@pytest.mark.parametrize("command", ["warp", "train", "sample", "evaluate", "reproduce"])
def test_every_command_that_reads_data_takes_a_pairs_file(command):
    from gardiffmini.cli import build_parser

    argv = [command, "--pairs-file", "p.txt"] + (["--variant", "base"] if command in (
        "train", "sample", "evaluate") else [])
    assert str(build_parser().parse_args(argv).pairs_file) == "p.txt"


def test_bench_runs_from_the_command_line(tmp_path, capsys):
    main(["bench", "--profile", "ci", "--steps", "1", "--warmup", "0", "--variants", "base",
          "--out", str(tmp_path)])
    assert f"wrote {tmp_path / 'bench-cpu-ci.json'}" in capsys.readouterr().out
    assert (tmp_path / "bench-cpu-ci.json").is_file()
