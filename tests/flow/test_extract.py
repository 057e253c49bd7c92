"""``datp flow``: resumable, sharded extraction that reports bad videos and finishes the rest."""

from __future__ import annotations

import numpy as np
import pytest

from datp.cli import main
from datp.data.compact_flow import CompactFlow
from datp.data.frames import FlowFolder
from datp.data.video import write_video
from datp.flow.extract import (
    ExtractOptions,
    extract_dataset,
    find_videos,
    parse_shard,
    shard,
    target_size,
)
from tests.data.conftest import moving_frames

pytest.importorskip("cv2")
pytest.importorskip("av")


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "a" / "v1.mp4", moving_frames(4, seed=1))
    write_video(root / "a" / "v2.avi", moving_frames(3, seed=2))
    write_video(root / "b" / "v3.mp4", moving_frames(5, seed=3))
    return root


def run_all(root, out, **options):
    return {
        r.video: r for r in extract_dataset(root, out, find_videos(root), ExtractOptions(**options))
    }


def test_extracts_every_video_in_tsn_layout(dataset, tmp_path):
    results = run_all(dataset, tmp_path / "flow", backend="dis", short_side=32)
    assert {r.status for r in results.values()} == {"done"}
    assert results["a/v1.mp4"].pairs == 3
    folder = FlowFolder(tmp_path / "flow" / "a" / "v1")
    assert folder.num_frames == 3
    assert folder.read_flow([0], 1).shape == (1, 1, 2, 32, 43)  # 48x64 -> short side 32


def test_resume_skips_finished_videos(dataset, tmp_path):
    out = tmp_path / "flow"
    run_all(dataset, out, backend="dis", short_side=32, fmt="compact")
    marker = out / "b" / "v3.flow"
    stamp = marker.stat().st_mtime_ns
    marker_v1 = out / "a" / "v1.flow"
    marker_v1.unlink()  # as if that video had never finished
    (out / "a" / ".v1.flow.tmp-999").write_bytes(b"half")  # a crashed writer's leftover
    results = run_all(dataset, out, backend="dis", short_side=32, fmt="compact")
    assert results["b/v3.mp4"].status == "skipped" and results["a/v1.mp4"].status == "done"
    assert marker.stat().st_mtime_ns == stamp
    assert CompactFlow(marker_v1).num_frames == 3


def test_bad_videos_are_reported_and_others_finish(dataset, tmp_path):
    (dataset / "b" / "broken.mp4").write_bytes(b"\x00\x01 this is not a video")
    write_video(dataset / "b" / "single.mp4", moving_frames(1))
    results = run_all(dataset, tmp_path / "flow", backend="dis", short_side=32)
    assert results["b/broken.mp4"].status == "failed"
    assert "broken.mp4" in results["b/broken.mp4"].error
    # A single-frame video is an error (no pair to compute), not an empty folder.
    assert results["b/single.mp4"].status == "failed"
    assert "at least 2" in results["b/single.mp4"].error
    assert not (tmp_path / "flow" / "b" / "single").exists()
    assert all(results[v].status == "done" for v in ("a/v1.mp4", "a/v2.avi", "b/v3.mp4"))


def test_torch_backend_end_to_end(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "c" / "v.mp4", moving_frames(3, height=32, width=32))
    results = run_all(
        root, tmp_path / "flow", backend="torch", short_side=24, fmt="compact", device="cpu"
    )
    assert results["c/v.mp4"].status == "done", results["c/v.mp4"].error
    flow = CompactFlow(tmp_path / "flow" / "c" / "v.flow").read_flow([0, 1], 1)
    assert flow.shape == (2, 1, 2, 24, 24) and flow.std() > 0


@pytest.mark.parametrize("fmt", ["compact", "jpeg"])
def test_torch_backend_writes_the_files_of_float_flow_quantized_by_the_writer(tmp_path, fmt):
    """The flow is quantized where it is computed and written as uint8 (issue 29): the files
    are byte for byte those of the float flow handed to the writers, as before."""
    import filecmp

    from datp.data.video import VideoReader
    from datp.flow.backends import TorchTVL1
    from datp.flow.pixels import to_gray_resized
    from datp.flow.storage import WRITERS, output_path

    root = tmp_path / "videos"
    write_video(root / "c" / "v.mp4", moving_frames(3, height=32, width=40, seed=6))
    run_all(root, tmp_path / "flow", backend="torch", short_side=24, fmt=fmt, device="cpu")
    with VideoReader(root / "c" / "v.mp4") as reader:
        gray = to_gray_resized(reader.read_all(), target_size(32, 40, 24))
    flow = TorchTVL1(device="cpu").compute(gray[:-1], gray[1:])  # float32 [2, 2, 24, 30]
    reference = output_path(tmp_path / "reference", "c/v", fmt)
    ours = output_path(tmp_path / "flow", "c/v", fmt)
    if fmt == "jpeg":
        from datp.flow.storage import write_jpeg_flow

        write_jpeg_flow(reference, flow, info={"backend": "torch", "video": "c/v.mp4"})
        names = sorted(path.name for path in ours.iterdir())
        assert names == sorted(path.name for path in reference.iterdir())
        assert filecmp.cmpfiles(ours, reference, names, shallow=False)[0] == names
    else:
        WRITERS[fmt](reference, flow)
        assert reference.read_bytes() == ours.read_bytes()


def test_shards_are_disjoint_and_cover():
    videos = [f"v{i}" for i in range(11)]
    parts = [shard(videos, i, 3) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(videos)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    assert target_size(480, 640, None) == (256, 340)
    assert target_size(480, 640, 128) == (128, 171)


def test_cli_reports_failures(dataset, tmp_path, capsys):
    (dataset / "a" / "bad.mkv").write_bytes(b"garbage")
    out = tmp_path / "flow"
    argv = ["flow", str(dataset), str(out), "--backend", "dis", "--short-side", "32"]
    assert main(argv) == 1
    text = capsys.readouterr().out
    assert "3 extracted" in text and "1 failed" in text and "FAILED a/bad.mkv" in text
    (dataset / "a" / "bad.mkv").unlink()
    assert main(argv) == 0
    assert "3 already finished" in capsys.readouterr().out
    assert np.all(FlowFolder(out / "b" / "v3").read_flow([0], 1) >= 0)


def test_worker_processes(dataset, tmp_path):
    (dataset / "a" / "bad.mp4").write_bytes(b"garbage")
    videos = find_videos(dataset)
    options = ExtractOptions(backend="dis", short_side=32, fmt="compact")
    results = list(extract_dataset(dataset, tmp_path / "flow", videos, options, jobs=2))
    assert sorted(r.video for r in results) == videos
    assert [r.video for r in results if r.status == "failed"] == ["a/bad.mp4"]
    assert CompactFlow(tmp_path / "flow" / "b" / "v3.flow").num_frames == 4


def test_the_settings_are_recorded_and_another_setting_is_refused(dataset, tmp_path, capsys):
    from datp.flow.storage import read_settings

    out = tmp_path / "flow"
    run_all(dataset, out, backend="dis", short_side=32, fmt="compact")
    assert read_settings(out) == {
        "backend": "dis", "format": "compact", "short_side": 32, "bound": 20.0
    }
    with pytest.raises(ValueError, match=r"other settings \(short_side 32 there, 24 now\)"):
        # refused when called, before the first result is asked for
        extract_dataset(dataset, out, find_videos(dataset),
                        ExtractOptions(backend="dis", short_side=24, fmt="compact"))
    code = main(["flow", str(dataset), str(out), "--backend", "farneback", "--format", "compact",
                 "--short-side", "32"])
    assert code == 2 and "backend 'dis' there, 'farneback' now" in capsys.readouterr().err
    assert len(list(out.rglob("*.flow"))) == 3  # nothing was overwritten


def test_zstd_format_from_the_command_line(dataset, tmp_path):
    pytest.importorskip("zstandard")
    from datp.data.compact_flow import open_flow
    from datp.data.zstd_flow import ZstdFlow

    out = tmp_path / "flow"
    argv = ["flow", str(dataset), str(out), "--backend", "dis", "--short-side", "32",
            "--format", "zstd"]
    assert main(argv) == 0
    source = open_flow(out / "b" / "v3")
    assert isinstance(source, ZstdFlow) and source.num_frames == 4
    assert source.read_flow([0, 3], 2).shape == (2, 2, 2, 32, 43)  # 48x64 -> short side 32
    source.close()


def test_pipelined_and_serial_write_the_same_flow(dataset, tmp_path):
    from datp.flow.backends import build_backend
    from datp.flow.extract import run_videos

    options = ExtractOptions(backend="torch", short_side=24, fmt="compact", device="cpu")
    backend = build_backend("torch", device="cpu")
    videos = find_videos(dataset)
    outputs = {}
    for pipelined in (False, True):
        out = tmp_path / f"flow-{pipelined}"
        results = list(run_videos(dataset, out, videos, backend, options, pipelined=pipelined))
        assert [(r.video, r.status) for r in results] == [(v, "done") for v in videos]
        assert all(0 < r.flow_seconds <= r.seconds for r in results)
        outputs[pipelined] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*")
                              if p.is_file()}
    assert outputs[True] == outputs[False] and len(outputs[True]) == 3  # no claim left over


def test_stopping_early_leaves_no_claim_and_no_temporary(dataset, tmp_path):
    import threading

    from datp.flow.backends import build_backend
    from datp.flow.extract import run_videos

    options = ExtractOptions(backend="dis", short_side=32, fmt="jpeg")
    out = tmp_path / "flow"
    results = run_videos(dataset, out, find_videos(dataset), build_backend("dis"), options,
                         pipelined=True)
    first = next(results)
    assert first.status == "done"
    results.close()  # as Ctrl-C does: the stages stop, their threads are joined
    assert not [t for t in threading.enumerate() if t.name.startswith("pipeline-")]
    left = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert left == []
    assert FlowFolder(out / "a" / "v1").num_frames == 3


def test_the_pipeline_is_the_default_when_the_flow_runs_on_a_gpu(dataset, tmp_path):
    """On a GPU the host is idle while TV-L1 runs: decoding and writing go beside it. On a CPU
    their threads would take cores from TV-L1: one stage after the other, unless asked."""
    import threading

    import torch

    from datp.flow.backends import build_backend
    from datp.flow.extract import run_videos

    class StillOnAGPU:  # a GPU backend's attributes, computing nothing
        name, batch_size, device = "still", 4, torch.device("cuda")

        def compute(self, prev, next):
            return np.zeros((prev.shape[0], 2, *prev.shape[1:]), np.float32)

    def threads_while_running(backend, **kwargs) -> set[str]:
        options = ExtractOptions(backend="dis", short_side=32, fmt="compact", **kwargs)
        out = tmp_path / f"flow-{len(list(tmp_path.iterdir()))}"
        results = run_videos(dataset, out, find_videos(dataset), backend, options)
        assert next(results).status == "done"
        names = {t.name.split("-")[0] for t in threading.enumerate()}
        results.close()
        return names

    assert "pipeline" in threads_while_running(StillOnAGPU())
    assert "pipeline" not in threads_while_running(build_backend("dis"))
    assert "pipeline" in threads_while_running(build_backend("dis"), pipelined=True)
    assert "pipeline" not in threads_while_running(StillOnAGPU(), pipelined=False)


def test_a_worker_that_cannot_start_says_why(dataset, tmp_path):
    videos = find_videos(dataset)
    options = ExtractOptions(backend="torch", device="no-such-device", fmt="compact")
    results = list(extract_dataset(dataset, tmp_path / "flow", videos, options, jobs=2))
    assert sorted(r.video for r in results) == videos
    assert {r.status for r in results} == {"failed"}
    assert all(r.error.startswith("worker failed: RuntimeError") and "no-such-device" in r.error
               for r in results), results[0].error
