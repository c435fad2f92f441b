"""Render the built book in headless Chromium and check it like a reader would.

    python scripts/book_check.py                                  # every page of book/_build/html
    python scripts/book_check.py --pages intro.html chapters/cost.html

The book must be built first (``make book`` or ``make ci-book``); the check never rebuilds it. The
build folder is served by a local ``http.server`` on a free port and each page is loaded in headless
Chromium (a 1280x900 viewport) through Selenium and Debian's ``chromium-driver``. After the page has
loaded and its images have settled, it reports:

* broken images: an ``<img>`` that is not ``complete`` or has ``naturalWidth`` 0;
* error output: notebook cells whose output is a traceback or stderr (MyST-NB renders them as
  ``div.output.traceback`` and ``div.output.stderr``; classic notebooks as ``.output_error`` and
  ``.output_stderr``), and page text (outside code-cell inputs) containing a Python traceback,
  ``NameError`` or ``ModuleNotFoundError``;
* what a reader cannot read: a figure rendered below 55% of its pixel width (its 7-pt text
  under about 6.5 px), a table wider than the page's column, a code input shown on a chapter page,
  and a figure's text representation ("<Figure size ... with N Axes>") where its image belongs;
* on the intro page (the page ``index.html`` redirects to), the reader's first screen: the
  headline figure (the image of ``figure#headline`` / an element whose id starts with
  ``headline`` / ``.headline-figure`` when there is one, else the first image of the main content
  area) and the verdict (the first list shown in the main content) must have a height and lie
  wholly on the first screen, and the paper-vs-ours table (the first table shown) must start on
  it; where the table ends is printed.

Screenshots of the first screen of the intro and of ``chapters/sparsity_sweep.html`` go to ``--out``.
One line per page; exit status 0 when every page is fine, 1 on any problem, 2 when the build folder,
Chromium, ChromeDriver or Selenium is missing.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WINDOW = (1280, 900)
SCREENSHOT_PAGES = ("chapters/sparsity_sweep.html",)      # besides the intro
SKIP_PAGES = {"search.html", "genindex.html", "py-modindex.html"}
TEXT_PATTERNS = ("Traceback (most recent call last)", "NameError", "ModuleNotFoundError")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "sudo apt-get install -y chromium chromium-driver"
_REFRESH = re.compile(r"""<meta[^>]+http-equiv=["']?refresh["']?[^>]*url=([^"'>\s]+)""", re.I)


class SetupError(Exception):
    """Something the check needs (build folder, browser, driver, Selenium) is missing."""


# --- pages ----------------------------------------------------------------------------------------

def redirect_target(html: str) -> str | None:
    """The URL a ``<meta http-equiv="Refresh" content="0; url=...">`` page sends the reader to."""
    match = _REFRESH.search(html)
    return match.group(1) if match else None


def root_page(build: Path) -> str:
    """The page a reader lands on: what ``index.html`` redirects to, else ``index.html`` itself."""
    index = build / "index.html"
    if not index.is_file():
        return "intro.html" if (build / "intro.html").is_file() else "index.html"
    return redirect_target(index.read_text(encoding="utf-8", errors="replace")) or "index.html"


def discover_pages(build: Path) -> list[str]:
    """Every content page of the build (paths relative to it, '/'-separated, sorted).

    Left out: Sphinx's own pages (search, genindex, py-modindex), anything under a folder whose
    name starts with ``_`` (``_static``, ``_sources``, ``_images``, ...) and a root ``index.html``
    that only redirects (its target is a page of its own).
    """
    pages = []
    for path in sorted(build.rglob("*.html")):
        rel = path.relative_to(build)
        hidden = any(part.startswith(("_", ".")) for part in rel.parts[:-1])
        if hidden or rel.as_posix() in SKIP_PAGES:
            continue
        if rel.as_posix() == "index.html" and redirect_target(path.read_text(errors="replace")):
            continue
        pages.append(rel.as_posix())
    return pages


# --- classifying what the browser saw (pure Python) -----------------------------------------------

def _error_kind(classes: set[str], in_cell_output: bool) -> str | None:
    """'error output' / 'stderr output' when an element with these classes is one, else None."""
    if "output_error" in classes or {"output", "traceback"} <= classes:
        return "error output"
    in_output = "output" in classes or in_cell_output
    if "output_stderr" in classes or ("stderr" in classes and in_output):
        return "stderr output"
    return None


class _PageScanner(HTMLParser):
    """Collects the error/stderr outputs of a page and its text outside them and code inputs."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
            "track", "wbr"}
    SILENT = {"script", "style", "template", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None, bool, bool]] = []   # tag, kind, skip, in_output
        self.outputs: list[tuple[str, list[str]]] = []               # (kind, text pieces)
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        _, kind, skip, in_output = self.stack[-1] if self.stack else ("", None, False, False)
        in_output = in_output or "cell_output" in classes
        new_kind = None if kind else _error_kind(classes, in_output)
        if new_kind:
            self.outputs.append((new_kind, []))
        skip = skip or tag in self.SILENT or "cell_input" in classes
        self.stack.append((tag, kind or new_kind, skip, in_output))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):      # tolerate unclosed inner elements
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        _, kind, skip, _ = self.stack[-1] if self.stack else ("", None, False, False)
        if kind:
            self.outputs[-1][1].append(data)
        elif not skip:
            self.text.append(data)


def _summary(kind: str, text: str) -> str:
    """One line for an output: a traceback's last line (the exception), a stream's first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = (lines[-1] if kind == "error output" else lines[0]) if lines else "(empty)"
    return line if len(line) <= 100 else line[:97] + "..."


def content_problems(html: str) -> list[str]:
    """Error and stderr outputs and traceback-like text in a page's (rendered) HTML.

    Repeated identical outputs are reported once with a count; a pattern such as ``NameError`` is
    looked for in the page text outside those outputs and outside code-cell inputs (code shown as
    code may mention exceptions legitimately).
    """
    scanner = _PageScanner()
    scanner.feed(html)
    scanner.close()
    counts = Counter(f"{kind}: {_summary(kind, ''.join(parts))}" for kind, parts in scanner.outputs)
    problems = [f"{n} x {msg}" if n > 1 else msg for msg, n in counts.items()]
    text = " ".join("".join(scanner.text).split())      # "".join: highlighting splits words
    problems += [f"text contains {pattern!r}" for pattern in TEXT_PATTERNS if pattern in text]
    return problems


def image_problems(images: list[dict]) -> list[str]:
    """Broken images among ``{"src", "complete", "naturalWidth"}`` records (one line listing them)."""
    broken = [img.get("src") or "(no src)" for img in images
              if not img.get("complete") or not img.get("naturalWidth")]
    return [f"{len(broken)} broken image(s): " + ", ".join(broken)] if broken else []


# A figure is drawn at plotting.DPI (120) with text of 7 pt or more: 7 pt = 11.7 px at full size.
# Shrunk below this share of its pixel width, that text falls under about 6.5 px: unreadable.
MIN_FIGURE_SCALE = 0.55
FIGURE_REPR = re.compile(r"<Figure size \d+x\d+ with \d+ Axes>")


def legibility_problems(images: list[dict], minimum: float = MIN_FIGURE_SCALE) -> list[str]:
    """Figures shrunk so far that their text cannot be read: the rendered width against the image's
    own pixel width (``{"src", "naturalWidth", "width"}`` records; small icons are left out)."""
    small = [f"{img.get('src')} at {img['width'] / img['naturalWidth']:.0%}" for img in images
             if (img.get("naturalWidth") or 0) >= 400 and img.get("width")
             and img["width"] / img["naturalWidth"] < minimum]
    return [f"{len(small)} figure(s) shrunk below {minimum:.0%} of their size, text unreadable: "
            + ", ".join(small)] if small else []


def table_problems(tables: list[dict]) -> list[str]:
    """Tables wider than the page's column (``{"width", "column", "head"}`` records)."""
    wide = [f"'{t['head']}' ({t['width']:.0f} of {t['column']:.0f}px)" for t in tables
            if t["width"] > t["column"] + 2]
    return [f"{len(wide)} table(s) wider than the column: " + ", ".join(wide)] if wide else []


def chapter_problems(page: str, inputs: int, html: str) -> list[str]:
    """A chapter page shows no code input (its cells are tagged to hide them), and no page shows
    a figure's text representation ("<Figure size 970x229 with 4 Axes>") instead of its image."""
    problems = []
    if page.startswith("chapters/") and inputs:
        problems.append(f"{inputs} code input(s) shown on a chapter page")
    shown = FIGURE_REPR.findall(html.replace("&lt;", "<").replace("&gt;", ">"))
    if shown:
        problems.append(f"{len(shown)} figure(s) shown as text ({shown[0]}), not as an image")
    return problems


def first_screen_problems(boxes: dict) -> list[str]:
    """Whether the intro's parts are on the first screen. ``boxes`` maps "headline figure",
    "verdict" and "paper table" to ``{"top", "bottom", "height", "innerHeight", "what"}`` (None
    when the page has no such element): the figure and the verdict must lie wholly on the first
    screen, the table must start on it."""
    problems = []
    for name, whole in (("headline figure", True), ("verdict", True), ("paper table", False)):
        box = boxes.get(name)
        if box is None:
            problems.append(f"no {name}: the main content has no "
                            + {"headline figure": "image", "verdict": "list",
                               "paper table": "table"}[name])
            continue
        if not box["height"] > 0:
            problems.append(f"{name} {box['what']} has no height")
        end = box["bottom"] if whole else box["top"]
        if not end <= box["innerHeight"]:
            problems.append(f"{name} {box['what']} is below the fold ("
                            + ("bottom" if whole else "top")
                            + f" {end:.0f}px, first screen {box['innerHeight']}px)")
    return problems


def first_screen_note(boxes: dict) -> str:
    """Where the paper table ends, for the intro's line ("table ends at 856 of 900px")."""
    box = boxes.get("paper table")
    return "" if box is None else (f" (paper table ends at {box['bottom']:.0f} of "
                                   f"{box['innerHeight']}px)")


# --- the browser ----------------------------------------------------------------------------------

# Load every image now (lazy ones too) and call back once all have settled, or after `timeout` ms.
WAIT_IMAGES_JS = """
const done = arguments[arguments.length - 1], timeout = arguments[0], start = Date.now();
const imgs = Array.from(document.images);
imgs.forEach(img => { if (img.loading === 'lazy') img.loading = 'eager'; });
(function poll() {
  if (imgs.every(img => img.complete) || Date.now() - start > timeout) done(true);
  else setTimeout(poll, 50);
})();
"""

FACTS_JS = """
const images = Array.from(document.images).map(img => ({
  src: img.getAttribute('src'), complete: img.complete, naturalWidth: img.naturalWidth,
  width: img.getBoundingClientRect().width}));
const main = document.querySelector('article.bd-article, main, [role="main"]') || document.body;
// tables wider than the column they sit in (a reader would have to scroll sideways)
const column = main.getBoundingClientRect().width;
const tables = Array.from(main.querySelectorAll('table')).filter(
  t => t.getBoundingClientRect().height > 0).map(t => ({
  width: t.scrollWidth, column: column,
  head: (t.querySelector('th, td') || {textContent: ''}).textContent.trim().slice(0, 40)}));
// code inputs a reader sees (a cell whose input is not removed or folded)
const inputs = Array.from(main.querySelectorAll('.cell_input')).filter(
  el => el.getBoundingClientRect().height > 0 && !el.closest('details')).length;
const picks = ['figure#headline', '[id^="headline"]', '.headline-figure'].flatMap(
  sel => Array.from(document.querySelectorAll(sel))).map(
  el => el.tagName === 'IMG' ? el : el.querySelector('img')).filter(el => el);
const box = (el, what) => {
  if (!el) return null;
  const r = el.getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, height: r.height, innerHeight: window.innerHeight,
          what: what};
};
const img = picks[0] || main.querySelector('img');
// the first one shown: an output folded away (hide-output) is in the page but has no box
const shown = sel => Array.from(main.querySelectorAll(sel)).find(
  el => el.getBoundingClientRect().height > 0) || main.querySelector(sel);
const boxes = {'headline figure': box(img, img ? img.getAttribute('src') : ''),
               'verdict': box(shown('ul'), '(first list)'),
               'paper table': box(shown('table'), '(first table)')};
return {images: images, boxes: boxes, tables: tables, inputs: inputs,
        html: document.documentElement.outerHTML};
"""


def short_error(err: Exception) -> str:
    """An exception in one line, without the C++ stack trace WebDriver errors carry."""
    text = str(err).split("Stacktrace:")[0].removeprefix("Message:").strip()
    return f"{type(err).__name__}: " + " ".join(text.split())


def find_browser(chromium: str | None, chromedriver: str | None) -> tuple[str, str]:
    """Paths of the Chromium binary and of ChromeDriver (given, or found on PATH)."""
    chromium = chromium or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    chromedriver = chromedriver or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", chromedriver))
               if not path]
    if missing:
        raise SetupError(f"{' and '.join(missing)} not found: install them with `{INSTALL_HINT}`"
                         " (Debian/Ubuntu), or pass --chromium / --chromedriver")
    return chromium, chromedriver


def make_driver(chromium: str, chromedriver: str):
    """A headless Chromium WebDriver whose page area (viewport) is 1280x900."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise SetupError("selenium is not installed: `pip install selenium` "
                         "(part of the `test` extra: `make install`)") from err
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", f"--window-size={WINDOW[0]},{WINDOW[1]}", "--no-sandbox",
                "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    except Exception as err:  # noqa: BLE001 - any start failure is a setup problem
        raise SetupError(f"could not start headless Chromium ({chromium}) through {chromedriver}: "
                         f"{short_error(err)}; install both with `{INSTALL_HINT}`") from err
    fit_viewport(driver, *WINDOW)
    return driver


def fit_viewport(driver, width: int, height: int) -> None:
    """Resize the window so that the page area (``innerWidth`` x ``innerHeight``) is width x height.

    New headless Chromium keeps room for a (virtual) toolbar, so ``--window-size=1280,900`` alone
    leaves a page area about 140 px shorter.
    """
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    outer = driver.get_window_size()
    driver.set_window_size(outer["width"] + width - inner[0], outer["height"] + height - inner[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging every request to stderr."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(folder: Path):
    """Serve ``folder`` on 127.0.0.1 at a free port in a background thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def screenshot_name(page: str) -> str:
    """``chapters/sparsity_sweep.html`` -> ``chapters-sparsity_sweep.png``."""
    return page.removesuffix(".html").replace("/", "-") + ".png"


def check_page(driver, url: str, is_intro: bool, screenshot: Path | None,
               timeout: float, page: str = "") -> tuple[list[str], str]:
    """Load one page and return its problems and a note for its line (saving the first screen to
    ``screenshot``)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    driver.execute_async_script(WAIT_IMAGES_JS, int(timeout * 1000))
    driver.execute_script("window.scrollTo(0, 0);")
    facts = driver.execute_script(FACTS_JS)
    problems = (image_problems(facts["images"]) + content_problems(facts["html"])
                + legibility_problems(facts["images"]) + table_problems(facts["tables"])
                + chapter_problems(page, facts["inputs"], facts["html"]))
    note = ""
    if is_intro:
        problems += first_screen_problems(facts["boxes"])
        note = first_screen_note(facts["boxes"])
    if screenshot is not None:
        driver.save_screenshot(str(screenshot))
    return problems, note


def run_checks(build: Path, pages: list[str], out: Path, chromium: str, chromedriver: str,
               timeout: float) -> int:
    """Check ``pages`` of ``build`` one by one, printing a line each; the number with problems."""
    intro = root_page(build)
    out.mkdir(parents=True, exist_ok=True)
    driver = make_driver(chromium, chromedriver)
    failed = 0
    try:
        driver.set_script_timeout(timeout + 5)
        driver.set_page_load_timeout(timeout)
        with serve(build) as base:
            for page in pages:
                shot = out / screenshot_name(page) if page in (intro, *SCREENSHOT_PAGES) else None
                try:
                    problems, note = check_page(driver, base + page, page == intro, shot,
                                                timeout, page)
                except Exception as err:  # noqa: BLE001 - a page that fails to load is a problem
                    problems, note = [f"could not check the page: {short_error(err)}"], ""
                failed += bool(problems)
                print(f"{page}: " + ("ok" if not problems else "; ".join(problems)) + note,
                      flush=True)
    finally:
        driver.quit()
    return failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "book" / "_build" / "html",
                        help="the built book (default: book/_build/html)")
    parser.add_argument("--out", type=Path, default=ROOT / "book" / "_build" / "check",
                        help="folder for the screenshots (default: book/_build/check)")
    parser.add_argument("--pages", nargs="+", metavar="PAGE",
                        help="pages relative to --build (default: every page of the book)")
    parser.add_argument("--chromium", help="the Chromium binary (default: found on PATH)")
    parser.add_argument("--chromedriver", help="ChromeDriver (default: found on PATH)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for a page and its images (default: 30)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the check; 0: every page fine, 1: problems found, 2: something needed is missing."""
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        if not (args.build / "index.html").is_file() and not args.pages:
            raise SetupError(f"no built book at {args.build}: build it first with `make book` "
                             "(or `make ci-book`)")
        pages = args.pages or discover_pages(args.build)
        missing = [page for page in pages if not (args.build / page).is_file()]
        if missing:
            raise SetupError(f"not in {args.build}: {', '.join(missing)} (build it with `make book`)")
        chromium, chromedriver = find_browser(args.chromium, args.chromedriver)
        failed = run_checks(args.build, pages, args.out, chromium, chromedriver, args.timeout)
    except SetupError as err:
        print(f"book-check: {err}", file=sys.stderr)
        return 2
    print(f"book-check: {len(pages) - failed} of {len(pages)} pages ok, {failed} with problems "
          f"({time.perf_counter() - start:.1f} s; screenshots in {args.out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
