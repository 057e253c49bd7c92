"""Checkpoints rebuilt as streams: errors that name the file, pickles never executed, and the
checks that two streams and a class list fit together."""

from pathlib import Path

import pytest
import torch

from datp.checkpoint import CheckpointError, save_checkpoint
from datp.engine.build import load_stream
from datp.engine.predict import predict_video
from datp.engine.streams import check_streams
from datp.run_state import load_checkpoint
from tests.conftest import make_checkpoint


def test_bad_checkpoints_raise_errors_naming_the_file(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint does not exist"):
        load_stream(tmp_path / "missing.pt")
    state = load_checkpoint(tiny["rgb"])
    # Class names that do not match the classifier.
    save_checkpoint(tmp_path / "classes.pt", {**state, "classes": ["a", "b", "c", "d", "e"]})
    with pytest.raises(CheckpointError, match="classes.pt: checkpoint names 5 classes but .* "
                       "has 3 outputs"):
        load_stream(tmp_path / "classes.pt")
    # A configuration that is not the one the parameters were trained with.
    other = {**state["config"], "pooling": {**state["config"]["pooling"], "num_gaussians": 3}}
    save_checkpoint(tmp_path / "config.pt", {**state, "config": other})
    with pytest.raises(CheckpointError, match="config.pt: checkpoint parameters do not fit"):
        load_stream(tmp_path / "config.pt")
    unknown = {**state["config"], "pooling": {**state["config"]["pooling"], "kernel": 3}}
    save_checkpoint(tmp_path / "unknown.pt", {**state, "config": unknown})
    with pytest.raises(CheckpointError, match="unknown.pt.*unknown key pooling.kernel"):
        load_stream(tmp_path / "unknown.pt")


class _Payload:
    """Unpickling this would create a file: weights_only=True must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def test_pickled_objects_are_never_executed(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"model": {}, "payload": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt: checkpoint cannot be loaded: it holds "
                       "pickled"):
        load_stream(tmp_path / "evil.pt")
    assert not marker.exists()


def test_class_lists_and_n_that_do_not_match_are_refused(tiny, tmp_path):
    rgb, flow = load_stream(tiny["rgb"]), load_stream(tiny["flow"])
    flow.classes = ["x", "y", "z"]
    with pytest.raises(ValueError, match="flow.pt and .*rgb.pt name different classes"):
        check_streams([rgb, flow])
    with pytest.raises(ValueError, match="the class list .* does not match"):
        check_streams([rgb], ["only", "two"])
    with pytest.raises(ValueError, match="an RGB checkpoint and a flow checkpoint"):
        check_streams([rgb, rgb])
    # A mixture of Gaussians runs at any N; the discrete generator refuses another N up front.
    six = predict_video(tiny["videos"][0], [load_stream(tiny["rgb"], segments=6)])
    assert six.streams[0].weights.shape == (6,) and six.streams[0].frame_ranges.shape == (6, 2)
    discrete = make_checkpoint(
        tmp_path / "discrete.pt", tiny["root"], ["pooling.generator=discrete"]
    )
    load_stream(discrete)  # its own N is fine
    with pytest.raises(ValueError, match="discrete.pt with --segments.*test_segments = 6 must "
                                         "equal data.num_segments = 4"):
        load_stream(discrete, segments=6)
