"""The built book as a reader sees it: every page in headless Chromium, offline.

Each HTML page of a built book is opened from disk in the distribution's Chromium with
every network request blocked, and the test fails on what a reader would see as broken:
raw LaTeX in the text, an image that did not load, a Markdown table printed as text, an
empty widget or output area, a link to a missing page or anchor, a JavaScript error, a
request to the network, a figure without a caption, or a chapter that does not say at its
top what it needs. A full-page screenshot of each page goes to ``screenshots/``
beside the book's ``_build`` (``_build/ci/screenshots`` for the ``ci`` build), or to
``GARDIFF_SCREENSHOTS``, for a person to look at.

The Try it page is also used: it dresses a person for 5 DDIM steps from the noise shipped
with it, and its picture must be the PyTorch pipeline's within 3/255 (the build writes that
image beside ``html/``); its time goes to ``tryit-timing.json`` beside the screenshots.

The book to check is named by ``GARDIFF_BOOK_HTML`` (``make book-check`` sets it to the
``ci`` build); without it these tests are skipped, so ``pytest tests`` needs no built book.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

BOOK = os.environ.get("GARDIFF_BOOK_HTML")
pytestmark = pytest.mark.skipif(
    not BOOK, reason="set GARDIFF_BOOK_HTML to a built book's html folder (make book-check)"
)

# seconds a page may take to load and typeset its math
PAGE_TIMEOUT = 60
WIDTH, HEIGHT = 1280, 1000
# height of one screenshot tile (Chromium captures at most 16384 pixels at once)
SHOT_TILE = 8192

# LaTeX that MathJax should have turned into typeset math: delimiters or a control word
RAW_LATEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\[A-Za-z]{2,}|\$[^$\s][^$]*[\\^_{][^$]*\$")
# the separator row of a Markdown table (Sphinx's smart quotes turn --- into a dash)
TABLE_AS_TEXT = re.compile(r"\|\s*:?[-\u2013\u2014]+:?\s*\|")
# the admonition every chapter opens with (chapter 1's pattern)
NEEDS_TITLE = "What this chapter needs"

# Runs in every page before its own scripts: records errors a reader's console would show.
RECORD_ERRORS = """
window.__bookErrors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) {
    window.__bookErrors.push('failed to load ' + (t.src || t.href));
  } else {
    window.__bookErrors.push(
      'JavaScript error: ' + e.message + ' at ' + e.filename + ':' + e.lineno);
  }
}, true);
window.addEventListener('unhandledrejection', function (e) {
  window.__bookErrors.push('unhandled promise rejection: ' + String(e.reason));
});
"""

# Waits for the page to settle: loaded, lazy images fetched, MathJax done (if it loaded).
SETTLE = """
var done = arguments[arguments.length - 1];
function ready() { return document.readyState === 'complete'; }
function images() {
  var imgs = Array.from(document.images);
  imgs.forEach(function (i) { if (i.loading === 'lazy') { i.loading = 'eager'; } });
  return Promise.all(imgs.map(function (i) {
    return i.decode().catch(function () {});
  }));
}
function math() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    return MathJax.startup.promise.catch(function (e) {
      window.__bookErrors.push('MathJax: ' + e);
    });
  }
  return Promise.resolve();
}
(function wait() {
  if (!ready()) { setTimeout(wait, 100); return; }
  images().then(math).then(function () {
    setTimeout(function () { done(true); }, 300);
  });
})();
"""

# What the reader sees, gathered in the page: everything the checks below read.
INSPECT = """
var SKIP = 'script, style, noscript, template, pre, code, textarea, mjx-container, '
  + '.highlight, .MathJax, mjx-assistive-mml';
function textsOf(root) {
  var out = [];
  var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  var node;
  while ((node = walker.nextNode())) {
    var el = node.parentElement;
    if (!el || el.closest(SKIP)) { continue; }
    if (node.data.trim()) { out.push(node.data); }
  }
  return out;
}
// block-level elements' text, so a table printed as a paragraph is seen whole
var blocks = Array.from(document.querySelectorAll('p, li, td, th, dd, div.output, span.math'))
  .filter(function (el) { return !el.closest(SKIP); })
  .map(function (el) { return textsOf(el).join(''); });
var images = Array.from(document.images).map(function (i) {
  return {src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0};
});
function visible(el) {
  var r = el.getBoundingClientRect();
  return r.width > 0 && r.height > 0;
}
var REPLACED = ['IMG', 'SVG', 'CANVAS', 'VIDEO', 'IFRAME', 'svg'];
function hasContent(el) {
  if (REPLACED.indexOf(el.tagName) >= 0) { return visible(el); }
  return Array.from(el.querySelectorAll('*')).some(function (c) {
    return c.tagName !== 'SCRIPT' && visible(c);
  }) || (el.innerText || '').trim().length > 0;
}
var widgets = Array.from(document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]'))
  .filter(function (s) {
    // a widget manager renders each view into an element just before its script
    var view = s.previousElementSibling;
    return !(view && /widget/.test(view.className) && hasContent(view));
  })
  .map(function (s) { return s.textContent.trim().slice(0, 120); });
var emptyOutputs = Array.from(document.querySelectorAll('div.cell_output'))
  .filter(function (o) { return !o.closest('details') && !hasContent(o); })
  .map(function (o) {
    var cell = o.closest('.cell');
    return (cell && cell.id) || (o.textContent || '').trim().slice(0, 80) || 'cell output';
  });
var links = Array.from(document.querySelectorAll('a[href]')).map(function (a) {
  return a.href;
});
// a picture a cell draws must sit in a figure whose caption says what to look at
var uncaptioned = Array.from(document.querySelectorAll('div.cell_output img'))
  .filter(function (i) {
    var figure = i.closest('figure');
    var caption = figure && figure.querySelector('figcaption');
    return !(caption && (caption.textContent || '').trim());
  })
  .map(function (i) {
    var cell = i.closest('.cell');
    return (cell && cell.id) || (i.getAttribute('src') || '').slice(0, 80);
  });
// the first admonition titles before the page's first section heading below the title
var firstSection = document.querySelector('section section');
var topTitles = Array.from(document.querySelectorAll('.admonition-title'))
  .filter(function (t) {
    return !firstSection || (firstSection.compareDocumentPosition(t)
                             & Node.DOCUMENT_POSITION_PRECEDING);
  })
  .map(function (t) { return (t.textContent || '').trim(); });
return {
  url: location.href, texts: textsOf(document.body), blocks: blocks, images: images,
  widgets: widgets, emptyOutputs: emptyOutputs, links: links, uncaptioned: uncaptioned,
  topTitles: topTitles,
  errors: window.__bookErrors || [],
  mathjax: !!(window.MathJax && MathJax.version)
};
"""


def _book() -> Path:
    return Path(BOOK).resolve()


def _pages() -> list[str]:
    if not BOOK:
        return []
    root = _book()
    skip = {"_static", "_sources", "_images", "_downloads"}
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*.html")
        if not skip.intersection(p.relative_to(root).parts)
    )


class _Anchors(HTMLParser):
    """The ids and names one HTML file defines, and its meta refresh target if any."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refresh: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "meta" and (attrs.get("http-equiv") or "").lower() == "refresh":
            self.refresh = (attrs.get("content") or "").partition("url=")[2] or None


_ANCHORS: dict[Path, _Anchors] = {}


def _anchors(path: Path) -> _Anchors:
    if path not in _ANCHORS:
        parser = _Anchors()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        _ANCHORS[path] = parser
    return _ANCHORS[path]


def broken_links(links: list[str], root: Path) -> list[str]:
    """Internal links (``file:`` URLs) whose file or anchor does not exist."""
    broken = []
    for link in sorted(set(links)):
        parts = urlsplit(link)
        if parts.scheme != "file":
            continue
        target = Path(unquote(parts.path))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"{link} (no such file)")
        elif parts.fragment and target.suffix == ".html":
            if unquote(parts.fragment) not in _anchors(target).ids:
                broken.append(f"{link} (no such anchor)")
    return broken


def network_requests(driver) -> list[str]:
    """URLs the page asked for that are not files on disk."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                urls.append(url)
    return sorted(set(urls))


def is_chapter(page: Path) -> bool:
    """A chapter notebook's page (``notebooks/chNN_*.html``, or ``chNNb_*`` for a split chapter)."""
    return page.parent.name == "notebooks" and re.match(r"ch\d+[a-z]?_", page.name) is not None


def inspect_page(driver, page: Path, screenshot: Path) -> tuple[list[str], dict]:
    """Open ``page`` and return what a reader would find wrong with it."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(page.as_uri())
    driver.execute_async_script(SETTLE)
    seen = driver.execute_script(INSPECT)
    problems = []

    raw = [t.strip() for t in seen["texts"] if RAW_LATEX.search(t)]
    if raw:
        problems.append(f"raw LaTeX in visible text ({len(raw)}): " + " | ".join(raw[:3]))
    bad = [i["src"] for i in seen["images"] if not i["ok"]]
    if bad:
        problems.append(f"images not loaded ({len(bad)}): " + ", ".join(bad[:3]))
    tables = [b.strip() for b in seen["blocks"] if TABLE_AS_TEXT.search(b)]
    if tables:
        problems.append(
            f"Markdown tables printed as text ({len(tables)}): " + tables[0][:120]
        )
    if seen["widgets"]:
        problems.append(
            f"empty widget areas ({len(seen['widgets'])}): " + seen["widgets"][0]
        )
    if seen["emptyOutputs"]:
        problems.append(
            f"empty output areas ({len(seen['emptyOutputs'])}): "
            + ", ".join(seen["emptyOutputs"][:3])
        )
    if seen["uncaptioned"]:
        problems.append(
            f"figures without a caption ({len(seen['uncaptioned'])}): "
            + ", ".join(seen["uncaptioned"][:3])
        )
    if is_chapter(page) and NEEDS_TITLE not in seen["topTitles"]:
        problems.append(f"no \"{NEEDS_TITLE}\" admonition before the chapter's first section")
    links = broken_links(seen["links"], _book())
    if links:
        problems.append(f"broken internal links ({len(links)}): " + ", ".join(links[:3]))
    errors = list(seen["errors"]) + [
        e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
    ]
    if errors:
        problems.append(f"JavaScript errors ({len(errors)}): " + " | ".join(errors[:3]))
    requests = network_requests(driver)
    if requests:
        problems.append(
            f"requests to the network ({len(requests)}): " + ", ".join(requests[:3])
        )
    _screenshot(driver, screenshot)
    return problems, seen


def _screenshot(driver, path: Path) -> None:
    """A PNG of the whole page: the window is made as tall as the page, captured in tiles
    (Chromium captures at most 16384 pixels at once), then restored."""
    from PIL import Image

    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False,
    })
    tiles = []
    try:
        for top in range(0, height, SHOT_TILE):
            clip = {"x": 0, "y": top, "width": WIDTH, "height": min(SHOT_TILE, height - top),
                    "scale": 1}
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png",
                                                                    "clip": clip})
            tiles.append(Image.open(io.BytesIO(base64.b64decode(shot["data"]))))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    page = Image.new("RGB", (WIDTH, sum(tile.height for tile in tiles)), "white")
    top = 0
    for tile in tiles:
        page.paste(tile.convert("RGB"), (0, top))
        top += tile.height
    path.parent.mkdir(parents=True, exist_ok=True)
    page.save(path)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("needs Chromium and chromedriver: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars",
        # no name resolves and no proxy is reachable: nothing leaves the machine
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
        "--disable-background-networking", "--disable-component-update",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {
        "urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"],
    })
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_ERRORS})
    yield driver
    driver.quit()


def test_book_has_pages():
    assert _book().is_dir(), f"no built book at {_book()}: make book PROFILE=ci first"
    pages = _pages()
    assert "book/intro.html" in pages, f"no intro page among {pages}"
    assert any(p.startswith("notebooks/") for p in pages), "no chapter pages"


@pytest.mark.parametrize("page", _pages())
def test_page_renders_offline(browser, page):
    root = _book()
    shots = Path(os.environ.get("GARDIFF_SCREENSHOTS", root.parents[1] / "screenshots"))
    screenshot = shots / (page.replace("/", "__").removesuffix(".html") + ".png")
    problems, seen = inspect_page(browser, root / page, screenshot)
    assert not problems, f"{page} (screenshot {screenshot}):\n  " + "\n  ".join(problems)
    assert seen["texts"], f"{page} shows no text"


def test_checks_catch_what_they_should(browser, tmp_path):
    """The checks themselves: a page with each defect fails each check."""
    page = tmp_path / "notebooks" / "ch99_bad.html"
    page.parent.mkdir()
    page.write_text(
        "<html><body><section><h1>Chapter 99</h1><section><h2>First</h2>"
        "<div class='admonition note'><p class='admonition-title'>"
        f"{NEEDS_TITLE}</p></div></section></section>"
        "<div class='cell_output'><div class='output'></div></div>"
        "<div class='cell_output'><img src='data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII='>"
        "</div>"
        "<p>\\(f_\\text{clip}\\)</p><p>| a | b | |---|---| | 1 | 2 |</p>"
        "<img src='missing.png'><a href='bad.html#nowhere'>x</a>"
        "<div><script type='application/vnd.jupyter.widget-view+json'>{}</script></div>"
        "<script src='https://cdn.example.org/x.js'></script>"
        "<script>undefinedFunction();</script></body></html>"
    )
    problems, _ = inspect_page(browser, page, tmp_path / "bad.png")
    found = "\n".join(problems)
    for kind in ("raw LaTeX", "images not loaded", "tables printed as text", "empty widget",
                 "empty output", "broken internal links", "JavaScript errors",
                 "requests to the network", "figures without a caption",
                 f'no "{NEEDS_TITLE}" admonition'):
        assert kind in found, f"{kind!r} not caught in:\n{found}"
    assert (tmp_path / "bad.png").stat().st_size > 0


# ---- the "Try it" page (book/tryit.md): the shipped model runs in the page -------------------

TRYIT_PAGE = "book/tryit.html"
# the page's 5-step try-on against the PyTorch pipeline's, per pixel and channel, in 1/255
TRYIT_TOLERANCE = 3
# seconds the page may take to load the model and sample (5 steps take a few seconds; below
# the 120 s in which selenium gives up on a command)
TRYIT_TIMEOUT = 100

# Picks a person and a garment, sets seed, steps and guidance through the page's controls,
# presses the button and waits for the result: returns the state, the timing and the result
# canvas's RGBA pixels (base64).
TRYIT_RUN = """
var opts = arguments[0], done = arguments[arguments.length - 1];
var root = document.getElementById('gardiff-tryit');
function settle(ok) {
  var api = window.gardiffTryIt || {};
  var out = {state: api.state, error: api.error || null, last: api.last || null,
             pageBytes: api.pageBytes || null, text: root ? root.innerText.slice(0, 400) : ''};
  if (ok) {
    var canvas = document.getElementById('tryit-result');
    var data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    var text = '';
    for (var i = 0; i < data.length; i += 8192) {
      text += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
    }
    out.pixels = btoa(text); out.width = canvas.width; out.height = canvas.height;
  }
  done(out);
}
function whenState(states, then) {
  (function poll() {
    var s = root && root.getAttribute('data-state');
    if (states.indexOf(s) >= 0) { then(s); } else { setTimeout(poll, 50); }
  })();
}
whenState(['ready', 'missing', 'error'], function (s) {
  if (s !== 'ready') { settle(false); return; }
  root.querySelector('.tryit-row[data-kind="person"] [data-index="' + opts.person + '"]').click();
  root.querySelector('.tryit-row[data-kind="garment"] [data-index="' + opts.garment + '"]').click();
  document.getElementById('tryit-seed').value = String(opts.seed);
  document.getElementById('tryit-steps').value = String(opts.steps);
  if (opts.guidance !== null) {
    document.getElementById('tryit-guidance').value = String(opts.guidance);
  }
  document.getElementById('tryit-run').click();
  whenState(['done', 'error'], function (end) { settle(end === 'done'); });
});
"""


def run_tryit(driver, page: Path, person: int, garment: int, seed: int, steps: int,
              guidance: float | None = None) -> dict:
    """Open the Try it ``page``, run one try-on through its controls, return what it reports
    and the result as a (H, W, 3) uint8 array (``image``)."""
    import numpy as np

    driver.get(page.as_uri())
    driver.set_script_timeout(TRYIT_TIMEOUT)
    try:
        out = driver.execute_async_script(TRYIT_RUN, {"person": person, "garment": garment,
                                                      "seed": seed, "steps": steps,
                                                      "guidance": guidance})
    finally:
        driver.set_script_timeout(PAGE_TIMEOUT)
    if out.get("pixels"):
        rgba = np.frombuffer(base64.b64decode(out.pop("pixels")), dtype=np.uint8)
        out["image"] = rgba.reshape(out["height"], out["width"], 4)[..., :3]
    return out


def test_tryit_page_matches_the_pytorch_pipeline(browser):
    """The page dresses the reference person in headless Chromium, offline, from ``file://``:
    5 DDIM steps from the noise shipped with it, within ``TRYIT_TOLERANCE``/255 of the PyTorch
    pipeline's image (written by the book build beside ``html/``)."""
    import numpy as np

    page = _book() / TRYIT_PAGE
    assert page.is_file(), f"no {TRYIT_PAGE} in {_book()}"
    reference_path = _book().parent / "tryit-reference.json"
    assert reference_path.is_file(), (f"{reference_path} not found: the book was built without "
                                      "the page's model (see the page's message)")
    reference = json.loads(reference_path.read_text())
    out = run_tryit(browser, page, reference["person"], reference["garment"], reference["seed"],
                    reference["steps"], reference["guidance_scale"])
    assert out["state"] == "done", f"the page did not finish: {out['state']}: {out['error']}"\
        f" ({out['text']})"
    expected = np.frombuffer(base64.b64decode(reference["image"]), dtype="<f4")
    expected = expected.reshape(reference["shape"]).transpose(1, 2, 0) * 255
    difference = np.abs(out["image"].astype(np.float64) - expected)
    last = out["last"]
    print(f"\nTry it page: {reference['steps']} steps in {last['ms'] / 1000:.2f} s "
          f"(model load {last['loadMs'] / 1000:.2f} s), max difference from PyTorch "
          f"{difference.max():.2f}/255, page weight {out['pageBytes']:,} bytes")
    shots = Path(os.environ.get("GARDIFF_SCREENSHOTS", _book().parents[1] / "screenshots"))
    _screenshot(browser, shots / "book__tryit__after_run.png")
    (shots / "tryit-timing.json").write_text(json.dumps({
        "steps": reference["steps"], "seconds": round(last["ms"] / 1000, 3),
        "load_seconds": round(last["loadMs"] / 1000, 3),
        "max_difference_255": float(difference.max()), "page_bytes": out["pageBytes"]}))
    assert difference.max() <= TRYIT_TOLERANCE, (
        f"the page's try-on differs from the PyTorch pipeline's by up to "
        f"{difference.max():.2f}/255 (> {TRYIT_TOLERANCE}) at "
        f"{np.argwhere(difference > TRYIT_TOLERANCE)[:3].tolist()}")
