"""Where facts are spelled (docs/ARCHITECTURE.md): each config section is read by its builders,
and a checkpoint's or a score file's keys are spelled by the one type that owns the file. Each
check is also run on a planted violation, to see it fail.

Read from the sources with ``ast``: a section is read where a module imports its type from
``datp.config`` or accesses ``<config>.data`` (``.model``, ``.pooling``, ``.train``) on a name
or attribute called ``config``; a key is spelled where its string is a subscript, the first
argument of ``.get`` / ``.pop`` / ``.setdefault``, a dict-literal key or the left side of ``in``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from benchmarks.structure import spelled_constants
from datp.data.temporal_annotations import AnnotatedVideo, Instance, TemporalAnnotations
from datp.detection_file import Detection, DetectionFile
from datp.run_state import Position, RunIdentity, RunState
from datp.score_file import ScoreFile

PACKAGE = Path(__file__).resolve().parent.parent / "datp"

SECTIONS = {"data": "DataConfig", "model": "ModelConfig", "pooling": "PoolingConfig",
            "train": "TrainConfig"}
READERS = {
    "config.py": {"Config", *SECTIONS.values()},
    "engine/build.py": {"Config", *SECTIONS.values()},
    "data/build.py": {"DataConfig"},
    "models/build.py": {"ModelConfig", "PoolingConfig"},
    "pooling/build.py": {"PoolingConfig"},
    "engine/train.py": {"TrainConfig"},
    "engine/placement.py": {"TrainConfig"},
}
"""Who may read which section: each part's builder its own; the whole config only where it is
defined and where it is split (engine/build.py); the ``[train]`` section also by the training
loop it configures (engine/train.py and its placement)."""
PASSERS = {"engine/synthetic_runs.py", "engine/demo.py"}
"""Modules that hold a whole ``Config`` to hand it to engine/build.py, reading none of it."""

SHARED_KEYS = {
    "classes": "prediction JSON, export sidecar",
    "epoch": "protocol record, metrics.jsonl",
    "layout": "export sidecar",
    "pool": "export sidecar",
    "protocol": "metrics.json",
    "segment_scores": "prediction JSON, export sidecar",
    "skipped": "batches, metrics.jsonl, protocol record",
    "step_in_epoch": "run.json",
    "streams": "fused metrics.json, prediction JSON",
    "times": "batches, prediction JSON",
    "videos": "metrics (counts)",
    "weights": "prediction JSON, fused metrics.json",
    "world_size": "run.json",
    "git_revision": "run.json, protocol record",
    "datp_version": "protocol record",
    "flow_extraction": "feature files' settings",
    "label": "dataset items, batches; temporal annotations and detections both",
    "segment": "temporal annotations and detections (ActivityNet's two formats)",
    "score": "prediction JSON's detections, read by its figure",
    "version": "feature files; temporal annotations and detections both",
    "duration": "feature files",
    "fps": "feature files, prediction JSON",
    "annotations": "data.annotations",
    "database": "ActionFormer's fps and duration file, read by data/features.py",
}
"""Words a checkpoint or score file shares with another layout datp writes, and which: the rule
is about the keys that are the file's own."""


def _full_state() -> RunState:
    identity = RunIdentity(classes=["a"], split=None, world_size=1, flow_extraction=None)
    return RunState(model={}, config={}, identity=identity, position=Position(), optimizer={},
                    scaler={}, rng={})


def _keys(value) -> set[str]:
    """Every key of a JSON-like value, at any depth, but for the keys of maps from ids (videos)."""
    if isinstance(value, list):
        return set().union(*map(_keys, value)) if value else set()
    if not isinstance(value, dict):
        return set()
    keyed_by_id = {"database", "results"}
    found = set(value)
    for key, item in value.items():
        found |= (set().union(*map(_keys, item.values())) if key in keyed_by_id and item
                  else _keys(item))
    return found - {"v"}


def _annotation_keys() -> set[str]:
    video = AnnotatedVideo(video="v", subset="test", duration=2.0, fps=25.0,
                           instances=(Instance("A", 0.0, 1.0),), ambiguous=((1.0, 1.5),))
    return _keys(TemporalAnnotations(videos={"v": video}, source="").to_dict())


def owned_keys() -> dict[str, set[str]]:
    """Each owner module -> the keys of its file that no other layout uses."""
    empty = torch.zeros(0)
    scores = {*ScoreFile([], empty, empty, []).to_dict(),
              *ScoreFile([], empty, empty, [], streams=[]).to_dict()}
    detections = _keys(DetectionFile({"v": [Detection("A", 1.0, 0.0, 1.0)]}).to_dict())
    return {"run_state.py": set(_full_state().to_dict()) - set(SHARED_KEYS),
            "score_file.py": scores - set(SHARED_KEYS),
            "detection_file.py": detections - set(SHARED_KEYS),
            "data/temporal_annotations.py": _annotation_keys() - set(SHARED_KEYS)}


def _modules() -> dict[str, ast.AST]:
    return {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text())
            for p in sorted(PACKAGE.rglob("*.py"))}


def section_reads(tree: ast.AST) -> set[str]:
    """The config types a module imports and the sections it reads off a ``config``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "datp.config":
            found |= {a.name for a in node.names if a.name in {"Config", *SECTIONS.values()}}
        if isinstance(node, ast.Attribute) and node.attr in SECTIONS:
            base = node.value
            name = base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
            if name == "config":
                found.add(SECTIONS[node.attr])
    return found


def spelled_keys(tree: ast.AST, keys: set[str]) -> set[str]:
    return set(spelled_constants(tree, keys))


def section_violations(modules: dict[str, ast.AST]) -> list[str]:
    problems = []
    for name, tree in modules.items():
        read = section_reads(tree)
        allowed = READERS.get(name, {"Config"} if name in PASSERS else set())
        if read - allowed:
            problems.append(f"{name} reads {sorted(read - allowed)}")
    return problems


def key_violations(modules: dict[str, ast.AST]) -> list[str]:
    problems = []
    for owner, keys in owned_keys().items():
        for name, tree in modules.items():
            if name != owner and (spelled := spelled_keys(tree, keys)):
                problems.append(f"{name} spells {owner}'s keys {sorted(spelled)}")
    return problems


def test_only_the_builders_read_config_sections():
    assert section_violations(_modules()) == []


def test_only_the_owner_of_a_file_spells_its_keys():
    assert key_violations(_modules()) == []


def test_the_shared_words_are_keys_of_the_owned_files():
    """A shared word that stopped being a key would hide nothing; one that is a new key of the
    file is the file's own until another layout uses it too."""
    every = set(_full_state().to_dict()) | set(ScoreFile([], torch.zeros(0), torch.zeros(0),
                                                         [], streams=[]).to_dict())
    empty = torch.zeros(0)
    every |= set(ScoreFile([], empty, empty, []).to_dict())
    every |= _annotation_keys() | _keys(DetectionFile({"v": [Detection("A", 1, 0, 1)]}).to_dict())
    assert set(SHARED_KEYS) <= every


@pytest.mark.parametrize(("module", "code", "check"), [
    ("engine/predict.py", "def f(config):\n    return config.data.root\n", section_violations),
    ("data/dataset.py", "from datp.config import TrainConfig\n", section_violations),
    ("engine/demo.py", "def f(config):\n    return config.train.epochs\n", section_violations),
    ("models/pretrained.py", "def f(state):\n    return state['model']\n", key_violations),
    ("engine/train.py", "def f(state):\n    return state.get('optimizer')\n", key_violations),
    ("engine/fusion.py", "def f(s):\n    return {'pooled': s}\n", key_violations),
])
def test_a_planted_violation_is_caught(module, code, check):
    modules = _modules()
    assert check(modules) == []
    modules[module] = ast.parse(code)
    assert check(modules) and module in check(modules)[0]
