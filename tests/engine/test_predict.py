"""Prediction on video files: equal to evaluation, flow computed on demand, peak ranges, bad input,
and the CLI in single and batch mode."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from datp.cli import main
from datp.data.splits import read_ucf101_classes
from datp.detection_file import DetectionFile
from datp.engine.build import evaluate_checkpoint, load_stream
from datp.engine.predict import flow_settings, predict_video
from datp.errors import DataError, InputError
from datp.flow.backends import build_backend
from datp.flow.storage import read_settings
from tests.conftest import TINY, N, make_checkpoint


def test_prediction_equals_evaluation_of_the_same_file(tiny):
    _, collected, _ = evaluate_checkpoint(tiny["rgb"])
    stream = load_stream(tiny["rgb"])
    for i, video in enumerate(collected.videos):
        prediction = predict_video(tiny["root"] / "videos" / video, [stream], top_k=2)
        expected = collected.log_probs[i].exp()
        torch.testing.assert_close(prediction.probabilities, expected, atol=1e-5, rtol=1e-4)
        assert prediction.top[0].index == int(expected.argmax())
        assert prediction.top[0].name == stream.classes[int(expected.argmax())]
        assert len(prediction.top) == 2
        torch.testing.assert_close(prediction.streams[0].weights, collected.weights[i])
        torch.testing.assert_close(prediction.streams[0].times, collected.times[i])
        assert prediction.frames.shape == (N, 32, 32, 3) and prediction.frames.dtype == np.uint8


def test_two_streams_compute_flow_like_datp_flow_and_fuse_1_to_1_5(tiny):
    _, rgb, _ = evaluate_checkpoint(tiny["rgb"])
    _, flow, _ = evaluate_checkpoint(tiny["flow"])
    streams = [load_stream(tiny["rgb"]), load_stream(tiny["flow"])]
    calls = []
    video = rgb.videos[0]
    assert flow.videos[0] == video
    prediction = predict_video(
        tiny["root"] / "videos" / video,
        streams,
        flow_backend=build_backend("farneback"),
        flow_short_side=32,
        progress=lambda done, total: calls.append((done, total)),
    )
    # Flow computed for the sampled stacks only equals flow extracted for the whole video.
    torch.testing.assert_close(prediction.streams[1].probabilities, flow.log_probs[0].exp())
    fused = (rgb.log_probs[0].exp() + 1.5 * flow.log_probs[0].exp()) / 2.5
    torch.testing.assert_close(prediction.probabilities, fused)
    assert calls and calls[-1][0] == calls[-1][1] <= N * 2  # at most N stacks of L = 2 fields
    assert [s.fusion_weight for s in prediction.streams] == [1.0, 1.5]
    for stream in prediction.streams:  # each segment's centre lies in its frame range
        ranges = torch.from_numpy(stream.frame_ranges).double()
        assert ((ranges[:, 0] <= stream.centres) & (stream.centres <= ranges[:, 1])).all()


def test_bad_videos_raise_errors_naming_the_file(tiny, tmp_path):
    stream = load_stream(tiny["rgb"])
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path, what in [(text, "cannot open video"), (empty, "empty file"),
                       (tmp_path / "gone.mp4", "no such video")]:
        with pytest.raises(DataError, match=f"{path.name}.*{what}"):
            predict_video(path, [stream])
    features = tmp_path / "v_1.npy"
    np.save(features, np.zeros((4, 8), np.float32))
    with pytest.raises(InputError, match=r"v_1.npy: a feature file, .* was trained on frames"):
        predict_video(features, [stream])
    import av

    zero = tmp_path / "zero.mkv"  # a container with a video stream and no frame
    with av.open(str(zero), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
        for packet in video.encode():
            container.mux(packet)
    assert zero.stat().st_size > 0
    with pytest.raises(DataError, match="zero.mkv.*(no frames|cannot open video)"):
        predict_video(zero, [stream])


def test_cli_single_video_prints_top_k_and_writes_json_and_png(tiny, tmp_path, capsys):
    video = tiny["videos"][0]
    out = tmp_path / "out"
    code = main(["predict", str(video), "--checkpoint", str(tiny["rgb"]), "--top-k", "2",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads((out / f"{video.stem}.json").read_text())
    assert (out / f"{video.stem}.png").stat().st_size > 0
    assert len(result["top"]) == 2 and result["top"][0]["name"] in printed
    assert result["num_frames"] == TINY.frames and result["fps"] == TINY.fps
    assert "key action (rgb weights)" in printed and " s (frames " in printed
    peak = result["streams"][0]["peaks"][0]
    assert 0 <= peak["start_s"] < peak["end_s"] <= TINY.frames / TINY.fps
    assert main(["predict", str(tmp_path / "none.avi"), "--checkpoint", str(tiny["rgb"])]) == 2
    assert "none.avi" in capsys.readouterr().err
    # Bad settings are refused before any video is decoded.
    for bad in (["--peak-fraction", "0"], ["--fusion-weights", "-1", "1"]):
        video = str(tiny["videos"][0])
        with pytest.raises(SystemExit) as exit_info:  # argparse refuses the value itself
            main(["predict", video, "--checkpoint", str(tiny["rgb"]), *bad])
        assert exit_info.value.code == 2
        assert "must" in capsys.readouterr().err


def test_cli_batch_writes_one_row_per_video_and_goes_on_after_a_bad_one(tiny, tmp_path, capsys):
    bad = tmp_path / "bad.avi"
    bad.write_text("not a video")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{tiny['videos'][0]}\nbad.avi\n{tiny['videos'][1]}\n")
    out = tmp_path / "out"
    code = main(["predict", str(listing), "--checkpoint", str(tiny["rgb"]), "--out", str(out)])
    assert code == 1  # some video failed
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["video"]).name for r in rows] == [
        tiny["videos"][0].name, "bad.avi", tiny["videos"][1].name
    ]
    assert [r["status"] for r in rows] == ["ok", "error", "ok"]
    assert "bad.avi" in rows[1]["error"] and rows[0]["top1"] in read_ucf101_classes(
        tiny["root"] / "ucfTrainTestlist" / "classInd.txt"
    )
    assert rows[0]["key_action_s"].count("-") == 1
    capsys.readouterr()
    # Run again (as after an interruption): finished videos are kept, not predicted again.
    assert main(["predict", str(listing), "--checkpoint", str(tiny["rgb"]), "--out", str(out)]) == 1
    assert "2 videos already predicted, 1 to go" in capsys.readouterr().out
    with (out / "predictions.csv").open() as handle:
        again = list(csv.DictReader(handle))
    assert [r["status"] for r in again] == ["ok", "ok", "error"]
    assert [r["top1"] for r in again[:2]] == [rows[0]["top1"], rows[2]["top1"]]
    # A folder: every video under it.
    out = tmp_path / "folder"
    assert main(["predict", str(tiny["root"] / "videos"), "--checkpoint", str(tiny["rgb"]),
                 "--out", str(out)]) == 0
    with (out / "predictions.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(tiny["videos"])


def test_cli_computes_flow_as_the_checkpoint_recorded(tiny, tmp_path, capsys):
    assert read_settings(tiny["root"] / "flow") == {
        "backend": "farneback", "format": "compact", "short_side": 32, "bound": 20.0
    }
    video = tiny["videos"][0]
    code = main(["predict", str(video), "--checkpoint", str(tiny["rgb"]), "--flow-checkpoint",
                 str(tiny["flow_recorded"]), "--out", str(tmp_path)])
    assert code == 0
    assert "flow: farneback, short side 32 (backend and size as recorded in the checkpoint)" in (
        capsys.readouterr().out
    )
    # Another backend keeps the recorded size: each setting falls back on its own.
    assert main(["predict", str(video), "--checkpoint", str(tiny["rgb"]), "--flow-checkpoint",
                 str(tiny["flow_recorded"]), "--flow-backend", "dis",
                 "--out", str(tmp_path / "dis")]) == 0
    printed = capsys.readouterr().out
    assert "flow: dis, short side 32 (size as recorded in the checkpoint)" in printed
    result = json.loads((tmp_path / f"{video.stem}.json").read_text())
    _, flow, _ = evaluate_checkpoint(tiny["flow"])
    index = flow.videos.index(video.relative_to(tiny["root"] / "videos").as_posix())
    np.testing.assert_allclose(
        result["streams"][1]["probabilities"], flow.log_probs[index].exp().numpy(), atol=1e-5
    )


def test_a_truncated_video_is_predicted_with_a_warning(tiny, tmp_path, capsys):
    from datp.data.video import write_video
    from tests.data.conftest import moving_frames

    cut = tmp_path / "cut.avi"
    write_video(cut, moving_frames(40, height=32, width=32))
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{tiny['videos'][0]}\ncut.avi\n")
    out = tmp_path / "out"
    assert main(["predict", str(listing), "--checkpoint", str(tiny["rgb"]), "--out",
                 str(out)]) == 0
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["warning"] == ""
    assert "cut.avi: truncated: the container declares 40 frames, only" in rows[1]["warning"]
    assert "1 with a warning" in capsys.readouterr().out
    assert main(["predict", str(cut), "--checkpoint", str(tiny["rgb"]), "--out", str(out)]) == 0
    assert "warning: " in capsys.readouterr().out
    assert "truncated" in json.loads((out / "cut.json").read_text())["warnings"][0]


def test_seconds_come_from_the_presentation_times_of_a_variable_rate_video(tiny, tmp_path):
    from tests.data.conftest import VFR_PTS, moving_frames, write_timed_video

    path = tmp_path / "vfr.mp4"  # 20 frames at 10 fps, then 40 at 30 fps
    write_timed_video(path, moving_frames(len(VFR_PTS), height=32, width=32), VFR_PTS)
    prediction = predict_video(path, [load_stream(tiny["rgb"])])
    true = np.array([*VFR_PTS, VFR_PTS[-1] + 1]) / 30  # [T + 1]: when each frame is shown
    frame = np.diff(true)  # [T] how long each frame is shown
    assert prediction.duration_s == pytest.approx(true[-1], abs=1e-3)
    record = prediction.to_dict()["streams"][0]
    for centre, seconds in zip(record["centres"], record["centres_s"], strict=True):
        assert abs(seconds - true[int(centre)]) <= frame[int(centre)]  # within its frame
    assert record["centres_s"][-1] > 3.0  # index / fps would put the last centre near 3.2 s ...
    assert abs(record["centres_s"][-1] - record["centres"][-1] / prediction.fps) > 0.1  # ... off
    for peak in prediction.streams[0].peaks:
        assert peak.start_s == pytest.approx(true[peak.start_frame], abs=1e-3)
        assert peak.end_s == pytest.approx(true[peak.end_frame], abs=1e-3)


def test_cli_batch_predicts_each_distinct_video_once_and_warns_about_repeats(tiny, tmp_path,
                                                                            capsys):
    first, second = tiny["videos"][0], tiny["videos"][1]
    listing = tmp_path / "videos.txt"
    # The same file four times over (as written, again, through "..", through a link) and once more.
    link = tmp_path / "link.avi"
    link.symlink_to(first)
    detour = first.parent / ".." / first.parent.name / first.name
    listing.write_text(f"{first}\n{second}\n{first}\n{detour}\nlink.avi\n")
    out = tmp_path / "out"
    assert main(["predict", str(listing), "--checkpoint", str(tiny["rgb"]), "--out",
                 str(out)]) == 0
    printed = capsys.readouterr().out
    warnings = [line for line in printed.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {listing}: 3 line(s) name a video listed before; each of the "
                        "2 distinct videos is predicted once"]
    assert "2 of 2 videos predicted" in printed
    with (out / "predictions.csv").open() as handle:
        assert [Path(r["video"]) for r in csv.DictReader(handle)] == [first, second]


def test_each_flow_setting_is_the_users_else_the_checkpoints_record():
    rgb = SimpleNamespace(modality="rgb", flow_extraction=None)
    recorded = SimpleNamespace(modality="flow",
                               flow_extraction={"backend": "dis", "short_side": 32})
    unrecorded = SimpleNamespace(modality="flow", flow_extraction=None)
    assert flow_settings([rgb]) is None
    found = flow_settings([rgb, recorded])
    assert (found.backend, found.short_side, found.from_record) == ("dis", 32, ("backend", "size"))
    found = flow_settings([rgb, recorded], backend="torch")
    assert (found.backend, found.short_side, found.from_record) == ("torch", 32, ("size",))
    found = flow_settings([rgb, unrecorded], short_side=128)
    assert (found.backend, found.short_side, found.from_record) == ("torch", 128, ())


def test_a_video_read_a_chunk_at_a_time_gives_the_same_prediction(tiny):
    """Any length: segments are read, transformed and run through the backbone a chunk at a
    time, and the pooling (here DATP's conv net, reduced per segment) sees them all at once."""
    stream = load_stream(tiny["rgb"])
    video = tiny["videos"][1]
    whole = predict_video(video, [stream], segments=12, chunk_segments=64)
    chunked = predict_video(video, [stream], segments=12, chunk_segments=5)
    torch.testing.assert_close(chunked.probabilities, whole.probabilities, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(chunked.streams[0].weights, whole.streams[0].weights,
                               atol=1e-5, rtol=1e-4)
    assert len(whole.streams[0].weights) == 12 and whole.streams[0].mixture.shape == (3, 2)
    assert chunked.frames.shape[0] == 8  # the figure's frames: at most 8 segments, spread
    assert [d.label for d in chunked.detections] == [d.label for d in whole.detections]


def test_segments_from_the_duration_and_the_discrete_generator_refuses(tiny, tmp_path):
    stream = load_stream(tiny["rgb"])
    video = tiny["videos"][0]  # 16 frames at 25 fps: 0.64 s
    assert len(predict_video(video, [stream], seconds_per_segment=0.1).streams[0].times) == 7
    # One per second gives 1, below the checkpoint's test N: the short video is read as before.
    assert len(predict_video(video, [stream], seconds_per_segment=1.0).streams[0].times) == N
    discrete = load_stream(make_checkpoint(tmp_path / "discrete.pt", tiny["root"],
                                           ["pooling.generator=discrete"]))
    with pytest.raises(InputError, match="built for N = 4"):
        predict_video(video, [discrete], seconds_per_segment=0.1)


def test_cli_writes_detections_beside_the_json_and_draws_them(tiny, tmp_path, capsys):
    video = tiny["videos"][2]
    out = tmp_path / "out"
    assert main(["predict", str(video), "--checkpoint", str(tiny["rgb"]), "--segments", "0.1s",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / f"{video.stem}.json").read_text())
    found = DetectionFile.load(out / f"{video.stem}.detections.json").results[video.stem]
    assert found and [d.label for d in found] == [d["label"] for d in record["detections"]]
    assert record["detections"][0]["label"] == record["top"][0]["name"]
    assert all(0 <= d.start < d.end <= TINY.frames / TINY.fps + 1e-9 for d in found)
    assert record["streams"][0]["segments"] == 7 and "detected " in printed
    assert (out / f"{video.stem}.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        main(["predict", str(video), "--checkpoint", str(tiny["rgb"]), "--segments", "soon"])
    assert "--segments: expected a count (25), seconds per segment" in capsys.readouterr().err
