"""tools/build_book.py: an executed notebook made fit for a static, offline page."""

import importlib.util
from pathlib import Path

import nbformat

SPEC = importlib.util.spec_from_file_location(
    "build_book", Path(__file__).parents[1] / "tools" / "build_book.py")
build_book = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(build_book)

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9aw"
       "AAAABJRU5ErkJggg==")  # a 1x1 PNG


def _widget_notebook() -> nbformat.NotebookNode:
    state = {
        "box": {"model_name": "VBoxModel",
                "state": {"children": ["IPY_MODEL_menu", "IPY_MODEL_picture"]}},
        "menu": {"model_name": "DropdownModel",
                 "state": {"description": "layer", "_options_labels": ["down", "mid"],
                           "index": 1}},
        "picture": {"model_name": "ImageModel", "state": {"format": "png"},
                    "buffers": [{"path": ["value"], "encoding": "base64", "data": PNG}]},
    }
    cell = nbformat.v4.new_code_cell("display(explorer)", metadata={
        "mystnb": {"figure": {"caption": "the explorer", "name": "fig-explorer"}}})
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        build_book.WIDGET_VIEW: {"model_id": "box", "version_major": 2, "version_minor": 0}})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["widgets"] = {build_book.WIDGET_STATE: {"state": state}}
    return nb


def test_a_widget_becomes_one_picture_and_a_text_note(tmp_path):
    path = tmp_path / "chapter.ipynb"
    nbformat.write(_widget_notebook(), path)
    build_book.for_static_page(path)
    nb = nbformat.read(path, as_version=4)
    outputs = nb.cells[0].outputs
    displays = [o for o in outputs if o.output_type == "display_data"]
    assert [list(o.data) for o in displays] == [["image/png"]]  # the caption names it alone
    notes = [o.text for o in outputs if o.output_type == "stream"]
    assert notes == ["The interactive widget's picture as it was built (layer = mid); run the "
                     "notebook to change these.\n"]
    assert "widgets" not in nb.metadata
