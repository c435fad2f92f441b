"""The package's layering (design.md, section 2): every module of moon/ belongs to one stage, the
stages import only the stages below them (the table :data:`ALLOWED`, written once here), and no
module imports another in a cycle.

The source is read with :mod:`ast` (nothing is imported), so a cycle is a test failure rather than
an ImportError at collection time. Every import counts, at any depth: those inside functions (a
lazy import hides a cycle from Python, not from the layering) and those under ``if TYPE_CHECKING``.
Importing ``moon.sparse.training`` from outside moon.sparse also runs ``moon/sparse/__init__.py``,
so it counts as importing the package too (the package top, ``moon``, is left out: every module
is inside it). The finer map inside moon.report is tests/test_report_layer.py's."""

from __future__ import annotations

import ast
from pathlib import Path

from test_report_layer import find_cycle      # one cycle finder for both layering tests

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "moon"

# Which modules make each stage; ``moon.x.*`` is the package moon.x and every module in it.
STAGES = {
    "base": ("moon.errors", "moon.locks", "moon.files", "moon.outputs", "moon.version"),
    "data": ("moon.data", "moon.datacheck", "moon.loaders"),
    "metrics": ("moon.metrics", "moon.statistics"),
    "sparse": ("moon.sparse.*",),
    "architectures": ("moon.architectures",),
    "ood": ("moon.ood.*",),
    "recipe": ("moon.recipe.*",),
    "config": ("moon.config", "moon.configure"),
    "model": ("moon.models", "moon.cost"),
    "evaluate": ("moon.evaluate",),
    "train": ("moon.train",),
    "run": ("moon.runner", "moon.rundir", "moon.results", "moon.resultcheck"),
    "study": ("moon.study.*",),
    "deploy": ("moon.deploy.*",),
    "report": ("moon.report.*",),
    "book": ("moon.notebook", "moon.theory"),
    "cli": ("moon", "moon.__main__"),
}

# The stages each stage may import besides itself, and through them everything those may import
# (the closure). This is the one table of allowed directions; it must itself be acyclic.
ALLOWED = {
    "base": (),
    "data": ("base",),
    "metrics": ("base",),
    "sparse": ("base",),
    "architectures": ("base",),
    "ood": ("data",),
    "recipe": ("data",),
    "config": ("data", "sparse", "ood", "architectures"),
    "model": ("config",),
    "evaluate": ("config", "metrics"),
    "train": ("model", "recipe", "metrics"),
    "run": ("train", "evaluate"),
    "study": ("run",),
    "deploy": ("run",),
    "report": ("study",),
    "book": ("report",),
    "cli": ("book", "deploy"),
}


# --------------------------------------------------------------------------------------------------
def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path = ROOT) -> dict[str, tuple[ast.Module, bool]]:
    """Every module under ``root/moon``: name -> (parsed source, whether it is a package)."""
    paths = sorted((root / PACKAGE).rglob("*.py"))
    assert paths, f"no modules under {root / PACKAGE}"
    return {module_name(p, root): (ast.parse(p.read_text(), filename=str(p)),
                                   p.name == "__init__.py") for p in paths}


def resolve(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    """The absolute module of ``from <module> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = (current if is_package else current.rsplit(".", 1)[0]).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def owner(name: str, modules) -> str | None:
    """The module of ``modules`` that ``name`` (a module or a name inside one) lives in."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports(tree: ast.Module, current: str, is_package: bool, modules) -> set[str]:
    """The moon modules ``tree`` imports, at any depth, with the subpackages whose ``__init__``
    such an import runs (those above ``current``'s own package and below ``moon``)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [owner(a.name, modules) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, current, is_package)
            targets = [owner(f"{source}.{a.name}", modules) for a in node.names]
        else:
            continue
        for target in filter(None, targets):
            found.add(target)
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts)))
    mine = current if is_package else current.rpartition(".")[0]
    return {t for t in found if t != current and not (mine + ".").startswith(t + ".")}


def import_graph(trees: dict[str, tuple[ast.Module, bool]]) -> dict[str, set[str]]:
    names = set(trees)
    return {name: imports(tree, name, is_package, names)
            for name, (tree, is_package) in trees.items()}


def stage_of(module: str) -> str | None:
    for stage, members in STAGES.items():
        for member in members:
            if member.endswith(".*"):
                package = member[:-2]
                if module == package or module.startswith(package + "."):
                    return stage
            elif module == member:
                return stage
    return None


def reachable(stage: str) -> set[str]:
    """The stages ``stage`` may import: itself and the closure of :data:`ALLOWED`."""
    seen, todo = {stage}, list(ALLOWED[stage])
    while todo:
        nxt = todo.pop()
        if nxt not in seen:
            seen.add(nxt)
            todo.extend(ALLOWED[nxt])
    return seen


def wrong_way(graph: dict[str, set[str]]) -> list[str]:
    """``importer (stage) -> imported (stage)`` for every import the table does not allow."""
    return [f"{name} ({stage_of(name)}) -> {target} ({stage_of(target)})"
            for name in sorted(graph) for target in sorted(graph[name])
            if stage_of(target) not in reachable(stage_of(name))]


# --------------------------------------------------------------------------------------------------
def test_helpers_see_lazy_type_checking_relative_and_package_imports(tmp_path):
    (tmp_path / "moon" / "sub").mkdir(parents=True)
    files = {
        "moon/__init__.py": "",
        "moon/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from moon.b import X\n",
        "moon/b.py": "def f():\n    from moon.sub.c import g\n",
        "moon/sub/__init__.py": "from .c import g\n",
        "moon/sub/c.py": "from .. import a\nimport moon.sub.d\n",
        "moon/sub/d.py": "from moon.sub import c\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    graph = import_graph(package_modules(tmp_path))
    assert graph == {"moon": set(), "moon.a": {"moon.b"}, "moon.b": {"moon.sub", "moon.sub.c"},
                     "moon.sub": {"moon.sub.c"}, "moon.sub.c": {"moon.a", "moon.sub.d"},
                     "moon.sub.d": {"moon.sub.c"}}
    assert find_cycle(graph) == ["moon.a", "moon.b", "moon.sub", "moon.sub.c", "moon.a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_table_is_acyclic_and_names_every_stage():
    assert set(ALLOWED) == set(STAGES)
    assert all(set(below) <= set(STAGES) for below in ALLOWED.values())
    cycle = find_cycle({stage: set(below) for stage, below in ALLOWED.items()})
    assert cycle is None, "the table of allowed directions has a cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_one_stage():
    modules = set(package_modules())
    assert {"moon.files", "moon.outputs", "moon.train", "moon.report.frame"} <= modules
    assert not [m for m in modules if stage_of(m) is None], (
        "modules in no stage of STAGES (tests/test_layers.py): "
        + ", ".join(sorted(m for m in modules if stage_of(m) is None)))
    listed = [m for members in STAGES.values() for m in members if not m.endswith(".*")]
    assert len(listed) == len(set(listed)) and set(listed) <= modules, "STAGES is out of date"


def test_no_module_imports_another_in_a_cycle():
    cycle = find_cycle(import_graph(package_modules()))
    assert cycle is None, "import cycle in moon: " + " -> ".join(cycle)


def test_every_import_goes_the_allowed_way():
    bad = wrong_way(import_graph(package_modules()))
    assert not bad, ("imports against the layering (ALLOWED in tests/test_layers.py):\n"
                     + "\n".join(bad))


def test_a_back_edge_is_caught():
    graph = import_graph(package_modules())
    graph["moon.data"] = graph["moon.data"] | {"moon.rundir"}      # what data.py used to do
    assert "moon.data (data) -> moon.rundir (run)" in wrong_way(graph)
    assert find_cycle(graph) is not None
