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


def test_each_chapter_kernel_logs_progress_to_the_terminal(tmp_path, monkeypatch, capsys):
    calls = []

    def execute(template, output, **kwargs):
        calls.append(kwargs)
        nbformat.write(nbformat.v4.new_notebook(), output)

    monkeypatch.setattr(rc.pm, "execute_notebook", execute)
    monkeypatch.setattr("sys.argv", ["run_chapters.py", "--only", "ood_eval", "theory_dice_variance",
                                     "--chapters", str(tmp_path / "ch"), "--results", str(tmp_path)])
    assert rc.main() == 0
    assert [c["extra_arguments"] for c in calls] == [rc.kernel_arguments("ood_eval"),
                                                     rc.kernel_arguments("theory_dice_variance")]
    assert "ood_eval: running notebooks/ood_eval.ipynb" in capsys.readouterr().out


def test_progress_reaches_the_terminal_and_warnings_the_page(tmp_path):
    """A real kernel started as run_chapters starts it (outside pytest, so ipykernel captures the
    kernel's file descriptors as it does under `make book`): the package's info lines go to the
    stderr of the process that ran papermill, not into the notebook; warnings stay in the page."""
    import os
    import subprocess
    import sys

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import logging\n"
        "logging.getLogger('moon.train').info('epoch 1/20: loss 0.41')\n"
        "logging.getLogger('moon.train').debug('not shown')\n"
        "logging.getLogger('moon.runner').warning('careful')\n"
        "print('printed')")]
    source, executed = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    script = ("import papermill as pm, sys; sys.path.insert(0, sys.argv[3]); "
              "import run_chapters as rc; pm.execute_notebook(sys.argv[1], sys.argv[2], "
              "progress_bar=False, kernel_name='python3', "
              "extra_arguments=rc.kernel_arguments('demo'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    proc = subprocess.run([sys.executable, "-c", script, str(source), str(executed),
                           str(ROOT / "scripts")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "demo: epoch 1/20: loss 0.41\n" in proc.stderr
    assert "not shown" not in proc.stderr and "careful" not in proc.stderr
    outputs = nbformat.read(executed, as_version=4).cells[0].outputs
    text = {o["name"]: o["text"] for o in outputs if o["output_type"] == "stream"}
    assert text == {"stderr": "careful\n", "stdout": "printed\n"}
