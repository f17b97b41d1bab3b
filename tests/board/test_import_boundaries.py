"""Who may import whom among the board packages (issue 10, item 1): every board process
shares ``boardcore``, which imports none of them; the supervisor starts the others by
module name (``boardcore.childstart.MODULES``) and imports none of them; no child imports
the supervisor or another child. Read from the source (every import, at any depth)."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set, Tuple

import pytest

from boardcore.childstart import MODULES

pytestmark = pytest.mark.device310
ROOT = Path(__file__).resolve().parents[2]
BOARD = ("boardcore", "supervisor", "executor", "downloader", "uploader")
MAY_IMPORT = {
    "boardcore": set(),
    "supervisor": {"boardcore"},
    "executor": {"boardcore"},
    "downloader": {"boardcore"},
    "uploader": {"boardcore"},
}
# still there until the one backoff (issue 10, item 5) replaces supervisor.policy.Backoff
PENDING = {("downloader/main.py", "supervisor.policy"), ("uploader/main.py", "supervisor.policy")}


def board_imports() -> Dict[Tuple[str, str], Set[str]]:
    """(file, imported module) for every import of a board package by another one."""
    found: Dict[Tuple[str, str], Set[str]] = {}
    for package in BOARD:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in BOARD and top != package:
                        where = str(path.relative_to(ROOT))
                        found.setdefault((where, name), set()).add(package)
    return found


def test_no_board_package_imports_another_except_boardcore():
    wrong = sorted(f"{where} imports {name}" for (where, name), packages in
                   board_imports().items() for package in packages
                   if name.split(".")[0] not in MAY_IMPORT[package]
                   and (where, name) not in PENDING)
    assert wrong == []


def test_the_supervisor_knows_its_children_by_module_name_only():
    for module in MODULES.values():
        assert (ROOT / module.replace(".", "/")).with_suffix(".py").is_file(), module
