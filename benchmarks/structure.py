"""Figures of the package's structure that the restructures are held to (issue 25): the size of
the engine's two hubs, the functions over 60 lines, the widest builder signatures, which modules
read config sections, and where checkpoint and score-file keys are spelled.

    python benchmarks/structure.py [ROOT]      # ROOT: a checkout (default: this one)

Reads the sources with ``ast`` only; nothing is imported or run, so it measures any revision
(``git worktree add /tmp/old REV``). The rules it counts by:

- a function's length is its lines from ``def`` to its last line, docstring included;
- a builder is a function named ``build_*``, ``*_run`` or ``training_model``; its width is its
  parameters besides ``self`` and a first parameter typed with a config section;
- a module reads a section when it accesses ``<x>.data``, ``.model``, ``.pooling`` or ``.train``
  on a name or attribute called ``config``, or imports a section type from ``datp.config``;
- a key is spelled where a string constant that is a checkpoint's (or a score file's) own key
  is a subscript, the first argument of ``.get`` / ``.pop`` / ``.setdefault``, a dict-literal key
  or the left side of ``in``.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

SECTIONS = {"data", "model", "pooling", "train"}
SECTION_TYPES = {"DataConfig", "ModelConfig", "PoolingConfig", "TrainConfig", "Config"}
CHECKPOINT_KEYS = {"model", "optimizer", "scaler", "global_step", "best_metric",
                   "evaluation_pending", "rng", "config", "train_split"}
SCORE_KEYS = {"pooled", "log_probs", "labels"}
"""The keys that are a checkpoint's or a score file's own: those no other layout datp writes
uses too (tests/test_rules.py:SHARED_KEYS lists the shared words)."""


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def width(node: ast.FunctionDef) -> int:
    args = node.args
    names = [a for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names = [a for a in names if a.arg not in ("self", "cls")]
    if names and names[0].annotation is not None:
        text = ast.unparse(names[0].annotation)
        if any(t in text for t in SECTION_TYPES):
            names = names[1:]
    return len(names) + bool(args.vararg) + bool(args.kwarg)


def is_builder(name: str) -> bool:
    return name.startswith("build_") or name.endswith("_run") or name == "training_model"


def reads_sections(tree: ast.AST) -> int:
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SECTIONS:
            base = node.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            count += name == "config"
        if isinstance(node, ast.ImportFrom) and node.module == "datp.config":
            count += sum(a.name in SECTION_TYPES - {"Config"} for a in node.names)
    return count


def spelled_constants(tree: ast.AST, keys: set[str]) -> list[str]:
    """Each place ``tree`` spells one of ``keys`` as a key: a subscript, ``.get`` / ``.pop`` /
    ``.setdefault``, a dict literal's key, an ``in`` test (``tests/test_rules.py`` holds the
    package to the same rule)."""
    found = []
    for node in ast.walk(tree):
        constants: list[ast.AST] = []
        if isinstance(node, ast.Subscript):
            constants.append(node.slice)
        elif (isinstance(node, ast.Call) and node.args
              and getattr(node.func, "attr", "") in ("get", "pop", "setdefault")):
            constants.append(node.args[0])
        elif isinstance(node, ast.Dict):
            constants.extend(k for k in node.keys if k is not None)
        elif isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In | ast.NotIn):
            constants.append(node.left)
        found += [c.value for c in constants if isinstance(c, ast.Constant) and c.value in keys]
    return found


def spelled(tree: ast.AST, keys: set[str]) -> int:
    return len(spelled_constants(tree, keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=Path(__file__).resolve().parent.parent)
    root = Path(parser.parse_args().root)
    package = root / "datp"
    long, builders, readers, checkpoint, scores = [], [], {}, {}, {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text())
        for node in functions(tree):
            lines = node.end_lineno - node.lineno + 1
            if lines > 60:
                long.append((lines, f"{rel}:{node.name}"))
            if is_builder(node.name):
                builders.append((width(node), f"{rel}:{node.name}"))
        if rel != "config.py" and (n := reads_sections(tree)):
            readers[rel] = n
        for keys, found in ((CHECKPOINT_KEYS, checkpoint), (SCORE_KEYS, scores)):
            if n := spelled(tree, keys):
                found[rel] = n
    for name in ("engine/train.py", "engine/build.py"):
        path = package / name
        print(f"lines {name}: {len(path.read_text().splitlines()) if path.exists() else '-'}")
    print(f"functions over 60 lines: {len(long)}"
          + "".join(f"\n  {n:4d} {where}" for n, where in sorted(long, reverse=True)))
    print("widest builders (parameters besides the section):"
          + "".join(f"\n  {n:4d} {where}" for n, where in sorted(builders, reverse=True)[:6]))
    print(f"modules reading config sections: {len(readers)}"
          + "".join(f"\n  {n:4d} {rel}" for rel, n in sorted(readers.items())))
    for title, found in (("checkpoint", checkpoint), ("score-file", scores)):
        print(f"modules spelling {title} keys: {len(found)} ({sum(found.values())} places)"
              + "".join(f"\n  {n:4d} {rel}" for rel, n in sorted(found.items())))


if __name__ == "__main__":
    main()
