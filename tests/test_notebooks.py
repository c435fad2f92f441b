"""Notebook templates: parameters are exactly RunConfig's fields (plus preset, out_dir); no outputs."""

import json
import re
from pathlib import Path

import papermill as pm
import pytest

from moon.config import RunConfig, field_names
from moon.notebook import STUDY_PARAMETERS

TEMPLATES = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_templates():
    assert any(p.name == "ood_eval.ipynb" for p in TEMPLATES)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_parameters_are_run_config_fields(path):
    params = pm.inspect_notebook(str(path))
    names = set(params)
    extra = {"preset", "out_dir"}
    assert extra <= names, f"{path.name} lacks {extra - names}"
    if "study" in names:                # a study's summary: which study, which part of its grid
        assert params["only"]["default"] in ("None", "{'alpha_final': [1.0]}",
                                             "{'density': [1.0, 0.05], 'alpha_final': [1.0]}")
        extra |= set(STUDY_PARAMETERS)
        assert params["run_missing"]["default"] == "True"     # papermill -p alone just works
    # the chapters' extra inputs: the regime chapter's short study, the cost chapter's benchmark
    extra |= {"short_study", "short_dir", "short_preset", "inference", "train_sparse", "regime_dir",
              "pilot_dir"} & names
    assert names - extra <= set(field_names()), f"unknown: {names - extra - set(field_names())}"
    if path.name == "ood_eval.ipynb":   # the main template exposes every field at its default
        assert names - extra == set(field_names())
        defaults = RunConfig().to_dict()
        for name in field_names():
            assert params[name]["default"] == repr(defaults[name]), name


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_carry_no_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in cells if c["cell_type"] == "code")
    assert cells[0]["cell_type"] == "markdown"


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_notebooks", Path(__file__).parent.parent / "scripts" / "make_notebooks.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_committed_templates_are_what_the_generator_writes():
    """notebooks/*.ipynb and their sources notebooks/src/*.py cannot drift apart."""
    import nbformat

    written = _generator().templates()
    assert sorted(written) == sorted(p.stem for p in TEMPLATES)
    for path in TEMPLATES:
        committed = nbformat.read(path, as_version=4)
        assert committed == written[path.stem], f"{path.name}: run scripts/make_notebooks.py"


def test_parameters_cells_are_written_from_run_config_fields(monkeypatch):
    """A field's line carries its default and its help from the field's metadata, so a new field
    or a changed default reaches every template that lists it (here: a changed default and help)."""
    import dataclasses
    import types

    gen = _generator()
    lines = gen.expand_parameters("preset = None\n# RunConfig fields: knn_k, seed\n").splitlines()
    assert lines[:2] == gen.HEADER.splitlines()
    assert lines[2].startswith("preset = None") and lines[2].endswith('"cpu" | "full" | "paper"')
    assert lines[3].startswith("knn_k = 50") and "k-th nearest" in lines[3]
    assert lines[-1].startswith("seed = 0")
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    changed = types.SimpleNamespace(to_dict=lambda: {"knn_k": 7})
    monkeypatch.setattr(gen, "RunConfig", lambda: changed)
    monkeypatch.setattr(gen, "field_docs", lambda: {"knn_k": "a new help"})
    assert gen.expand_parameters("# RunConfig fields: knn_k\n").splitlines()[2] == (
        "knn_k = 7                           # a new help")
    with pytest.raises(ValueError, match="'sede' in a parameters cell is not a RunConfig field"):
        gen.expand_parameters("# RunConfig fields: sede\n")
    assert all(f.metadata.get("doc") for f in fields.values()), "a RunConfig field without help"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_each_template_refuses_exactly_what_it_does_not_declare(path):
    """The first cell after the parameters calls ``chapter(globals(), allowed, extra)`` (or, in a
    study chapter, ``study_chapter(globals(), extra)``): its names are the names the parameters
    cell declares, so a declared one is never refused and an undeclared one always is."""
    import ast

    import nbformat

    from moon.notebook import NOTEBOOK_FIELDS, STUDY_FIELDS, STUDY_PARAMETERS

    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", ()))
    call = next(n for n in ast.walk(ast.parse(nb.cells[at + 1].source)) if isinstance(n, ast.Call)
                and getattr(n.func, "id", "") in ("chapter", "study_chapter"))
    extra = next((ast.literal_eval(k.value) for k in call.keywords if k.arg == "extra"), ())
    if call.func.id == "study_chapter":          # a study chapter: the study's parameters too
        allowed, extra = STUDY_FIELDS, (*STUDY_PARAMETERS, *extra)
    else:
        allowed = ast.literal_eval(call.args[1]) if len(call.args) > 1 else field_names()
    assert set(allowed) | set(extra) | set(NOTEBOOK_FIELDS) == set(pm.inspect_notebook(str(path)))


def test_unknown_parameters_are_refused_with_close_matches():
    from moon.notebook import check_parameters

    check_parameters({"density": 0.1, "preset": None, "json": json, "In": []})
    with pytest.raises(ValueError, match=r"'densty' \(did you mean density\?\)"):
        check_parameters({"densty": 0.1, "density": 0.05})
    with pytest.raises(ValueError, match="'lr'"):
        check_parameters({"lr": 0.1, "seed": 0}, ["seed", "density", "alpha_final"])


@pytest.mark.slow
def test_papermill_misspelt_parameter_fails_in_the_first_cell(tmp_path):
    template = Path(__file__).parent.parent / "notebooks" / "ood_eval.ipynb"
    with pytest.raises(pm.PapermillExecutionError, match="densty"):
        pm.execute_notebook(str(template), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            parameters={"densty": 0.1, "preset": "smoke"}, progress_bar=False,
                            cwd=str(tmp_path))
    assert not (tmp_path / "runs").exists()        # nothing ran


@pytest.mark.slow
def test_readme_examples_write_two_folders(fake_data, tmp_path):
    """`-p density 0.05` then `-p density 0.02 -p method set`: each its own folder, both complete."""
    template = Path(__file__).parent.parent / "notebooks" / "ood_eval.ipynb"
    small = {"preset": "smoke", "model": "mlp", "detectors": "msp", "max_train_samples": 100,
             "fit_samples": 100, "epochs": 6, "batch_size": 16, "lr_warmup_epochs": 0.0}
    for params in ({"density": 0.05}, {"density": 0.02, "method": "set"}):
        pm.execute_notebook(str(template), str(tmp_path / "out.ipynb"), kernel_name="python3",
                            parameters={**small, **params}, progress_bar=False, cwd=str(tmp_path))
    results = sorted((tmp_path / "runs" / "ood_eval").glob("*/result.json"))
    assert len(results) == 2
    assert {json.loads(p.read_text())["status"] for p in results} == {"complete"}


def _figure_notebook(path: Path, setup: bool) -> None:
    import nbformat

    cells = ["from moon.notebook import show_figures_as_images\nshow_figures_as_images()"] if setup else []
    cells += ["from moon.report.plotting import panel_grid\nfig, axes = panel_grid(2, 2, 1.5)\nfig",
              "from IPython.display import display\ndisplay(fig)"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _figure_outputs(path: Path) -> list[dict]:
    return [o for cell in json.loads(path.read_text())["cells"][-2:] for o in cell["outputs"]]


@pytest.mark.parametrize("backend", ["Agg", None])
def test_figures_are_images_whatever_mplbackend_says(backend, tmp_path, monkeypatch):
    """A shell that exports MPLBACKEND=Agg once made every figure of the book the text
    "<Figure size 970x229 with 4 Axes>"."""
    if backend is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", backend)
    _figure_notebook(tmp_path / "in.ipynb", setup=True)
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"),
                        progress_bar=False, kernel_name="python3", cwd=str(tmp_path))
    outputs = _figure_outputs(tmp_path / "out.ipynb")
    assert len(outputs) == 2 and all("image/png" in o.get("data", {}) for o in outputs), outputs
    # the text is only the fallback beside the image (as with the inline backend), never alone
    assert not [o for o in outputs if "image/png" not in o.get("data", {})
                and "<Figure size" in json.dumps(o)]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_template_shows_figures_as_images(path):
    """The first cell after the parameters calls moon.notebook.chapter, which registers the PNG
    formatter (any MPLBACKEND)."""
    import inspect

    from moon.notebook import chapter, study_chapter

    cells = json.loads(path.read_text())["cells"]
    at = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", ()))
    first = "".join(cells[at + 1]["source"])
    assert len(re.findall(r"\b(?:study_)?chapter\(globals\(\)", first)) == 1, path.name
    assert "show_figures_as_images()" in inspect.getsource(chapter)
    assert "chapter(namespace" in inspect.getsource(study_chapter)


def test_a_bad_parameter_is_said_in_one_line_before_the_traceback(tmp_path):
    """``papermill notebooks/ood_eval.ipynb out.ipynb -p density 2`` printed 80 lines of
    papermill's and the kernel's traceback with the message last."""
    import subprocess
    import sys

    template = Path(__file__).parent.parent / "notebooks" / "ood_eval.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(template),
                           str(tmp_path / "out.ipynb"), "-p", "density", "2", "--no-progress-bar"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = done.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if "Traceback" in line or "error:" in line)
    assert done.returncode != 0
    assert lines[first] == "error: density=2 is not allowed: a fraction in (0, 1]", done.stderr


def test_every_template_cell_is_valid_python():
    """Each code cell of every template parses: a template string that writes a newline into an
    f-string (``"\\n"`` instead of ``"\\\\n"`` in scripts/make_notebooks.py) broke six chapters."""
    import ast
    import json
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                try:
                    ast.parse(source)
                except SyntaxError as err:
                    raise AssertionError(f"{path.name} cell {i}: {err}") from None


def test_every_template_checks_its_parameters_once():
    """One parameter check per template, naming all its parameters: a second check with the
    common study list refused the regime and cost chapters' own parameters."""
    import json
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        source = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")
        assert len(re.findall(r"\b(?:study_)?chapter\(globals\(\)", source)) == 1, path.name
        assert "check_parameters(" not in source, path.name    # only through chapter()
