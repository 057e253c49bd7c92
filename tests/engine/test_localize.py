"""Weak localization in the commands: datp evaluate --localization, datp fuse --localization
(activations fused, an older score file still fused), datp check of temporal annotations, on a
tiny untrimmed synthetic dataset."""

import json

import numpy as np
import pytest
import torch

from datp.checkpoint import save_checkpoint
from datp.cli import main
from datp.data.synthetic import SynthConfig, generate
from datp.data.temporal_annotations import read_activitynet_json
from datp.detection import Mixture, weight_curve
from datp.detection_file import DetectionFile
from datp.detection_map import ACTIVITYNET_THRESHOLDS, THUMOS14_THRESHOLDS, threshold_name
from datp.engine.localize import WEIGHTS
from datp.score_file import ScoreFile
from tests.conftest import make_checkpoint

UNTRIMMED = SynthConfig(classes=3, videos_per_class=2, clips_per_group=1, frames=32, height=32,
                        width=32, instances=2)


@pytest.fixture(scope="module")
def untrimmed(tmp_path_factory):
    base = tmp_path_factory.mktemp("untrimmed")
    root = generate(UNTRIMMED, base / "data")
    return {"root": root, "annotations": root / "annotations" / "instances.json",
            "rgb": make_checkpoint(base / "rgb.pt", root),
            "other": make_checkpoint(base / "other.pt", root, seed=1),
            "attention": _attentive(make_checkpoint(
                base / "attention.pt", root, ["pooling.kind=attention", "pooling.pool=logits"]))}


def _attentive(path):
    """An attention checkpoint whose attention is not uniform (it starts so)."""
    state = torch.load(path, weights_only=True)
    weight = state["model"]["pooling.score.2.weight"]
    state["model"]["pooling.score.2.weight"] = torch.randn(
        weight.shape, generator=torch.Generator().manual_seed(0))
    save_checkpoint(path, state)
    return path


def _evaluate(checkpoint, out, *options) -> dict:
    assert main(["evaluate", str(checkpoint), "--out", str(out), "--no-progress",
                 "--no-figures", "--segments", "8", *map(str, options)]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_writes_detections_and_their_map(untrimmed, tmp_path, capsys):
    metrics = _evaluate(untrimmed["rgb"], tmp_path, "--localization", untrimmed["annotations"])
    entry = metrics["localization"]
    names = {threshold_name(t) for t in (*THUMOS14_THRESHOLDS, *ACTIVITYNET_THRESHOLDS)}
    assert set(entry["mAP"]) == names and "0.5" in names
    assert all(0 <= value <= 100 for value in entry["mAP"].values())
    assert entry["average_mAP"]["thumos14"] == pytest.approx(
        np.mean([entry["mAP"][threshold_name(t)] for t in THUMOS14_THRESHOLDS]))
    protocol = entry["protocol"]
    assert protocol["weighted_with"] == "mixture of 2 Gaussians, on the grid"
    assert protocol["settings"]["nms_threshold"] == 0.5
    assert len(protocol["annotations_sha256"]) == 16
    scores = ScoreFile.load(tmp_path / "scores.pt")
    annotations = read_activitynet_json(untrimmed["annotations"])
    detections = DetectionFile.load(tmp_path / "detections.json").results
    assert set(detections) == set(scores.videos) <= set(annotations.videos)  # names as annotated
    assert protocol["videos_annotated_not_evaluated"] == len(annotations.videos) - len(detections)
    duration = UNTRIMMED.frames / UNTRIMMED.fps
    for found in detections.values():
        assert found and all(0 <= d.start < d.end <= duration + 1e-9 for d in found)
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
    # The mixture kept per video is the one the pooling weighted with: Eq. (1) at the step times.
    for mixture, weights, times in zip(scores.mixtures, scores.weights, scores.times,
                                       strict=True):
        curve = weight_curve(Mixture(*mixture), times.double().numpy(), times.numpy())
        np.testing.assert_allclose(curve, (weights / weights.max()).numpy(), rtol=1e-4)
    assert "localization:" in capsys.readouterr().out


def test_per_step_weights_and_thumos_lists_without_durations(untrimmed, tmp_path):
    """An attention network localizes from its per-step weights; THUMOS14-style lists name the
    videos by stem and give no duration: the videos' own frames / fps."""
    annotations = read_activitynet_json(untrimmed["annotations"])
    lists = tmp_path / "thumos"
    lists.mkdir()
    lines: dict[str, list[str]] = {}
    for video in annotations.in_subset("test").videos.values():
        stem = video.video.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for i in video.instances:
            lines.setdefault(i.label, []).append(f"{stem} {i.start:.3f} {i.end:.3f}\n")
    for label, rows in lines.items():
        (lists / f"{label}_test.txt").write_text("".join(rows))
    metrics = _evaluate(untrimmed["attention"], tmp_path / "eval", "--localization", lists)
    protocol = metrics["localization"]["protocol"]
    assert protocol["weighted_with"] == "per-step weights, interpolated"
    found = DetectionFile.load(tmp_path / "eval" / "detections.json").results
    assert all("/" not in video and not video.endswith(".avi") for video in found)
    duration = UNTRIMMED.frames / UNTRIMMED.fps
    assert max(d.end for f in found.values() for d in f) == pytest.approx(duration)
    none = _evaluate(untrimmed["attention"], tmp_path / "none", "--localization", lists,
                     "--localization-weights", "none")["localization"]
    assert none["protocol"]["weighted_with"] == "none (per-step scores alone)"


def test_fuse_localizes_fused_activations_and_reads_older_score_files(untrimmed, tmp_path,
                                                                       capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _evaluate(untrimmed["rgb"], a)
    _evaluate(untrimmed["other"], b)
    old = torch.load(b / "scores.pt", weights_only=True)  # as datp wrote it before mixtures
    del old["mixtures"], old["layout"]
    torch.save(old, b / "scores.pt")
    assert ScoreFile.load(b / "scores.pt").mixtures == []
    out = tmp_path / "fused"
    assert main(["fuse", str(a / "scores.pt"), str(b / "scores.pt"), "--out", str(out),
                 "--localization", str(untrimmed["annotations"])]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "top1" in metrics and metrics["localization"]["videos"] == len(old["videos"])
    streams = metrics["localization"]["protocol"]["streams"]
    assert [s["weight"] for s in streams] == [1.0, 1.5] and all(s["localized"] for s in streams)
    assert streams[1]["weighted_with"] == "per-step weights, interpolated"  # no mixture kept
    assert DetectionFile.load(out / "detections.json").results
    assert main(["fuse", str(a / "scores.pt"), str(b / "scores.pt"), "--localization",
                 str(untrimmed["annotations"])]) == 2
    assert "give --out" in capsys.readouterr().err


def test_check_reports_temporal_annotation_problems(untrimmed, tmp_path, capsys):
    assert main(["check", str(untrimmed["root"])]) == 0  # the default file, clean
    assert capsys.readouterr().out.endswith(f"and the temporal annotations "
                                            f"{untrimmed['annotations']}\n")
    data = json.loads(untrimmed["annotations"].read_text())
    video = next(iter(data["database"]))
    data["database"][video]["annotations"] += [{"segment": [0.5, 9.0], "label": "Nothing"}]
    data["database"]["v_elsewhere"] = {"subset": "test", "duration": 1.0, "annotations": []}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert main(["check", str(untrimmed["root"]), "--temporal-annotations", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "instance Nothing 0.5-9 s ends after the video's 1.28 s" in out
    assert "label 'Nothing' is not one of the 3 classes" in out
    assert "video v_elsewhere has no annotated instance" in out
    assert "1 annotated video(s) that no list names: v_elsewhere" in out
    assert main(["check", str(untrimmed["root"]), "--temporal-annotations",
                 str(tmp_path / "absent.json")]) == 2


def test_components_give_each_gaussian_the_same_peak():
    """rho on one Gaussian (what a classifier learns) hides the other; ``components`` shows
    both at the same height; other poolings keep their weights."""
    mixture = torch.tensor([[0.999, 0.001], [0.2, 0.7], [0.05, 0.1]])  # rho, mu, sigma
    scores = ScoreFile(videos=["v"], labels=torch.zeros(1), pooled=torch.zeros(1, 2),
                       classes=["a", "b"], weights=[torch.ones(4)], mixtures=[mixture])
    at = np.array([0.2, 0.7])
    learned = weight_curve(WEIGHTS["pooling"](scores, 0), at, at)
    equal = weight_curve(WEIGHTS["components"](scores, 0), at, at)
    assert learned[1] < 1e-2 and equal == pytest.approx([1.0, 1.0], abs=1e-5)
    scores.mixtures = []
    assert WEIGHTS["components"](scores, 0) is scores.weights[0]
    assert WEIGHTS["none"](scores, 0) is None
