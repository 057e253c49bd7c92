"""What a checkpoint holds: written and read by one type, old checkpoints still read, another
layout refused in one line."""

import pytest
import torch
from torch import nn

from datp.checkpoint import CheckpointError, save_checkpoint
from datp.config import load_config, to_dict
from datp.run_state import LAYOUT, Position, RunIdentity, RunState, load_checkpoint, saved_epoch

IDENTITY = RunIdentity(classes=["a", "b"], split="2:abc", world_size=1,
                       flow_extraction={"backend": "torch"})


def _training_state() -> RunState:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    position = Position(epoch=2, step_in_epoch=3, global_step=15, best_metric=0.5,
                        evaluation_pending=True)
    return RunState.of_training(model=model, optimizer=optimizer, scaler=scaler,
                                position=position, config=to_dict(load_config(None)),
                                identity=IDENTITY)


def test_a_training_state_round_trips_through_its_file(tmp_path):
    state = _training_state()
    state.save(tmp_path / "last.pt")
    again = RunState.load(tmp_path / "last.pt")
    assert again.position == state.position and again.identity == IDENTITY
    assert again.config == state.config and again.rng is not None
    assert again.git_revision == state.git_revision and again.datp_version
    torch.testing.assert_close(again.model["weight"], state.model["weight"])
    assert again.optimizer == state.optimizer
    assert load_checkpoint(tmp_path / "last.pt")["layout"] == LAYOUT
    assert saved_epoch(tmp_path / "last.pt") == 2


def test_a_checkpoint_written_before_the_run_state_type_still_loads(tmp_path):
    """The keys ``datp train`` wrote before the layout was recorded, as it wrote them."""
    model = nn.Linear(3, 2)
    old = {
        "model": model.state_dict(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "epoch": 4, "step_in_epoch": 0, "global_step": 40, "best_metric": 0.75,
        "evaluation_pending": False,
        "rng": {"torch": torch.get_rng_state()},
        "config": to_dict(load_config(None)),
        "classes": ["a", "b"],
        "train_split": "2:abc",
        "world_size": 1,
        "flow_extraction": None,
        "git_revision": "0123abcd",
        "datp_version": "0.1.0",
    }
    save_checkpoint(tmp_path / "old.pt", old)
    state = RunState.load(tmp_path / "old.pt")
    assert state.position == Position(epoch=4, global_step=40, best_metric=0.75)
    assert state.identity == RunIdentity(classes=["a", "b"], split="2:abc", world_size=1,
                                         flow_extraction=None)
    assert state.git_revision == "0123abcd" and state.datp_version == "0.1.0"
    state.require_training(tmp_path / "old.pt")
    assert {k: v for k, v in state.to_dict().items() if k != "layout"}.keys() == old.keys()


def test_a_checkpoint_made_to_be_evaluated_needs_only_model_config_and_classes(tmp_path):
    state = {"model": {"w": torch.ones(2)}, "config": {"train": {}}, "classes": ["a", "b"]}
    save_checkpoint(tmp_path / "eval.pt", state)
    saved = RunState.load_trained(tmp_path / "eval.pt")
    assert saved.position is None and saved.identity.classes == ["a", "b"]
    assert saved_epoch(tmp_path / "eval.pt") is None
    with pytest.raises(CheckpointError, match="eval.pt: it holds no training position"):
        saved.require_training(tmp_path / "eval.pt")
    save_checkpoint(tmp_path / "nameless.pt", {**state, "classes": None})
    with pytest.raises(CheckpointError, match="has no list of class names"):
        RunState.load_trained(tmp_path / "nameless.pt")


@pytest.mark.parametrize("layout", [2, "1", 0])
def test_another_layout_is_refused_in_one_line_naming_the_file_and_its_writer(tmp_path, layout):
    path = tmp_path / "future.pt"
    save_checkpoint(path, {"model": {}, "layout": layout, "datp_version": "9.0.0"})
    for load in (load_checkpoint, RunState.load, RunState.load_trained, saved_epoch):
        with pytest.raises(CheckpointError) as error:
            load(path)
        message = str(error.value)
        assert "\n" not in message
        assert str(path) in message and "datp 9.0.0" in message
        assert f"layout {layout!r}" in message
    save_checkpoint(path, {"model": {}, "layout": 2})
    with pytest.raises(CheckpointError, match="an unknown version of datp"):
        RunState.load(path)
