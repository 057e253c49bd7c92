"""The package's imports go one way: foundations <- parts <- engine <- surfaces.

The stated order lives in docs/ARCHITECTURE.md (the block between the ``layers`` markers); this
test parses every module's imports (module level and inside functions; ``if TYPE_CHECKING:``
blocks left out) and fails on an import against that order, on a module the order does not
place, on any cycle between modules or between sub-packages, on an import of a surface from
the package, ``experiments/`` or ``benchmarks/``, and on a room or file the document names
(the ``layers`` and ``rooms`` blocks) that does not exist.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "datp"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


SURFACES = "surfaces"


def _block(name: str) -> str:
    text = ARCHITECTURE.read_text()
    block = re.search(rf"<!-- {name} -->\s*```\n(.*?)```\s*<!-- /{name} -->", text, re.S)
    assert block, f"docs/ARCHITECTURE.md has no <!-- {name} --> block"
    return block.group(1)


def stated_order() -> list[tuple[str, list[str]]]:
    """[(layer, [room, ...]), ...] from docs/ARCHITECTURE.md, lowest layer first. A room is a
    module (``errors``) or a sub-package (``data/``), named as :func:`room_of` names it; a
    layer written ``engine/`` keeps its rooms in that sub-package (``engine/train``). A line
    that starts with spaces goes on with the layer above it."""
    layers: list[tuple[str, list[str]]] = []
    name = ""
    for line in _block("layers").splitlines():
        if not line.strip():
            continue
        if line[0].isspace():
            layers[-1][1].extend(_rooms(name, line.split()))
            continue
        name, *rooms = line.split()
        layers.append((name.rstrip("/"), _rooms(name, rooms)))
    return layers


def _rooms(layer: str, rooms: list[str]) -> list[str]:
    package = layer.rstrip("/") + "/" if layer.endswith("/") else ""
    return [package + room.rstrip("/") for room in rooms]


def layer_packages() -> set[str]:
    """Sub-packages that hold a layer's rooms (``engine``)."""
    return {line.split()[0].rstrip("/") for line in _block("layers").splitlines()
            if line.strip() and not line[0].isspace() and line.split()[0].endswith("/")}


def named_files() -> list[str]:
    """The first column of the ``rooms`` block: paths under datp/ (``engine/train.py``,
    ``data/``)."""
    return [m.group(1) for m in re.finditer(r"^  (\S+)", _block("rooms"), re.M)]


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


def room_of(module: str, packages: frozenset[str] = frozenset({"engine"})) -> str:
    """``datp.data.video`` -> ``data``; ``datp.engine.train`` -> ``engine/train`` (a layer's
    sub-package: each module its own room; its ``__init__`` -> ``engine``); ``datp`` ->
    ``datp``."""
    parts = module.split(".")[1:]
    if not parts:
        return "datp"
    if parts[0] in packages and len(parts) > 1:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


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
    for package in layer_packages():  # a layer's __init__ comes before its rooms
        first = min(rank[room] for room in order if room.startswith(package + "/"))
        rank[package] = first - 0.5
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
        "if TYPE_CHECKING:\n    from datp.engine.predict import Prediction\n"
        "def f():\n    from datp.engine.train import train\n    import datp.cli\n"
        "from .video import open_video\nfrom .. import errors\n"
    )
    known = {"datp.engine.train", "datp.cli", "datp.engine.predict", "datp.data.video",
             "datp.errors", "datp"}
    assert _imports_of_text(source, text, known) == {
        "datp.engine.train", "datp.cli", "datp.data.video", "datp.errors"
    }
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_layer_sub_packages_are_the_ones_room_of_knows():
    assert layer_packages() == {"engine"}


def test_nothing_imports_a_surface():
    surfaces = dict(stated_order())[SURFACES]
    graph = import_graph()
    below = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items()) if room_of(module) not in surfaces
        for target in sorted(targets) if room_of(target) in surfaces
    ]
    known = set(modules())
    for folder in ("experiments", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            below += [f"{path.relative_to(ROOT)} imports {target}"
                      for target in sorted(imports_of(path, known)) if room_of(target) in surfaces]
    assert below == []


def test_every_room_and_file_the_document_names_exists():
    missing = []
    for layer, rooms in stated_order():
        for room in rooms:
            if room == "datp":
                continue
            module, package = PACKAGE / f"{room}.py", PACKAGE / room / "__init__.py"
            if not (module.is_file() or package.is_file()):
                missing.append(f"{layer}: {room}")
    for name in named_files():
        path = PACKAGE / name
        if not (path.is_dir() if name.endswith("/") else path.is_file()):
            missing.append(f"rooms: {name}")
    assert missing == []
    assert len(named_files()) > 20  # the rooms block was read


def test_every_module_of_a_layer_package_is_named_in_the_rooms_block():
    named = set(named_files())
    unnamed = [
        str(path.relative_to(PACKAGE)) for package in sorted(layer_packages())
        for path in sorted((PACKAGE / package).glob("*.py"))
        if path.name != "__init__.py" and str(path.relative_to(PACKAGE)) not in named
    ]
    assert unnamed == []
