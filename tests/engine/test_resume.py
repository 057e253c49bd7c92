"""What resuming refuses and what it allows, as pure comparisons."""

from datp.config import load_config, to_dict
from datp.data.splits import VideoItem, split_fingerprint
from datp.engine.resume import resume_changes
from datp.run_state import RunIdentity

IDENTITY = RunIdentity(classes=["a", "b"], split="2:abc", world_size=1,
                       flow_extraction={"backend": "torch", "short_side": None})


def _changes(overrides=(), **identity):
    saved = to_dict(load_config(None, ["train.epochs=4"]))
    now = to_dict(load_config(None, ["train.epochs=4", *overrides]))
    return resume_changes(saved, now, then=IDENTITY,
                          now=RunIdentity(**{**IDENTITY.__dict__, **identity}))


def test_nothing_changed_is_nothing_to_refuse():
    assert _changes() == ([], {})


def test_what_is_learned_is_refused_and_harmless_settings_are_allowed():
    refused, allowed = _changes(["train.lr=0.5", "data.workers=7", "train.epochs=9"])
    assert refused == ["train.lr: 0.001 -> 0.5"]
    assert allowed == {"data.workers": ("auto", 7), "train.epochs": (4, 9)}


def test_more_epochs_of_a_cosine_schedule_change_the_schedule():
    saved = to_dict(load_config(None, ["train.epochs=4", "train.schedule=cosine"]))
    now = to_dict(load_config(None, ["train.epochs=8", "train.schedule=cosine"]))
    refused, _ = resume_changes(saved, now, then=IDENTITY, now=IDENTITY)
    assert refused == ["train.epochs: 4 -> 8"]


def test_classes_split_processes_and_flow_are_compared():
    refused, _ = _changes(classes=["b", "a"])
    assert refused == ["classes: 2 (a, b) -> 2 (b, a)"]
    refused, _ = _changes(split="2:abd")
    assert refused[0].startswith("training split: 2 videos [abc] -> 2 videos [abd]")
    refused, _ = _changes(world_size=4)
    assert refused[0].startswith("processes (torchrun world size): 1 -> 4")
    refused, _ = _changes(flow_extraction={"backend": "dis", "short_side": None})
    assert refused[0].startswith("flow extraction:")


def test_the_split_fingerprint_sees_videos_and_labels_not_their_order():
    class Split:
        def __init__(self, items):
            self.items = items

    a, b = VideoItem("x/v1.avi", 0), VideoItem("x/v2.avi", 1)
    assert split_fingerprint(Split([a, b])) == split_fingerprint(Split([b, a]))
    relabelled = VideoItem("x/v2.avi", 0)
    assert split_fingerprint(Split([a, b])) != split_fingerprint(Split([a, relabelled]))
    assert split_fingerprint(object()) is None
