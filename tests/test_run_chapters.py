"""scripts/run_chapters.py's post-processing of an executed chapter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_chapters", ROOT / "scripts" / "run_chapters.py")
rc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rc)


def _chapter(tmp_path: Path, injected: bool) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter\n\n**Question.** Q?\n\n**Default.** Runs "
                                              "in minutes; `-p preset smoke`.\n\n**What to look at.** X."),
                nbformat.v4.new_code_cell("epochs = 20", metadata={"tags": ["parameters"]})]
    if injected:
        nb.cells.append(nbformat.v4.new_code_cell("epochs = 100",
                                                  metadata={"tags": ["injected-parameters"]}))
    code = nbformat.v4.new_code_cell("1 + 1")
    code.outputs = [nbformat.v4.new_output("stream", name="stderr",
                                           text="[IPKernelApp] WARNING | plain TCP"),
                    nbformat.v4.new_output("stream", name="stdout", text="2")]
    nb.cells.append(code)
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    return path


def test_template_defaults_leave_the_book_and_the_values_run_stay_one_click_away(tmp_path):
    path = _chapter(tmp_path, injected=True)
    rc._hide_parameters(path)
    cells = nbformat.read(path, as_version=4).cells
    assert cells[1].metadata["tags"] == ["parameters", "remove-cell"]        # epochs = 20: gone
    assert cells[2].metadata["tags"] == ["injected-parameters", "hide-input"]   # epochs = 100
    assert [o["name"] for o in cells[3].outputs] == ["stdout"]     # the kernel's warning dropped
    assert cells[0].source == "# A chapter\n\n**Question.** Q?\n\n**What to look at.** X."
    rc._hide_parameters(path)                                       # idempotent
    assert nbformat.read(path, as_version=4).cells[1].metadata["tags"] == ["parameters",
                                                                           "remove-cell"]


def test_without_injected_values_the_defaults_are_what_ran_and_stay(tmp_path):
    path = _chapter(tmp_path, injected=False)
    rc._hide_parameters(path)
    assert nbformat.read(path, as_version=4).cells[1].metadata["tags"] == ["parameters",
                                                                           "hide-input"]
