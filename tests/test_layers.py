"""The package's layering stays true: no import cycles between pytest_masc modules (imports
inside functions included, ``if TYPE_CHECKING:`` blocks excluded), pytest imported only by
the pytest layer (``pytest_masc/plugin/``), no oversized modules, classes or functions, every
module opening with a sentence that states its job, and the public import paths working."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "pytest_masc"
PYTEST_LAYER = "pytest_masc.plugin"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 80


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, tuple[str, ...], int]]:
    """``(absolute module, imported names, line)`` of every import in ``tree``, at any depth,
    except under ``if TYPE_CHECKING:``. Relative imports are resolved against ``module``."""
    found: list[tuple[str, tuple[str, ...], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, (), node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, tuple(alias.name for alias in node.names), node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, int]]]]:
    """Edges between the modules of the package at ``root`` (``from p import m`` of a
    submodule ``m`` is an edge to ``p.m``), and every module's external top-level imports."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in files}
    external: dict[str, list[tuple[str, int]]] = {name: [] for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, names, line in imported_names(tree, name, path.name == "__init__.py"):
            if target not in files:
                external[name].append((target.split(".")[0], line))
                continue
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in files]
            graph[name].update(submodules or [target])
            if len(submodules) < len(names):  # names defined by the module itself
                graph[name].add(target)
        graph[name].discard(name)
    return graph, external


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as ``[a, b, ..., a]``, or ``[]`` when the graph has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


# --------------------------------------------------------------------------- the package


def test_no_import_cycles():
    graph, _ = import_graph(PACKAGE_DIR)
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def unresolved_imports(root: Path) -> list[str]:
    """Imports of the package's own modules (absolute or relative, at any depth) that name no
    module of the package: a moved module imported by its old path inside a function fails
    only when that function runs, so the walk finds it first."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    missing = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target, _names, line in imported_names(tree, name, path.name == "__init__.py"):
            if target.split(".")[0] == root.name and target not in files:
                missing.append(f"{name} (line {line}) imports {target}, which is not a module of the package")
    return missing


def test_every_import_of_the_package_names_one_of_its_modules():
    missing = unresolved_imports(PACKAGE_DIR)
    assert not missing, "\n".join(missing)


def test_checker_finds_an_import_of_a_moved_module(tmp_path):
    root = _package(tmp_path, {"metric.__init__": "", "metric.scorer": "",
                               "ray": "def load():\n    from .scorer import MaSC\n"})
    assert unresolved_imports(root) == ["pkg.ray (line 2) imports pkg.scorer, which is not a module of the package"]


def test_only_the_pytest_layer_imports_pytest():
    _, external = import_graph(PACKAGE_DIR)
    offenders = [
        f"{module} (line {line}) imports {name}"
        for module, imports in external.items()
        for name, line in imports
        if name in ("pytest", "_pytest") and not (module == PYTEST_LAYER or module.startswith(PYTEST_LAYER + "."))
    ]
    assert not offenders, "\n".join(offenders)


def test_the_metric_layer_does_not_import_the_plugin_or_the_suites():
    graph, _ = import_graph(PACKAGE_DIR)
    offenders = [
        f"{module} -> {target}"
        for module, targets in graph.items() if module.startswith("pytest_masc.metric")
        for target in targets if target.startswith(("pytest_masc.plugin", "pytest_masc.suite", "pytest_masc.protocols"))
    ]
    assert not offenders, "\n".join(offenders)


def oversized_definitions(root: Path) -> list[str]:
    """``path:line name: N lines > limit`` for each class or function of the package at
    ``root`` longer than :data:`MAX_CLASS_LINES` / :data:`MAX_FUNCTION_LINES`."""
    oversized = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if lines > limit:
                    oversized.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {lines} lines > {limit}")
    return oversized


def oversized_modules(root: Path) -> list[str]:
    """``path: N lines > MAX_MODULE_LINES`` for each module of the package at ``root`` over the cap."""
    counts = {path: len(path.read_text(encoding="utf-8").splitlines()) for path in sorted(root.rglob("*.py"))}
    return [f"{path.relative_to(root.parent)}: {lines} lines > {MAX_MODULE_LINES}"
            for path, lines in counts.items() if lines > MAX_MODULE_LINES]


def modules_without_a_job_sentence(root: Path) -> list[str]:
    """Modules of the package at ``root`` whose docstring does not open with a sentence: none,
    an empty first line, fewer than three words on it, or a first paragraph with no full stop."""
    offenders = []
    for path in sorted(root.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        name = str(path.relative_to(root.parent))
        if docstring is None:
            offenders.append(f"{name}: no module docstring")
            continue
        first_line = docstring.split("\n")[0].strip()
        first_paragraph = " ".join(docstring.strip().split("\n\n")[0].split())
        if len(first_line.split()) < 3:
            offenders.append(f"{name}: the docstring's first line {first_line!r} states no job")
        elif not re.search(r"\.(\s|$)", first_paragraph):
            offenders.append(f"{name}: the docstring's first paragraph is not a sentence (no full stop)")
    return offenders


def test_no_oversized_classes_or_functions():
    oversized = oversized_definitions(PACKAGE_DIR)
    assert not oversized, "\n".join(oversized)


def test_no_module_over_the_line_cap():
    oversized = oversized_modules(PACKAGE_DIR)
    assert not oversized, "\n".join(oversized)


def test_every_module_opens_with_a_sentence_stating_its_job():
    offenders = modules_without_a_job_sentence(PACKAGE_DIR)
    assert not offenders, "\n".join(offenders)


def test_public_import_paths_work_without_torch():
    """README's imports import, none of them loads torch; the old module names are gone (0.x:
    one name per thing)."""
    code = textwrap.dedent("""
        import importlib, sys
        from pytest_masc import MaSCError, Sample, Score
        import pytest_masc.metric.inputs, pytest_masc.stats.agreement, pytest_masc.testing.strategies
        from pytest_masc.protocols import ProtocolSpec
        from pytest_masc.suite import load_suite
        from pytest_masc.testing import tiny_checkpoint
        from pytest_masc.testing.datasets import write_dreambench_fixture
        import pytest_masc.report, pytest_masc.plugin
        for old in ("pytest_masc.agreement", "pytest_masc.inputs", "pytest_masc.strategies"):
            try:
                importlib.import_module(old)
            except ModuleNotFoundError:
                continue
            raise AssertionError(f"{old} still imports")
        print(sorted({"torch", "transformers"} & set(sys.modules)))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_every_dotted_name_in_readme_resolves():
    """Each ``pytest_masc.x.y`` README names is a module, or an attribute of one: a renamed or
    moved name fails here instead of in a reader's first try."""
    import importlib

    readme = (PACKAGE_DIR.parent / "README.md").read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"\bpytest_masc(?:\.[A-Za-z_][A-Za-z0-9_]*)+", readme)))
    assert len(names) >= 5, names
    unresolved = []
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            try:
                for attribute in parts[cut:]:
                    target = getattr(target, attribute)
            except AttributeError:
                unresolved.append(name)
            break
        else:
            unresolved.append(name)
    assert not unresolved, unresolved


def test_masc_loads_from_the_package_root():
    from pytest_masc import MaSC
    from pytest_masc.metric.scorer import MaSC as scorer_masc

    assert MaSC is scorer_masc


# --------------------------------------------------------------------------- the checker itself


def _package(tmp_path: Path, modules: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, source in {"__init__": "", **modules}.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _package(tmp_path, {
        "a": "from .b import thing\n",
        "b": "def thing():\n    from .a import other\n",
    })
    assert find_cycle(import_graph(root)[0]) == ["pkg.a", "pkg.b", "pkg.a"]


def test_checker_follows_submodules_imported_from_their_package(tmp_path):
    root = _package(tmp_path, {
        "sub.__init__": "",
        "sub.x": "from .. import y\n",
        "y": "from .sub import x\n",
    })
    assert find_cycle(import_graph(root)[0]) == ["pkg.sub.x", "pkg.y", "pkg.sub.x"]


def test_checker_ignores_type_checking_imports(tmp_path):
    root = _package(tmp_path, {
        "a": "from typing import TYPE_CHECKING\nfrom .b import thing\n",
        "b": "import typing\nif typing.TYPE_CHECKING:\n    from .a import other\nelse:\n    import json\n",
    })
    graph, external = import_graph(root)
    assert find_cycle(graph) == []
    assert ("json", 5) in external["pkg.b"]


def test_checker_sees_pytest_anywhere(tmp_path):
    root = _package(tmp_path, {"core": "def f():\n    import _pytest.nodes\n"})
    assert ("_pytest", 2) in import_graph(root)[1]["pkg.core"]


@pytest.mark.parametrize("source", ["import pkg.b\n", "from pkg import b\n", "from . import b\n"])
def test_checker_resolves_every_import_form(tmp_path, source):
    root = _package(tmp_path, {"a": source, "b": "from .a import x\n"})
    assert find_cycle(import_graph(root)[0]) == ["pkg.a", "pkg.b", "pkg.a"]


def test_size_checkers_name_the_offenders(tmp_path):
    long_function = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    long_class = "class C:\n" + "".join(f"    def m{i}(self):\n        return {i}\n" for i in range(MAX_CLASS_LINES // 2))
    long_module = '"""A module that is too long."""\n' + "x = 1\n" * MAX_MODULE_LINES
    root = _package(tmp_path, {"fn": long_function, "cls": long_class, "big": long_module, "ok": "def g():\n    return 1\n"})
    assert oversized_definitions(root) == [
        f"pkg/cls.py:1 C: {MAX_CLASS_LINES + 1} lines > {MAX_CLASS_LINES}",
        f"pkg/fn.py:1 f: {MAX_FUNCTION_LINES + 1} lines > {MAX_FUNCTION_LINES}",
    ]
    assert oversized_modules(root) == [f"pkg/big.py: {MAX_MODULE_LINES + 1} lines > {MAX_MODULE_LINES}"]


def test_docstring_checker_names_modules_without_a_job_sentence(tmp_path):
    root = _package(tmp_path, {
        "none": "x = 1\n",
        "blank": '"""\nStarts on the second line."""\n',
        "short": '"""Helpers."""\n',
        "unfinished": '"""Reads the files of a benchmark\n\nMore."""\n',
        "good": '"""Reads the files of a benchmark into samples.\n\nMore."""\n',
    })
    assert modules_without_a_job_sentence(root) == [
        "pkg/__init__.py: no module docstring",
        "pkg/blank.py: the docstring's first line '' states no job",
        "pkg/none.py: no module docstring",
        "pkg/short.py: the docstring's first line 'Helpers.' states no job",
        "pkg/unfinished.py: the docstring's first paragraph is not a sentence (no full stop)",
    ]


def _layout_paragraph() -> str:
    readme = (PACKAGE_DIR.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("**Layout.**")
    return readme[start:readme.index("\n\n", start)]


def _package_modules() -> dict[str, str]:
    """``{module's last name: its dotted name}`` of every module of pytest_masc (``__init__``
    and ``__main__`` left out: they are named by their package)."""
    found = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue
        found[module_name(path, PACKAGE_DIR)] = path.stem
    return found


def test_readme_layout_names_every_module():
    """README's layout paragraph names each module of the package (as ``name`` in backticks):
    a module added, split or renamed without the paragraph fails here."""
    named = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_.]*)", _layout_paragraph()))
    missing = sorted(dotted for dotted, stem in _package_modules().items()
                     if stem not in named and not any(n.startswith(stem + ".") for n in named))
    assert not missing, f"README's Layout paragraph does not name: {missing}"


def test_readme_layout_names_no_module_that_is_gone():
    """Each backticked lowercase name in the layout paragraph is a module, a package or a
    function of the package: a module deleted or renamed leaves no stale name behind."""
    stems = set(_package_modules().values()) | {"__init__"} | {
        path.name for path in PACKAGE_DIR.rglob("*") if path.is_dir() and (path / "__init__.py").exists()}
    source = "\n".join(path.read_text(encoding="utf-8") for path in PACKAGE_DIR.rglob("*.py"))
    words = set(re.findall(r"`([a-z_][a-z0-9_]*)`", _layout_paragraph()))
    stale = sorted(word for word in words - stems if not re.search(rf"^\s*def {word}\(", source, re.M))
    assert not stale, f"README's Layout paragraph names modules that do not exist: {stale}"
