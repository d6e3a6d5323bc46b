"""Sphinx extension of this book: every page works from disk, with no network.

- **MathJax from a package.** The pages load MathJax 3 from ``_static/mathjax``, copied
  there from the ``mathjax`` package (PyPI: django-static-mathjax, MathJax's own release
  files; it needs no Django), instead of from a CDN that an offline reader cannot reach.
- **Each inline script once.** sphinx-thebe and sphinx-togglebutton register their inline
  configuration scripts so that Sphinx writes them twice into every page; the second
  ``const THEBE_JS_URL`` is a JavaScript SyntaxError. Identical scripts are written once.

Enabled in ``_config.yml`` under ``sphinx.local_extensions``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# the bundle MathJax's own CDN default names (TeX and MathML input, CommonHTML output)
MATHJAX_BUNDLE = "tex-mml-chtml.js"
# what that bundle loads on demand: TeX extensions, fonts, the menu, accessibility
MATHJAX_PARTS = ("input", "output", "ui", "a11y", "adaptors", "sre")


def mathjax_source() -> Path:
    """The folder of MathJax's browser build in the installed ``mathjax`` package."""
    try:
        import mathjax
    except ImportError as error:
        raise RuntimeError(
            "the book bundles MathJax from the 'mathjax' package: "
            "pip install django-static-mathjax (or the project's [book] extra)"
        ) from error
    source = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (source / MATHJAX_BUNDLE).is_file():
        raise RuntimeError(f"no MathJax bundle at {source / MATHJAX_BUNDLE}")
    return source


def use_local_mathjax(app, config) -> None:
    mathjax_source()  # fail at the start of the build, not at its end
    config.mathjax_path = f"mathjax/{MATHJAX_BUNDLE}"


def copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_source()
    target = Path(app.outdir) / "_static" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / MATHJAX_BUNDLE, target / MATHJAX_BUNDLE)
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {})
    return (getattr(script, "filename", script) or "", tuple(sorted(attributes.items())))


def write_each_script_once(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", use_local_mathjax)
    app.connect("build-finished", copy_mathjax)
    app.connect("html-page-context", write_each_script_once, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
