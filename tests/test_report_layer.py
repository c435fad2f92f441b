"""The reporting layer's structure (moon/report): its modules import each other without cycles, never
take a private name from one another, and import only what the module map in
moon/report/__init__.py says; every published claim names a measure moon.report.claims computes; and the
one interval format of the book's tables. (The layering of the whole package, moon.report among
its stages, is tests/test_layers.py's.)

The import checks read the source with :mod:`ast` (nothing is imported), so a cycle is reported as
a test failure rather than an ImportError at collection time. Imports inside functions count too:
a lazy import hides a cycle from Python, not from the layering."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

PACKAGE = "moon.report"
REPORT = Path(__file__).resolve().parents[1] / "moon" / "report"


def module_name(path: Path) -> str:
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def report_modules() -> dict[str, ast.Module]:
    """Every module of moon/report, parsed."""
    paths = sorted(REPORT.glob("*.py"))
    assert paths, f"no modules under {REPORT}"
    return {module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in paths}


def resolve(node: ast.ImportFrom, current: str) -> str:
    """The absolute module of ``from <module> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = current if current == PACKAGE else current.rsplit(".", 1)[0]
    base = package.split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(tree: ast.Module, current: str, modules: set[str]):
    """``(target module, imported name or None, line)`` for every import of a moon.report module
    in ``tree``, at any depth (function bodies and ``if TYPE_CHECKING`` blocks included)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, current)
            if source not in modules:
                continue
            for alias in node.names:
                # ``from moon.report import stats`` imports the module moon.report.stats
                sub = f"{source}.{alias.name}"
                if source == PACKAGE and sub in modules:
                    yield sub, None, node.lineno
                else:
                    yield source, alias.name, node.lineno


def import_graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    names = set(trees)
    return {name: {target for target, _, _ in imports(tree, name, names) if target != name}
            for name, tree in trees.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def declared_imports(init: ast.Module) -> dict[str, set[str]]:
    """The module map of moon/report/__init__.py's docstring: module -> the moon.report modules it
    may import (its last column; "-" for none)."""
    doc = ast.get_docstring(init) or ""
    declared = {}
    for line in doc.splitlines():
        if line.startswith(":mod:`~moon.report."):
            name = line.split("`~", 1)[1].split("`", 1)[0]
            allowed = line.rsplit("  ", 1)[-1].strip()
            declared[name] = set() if allowed == "-" else {
                f"{PACKAGE}.{x.strip()}" for x in allowed.split(",")}
    return declared


# --------------------------------------------------------------------------------------------------
def test_helpers_find_a_cycle_and_resolve_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    tree = ast.parse("from . import stats\nfrom .frame import _x\nimport moon.report.tables\n"
                     "def f():\n    from moon.report.plotting import save\n")
    modules = {PACKAGE, f"{PACKAGE}.stats", f"{PACKAGE}.frame", f"{PACKAGE}.tables",
               f"{PACKAGE}.plotting"}
    found = {(t, n) for t, n, _ in imports(tree, f"{PACKAGE}.figures", modules)}
    assert found == {(f"{PACKAGE}.stats", None), (f"{PACKAGE}.frame", "_x"),
                     (f"{PACKAGE}.tables", None), (f"{PACKAGE}.plotting", "save")}


def test_report_modules_have_no_import_cycle_and_share_no_private_names():
    trees = report_modules()
    assert {f"{PACKAGE}.{m}" for m in ("frame", "stats", "tables", "figures", "headline")} <= set(
        trees)
    graph = import_graph(trees)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in moon.report: " + " -> ".join(cycle)

    names = set(trees)
    private = []
    for name, tree in trees.items():
        aliases = {}                                   # local name -> moon.report module
        for target, imported, line in imports(tree, name, names):
            if imported is not None and imported.startswith("_") and target != name:
                private.append(f"{name}:{line} imports {imported} from {target}")
        for node in ast.walk(tree):                    # e.g. ``from moon.report import stats``
            if isinstance(node, ast.ImportFrom) and resolve(node, name) == PACKAGE:
                aliases.update({a.asname or a.name: f"{PACKAGE}.{a.name}" for a in node.names})
            elif isinstance(node, ast.Import):
                aliases.update({a.asname: a.name for a in node.names
                                if a.asname and a.name.startswith(PACKAGE + ".")})
        for node in ast.walk(tree):                    # ... then ``stats._helper``
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and aliases[node.value.id] != name
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not private, "private names used across moon.report modules:\n" + "\n".join(private)


def test_report_modules_import_only_what_the_module_map_declares():
    trees = report_modules()
    declared = declared_imports(trees[PACKAGE])
    modules = set(trees) - {PACKAGE}
    assert set(declared) == modules, "the module map in moon/report/__init__.py is out of date"
    graph = import_graph(trees)
    extra = {name: sorted(graph[name] - declared[name]) for name in modules
             if graph[name] - declared[name]}
    assert not extra, f"imports the module map does not declare: {extra}"


# --------------------------------------------------------------------------------------------------
def test_every_published_measure_is_computed_and_unknown_ones_are_refused(tmp_path):
    import yaml

    from moon.report import claims as report_claims

    claims = yaml.safe_load(report_claims.PUBLISHED.read_text())["claims"]
    assert claims, f"no claims in {report_claims.PUBLISHED}"
    for claim in claims:
        assert claim["measure"] in report_claims.MEASURES, claim["id"]
        assert callable(report_claims.MEASURES[claim["measure"]])
        assert {"claim", "published", "source", "status"} <= set(claim), claim["id"]
    assert [c["id"] for c in report_claims.published_claims()] == [c["id"] for c in claims]

    bad = dict(claims[0], id="invented", measure="moon_cures_everything")
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump({"claims": [claims[0], bad]}))
    with pytest.raises(ValueError, match="moon_cures_everything"):
        report_claims.published_claims(path)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"claims": [claims[0]]}))
    assert [c["id"] for c in report_claims.published_claims(good)] == [claims[0]["id"]]


# --------------------------------------------------------------------------------------------------
def test_interval_text_signs_points_and_marks():
    from moon.report.tables import interval_text

    row = {"mean_diff": 0.012, "low": -0.003, "high": 0.027, "n": 3, "excludes_zero": False}
    assert interval_text(row, 100) == "+1.2 [\u22120.3, +2.7]"          # a true minus sign
    assert "-" not in interval_text(row, 100)
    assert interval_text(dict(row, excludes_zero=True), 100) == "+1.2 [\u22120.3, +2.7] *"
    negative = {"mean_diff": -0.05, "low": -0.075, "high": -0.025, "n": 3, "excludes_zero": True}
    assert interval_text(negative, 1) == "\u22120.050 [\u22120.075, \u22120.025] *"   # raw: 3 dp
    one = dict(row, n=1, low=math.nan, high=math.nan)
    assert interval_text(one, 100) == "+1.2"                           # one pair: no interval


def test_verdict_bullet_counts_each_direction():
    import pandas as pd

    from moon.report import headline

    def bullet(flags, diffs):
        rows = pd.DataFrame({"metric": "id.ece", "mean_diff": diffs, "excludes_zero": flags,
                             "mde": 0.01, "low": 0.0, "high": 0.0, "n": 5})
        return headline._effect_bullet(rows, "id.ece")

    assert bullet([False] * 3, [-0.01] * 3).startswith("**ECE: no measurable change**")
    assert bullet([True, True, False], [-0.01] * 3).startswith(
        "**ECE: measurably lower in 2 of 3 settings, higher in none** (−1.0 to −1.0 points; ")
    assert bullet([True, True, False], [0.01] * 3).startswith(
        "**ECE: measurably higher in 2 of 3 settings, lower in none**")
    assert bullet([True, True, True], [0.01, 0.01, -0.01]).startswith(
        "**ECE: measurably higher in 2 of 3 settings, lower in 1**")
    assert bullet([True, False, False], [0.01] * 3).startswith(
        "**ECE: measurably higher in 1 of 3 settings, lower in none**")
    assert "detectable ±1.0)" in bullet([False] * 3, [0.0] * 3)
