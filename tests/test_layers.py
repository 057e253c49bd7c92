"""The package's imports go one way: foundations <- parts <- engine <- surfaces.

The stated order lives in docs/ARCHITECTURE.md (the block between the ``layers`` markers); this
test parses every module's imports (module level and inside functions; ``if TYPE_CHECKING:``
blocks left out) and fails on an import against that order, on a module the order does not
place, and on any cycle between modules or between sub-packages.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "datp"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def stated_order() -> list[tuple[str, list[str]]]:
    """[(layer, [room, ...]), ...] from docs/ARCHITECTURE.md, lowest layer first. A room is a
    top-level module (``train``) or a sub-package (``data/``)."""
    text = ARCHITECTURE.read_text()
    block = re.search(r"<!-- layers -->\s*```\n(.*?)```\s*<!-- /layers -->", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no <!-- layers --> block"
    layers = []
    for line in block.group(1).splitlines():
        if line.strip():
            name, *rooms = line.split()
            layers.append((name, [room.rstrip("/") for room in rooms]))
    return layers


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path, known: set[str], *, text: str | None = None) -> set[str]:
    """The datp modules ``path`` imports, resolved to modules that exist (relative imports
    resolved against the file's package)."""
    found: set[str] = set()
    package = module_name(path).split(".") if path.name == "__init__.py" else (
        module_name(path).split(".")[:-1])

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "datp")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x import y, from .. import y
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            if base.split(".")[0] == "datp":
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    found.add(child if child in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(text if text is not None else path.read_text(), filename=str(path)))
    return {name for name in found if name in known}


def _imports_of_text(path: Path, text: str, known: set[str]) -> set[str]:
    return imports_of(path, known, text=text)


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, known) - {name} for name, path in found.items()}


def room_of(module: str) -> str:
    """``datp.data.video`` -> ``data``; ``datp.train`` -> ``train``; ``datp`` -> ``datp``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "datp"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                strongconnect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_no_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_cycle_between_sub_packages_and_modules():
    rooms: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        rooms[room_of(module)] |= {room_of(t) for t in targets} - {room_of(module)}
    assert cycles(rooms) == []


def test_every_import_goes_down_the_stated_order():
    order = [room for _, rooms in stated_order() for room in rooms]
    rank = {room: i for i, room in enumerate(order)}
    graph = import_graph()
    unplaced = sorted({room_of(m) for m in graph} - set(rank))
    assert not unplaced, f"docs/ARCHITECTURE.md places no layer for {unplaced}"
    upward = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if rank[room_of(target)] > rank[room_of(module)]
    ]
    assert upward == []


def test_the_checker_sees_function_level_imports_and_skips_type_checking_blocks(tmp_path):
    source = PACKAGE / "data" / "example.py"  # parsed only: never written
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from datp.predict import Prediction\n"
        "def f():\n    from datp.train import train\n    import datp.cli\n"
        "from .video import open_video\nfrom .. import errors\n"
    )
    known = {"datp.train", "datp.cli", "datp.predict", "datp.data.video", "datp.errors", "datp"}
    assert _imports_of_text(source, text, known) == {
        "datp.train", "datp.cli", "datp.data.video", "datp.errors"
    }
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
