"""What a checkpoint holds: the one place that spells its keys, for writing and for reading.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (read with
``weights_only=True``, so loading never unpickles arbitrary objects):

    model, optimizer, scaler      state dicts
    epoch                         the last finished epoch (-1: none)
    step_in_epoch                 batches done in the unfinished epoch ``epoch + 1`` (0 if none)
    global_step, best_metric
    evaluation_pending            ``epoch`` ended but its due evaluation has not finished
    rng                           torch CPU/CUDA, numpy and Python generator states
                                  (``datp.checkpoint.rng_states``)
    config                        the resolved config (datp.config.to_dict)
    classes                       class names, in label order
    train_split                   fingerprint of the training split (datp.engine.resume)
    world_size                    processes of the run (torchrun)
    git_revision, datp_version
    flow_extraction               flow streams: the settings ``datp flow`` recorded for the
                                  training flow (backend, short side, ...), or None
    feature_set                   heads on features: which features, made how (the set's
                                  ``describe()``); absent for frames
    layout                        :data:`LAYOUT`; absent in the checkpoints written before it
                                  was recorded, which have the same keys

``datp train`` writes every key (:meth:`RunState.of_training`); a checkpoint to evaluate,
predict with or export needs only ``model``, ``config`` and ``classes``
(:meth:`RunState.load_trained`). A checkpoint of another layout is refused in one line naming
the file and the datp that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import datp
from datp.checkpoint import (
    CheckpointError,
    git_revision,
    load_plain,
    rng_states,
    save_checkpoint,
)


@dataclass(frozen=True)
class RunIdentity:
    """What a run is besides its config: what the checkpoint records and resuming compares."""

    classes: Sequence[str] | None
    split: str | None
    """``split_fingerprint`` of the training split (None: unknown)."""
    world_size: int | None
    """Processes of a torchrun run: they set the effective batch and each one's share."""
    flow_extraction: dict | None
    """How a flow stream's flow was computed (``datp flow``'s record)."""
    feature_set: dict | None = None
    """Which features a head on features trained on, made how
    (``datp.data.features.FeatureSet.describe``); None for frames."""


LAYOUT = 1
"""The layout this version writes and reads; raise it when a key changes meaning or goes."""


@dataclass
class Position:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = -1
    """The last finished epoch (-1: none)."""
    step_in_epoch: int = 0
    """Batches done of the unfinished epoch ``epoch + 1`` (0: none, e.g. after Ctrl-C)."""
    global_step: int = 0
    best_metric: float = -1.0
    evaluation_pending: bool = False
    """``epoch`` ended and was saved, but its due evaluation has not finished."""


@dataclass
class RunState:
    """A checkpoint's content, typed. Read with :meth:`load` (or :meth:`load_trained`), write
    with :meth:`save`; :meth:`to_dict` and :meth:`from_dict` are the file's layout."""

    model: dict[str, Any]
    """The model's state dict."""
    config: dict[str, Any] | None
    """The resolved config as nested dicts (``datp.config.to_dict``)."""
    identity: RunIdentity
    """Classes, training split, world size, flow extraction."""
    position: Position | None = None
    """None for a checkpoint saved without one (made to be evaluated only)."""
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    """The random generators' states (``datp.checkpoint.rng_states``)."""
    git_revision: str | None = None
    datp_version: str | None = None

    @classmethod
    def of_training(
        cls,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        position: Position,
        config: dict[str, Any],
        identity: RunIdentity,
    ) -> RunState:
        """A training run as it stands now, with the random generators' states and the
        source's revision."""
        return cls(
            model=model.state_dict(),
            optimizer=optimizer.state_dict(),
            scaler=scaler.state_dict(),
            position=replace(position),
            rng=rng_states(),
            config=config,
            identity=identity,
            git_revision=git_revision(),
            datp_version=datp.__version__,
        )

    # --- the layout: the only code that spells a checkpoint's keys --------------------------

    def to_dict(self) -> dict[str, Any]:
        """The plain dict ``torch.save`` writes (keys in the order datp has always written)."""
        state: dict[str, Any] = {"model": self.model}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer
        if self.scaler is not None:
            state["scaler"] = self.scaler
        if self.position is not None:
            p = self.position
            state["epoch"] = p.epoch
            state["step_in_epoch"] = p.step_in_epoch
            state["global_step"] = p.global_step
            state["best_metric"] = p.best_metric
            state["evaluation_pending"] = p.evaluation_pending
        if self.rng is not None:
            state["rng"] = self.rng
        classes = self.identity.classes
        state["config"] = self.config
        state["classes"] = list(classes) if classes is not None else None
        state["train_split"] = self.identity.split
        state["world_size"] = self.identity.world_size
        state["flow_extraction"] = self.identity.flow_extraction
        if self.identity.feature_set is not None:
            state["feature_set"] = self.identity.feature_set
        state["git_revision"] = self.git_revision
        state["datp_version"] = self.datp_version
        state["layout"] = LAYOUT
        return state

    @classmethod
    def from_dict(cls, state: dict[str, Any], *, path: str | Path) -> RunState:
        """The inverse of :meth:`to_dict`, for every layout-1 checkpoint datp has written
        (keys added later read as absent); ``CheckpointError`` for another layout."""
        check_layout(state, path)
        position = None
        if "epoch" in state:
            position = Position(
                epoch=state["epoch"],
                step_in_epoch=state.get("step_in_epoch", 0),
                global_step=state.get("global_step", 0),
                best_metric=state.get("best_metric", -1.0),
                evaluation_pending=bool(state.get("evaluation_pending", False)),
            )
        identity = RunIdentity(
            classes=state.get("classes"), split=state.get("train_split"),
            world_size=state.get("world_size"), flow_extraction=state.get("flow_extraction"),
            feature_set=state.get("feature_set"),
        )
        return cls(
            model=state["model"],
            config=state.get("config"),
            identity=identity,
            position=position,
            optimizer=state.get("optimizer"),
            scaler=state.get("scaler"),
            rng=state.get("rng"),
            git_revision=state.get("git_revision"),
            datp_version=state.get("datp_version"),
        )

    # --- files ----------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write atomically (``datp.checkpoint.save_checkpoint``): the file under ``path`` is
        always a whole checkpoint."""
        save_checkpoint(path, self.to_dict())

    @classmethod
    def load(cls, path: Path, *, map_location: str | torch.device = "cpu") -> RunState:
        """Read a checkpoint safely (``weights_only``); errors name the file and the problem."""
        return cls.from_dict(load_checkpoint(path, map_location=map_location), path=path)

    @classmethod
    def load_trained(cls, path: Path) -> RunState:
        """A checkpoint to rebuild a trained model from (evaluate, predict, export), on the
        CPU: ``CheckpointError`` naming the file when it lacks the class names, the config or
        the parameters."""
        saved = cls.load(path)
        classes = saved.identity.classes
        if not isinstance(classes, list) or not classes or not all(
            isinstance(c, str) for c in classes
        ):
            raise CheckpointError(f"{path}: checkpoint has no list of class names ('classes')")
        if not isinstance(saved.config, dict) or not isinstance(saved.model, dict):
            raise CheckpointError(f"{path}: checkpoint has no saved configuration and model")
        return saved

    def require_training(self, path: Path) -> None:
        """``CheckpointError`` when this state cannot continue a training run (a checkpoint
        saved to be evaluated only has no position or optimizer)."""
        if self.position is None or self.optimizer is None:
            raise CheckpointError(
                f"{path}: it holds no training position and optimizer state (a checkpoint "
                "saved for evaluation only), so its run cannot be resumed"
            )


def model_parameters(state: Any) -> dict[str, Any] | None:
    """The model's state dict when ``state`` (a file's content, read by someone else) is a datp
    checkpoint's dict; None when it is not one (a torchvision or mmaction2 file, say)."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return state["model"]
    return None


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint as the plain dict it was saved as, read with ``weights_only=True``; errors
    name the file and the problem, a foreign file or another layout included."""
    state = load_plain(path, map_location=map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a datp checkpoint (no 'model' entry)")
    check_layout(state, path)
    return state


def check_layout(state: dict[str, Any], path: str | Path) -> None:
    """``CheckpointError`` in one line, naming the file and the datp that wrote it, when the
    checkpoint's layout is not :data:`LAYOUT` (one written before the layout was recorded has
    the same keys: it is layout 1)."""
    layout = state.get("layout", 1)
    if layout != LAYOUT or isinstance(layout, bool):
        version = state.get("datp_version")
        writer = f"datp {version}" if isinstance(version, str) else "an unknown version of datp"
        raise CheckpointError(
            f"{path}: checkpoint written by {writer} in checkpoint layout {layout!r}, which "
            f"this datp ({datp.__version__}) cannot read (it reads layout {LAYOUT}); use the "
            "datp that wrote it"
        )


def saved_epoch(path: Path) -> int | None:
    """The last finished epoch a checkpoint records (None: it records none), read without
    loading its tensors where torch can map the file."""
    try:  # mapped, not read: only the epoch is wanted
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a file in torch's legacy format cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    check_layout(state, path)
    return state.get("epoch")
