"""Heads on features wherever frames go: ``datp features`` of the tiny dataset with two
checkpoints' backbones, then ``datp train`` on each folder, ``evaluate`` under the schemes that
read no crops (and one line for those that do), ``fuse`` of the two feature streams, ``predict``
from a feature file and from a video, ``export``, and a resumed run."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from datp.checkpoint import file_sha256
from datp.cli import main
from datp.engine.build import load_stream
from datp.engine.predict import predict_video
from datp.errors import InputError
from datp.run_state import RunState
from datp.score_file import ScoreFile
from tests.conftest import N, make_checkpoint

pytest.importorskip("av")


@pytest.fixture(scope="module")
def heads(tiny, tmp_path_factory):
    """Features of the tiny videos by two checkpoints' backbones, a DATP head trained on each."""
    base = tmp_path_factory.mktemp("feature_heads")
    root = tiny["root"]
    backbones = {"a": tiny["rgb"], "b": make_checkpoint(base / "other.pt", root, seed=7)}
    config = base / "features.toml"
    config.write_text(
        f'[data]\nroot = "{root}"\nsource = "features"\nnum_segments = {N}\n'
        f"test_segments = {N}\nworkers = 0\n[model]\ndropout = 0.2\npartial_bn = false\n"
        '[pooling]\nkind = "datp"\naux_input = "sequence"\n[train]\nepochs = 2\n'
        'batch_size = 2\noptimizer = "adamw"\nlr = 0.01\nlr_steps = [1]\neval_every = 1\n'
        'device = "cpu"\n')
    folders, runs = {}, {}
    for name, checkpoint in backbones.items():
        folders[name] = base / f"features_{name}"
        assert main(["features", str(root / "videos"), str(folders[name]),
                     "--checkpoint", str(checkpoint)]) == 0
        runs[name] = base / f"run_{name}"
        assert main(["train", str(config), "--out", str(runs[name]), "--no-progress",
                     "--set", f"data.features_root={folders[name]}"]) == 0
    return {"root": root, "config": config, "backbones": backbones, "folders": folders,
            "runs": runs, "base": base}


def _evaluate(run, scheme, out, *extra):
    return main(["evaluate", str(run / "checkpoints" / "last.pt"), "--scheme", scheme,
                 "--out", str(out), "--no-figures", "--no-progress", *extra])


def test_a_head_trains_on_features_and_records_which(heads):
    state = RunState.load_trained(heads["runs"]["a"] / "checkpoints" / "last.pt")
    made = state.identity.feature_set
    assert made["layout"] == "datp" and made["root"] == str(heads["folders"]["a"])
    backbone = made["settings"]["backbone"]
    assert backbone["weights_sha256"] == file_sha256(heads["backbones"]["a"])
    assert state.model["fc.weight"].shape[1] == backbone["channels"]  # D from the folder
    assert not any(key.startswith("backbone.") for key in state.model)  # the head alone


def test_the_schemes_that_read_no_crops_evaluate_and_tsn_is_one_line(heads, tmp_path, capsys):
    run = heads["runs"]["a"]
    for scheme in ("datp", "p1", "p2"):
        assert _evaluate(run, scheme, tmp_path / scheme) == 0, scheme
    metrics = json.loads((tmp_path / "datp" / "metrics.json").read_text())
    protocol = metrics["protocol"]
    assert protocol["data"]["source"] == "features"
    assert protocol["data"]["features"]["settings"]["backbone"]["weights_sha256"] == \
        file_sha256(heads["backbones"]["a"])
    assert protocol["test"]["image_size"] is None and protocol["test"]["crops"] == 1
    p2 = json.loads((tmp_path / "p2" / "metrics.json").read_text())
    assert p2["protocol"]["test"]["segments"] == 25 and p2["protocol"]["test"]["crops"] == 1
    capsys.readouterr()
    assert _evaluate(run, "tsn", tmp_path / "tsn") == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert 'data.source = "features"' in error and "test_crops" in error
    assert "under the tsn scheme:" in error and "--crops" not in error  # no flag was given
    # Other features into the same report folder: another evaluation, refused; the same
    # features again rewrite it.
    other = f"data.features_root={heads['folders']['b']}"
    assert _evaluate(run, "datp", tmp_path / "datp", "--set", other) == 2
    assert "another evaluation (features made another way)" in capsys.readouterr().err
    assert _evaluate(run, "datp", tmp_path / "datp") == 0
    assert _evaluate(run, "p3", tmp_path / "p3") == 2  # p3 tests an average-trained head
    assert _evaluate(run, "datp", tmp_path / "crops", "--crops", "3") == 2
    # Features of another D (another backbone's) than the head reads: one line too.
    wider = tmp_path / "wider"
    shutil.copytree(heads["folders"]["a"], wider)
    for path in wider.rglob("*.json"):
        record = json.loads(path.read_text())
        settings = record.get("settings", record)
        settings["backbone"]["channels"] += 1
        path.write_text(json.dumps(record))
    for path in wider.rglob("*.npy"):
        array = np.load(path)
        np.save(path, np.concatenate([array, array[:, :1]], axis=1))
    capsys.readouterr()
    assert _evaluate(run, "datp", tmp_path / "wide", "--set",
                     f"data.features_root={wider}") == 2
    error = capsys.readouterr().err
    assert "the checkpoint's head reads D =" in error and "\n" not in error.strip()


def test_two_feature_streams_of_two_backbones_fuse(heads, tmp_path, capsys):
    scores = []
    for name in ("a", "b"):
        assert _evaluate(heads["runs"][name], "datp", tmp_path / name) == 0
        scores.append(str(tmp_path / name / "scores.pt"))
    capsys.readouterr()
    assert main(["fuse", *scores, "--weights", "1", "1", "--out", str(tmp_path / "fused")]) == 0
    printed = capsys.readouterr().out
    assert "top1" in printed
    assert "data.features.settings.backbone.weights_sha256" in printed  # the streams differ so
    assert (tmp_path / "fused" / "fused_scores.pt").is_file()


def test_predict_from_a_feature_file_and_from_a_video_is_the_evaluation(heads, tmp_path):
    run, root = heads["runs"]["a"], heads["root"]
    checkpoint = run / "checkpoints" / "last.pt"
    assert _evaluate(run, "datp", tmp_path / "eval") == 0
    evaluated = ScoreFile.load(tmp_path / "eval" / "scores.pt")
    video = evaluated.videos[0]
    expected = evaluated.log_probs[0].exp()
    stream = load_stream(checkpoint)
    from_file = predict_video(heads["folders"]["a"] / video.replace(".avi", ".npy"), [stream])
    torch.testing.assert_close(from_file.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert from_file.units == "feature steps" and from_file.streams[0].peaks
    # Localized as a video is: the mixture over the steps, detections inside the sequence.
    assert from_file.detections and from_file.streams[0].mixture is not None
    assert all(d.label in stream.classes and 0 <= d.start < d.end <= from_file.duration_s + 1e-6
               for d in from_file.detections)
    denser = predict_video(heads["folders"]["a"] / video.replace(".avi", ".npy"), [stream],
                           segments=2 * N)  # a mixture pools any N
    assert len(denser.streams[0].weights) == 2 * N and denser.detections
    with pytest.raises(InputError, match="data.features_backbone"):
        predict_video(root / "videos" / video, [stream])
    stream = load_stream(checkpoint, overrides=[
        f"data.features_backbone={heads['backbones']['a']}"])
    from_video = predict_video(root / "videos" / video, [stream])
    torch.testing.assert_close(from_video.probabilities, expected, rtol=1e-4, atol=1e-5)
    assert from_video.units == "frames" and from_video.frames.shape[0] == N
    peak = from_video.streams[0].peaks[0]
    assert 0 <= peak.start_s < peak.end_s <= from_video.duration_s + 1e-6
    with pytest.raises(InputError, match="not the file the features were made with"):
        predict_video(root / "videos" / video, [load_stream(checkpoint, overrides=[
            f"data.features_backbone={heads['backbones']['b']}"])])
    out = tmp_path / "predictions"
    assert main(["predict", str(root / "videos" / video), "--checkpoint", str(checkpoint),
                 "--set", f"data.features_backbone={heads['backbones']['a']}",
                 "--out", str(out)]) == 0
    record = json.loads((out / f"{video.split('/')[-1].rsplit('.', 1)[0]}.json").read_text())
    assert record["units"] == "frames" and record["top"][0]["name"] == from_video.top[0].name
    detections = json.loads((out / f"{video.split('/')[-1].rsplit('.', 1)[0]}.detections.json"
                             ).read_text())
    assert [d["label"] for d in next(iter(detections["results"].values()))] == [
        d["label"] for d in record["detections"]]


def test_a_heads_videos_have_durations_for_annotations_without_them(heads):
    """THUMOS14's lists give no durations: a head's evaluation takes them from the feature
    files (an AttributeError before: a feature dataset opens no video)."""
    from datp.engine.build import evaluation_run
    from datp.engine.localize import dataset_durations

    run = evaluation_run(heads["runs"]["a"] / "checkpoints" / "last.pt", scheme="datp")
    videos = [item.path for item in run.dataset.items][:3]
    durations = dataset_durations(run.dataset, videos)
    assert list(durations) == videos and all(d > 0 for d in durations.values())
    assert durations[videos[0]] == run.dataset.features.open(videos[0]).duration


def test_a_head_exports_to_onnx(heads, tmp_path):
    """The head's auxiliary net traces (its norm shape as plain ints) and the check passes."""
    pytest.importorskip("onnxruntime")
    checkpoint = heads["runs"]["a"] / "checkpoints" / "last.pt"
    onnx = tmp_path / "head.onnx"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(onnx)]) == 0
    assert json.loads((tmp_path / "head.onnx.json").read_text())["check"]["batch"] == 3


def test_a_head_exports_and_its_run_resumes(heads, tmp_path, capsys):
    run, config = heads["runs"]["a"], heads["config"]
    checkpoint = run / "checkpoints" / "last.pt"
    out = tmp_path / "head.torchscript.pt"
    assert main(["export", str(checkpoint), "--format", "torchscript", "--out", str(out)]) == 0
    sidecar = json.loads((tmp_path / "head.torchscript.pt.json").read_text())
    channels = torch.load(checkpoint, weights_only=True)["model"]["fc.weight"].shape[1]
    assert sidecar["inputs"]["inputs"]["shape"] == ["B", N, channels]
    assert sidecar["inputs"]["inputs"]["features"]["layout"] == "datp"
    # Other features under a resumed run are refused; the same ones, moved, resume.
    capsys.readouterr()
    other = heads["folders"]["b"]
    assert main(["train", str(config), "--out", str(run), "--resume", "--no-progress",
                 "--set", f"data.features_root={other}", "--set", "train.epochs=3"]) == 2
    assert "features:" in capsys.readouterr().err
    moved = heads["base"] / "moved_a"
    heads["folders"]["a"].rename(moved)
    heads["folders"]["a"] = moved
    assert main(["train", str(config), "--out", str(run), "--resume", "--no-progress",
                 "--set", f"data.features_root={moved}", "--set", "train.epochs=3"]) == 0
    assert RunState.load_trained(checkpoint).position.epoch == 2



def _torchrun_worker(rank: int, world_size: int, port: int, config: str, features: str,
                     run_dir: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from datp.config import load_config
    from datp.engine.build import training_run
    from datp.engine.train import train

    run = training_run(load_config(config, [f"data.features_root={features}",
                                            "train.epochs=1"]), run_dir)
    train(run)
    torch.save(run.model.state_dict(), os.path.join(run_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_a_head_on_features_trains_under_torchrun(heads, tmp_path):
    """Two gloo processes, as torchrun starts them, train one head on their shares."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_torchrun_worker, args=(2, port, str(heads["config"]), str(heads["folders"]["b"]),
                                     str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = RunState.load_trained(tmp_path / "checkpoints" / "last.pt")
    assert saved.identity.feature_set["root"] == str(heads["folders"]["b"])
    for key, value in ranks[0].items():
        torch.testing.assert_close(ranks[1][key], value)
        torch.testing.assert_close(saved.model[key], value)
