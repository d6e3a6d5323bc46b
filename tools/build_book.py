"""Execute every chapter notebook with papermill at a profile, then build the HTML book.

The sources (``_config.yml``, ``_toc.yml``, ``book/``, ``notebooks/``) are copied into
``OUT/src``; the notebooks there are replaced by their executed versions, made ready for a
static page (see ``for_static_page``); Jupyter Book then builds ``OUT/src`` with warnings
as errors and without executing anything itself. Wall times per notebook go to
``OUT/timings.json``. The "Try it" page's assets (the shipped ``cpu`` model as ONNX, its
gallery, onnxruntime-web from ``node_modules``) are written into the built book afterwards
(:func:`gardiffmini.export.page.write_page_assets`); what is missing, the page says.

    python tools/build_book.py --profile ci --out _build/ci
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks")
# seconds one cell may run before execution fails (a hung kernel must not hang CI)
CELL_TIMEOUT = {"ci": 600}


def stage(out: Path) -> Path:
    """Copy the book's sources into ``out/src`` and return that folder."""
    src = out / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        else:
            shutil.copy2(path, src / name)
    return src


def execute(src: Path, profile: str) -> dict[str, float]:
    """Run every notebook in ``src/notebooks`` in place at ``profile``; return wall times."""
    timings = {}
    for notebook in sorted((src / "notebooks").glob("*.ipynb")):
        start = time.perf_counter()
        print(f"executing {notebook.name} at profile {profile} ...", flush=True)
        papermill.execute_notebook(
            str(notebook), str(notebook), parameters={"profile": profile},
            cwd=str(notebook.parent), kernel_name="python3", progress_bar=False,
            execution_timeout=CELL_TIMEOUT.get(profile, 4 * 3600),
        )
        timings[notebook.name] = round(time.perf_counter() - start, 1)
        for_static_page(notebook)
        print(f"  {notebook.name}: {timings[notebook.name]} s", flush=True)
    return timings


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _widget_text(value: str) -> str:
    """A widget's HTML string value as plain text (tqdm pads with figure spaces)."""
    text = html.unescape(re.sub(r"<[^>]+>", "", value or ""))
    return re.sub(r"[\u2007\u200b\s]+", " ", text).strip()


def _progress_bar(model_id: str, state: dict) -> str | None:
    """The final line of a tqdm notebook bar (HBox of HTML, FloatProgress, HTML), or None."""
    box = state.get(model_id, {})
    children = [
        state.get(child.removeprefix("IPY_MODEL_"), {})
        for child in box.get("state", {}).get("children", [])
    ]
    names = [child.get("model_name") for child in children]
    if box.get("model_name") != "HBoxModel" or names != ["HTMLModel", "FloatProgressModel",
                                                         "HTMLModel"]:
        return None
    left, bar, right = (child["state"] for child in children)
    span = (bar.get("max") or 0) - (bar.get("min") or 0)
    filled = round(10 * (bar.get("value", 0) - (bar.get("min") or 0)) / span) if span else 0
    filled = max(0, min(10, filled))
    return (f"{_widget_text(left.get('value'))}|{'█' * filled}{' ' * (10 - filled)}| "
            f"{_widget_text(right.get('value'))}")


def _descendants(model_id: str, state: dict):
    model = state.get(model_id)
    if model is None:
        return
    yield model
    for child in model.get("state", {}).get("children", []):
        yield from _descendants(child.removeprefix("IPY_MODEL_"), state)


def _widget_stand_in(model_id: str, state: dict) -> list[dict]:
    """Static outputs for an interactive widget: its pictures and its controls' settings."""
    outputs, settings = [], []
    for model in _descendants(model_id, state):
        values = model.get("state", {})
        name = model.get("model_name", "")
        if name == "ImageModel" and values.get("format") in ("png", "jpeg"):
            for buffer in model.get("buffers", []):
                if buffer.get("path") == ["value"] and buffer.get("encoding") == "base64":
                    outputs.append(nbformat.v4.new_output(
                        "display_data", data={f"image/{values['format']}": buffer["data"]}))
        elif values.get("description"):
            labels = values.get("_options_labels")
            if labels and values.get("index") is not None:
                settings.append(f"{values['description']} = {labels[values['index']]}")
            elif isinstance(values.get("value"), int | float | str):
                settings.append(f"{values['description']} = {values['value']}")
    note = ("An interactive widget: run the notebook to use it." if not settings else
            "The interactive widget's picture as it was built (" + ", ".join(settings)
            + "); run the notebook to change these.")
    # a text stream, not a display: a figure caption on the cell then names the picture only
    outputs.append(nbformat.v4.new_output("stream", name="stdout", text=note + "\n"))
    return outputs


def for_static_page(notebook: Path) -> None:
    """Make an executed notebook read well as a static, offline page.

    - papermill's ``injected-parameters`` cell is tagged ``remove-cell`` (the ``parameters``
      cell beside it already shows the knobs);
    - a tqdm progress bar widget becomes the text line of its final state;
    - any other widget becomes the pictures it showed and a note of its controls' settings;
    - the widget state is dropped, so no page needs a widget manager.
    """
    nb = nbformat.read(notebook, as_version=4)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            line = _progress_bar(view["model_id"], state)
            if line is not None:
                outputs.append(nbformat.v4.new_output("stream", name="stdout", text=line + "\n"))
            else:
                outputs.extend(_widget_stand_in(view["model_id"], state))
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, notebook)


def build(src: Path, out: Path) -> Path:
    """Build the HTML book from ``src`` into ``out`` with warnings as errors.

    Every page is rebuilt (``--all``): the results page reads ``book/results/*.json``, which
    Sphinx does not know as a dependency, so an incremental build kept its old numbers."""
    command = [
        str(Path(sys.executable).with_name("jupyter-book")), "build", str(src),
        "--path-output", str(out), "-W", "-n", "--keep-going", "--all",
    ]
    subprocess.run(command, check=True)
    return out / "_build" / "html" / "index.html"


def tryit_assets(out: Path) -> dict:
    """The Try it page's assets in the built book; the PyTorch reference for the browser
    test beside ``html/``."""
    from gardiffmini.export.page import PAGE_PROFILE, write_page_assets
    from gardiffmini.profiles import get_profile

    html = out / "_build" / "html"
    manifest = write_page_assets(html, get_profile(PAGE_PROFILE),
                                 reference=html.parent / "tryit-reference.json")
    weight = sum(manifest["files"].values())
    print(f"Try it page: {weight:,} bytes of assets, built in {manifest['build_seconds']} s"
          + "".join(f"\n  missing: {why}" for why in manifest["missing"]), flush=True)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("GARDIFF_PROFILE", "cpu"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = (args.out or ROOT / "_build" / args.profile).resolve()
    os.environ["GARDIFF_PROFILE"] = args.profile
    src = stage(out)
    start = time.perf_counter()
    timings = execute(src, args.profile)
    timings["all notebooks"] = round(time.perf_counter() - start, 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    index = build(src, out)
    start = time.perf_counter()
    tryit_assets(out)
    timings["try it page"] = round(time.perf_counter() - start, 1)
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"\nNotebook wall times (s): {json.dumps(timings)}")
    print(f"The book is at {index}")


if __name__ == "__main__":
    main()
