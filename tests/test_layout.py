"""The package boundaries of docs/layout.md, checked against the code.

The table in docs/layout.md is the one source: this module parses it, then checks every
import statement of every module of ours (imports inside functions too) against it, that
the packages form no cycle, what each side loads at run time (a fresh interpreter per
check), and that every exception class derives from its package's root and is drawn in
its errors module's tree.
"""
from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

import pytest

from boardcore.childstart import MODULES

ROOT = Path(__file__).resolve().parents[1]
LAYOUT = ROOT / "docs" / "layout.md"



# -- the table -------------------------------------------------------------------------------
def _cells(line: str) -> List[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(header: List[str]) -> List[List[str]]:
    """The rows of the table in docs/layout.md whose header row is ``header``."""
    lines = LAYOUT.read_text(encoding="utf-8").splitlines()
    for at, line in enumerate(lines):
        if line.startswith("|") and _cells(line) == header:
            rows = []
            for row in lines[at + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(_cells(row))
            return rows
    raise AssertionError(f"{LAYOUT}: no table with the header {' | '.join(header)}")


def _names(cell: str) -> List[str]:
    return re.findall(r"`([^`]+)`", cell)


def parse_layout() -> Dict[str, Set[str]]:
    """{package: the packages of ours it may import}, from docs/layout.md."""
    allowed: Dict[str, Set[str]] = {}
    for folder, _owns, may_import in _table(["folder", "what it owns", "may import"]):
        match = re.fullmatch(r"`(\w+)/`", folder)
        assert match, f"{LAYOUT}: a folder cell must be `name/`, got {folder!r}"
        if may_import == "nothing of ours":
            names: List[str] = []
        else:
            names = _names(may_import)
            listed = ", ".join(f"`{name}`" for name in names)
            assert names and may_import == listed, (
                f"{LAYOUT}: {folder}'s may-import cell must be `a`, `b`, ... or "
                f"'nothing of ours', got {may_import!r}")
        allowed[match.group(1)] = set(names)
    return allowed


class ErrorTree(NamedTuple):
    module: str  # the errors module, e.g. "boardcore.errors"
    root: str  # the root class's name, found in that module


def parse_error_trees() -> Dict[str, Optional[ErrorTree]]:
    """{package: its errors module and root}, from docs/layout.md; None: it has no tree of
    its own (it raises only the standard library's errors)."""
    trees: Dict[str, Optional[ErrorTree]] = {}
    for packages, module, root in _table(["package", "errors module", "root"]):
        for folder in _names(packages):
            if module == "—":
                trees[folder.rstrip("/")] = None
                continue
            path = _names(module)[0]
            trees[folder.rstrip("/")] = ErrorTree(path[:-3].replace("/", "."), _names(root)[0])
    return trees


def cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` as a path (first node repeated at the end), or []."""
    state: Dict[str, str] = {}
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


# -- the code --------------------------------------------------------------------------------
def code_packages() -> Set[str]:
    """The top-level packages of the repository (tests/ is not one of the house's)."""
    return {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}


class Import(NamedTuple):
    module: str  # the importing module, e.g. "executor.sandbox"
    line: int
    target: str  # the imported module, e.g. "supervisor.boardaccess"


def imports_of(package: str, root: Path = ROOT) -> List[Import]:
    """Every import statement in ``package``, at any depth (functions, classes, try)."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts  # ("a", "b", "__init__")
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found += [Import(module, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = node.module or ""
                if node.level:  # relative: resolved against the module's own package
                    base = list(parts[:len(parts) - node.level])
                    target = ".".join(base + ([target] if target else []))
                found.append(Import(module, node.lineno, target))
    return found


def package_imports() -> List[Tuple[str, str, Import]]:
    """(package, imported package of ours, the import) for each import across packages."""
    ours = code_packages() | set(parse_layout())
    edges = []
    for package in sorted(code_packages()):
        for imp in imports_of(package):
            target = imp.target.split(".")[0]
            if target in ours and target != package:
                edges.append((package, target, imp))
    return edges


# -- the table's own checks ------------------------------------------------------------------
def test_the_table_names_only_its_own_packages_and_has_no_cycle() -> None:
    table = parse_layout()
    assert len(table) >= 8, f"{LAYOUT}: the package table looks truncated: {sorted(table)}"
    unknown = {(pkg, name) for pkg, names in table.items() for name in names
               if name not in table}
    assert not unknown, f"{LAYOUT}: may-import names that are no package of the table: {unknown}"
    assert not cycle(table), f"{LAYOUT}: the table itself has a cycle: {cycle(table)}"


def test_every_package_is_in_the_table() -> None:
    table, code = set(parse_layout()), code_packages()
    missing = code - table
    assert not missing, (f"packages missing from the table in {LAYOUT}: {sorted(missing)}; "
                         "add a row saying what each owns and may import")
    absent = table - code
    assert not absent, f"{LAYOUT} lists packages that do not exist: {sorted(absent)}"


def test_every_import_is_one_the_table_allows() -> None:
    table = parse_layout()
    violations = []
    for package, target, imp in package_imports():
        if target in table.get(package, ()):
            continue
        violations.append(f"{imp.module}:{imp.line} imports {imp.target} "
                          f"({package} may import: {sorted(table.get(package, ())) or 'nothing'})")
    assert not violations, (f"imports the table in {LAYOUT} does not allow:\n  "
                            + "\n  ".join(violations))


def test_no_import_cycle_between_packages() -> None:
    graph: Dict[str, Set[str]] = defaultdict(set)
    for package, target, _imp in package_imports():
        graph[package].add(target)
    assert not cycle(graph), f"an import cycle between packages: {' -> '.join(cycle(graph))}"


def test_the_import_parser_sees_imports_inside_functions_and_relative_ones(tmp_path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("from . import mod\n")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "mod.py").write_text(
        "import os\nfrom .. import helpers\nfrom .near import thing\n"
        "def f():\n    try:\n        from cloudqueue.errors import QueueError\n"
        "    except ImportError:\n        import zmq.utils\n")
    assert sorted(imports_of("pkg", tmp_path)) == [
        Import("pkg", 1, "pkg"),
        Import("pkg.sub.mod", 1, "os"), Import("pkg.sub.mod", 2, "pkg"),
        Import("pkg.sub.mod", 3, "pkg.sub.near"), Import("pkg.sub.mod", 6, "cloudqueue.errors"),
        Import("pkg.sub.mod", 8, "zmq.utils")]


def test_cycle_finds_a_cycle_and_only_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


# -- what each side loads --------------------------------------------------------------------
def probe(mode: str, *names: str) -> list:
    done = subprocess.run([sys.executable, "-m", "tests.layout_probe", mode, *names],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def loaded(modules: list, forbidden: Set[str]) -> List[str]:
    return sorted(name for name in modules
                  if name in forbidden or name.split(".")[0] in forbidden)


#: network clients and the packages that talk to the queue
NETWORK = {"cloudqueue", "requests", "urllib3", "http.client", "urllib.request", "boto3",
           "botocore", "pycognito", "downloader", "uploader", "queueservice"}
#: the queue service's web and database modules
SERVICE = {"starlette", "uvicorn", "anyio", "jwt", "sqlite3", "_sqlite3", "sqlalchemy",
           "alembic", "psycopg", "queueservice"}
#: what the board needs and the web process must never load
BOARD = {"qick", "numpy", "h5py", "zmq", "boardcore", "supervisor", "executor", "downloader",
         "uploader"}


def test_the_sandboxed_executor_loads_no_network_client() -> None:
    modules = probe("load", "executor")  # every module of it: main, runner, boards, simboard
    assert "executor.runner" in modules and "qick" in modules  # the probe reached the runner
    assert loaded(modules, NETWORK) == []


def test_the_board_packages_load_none_of_the_service_modules() -> None:
    modules = probe("load", "boardcore", "supervisor", "executor", "downloader", "uploader")
    assert "supervisor.daemon" in modules
    assert loaded(modules, SERVICE) == []


def test_the_service_web_process_loads_no_board_module() -> None:
    modules = probe("load", "queueservice.app")
    assert "starlette" in modules
    assert loaded(modules, BOARD) == []


# -- error trees -----------------------------------------------------------------------------
def root_name(tree: ErrorTree) -> str:
    """``module.Class`` of a tree's root, where it is defined (QueueError: cloudqueue.errors)."""
    cls = getattr(importlib.import_module(tree.module), tree.root)
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_exception_derives_from_its_package_root_and_is_in_its_tree() -> None:
    trees = parse_error_trees()
    packages = sorted(code_packages())
    assert set(packages) <= set(trees), (
        f"packages without a row in {LAYOUT}'s error trees: {sorted(set(packages) - set(trees))}")
    problems = []
    for row in probe("exceptions", *packages):
        where = f"{row['module']}.{row['name']}"
        tree = trees.get(row["module"].split(".")[0])
        if tree is None:
            problems.append(f"{where}: its package has no error tree in {LAYOUT}; add one")
            continue
        root = root_name(tree)
        if where == root:
            continue
        if root not in row["bases"]:
            problems.append(f"{where} does not derive from {root}")
        if not row["name"].startswith("_") and row["module"] != tree.module:
            # a private class is a signal inside one module: rooted, not drawn
            problems.append(f"{where}: define it in {tree.module}, its package's errors module")
    assert not problems, "exceptions outside their package's tree:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("module", sorted({tree.module for tree in parse_error_trees().values()
                                            if tree is not None}))
def test_each_errors_docstring_draws_every_class_of_its_module(module: str) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert defined, f"{module} defines no class"
    doc = ast.get_docstring(tree) or ""
    drawn = set(re.findall(r"[├└]── (\w+)", doc) + re.findall(r"^    (\w+)\s", doc, re.M))
    assert defined <= drawn, f"{module}'s docstring tree lacks {sorted(defined - drawn)}"


def test_the_supervisor_starts_children_that_exist() -> None:
    """The supervisor knows its children by module name only (it imports none of them):
    each name in ``boardcore.childstart.MODULES`` is a module of the repository."""
    for module in MODULES.values():
        assert (ROOT / module.replace(".", "/")).with_suffix(".py").is_file(), module
