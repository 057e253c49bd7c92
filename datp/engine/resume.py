"""What may change when a training run is resumed, and what may not.

A resumed run must end where the uninterrupted run would have ended. So resuming refuses every
change that alters what is learned: the data (which videos, which labels, how they are sampled
and transformed), the class list, the model, the pooling, the optimizer and its schedule. A few
settings cannot alter the result so far and may change (their fields in ``datp.config`` say why:
``resumable_settings``); each such change is recorded in the run folder. Where the data lies may
change too (a dataset moved to another disk), because the checkpoint holds a fingerprint of the
training split and of the class list, which are compared instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datp.checkpoint import CheckpointError
from datp.config import resumable_settings
from datp.run_state import RunIdentity


def flatten(config: dict[str, Any]) -> dict[str, Any]:
    """``{section: {key: value}}`` -> ``{"section.key": value}``."""
    return {
        f"{section}.{key}": value
        for section, values in config.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }


def resume_changes(
    saved: dict[str, Any], config: dict[str, Any], *, then: RunIdentity, now: RunIdentity
) -> tuple[list[str], dict[str, tuple[Any, Any]]]:
    """(refused changes as "what: then -> now" lines, allowed changes ``key -> (then, now)``).

    ``saved`` and ``config`` are the checkpoint's and the new config as nested dicts.
    """
    before, after = flatten(saved), flatten(config)
    refused: list[str] = []
    allowed: dict[str, tuple[Any, Any]] = {}
    may_change = resumable_settings()
    cosine = "cosine" in (before.get("train.schedule"), after.get("train.schedule"))
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            continue  # a setting this version added or dropped: nothing to compare
        if before[key] == after[key]:
            continue
        if key in may_change and not (key == "train.epochs" and cosine):
            allowed[key] = (before[key], after[key])
        else:
            refused.append(f"{key}: {before[key]!r} -> {after[key]!r}")
    if then.classes is None:
        refused.append("classes: the checkpoint stores no class list")
    elif list(then.classes) != list(now.classes or []):
        refused.append(f"classes: {_describe(then.classes)} -> {_describe(now.classes or [])}")
    if then.split is not None and now.split is not None and then.split != now.split:
        refused.append(
            f"training split: {describe_split(then.split)} -> {describe_split(now.split)} "
            "(other videos or labels)"
        )
    if then.world_size is not None and then.world_size != now.world_size:
        refused.append(f"processes (torchrun world size): {then.world_size} -> "
                       f"{now.world_size} (another effective batch and share of the data)")
    if then.flow_extraction != now.flow_extraction and then.flow_extraction is not None:
        refused.append(f"flow extraction: {then.flow_extraction} -> {now.flow_extraction} "
                       "(the flow was computed another way)")
    if then.feature_set is not None and _made(then.feature_set) != _made(now.feature_set):
        refused.append(f"features: {_made(then.feature_set)} -> {_made(now.feature_set)} "
                       "(other features, or made another way)")
    return refused, allowed


def _made(feature_set: dict | None) -> dict | None:
    """What a feature set's record says of its features, less where they lie."""
    return None if feature_set is None else {k: v for k, v in feature_set.items() if k != "root"}


def check_resume(
    saved: dict[str, Any], config: dict[str, Any], *, then: RunIdentity, now: RunIdentity,
    path: Any,
) -> dict[str, tuple[Any, Any]]:
    """Raise ``CheckpointError`` listing every refused change; return the allowed ones.

    ``saved`` and ``then`` are the checkpoint's config (nested dicts) and identity
    (``datp.run_state.RunState``), ``config`` and ``now`` the new run's."""
    refused, allowed = resume_changes(saved, config, then=then, now=now)
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


def describe_split(fingerprint: str) -> str:
    """``count:digest`` -> "count videos [first 8 digits]"."""
    count, _, digest = fingerprint.partition(":")
    return f"{count} videos [{digest[:8]}]"
