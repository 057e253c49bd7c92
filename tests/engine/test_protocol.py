"""Every result says how it was made: the protocol in metrics.json and scores.pt, and how
``datp fuse`` treats protocols that differ."""

import hashlib
import json

import pytest
import torch

from datp.cli import main
from datp.engine.build import evaluate_checkpoint
from datp.engine.protocol import compare_protocols
from tests.conftest import FLOW, make_checkpoint


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
    """The tiny RGB and flow streams, saved at epoch 3 and evaluated into report folders."""
    base = tmp_path_factory.mktemp("protocol")
    root = tiny["root"]
    rgb = make_checkpoint(base / "rgb.pt", root, extra={"epoch": 3})
    flow = make_checkpoint(base / "flow.pt", root, FLOW, seed=1,
                           extra={"epoch": 3, "flow_extraction": {"backend": "farneback"}})
    for name, checkpoint in (("rgb", rgb), ("flow", flow)):
        evaluate_checkpoint(checkpoint, out_dir=base / name, crops=3 if name == "flow" else None)
    return {"base": base, "rgb": rgb, "flow": flow}


def test_metrics_and_scores_record_the_protocol(evaluated):
    base = evaluated["base"]
    metrics = json.loads((base / "rgb" / "metrics.json").read_text())
    scores = torch.load(base / "rgb" / "scores.pt", weights_only=True)
    protocol = metrics["protocol"]
    assert scores["protocol"] == protocol
    digest = hashlib.sha256(evaluated["rgb"].read_bytes()).hexdigest()
    assert protocol["checkpoint"] == {"path": str(evaluated["rgb"].resolve()),
                                      "sha256": digest[:16], "epoch": 3}
    data = protocol["data"]
    assert (data["format"], data["split"]) == ("ucf101", 1)
    assert data["videos"].startswith(f"{metrics['videos']}:") and len(data["videos"]) > 60
    assert protocol["test"] == {"scheme": "datp", "segments": 4, "crops": 1, "image_size": 32,
                                "resize_short": 36}
    assert protocol["modality"] == "rgb" and protocol["flow"] is None
    assert protocol["skipped"] == [] and protocol["classes"] == scores["classes"]
    assert protocol["datp_version"] and protocol["git_revision"]
    assert protocol["date"].endswith("+00:00")
    flow = torch.load(base / "flow" / "scores.pt", weights_only=True)["protocol"]
    assert flow["flow"] == {"flow_length": 2, "flow_root": "flow",
                            "extraction": {"backend": "farneback"}}
    assert flow["data"]["videos"] == data["videos"]  # the same test videos, other files


def test_fuse_prints_other_differences_and_records_both_protocols(evaluated, capsys):
    base = evaluated["base"]
    out = base / "fused"
    assert main(["fuse", str(base / "rgb" / "scores.pt"), str(base / "flow" / "scores.pt"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = next(line for line in printed.splitlines() if line.startswith("note: "))
    assert "modality rgb / flow" in note and "test.crops 1 / 3" in note
    assert "checkpoint.path" not in note and "date" not in note
    streams = json.loads((out / "metrics.json").read_text())["streams"]
    assert [s["protocol"]["modality"] for s in streams] == ["rgb", "flow"]
    saved = torch.load(out / "fused_scores.pt", weights_only=True)["streams"]
    assert [s["weight"] for s in saved] == [1.0, 1.5] and saved[1]["protocol"]["flow"]


@pytest.mark.parametrize(("change", "named"), [
    (lambda p: p["data"].update(split=2), "data.split 1 / 2"),
    (lambda p: p["data"].update(videos="5:" + "0" * 64), "5 videos [00000000]"),
])
def test_fuse_refuses_another_split_or_video_list_in_one_line(evaluated, capsys, change, named):
    base = evaluated["base"]
    scores = torch.load(base / "flow" / "scores.pt", weights_only=True)
    change(scores["protocol"])
    torch.save(scores, base / "changed.pt")
    assert main(["fuse", str(base / "rgb" / "scores.pt"), str(base / "changed.pt")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert "changed.pt" in error and named in error
    assert "another split or another set of videos" in error


def test_score_files_without_a_protocol_still_fuse_with_a_warning(evaluated, capsys):
    base = evaluated["base"]
    scores = torch.load(base / "flow" / "scores.pt", weights_only=True)
    del scores["protocol"]  # as datp wrote it before it recorded protocols
    torch.save(scores, base / "old.pt")
    assert main(["fuse", str(base / "rgb" / "scores.pt"), str(base / "old.pt")]) == 0
    printed = capsys.readouterr().out
    assert "top1" in printed
    assert f"warning: {base / 'old.pt'} records no protocol" in printed
    assert "unknown" in printed and "note:" not in printed


def test_compare_protocols_sorts_incomparable_from_other_differences():
    first = {"checkpoint": {"path": "a", "sha256": "1", "epoch": 2}, "date": "x",
             "data": {"format": "ucf101", "split": 1, "videos": "3:" + "a" * 64},
             "test": {"crops": 1}, "skipped": []}
    second = {"checkpoint": {"path": "b", "sha256": "2", "epoch": 5}, "date": "y",
              "data": {"format": "ucf101", "split": 1, "videos": "4:" + "b" * 64},
              "test": {"crops": 10}, "skipped": ["v: broken"]}
    incomparable, other = compare_protocols(first, second)
    assert incomparable == ["data.videos 3 videos [aaaaaaaa] / 4 videos [bbbbbbbb]"]
    assert other == ["checkpoint.epoch 2 / 5", "skipped videos 0 / 1", "test.crops 1 / 10"]
    assert compare_protocols(first, first) == ([], [])


def test_between_rgb_and_flow_the_modality_alone_says_the_flow_settings_differ():
    rgb = {"modality": "rgb", "flow": None, "data": {"test_list": ""}}
    flow = {"modality": "flow", "flow": {"flow_length": 5, "extraction": {"backend": "torch"}},
            "data": {"test_list": "test.txt"}}
    assert compare_protocols(rgb, flow) == ([], ['data.test_list "" / test.txt',
                                                 "modality rgb / flow"])
    other = {**flow, "flow": {"flow_length": 3, "extraction": {"backend": "torch"}}}
    assert compare_protocols(flow, other)[1] == ["flow.flow_length 5 / 3"]


@pytest.mark.parametrize(("change", "named"), [
    (lambda c: [c[1], c[0], *c[2:]], "in another order: class 0 is 'c1' here and 'c0' there"),
    (lambda c: [*c[:-1], "Other"], "other classes than"),
])
def test_fuse_names_the_classes_that_differ_before_any_video(evaluated, capsys, change, named):
    """The same classes in another order (or other classes), with the videos' labels numbered
    accordingly, as an evaluation on a relabelled copy of the split gives: the line names the
    classes, not 'another set of videos'."""
    base = evaluated["base"]
    scores = torch.load(base / "flow" / "scores.pt", weights_only=True)
    classes = [f"c{i}" for i in range(len(scores["classes"]))]
    for name in ("rgb", "flow"):
        kept = torch.load(base / name / "scores.pt", weights_only=True)
        kept["classes"] = classes
        torch.save(kept, base / f"{name}_named.pt")
    scores["classes"] = change(classes)
    scores["protocol"]["data"]["videos"] = "5:" + "0" * 64  # the labels' fingerprint moved too
    torch.save(scores, base / "changed.pt")
    assert main(["fuse", str(base / "rgb_named.pt"), str(base / "changed.pt")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert named in error and "another set of videos" not in error
