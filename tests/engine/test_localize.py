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


# --- the annotations are checked before anything is evaluated --------------------------------


def _annotations_with(untrimmed, path, change) -> str:
    """The fixture's annotations with ``change(database)`` applied, written to ``path``."""
    data = json.loads(untrimmed["annotations"].read_text())
    change(data["database"])
    path.write_text(json.dumps(data))
    return str(path)


def _first_test_video(database) -> dict:
    return next(v for v in database.values() if v["subset"] == "test")


def _set_segment(segment):
    def change(database):
        _first_test_video(database)["annotations"][0]["segment"] = segment
    return change


@pytest.mark.parametrize(("segment", "problem"), [
    ([0.9, 0.5], "start >= end"), ([0.5, 0.5], "start >= end"), ([-0.2, 0.5], "starts before 0"),
    ([0.5, 9.0], "ends after the video's 1.28 s"),
])
def test_evaluate_and_fuse_refuse_what_check_calls_errors_before_evaluating(
        untrimmed, tmp_path, capsys, segment, problem):
    bad = _annotations_with(untrimmed, tmp_path / "bad.json", _set_segment(segment))
    out = tmp_path / "eval"
    assert main(["evaluate", str(untrimmed["rgb"]), "--out", str(out), "--no-progress",
                 "--no-figures", "--localization", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {bad}: database[") and problem in err
    assert f"`datp check DATASET --temporal-annotations {bad}`" in err
    assert not (out / "scores.pt").exists()  # refused before the evaluation
    scores = str(_evaluated(untrimmed, tmp_path) / "scores.pt")
    capsys.readouterr()
    assert main(["fuse", scores, scores, "--out", str(tmp_path / "fused"),
                 "--localization", bad]) == 2
    captured = capsys.readouterr()
    assert problem in captured.err and captured.out == ""  # refused before fusing
    assert not (tmp_path / "fused").exists()


def _evaluated(untrimmed, tmp_path):
    out = tmp_path / "plain"
    if not (out / "scores.pt").exists():
        _evaluate(untrimmed["rgb"], out)
    return out


def test_a_missing_or_malformed_annotation_file_costs_no_evaluation(untrimmed, tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"database": {')
    for path, problem in ((tmp_path / "absent.json", "annotation file not found"),
                          (broken, "not valid JSON")):
        out = tmp_path / path.stem
        assert main(["evaluate", str(untrimmed["rgb"]), "--out", str(out), "--no-progress",
                     "--no-figures", "--localization", str(path)]) == 2
        assert problem in capsys.readouterr().err
        assert not (out / "scores.pt").exists()


def test_labels_that_are_not_the_models_classes_are_named_and_left_out(untrimmed, tmp_path,
                                                                       capsys):
    """The mAP averages over the model's classes that the evaluated videos' instances carry:
    an annotated label the model cannot predict adds no class with AP 0."""
    def juggling(database):
        _first_test_video(database)["annotations"].append(
            {"segment": [0.1, 0.3], "label": "Juggling"})
    extra = _annotations_with(untrimmed, tmp_path / "extra.json", juggling)
    clean = _evaluate(untrimmed["rgb"], tmp_path / "clean", "--localization",
                      untrimmed["annotations"])["localization"]
    capsys.readouterr()
    entry = _evaluate(untrimmed["rgb"], tmp_path / "extra", "--localization", extra)[
        "localization"]
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'Juggling' (1 instance)" in warnings[0]
    assert "left out of the mAP" in warnings[0]
    assert entry["mAP"] == clean["mAP"] and entry["labels_left_out"] == {"Juggling": 1}
    assert entry["scored_classes"] == clean["scored_classes"] and len(clean["scored_classes"]) == 3

    def all_unknown(database):
        for video in database.values():
            for annotation in video["annotations"]:
                annotation["label"] = "Juggling"
    unknown = _annotations_with(untrimmed, tmp_path / "unknown.json", all_unknown)
    out_dir = tmp_path / "unknown"
    assert main(["evaluate", str(untrimmed["rgb"]), "--out", str(out_dir), "--no-progress",
                 "--localization", unknown]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none of its 1 labels ('Juggling') is one of the model's 3 " \
                                     "classes" in err
    assert not (out_dir / "scores.pt").exists()


def _thumos_lists(untrimmed, folder, *, leave_out: str = "") -> str:
    """The fixture's test instances as THUMOS14's lists, without ``leave_out``'s file."""
    folder.mkdir()
    for video in read_activitynet_json(untrimmed["annotations"]).in_subset("test").videos.values():
        stem = video.video.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        for i in video.instances:
            if i.label != leave_out:
                with open(folder / f"{i.label}_test.txt", "a") as lines:
                    lines.write(f"{stem} {i.start} {i.end}\n")
    return str(folder)


def test_a_class_without_instances_is_a_warning_in_evaluate_and_check(untrimmed, tmp_path,
                                                                      capsys):
    lists = _thumos_lists(untrimmed, tmp_path / "lists", leave_out="OrangeSquareLeft")
    entry = _evaluate(untrimmed["rgb"], tmp_path / "eval", "--localization", lists)[
        "localization"]
    out = capsys.readouterr().out
    assert "warning: " in out and "1 of the model's 3 classes have no instance" in out
    assert "OrangeSquareLeft" in out.split("warning: ", 1)[1].splitlines()[0]
    assert entry["scored_classes"] == ["RedDiscRight", "YellowTriangleDown"]
    assert entry["classes_without_instances"] == ["OrangeSquareLeft"]
    assert main(["check", str(untrimmed["root"]), "--splits", "1",
                 "--temporal-annotations", lists]) == 0
    out = capsys.readouterr().out
    assert f"{lists}: warning: 1 of the 3 classes have no instance in the 2 videos of split " \
           "1's test list it annotates (an evaluation's mAP leaves them out): OrangeSquareLeft" \
           in out and "0 error(s), 1 warning(s)" in out


ONLY_TRAIN = ("; it annotates 3 others (e.g. 'RedDiscRight/v_RedDiscRight_g02_c01.avi', in "
              "subset(s) 'train')")


@pytest.mark.parametrize(("change", "in_check", "in_evaluate"), [
    (lambda database: database.clear(), "annotates no video (its database is empty)",
     "annotates no video (its database is empty)"),
    (lambda database: [database.pop(k) for k, v in list(database.items())
                       if v["subset"] == "test"],
     "names none of the 3 videos of split 1's test list (e.g. "
     f"'RedDiscRight/v_RedDiscRight_g01_c01.avi'){ONLY_TRAIN}",
     f"names none of the 3 evaluated videos (e.g. 'RedDiscRight/v_RedDiscRight_g01_c01.avi')"
     f"{ONLY_TRAIN}"),
])
def test_check_refuses_annotations_evaluate_would_refuse(untrimmed, tmp_path, capsys, change,
                                                         in_check, in_evaluate):
    bad = _annotations_with(untrimmed, tmp_path / "bad.json", change)
    assert main(["check", str(untrimmed["root"]), "--splits", "1",
                 "--temporal-annotations", bad]) == 1
    assert f"{bad}: error: {in_check}\n" in capsys.readouterr().out
    assert main(["evaluate", str(untrimmed["rgb"]), "--out", str(tmp_path / "eval"),
                 "--no-progress", "--localization", bad]) == 2
    assert capsys.readouterr().err == f"error: {bad}: {in_evaluate}\n"


def test_check_holds_annotations_against_every_split_it_checks(untrimmed, tmp_path, capsys):
    """Annotations of split 1's training videos are split 2's (or 3's) test videos: checking
    every split, they are no error; checking split 1 alone, they are."""
    def only_train(database):
        for key in [k for k, v in database.items() if v["subset"] == "test"]:
            database.pop(key)
    swapped = _annotations_with(untrimmed, tmp_path / "swapped.json", only_train)
    assert main(["check", str(untrimmed["root"]), "--temporal-annotations", swapped]) == 0
    capsys.readouterr()
    assert main(["check", str(untrimmed["root"]), "--splits", "1",
                 "--temporal-annotations", swapped]) == 1
    assert "split 1's test list" in capsys.readouterr().out


def test_fuse_says_which_streams_localize(untrimmed, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _evaluate(untrimmed["rgb"], a)
    _evaluate(untrimmed["other"], b)
    old = torch.load(b / "scores.pt", weights_only=True)  # as datp wrote it before it kept them
    for key in ("segment_scores", "times", "mixtures", "layout"):
        old.pop(key, None)
    torch.save(old, b / "scores.pt")
    capsys.readouterr()
    assert main(["fuse", str(a / "scores.pt"), str(b / "scores.pt"), "--out",
                 str(tmp_path / "fused"), "--localization", str(untrimmed["annotations"])]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines()
             if "localization uses" in line]
    assert notes == [f"note: the fused localization uses the per-step scores of "
                     f"{a / 'scores.pt'} alone; {b / 'scores.pt'} holds none"]


def test_what_check_calls_warnings_is_one_warning_line(untrimmed, tmp_path, capsys):
    def without_instances(database):
        for video in database.values():
            if video["subset"] == "train":
                video["annotations"] = []
    bare = _annotations_with(untrimmed, tmp_path / "bare.json", without_instances)
    _evaluate(untrimmed["rgb"], tmp_path / "eval", "--localization", bare)
    warnings = [line for line in capsys.readouterr().out.splitlines()
                if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {bare}: database[")
    assert warnings[0].endswith(f"has no annotated instance (and 2 more; `datp check DATASET "
                                f"--temporal-annotations {bare}` lists them all)")


def test_a_report_folder_keeps_its_localization_unless_the_same_one_is_asked_again(
        untrimmed, tmp_path, capsys):
    out = tmp_path / "eval"
    _evaluate(untrimmed["rgb"], out, "--localization", untrimmed["annotations"])
    detections = (out / "detections.json").read_bytes()
    other = _annotations_with(untrimmed, tmp_path / "other.json", _set_segment([0.0, 0.5]))
    for options, found in (
            ([], "which a report without --localization would leave stale"),
            (["--localization", other], "against other annotations"),
            (["--localization", str(untrimmed["annotations"]), "--localization-weights", "none"],
             "weighted with 'pooling', not 'none'")):
        capsys.readouterr()
        assert main(["evaluate", str(untrimmed["rgb"]), "--out", str(out), "--no-progress",
                     "--no-figures", "--segments", "8", *options]) == 2, options
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and found in err and "detections.json" in err
        assert (out / "detections.json").read_bytes() == detections  # nothing replaced
    assert "localization" in json.loads((out / "metrics.json").read_text())
    _evaluate(untrimmed["rgb"], out, "--localization", untrimmed["annotations"])  # the same


def test_fuse_refuses_annotations_without_durations_before_writing_anything(untrimmed, tmp_path,
                                                                          capsys):
    """Fusing reads score files, no video: THUMOS14's lists (no durations) are refused before
    the fused report is written, not after it."""
    scores = str(_evaluated(untrimmed, tmp_path) / "scores.pt")
    lists = _thumos_lists(untrimmed, tmp_path / "lists")
    out = tmp_path / "fused"
    capsys.readouterr()
    assert main(["fuse", scores, scores, "--out", str(out), "--localization", lists]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gives no duration for" in err
    assert "fusing reads no video" in err
    assert not out.exists()
