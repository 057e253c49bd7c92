"""What may change when a training run is resumed, and what may not.

A resumed run must end where the uninterrupted run would have ended. So resuming refuses every
change that alters what is learned: the data (which videos, which labels, how they are sampled
and transformed), the class list, the model, the pooling, the optimizer and its schedule. A few
settings cannot alter the result so far and may change; each such change is recorded in the run
folder. Where the data lies may change too (a dataset moved to another disk), because the
checkpoint holds a fingerprint of the training split and of the class list, which are compared
instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from datp.checkpoint import CheckpointError

MAY_CHANGE: dict[str, str] = {
    "data.root": "where the data lies (the split itself is compared by its fingerprint)",
    "data.annotations": "where the annotations lie (compared by the split's fingerprint)",
    "data.train_list": "where the training list lies (compared by the split's fingerprint)",
    "data.test_list": "the test list: evaluation only",
    "data.flow_root": "where the flow lies",
    "data.decoder": "both decoders give the same frames",
    "data.normalize_on_device": "the same normalization, computed elsewhere",
    "data.workers": "loader processes",
    "data.test_segments": "evaluation only",
    "data.test_crops": "evaluation only",
    "data.skip_bad_videos": "whether a bad video stops the run",
    "model.pretrained": "the parameters come from the checkpoint",
    "train.epochs": "more (or fewer) epochs of the same step schedule",
    "train.eval_every": "evaluation only",
    "train.device": "where it runs",
    "train.compile": "how it runs",
    "train.channels_last": "how it runs",
}
"""``section.key`` -> why changing it cannot alter what has been learned so far."""


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """``{section: {key: value}}`` -> ``{"section.key": value}``."""
    return {
        f"{section}.{key}": value
        for section, values in config.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }


def split_fingerprint(dataset: Any) -> str | None:
    """sha256 of the training split's ``path<TAB>label`` lines, or None for a dataset that
    does not list its items (an in-memory dataset)."""
    items = getattr(dataset, "items", None)
    if items is None:
        return None
    digest = hashlib.sha256()
    for item in sorted(items, key=lambda item: item.path):
        digest.update(f"{item.path}\t{item.label}\n".encode())
    return f"{len(items)}:{digest.hexdigest()}"


def resume_changes(
    saved: dict[str, Any],
    config: dict[str, Any],
    *,
    saved_classes: Sequence[str] | None,
    classes: Sequence[str],
    saved_split: str | None,
    split: str | None,
) -> tuple[list[str], dict[str, tuple[Any, Any]]]:
    """(refused changes as "what: then -> now" lines, allowed changes ``key -> (then, now)``).

    ``saved`` and ``config`` are the checkpoint's and the new config as nested dicts.
    """
    then, now = flatten(saved), flatten(config)
    refused: list[str] = []
    allowed: dict[str, tuple[Any, Any]] = {}
    cosine = now.get("train.schedule") == "cosine" or then.get("train.schedule") == "cosine"
    for key in sorted(set(then) | set(now)):
        if key not in then or key not in now:
            continue  # a setting this version added or dropped: nothing to compare
        if then[key] == now[key]:
            continue
        if key in MAY_CHANGE and not (key == "train.epochs" and cosine):
            allowed[key] = (then[key], now[key])
        else:
            refused.append(f"{key}: {then[key]!r} -> {now[key]!r}")
    if saved_classes is None:
        refused.append("classes: the checkpoint stores no class list")
    elif list(saved_classes) != list(classes):
        refused.append(f"classes: {_describe(saved_classes)} -> {_describe(classes)}")
    if saved_split is not None and split is not None and saved_split != split:
        refused.append(
            f"training split: {_describe_split(saved_split)} -> {_describe_split(split)} "
            "(other videos or labels)"
        )
    return refused, allowed


def check_resume(
    state: dict[str, Any],
    config: dict[str, Any],
    *,
    classes: Sequence[str],
    split: str | None,
    path: Any,
) -> dict[str, tuple[Any, Any]]:
    """Raise ``CheckpointError`` listing every refused change; return the allowed ones."""
    refused, allowed = resume_changes(
        state.get("config", {}), config, saved_classes=state.get("classes"), classes=classes,
        saved_split=state.get("train_split"), split=split,
    )
    if refused:
        raise CheckpointError(
            f"{path}: cannot resume with these changes, they alter what is learned: "
            + "; ".join(refused)
            + ". Resume with the run's own settings (its config.toml) or start a new run."
        )
    return allowed


def _describe(classes: Sequence[str]) -> str:
    shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
    return f"{len(classes)} ({shown})"


def _describe_split(fingerprint: str) -> str:
    count, _, digest = fingerprint.partition(":")
    return f"{count} videos [{digest[:8]}]"
