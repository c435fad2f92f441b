"""scripts/book_check.py: page discovery and problem classification on synthetic pages, and (when
Chromium, ChromeDriver and Selenium are installed) one end-to-end check of a tiny synthetic build."""

from __future__ import annotations

import base64
import importlib.util
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "book_check.py"
_spec = importlib.util.spec_from_file_location("book_check", SCRIPT)
bc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bc)

# A 1x1 PNG, so that a synthetic build has an image that loads.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx"
                       "0gAAAABJRU5ErkJggg==")
REDIRECT = '<meta http-equiv="Refresh" content="0; url=intro.html" />'


def page(body: str) -> str:
    """A minimal page laid out like sphinx-book-theme's (the content in ``article.bd-article``)."""
    return (f'<html><head><title>t</title></head><body><main id="main-content">'
            f'<article class="bd-article">{body}</article></main></body></html>')


def stderr_cell(text: str) -> str:
    """A code cell whose output is a stderr stream, as MyST-NB renders it."""
    return ('<div class="cell docutils container"><div class="cell_output docutils container">'
            f'<div class="output stderr highlight-myst-ansi notranslate"><div class="highlight">'
            f'<pre><span></span>{text}</pre></div></div></div></div>')


TRACEBACK = ('<div class="cell_output docutils container">'
             '<div class="output traceback highlight-ipythontb"><pre>-----\n'
             'NameError      Traceback (most recent call last)\nCell In[1], line 1\n'
             "NameError: name 'x' is not defined\n</pre></div></div>")


def write_build(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under ``root`` and return it."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_discover_pages_skips_sphinx_pages_assets_and_the_redirect(tmp_path):
    build = write_build(tmp_path, {
        "index.html": REDIRECT, "intro.html": page("hi"), "method.html": page("m"),
        "chapters/cost.html": page("c"), "search.html": "", "genindex.html": "",
        "_static/x.html": "", "_sources/y.html": "", "chapters/notes.txt": ""})
    assert bc.discover_pages(build) == ["chapters/cost.html", "intro.html", "method.html"]
    assert bc.root_page(build) == "intro.html"


def test_an_index_that_is_a_page_is_kept(tmp_path):
    build = write_build(tmp_path, {"index.html": page("the book"), "a.html": page("a")})
    assert bc.discover_pages(build) == ["a.html", "index.html"]
    assert bc.root_page(build) == "index.html"


def test_redirect_target():
    assert bc.redirect_target(REDIRECT) == "intro.html"
    assert bc.redirect_target("<META HTTP-EQUIV='refresh' CONTENT='0;URL=a/b.html'>") == "a/b.html"
    assert bc.redirect_target(page("no redirect")) is None


def test_a_clean_page_has_no_problems():
    body = ("<p>Errors are rare.</p>"
            '<div class="cell_input"><pre>except ModuleNotFoundError: pass</pre></div>'
            '<div class="cell_output"><div class="output stream"><pre>done</pre></div></div>'
            "<script>throw new Error('NameError')</script>")
    assert bc.content_problems(page(body)) == []


def test_stderr_outputs_are_counted_once_by_their_first_line():
    html = page(stderr_cell("WARNING | noisy\nsecond line") * 3 + stderr_cell("other"))
    assert bc.content_problems(html) == ["3 x stderr output: WARNING | noisy", "stderr output: other"]


def test_a_traceback_is_reported_by_its_exception_line_only():
    assert bc.content_problems(page(TRACEBACK)) == ["error output: NameError: name 'x' is not defined"]


def test_classic_error_classes_and_traceback_text():
    html = page('<div class="output_area"><div class="output_error"><pre>boom\nValueError: v</pre>'
                '</div></div><div class="output_stderr"><pre>warn</pre></div>'
                "<p>Traceback (most recent call last): ModuleNotFoundError: No module named 'q'</p>")
    assert bc.content_problems(html) == [
        "error output: ValueError: v", "stderr output: warn",
        "text contains 'Traceback (most recent call last)'", "text contains 'ModuleNotFoundError'"]


def test_a_stderr_class_outside_notebook_output_is_not_an_output():
    assert bc.content_problems(page('<span class="stderr">a css class</span>')) == []


def test_an_exception_name_split_by_highlighting_is_found():
    html = page('<pre><span class="ne">Name</span><span class="ne">Error</span>: x</pre>')
    assert bc.content_problems(html) == ["text contains 'NameError'"]


def test_image_problems_list_the_broken_sources():
    images = [{"src": "ok.png", "complete": True, "naturalWidth": 10},
              {"src": "gone.png", "complete": True, "naturalWidth": 0},
              {"src": "slow.png", "complete": False, "naturalWidth": 0}]
    assert bc.image_problems(images) == ["2 broken image(s): gone.png, slow.png"]
    assert bc.image_problems(images[:1]) == []


def _box(top, height, what="a.png"):
    return {"top": top, "bottom": top + height, "height": height, "innerHeight": 900,
            "what": what}


def test_first_screen_problems():
    fine = {"headline figure": _box(120, 300), "verdict": _box(430, 200, "(first list)"),
            "paper table": _box(650, 400, "(first table)")}       # a table may end below
    assert bc.first_screen_problems(fine) == []
    assert bc.first_screen_note(fine) == " (paper table ends at 1050 of 900px)"
    assert bc.first_screen_problems({}) == [
        "no headline figure: the main content has no image",
        "no verdict: the main content has no list", "no paper table: the main content has no table"]
    low = bc.first_screen_problems(dict(fine, **{"headline figure": _box(1500, 0)}))
    assert low == ["headline figure a.png has no height",
                   "headline figure a.png is below the fold (bottom 1500px, first screen 900px)"]
    cut = bc.first_screen_problems(dict(fine, verdict=_box(700, 250, "(first list)")))
    assert cut == ["verdict (first list) is below the fold (bottom 950px, first screen 900px)"]
    late = bc.first_screen_problems(dict(fine, **{"paper table": _box(901, 10, "(first table)")}))
    assert late == ["paper table (first table) is below the fold (top 901px, first screen 900px)"]


def test_missing_build_exits_2(tmp_path, capsys):
    assert bc.main(["--build", str(tmp_path / "nothing")]) == 2
    assert "make book" in capsys.readouterr().err


def test_missing_browser_names_the_apt_get_command(monkeypatch):
    monkeypatch.setattr(bc.shutil, "which", lambda name: None)
    with pytest.raises(bc.SetupError, match="apt-get install -y chromium chromium-driver"):
        bc.find_browser(None, None)


def _browser_ready() -> bool:
    """Chromium, ChromeDriver and Selenium are all installed."""
    return (any(map(shutil.which, bc.CHROMIUM_NAMES)) and bool(shutil.which("chromedriver"))
            and importlib.util.find_spec("selenium") is not None)


@pytest.mark.skipif(not _browser_ready(), reason="needs chromium, chromium-driver and selenium")
def test_end_to_end_on_a_synthetic_build(tmp_path, capsys):
    build = write_build(tmp_path / "html", {
        "index.html": REDIRECT,
        "intro.html": page('<h1>Book</h1><figure id="headline"><img src="_images/a.png" '
                           'style="width:200px;height:100px"></figure><ul><li>verdict</li></ul>'
                           '<table><tr><td>claim</td></tr></table>'),
        "chapters/sparsity_sweep.html": page('<img src="../_images/missing.png">' + TRACEBACK)})
    (build / "_images").mkdir()
    (build / "_images" / "a.png").write_bytes(PNG)
    out = tmp_path / "check"
    assert bc.main(["--build", str(build), "--out", str(out), "--timeout", "20"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("chapters/sparsity_sweep.html: 1 broken image(s): ../_images/missing.png; "
                        "error output: NameError: name 'x' is not defined")
    assert lines[1].startswith("intro.html: ok (paper table ends at ")
    assert sorted(p.name for p in out.iterdir()) == ["chapters-sparsity_sweep.png", "intro.png"]


def test_reader_checks_flag_shrunk_figures_wide_tables_code_and_figure_text():
    figures = [{"src": "a.png", "naturalWidth": 1600, "width": 700},      # 44%: unreadable
               {"src": "b.png", "naturalWidth": 1000, "width": 700},      # 70%: fine
               {"src": "icon.png", "naturalWidth": 64, "width": 16}]      # an icon: ignored
    (line,) = bc.legibility_problems(figures)
    assert "1 figure(s)" in line and "a.png at 44%" in line and "b.png" not in line
    assert bc.table_problems([{"width": 1100, "column": 1024, "head": "claim"},
                              {"width": 1020, "column": 1024, "head": "fits"}]) == [
        "1 table(s) wider than the column: 'claim' (1100 of 1024px)"]
    assert bc.chapter_problems("chapters/x.html", 2, "") == [
        "2 code input(s) shown on a chapter page"]
    assert bc.chapter_problems("intro.html", 2, "") == []                 # pages may show code
    text = "<div>&lt;Figure size 970x229 with 4 Axes&gt;</div>"
    assert bc.chapter_problems("intro.html", 0, text) == [
        "1 figure(s) shown as text (<Figure size 970x229 with 4 Axes>), not as an image"]
