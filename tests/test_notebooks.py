"""Notebook templates: parameters are exactly RunConfig's fields (plus preset, out_dir); no outputs."""

import json
from pathlib import Path

import papermill as pm
import pytest

from moon.config import RunConfig, field_names

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
        assert params["only"]["default"] in ("None", "{'density': [1.0, 0.05]}")
        extra |= {"study", "only"}
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
