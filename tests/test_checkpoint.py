import random
from pathlib import Path

import numpy as np
import pytest
import torch

from datp.checkpoint import (
    CheckpointError,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from datp.run_state import load_checkpoint


def test_round_trip_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "c" / "last.pt"
    save_checkpoint(path, {"model": model.state_dict(), "epoch": 4, "rng": rng_states()})
    state = load_checkpoint(path)
    assert state["epoch"] == 4
    torch.testing.assert_close(state["model"]["weight"], model.weight)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind


def test_rng_states_restore_every_generator():
    states = rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_states(states)
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {"model": {}, "bad": Unpicklable()})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_unsafe_truncated_missing_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": {}, "payload": object()}, pickled)
    with pytest.raises(CheckpointError, match="pickled.pt: checkpoint cannot be loaded: it holds "
                       "pickled "
                                              r"Python objects \(object\)") as error:
        load_checkpoint(pickled)
    # torch's own hint to retry with weights_only=False is unsafe advice for an unknown file.
    assert "weights_only" not in str(error.value) and "likely succeed" not in str(error.value)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, {"model": {"w": torch.ones(1000)}})
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated.pt: checkpoint cannot be loaded: "
                       "it is truncated"):
        load_checkpoint(truncated)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"hello")
    with pytest.raises(CheckpointError, match="junk.pt: checkpoint cannot be loaded: it is "
                       "not a file written"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a datp checkpoint"):
        load_checkpoint(foreign)


def _touch(path: str) -> None:
    Path(path).touch()


class Untrusted:
    """Unpickling it runs code: it touches a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return _touch, (self.marker,)


def test_an_untrusted_pickle_is_named_as_one_with_what_it_holds_and_never_run(tmp_path):
    import pickle

    marker = tmp_path / "ran"
    path = tmp_path / "untrusted.pt"
    with path.open("wb") as handle:  # as a user's own script might save a model
        pickle.dump({"model": {}, "hook": Untrusted(marker)}, handle)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert "it is a Python pickle that safe loading (weights_only) refuses" in message
    assert "torch: Unsupported operand" in message  # what torch reports
    assert "it names tests.test_checkpoint._touch" in message
    assert "not a file written by torch.save" not in message and "likely succeed" not in message
    assert not marker.exists()
