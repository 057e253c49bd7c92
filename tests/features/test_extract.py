"""``datp features``: the backbone on the frames each step reads, batched over videos and steps,
resumable and sharded, one line per bad video."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
from torch import nn

from datp.cli import main
from datp.data.features import FOLDER_RECORD, open_feature_set
from datp.data.frames import write_frames
from datp.data.video import VideoReader, write_video
from datp.errors import DataError, InputError
from datp.features.backbones import FrozenBackbone
from datp.features.extract import (
    FeatureOptions,
    extract_features,
    extract_video,
    resolve_grid,
)
from datp.features.grid import TimeGrid, plan_grid
from datp.features.sources import list_sources
from datp.features.storage import write_features
from datp.flow.claims import claim_path
from datp.flow.extract import shard
from datp.flow.storage import write_compact_flow
from tests.data.conftest import moving_frames

pytest.importorskip("av")


class Statistics(nn.Module):
    """``[B, C, ...] -> [B, 2C]``: each channel's mean and standard deviation, so that every
    frame, clip and stack has its own features; a backbone that costs nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # [B, C, P]
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)


def scaled(units: torch.Tensor) -> torch.Tensor:
    return units.float() / 255


def tiny(kind: str = "image", channels: int = 3, clip_length: int | None = None):
    return FrozenBackbone(module=Statistics(), kind=kind, channels=2 * channels,
                          transform=scaled, clip_length=clip_length,
                          settings={"backbone": {"name": "statistics", "kind": kind},
                                    "transform": {"preset": "x / 255"}})


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "a" / "v1.mp4", moving_frames(23, seed=1))
    write_video(root / "a" / "v2.avi", moving_frames(9, seed=2))
    write_video(root / "b" / "v3.mp4", moving_frames(30, seed=3))
    return root


def run(root, out, backbone, **options):
    _, found = list_sources(root, flow=backbone.kind == "flow")
    return {r.video: r for r in extract_features(root, out, found, backbone,
                                                 FeatureOptions(**options))}


def expected_image_features(path, grid: TimeGrid) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of every frame, averaged over each step's window, and the step times."""
    with VideoReader(path) as reader:
        frames = torch.from_numpy(reader.read_all()).permute(0, 3, 1, 2)
        plan = plan_grid(grid, num_frames=reader.num_frames, frame_times=reader.frame_times,
                         fps=reader.fps)
    per_frame = Statistics()(scaled(frames))  # [F, 6]
    return per_frame[plan.units][plan.windows].mean(1).numpy(), plan.times


@pytest.mark.parametrize("grid", [TimeGrid(window=2, stride=3), TimeGrid(fps=7.0)])
def test_each_step_is_the_backbone_on_the_frames_it_reads(videos, tmp_path, grid):
    out = tmp_path / "features"
    results = run(videos, out, tiny(), grid=grid, dtype="float32")
    assert {r.status for r in results.values()} == {"done"}
    features = open_feature_set(out)
    for video in ("a/v1.mp4", "a/v2.avi", "b/v3.mp4"):
        expected, times = expected_image_features(videos / video, grid)
        sequence = features.open(video)
        np.testing.assert_allclose(sequence.features, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sequence.times, times, atol=1e-6)
    record = json.loads((out / "b" / "v3.json").read_text())
    assert record["num_frames"] == 30 and record["duration"] == pytest.approx(30 / 25)
    assert record["video_fps"] == 25 and record["decoder"] == "pyav"
    assert record["settings"] == json.loads((out / FOLDER_RECORD).read_text())


def test_one_video_in_memory_is_what_the_file_holds(videos, tmp_path):
    grid = TimeGrid(window=2, stride=3)
    run(videos, tmp_path / "features", tiny(), grid=grid, dtype="float32")
    features, plan = extract_video(videos / "b" / "v3.mp4", tiny(),
                                   FeatureOptions(grid=grid, piece_units=4))
    np.testing.assert_array_equal(features, np.load(tmp_path / "features" / "b" / "v3.npy"))
    assert plan.num_steps == 10 and not (videos / "b" / "v3.npy").exists()
    (videos / "bad.mp4").write_bytes(b"nothing")
    with pytest.raises(DataError, match="bad.mp4: cannot open video"):
        extract_video(videos / "bad.mp4", tiny(), FeatureOptions())


def test_pieces_threads_and_batches_change_nothing(videos, tmp_path):
    grid = TimeGrid(window=3, stride=2)
    run(videos, tmp_path / "whole", tiny(), grid=grid, dtype="float32")
    results = run(videos, tmp_path / "pieces", tiny(), grid=grid, dtype="float32",
                  piece_units=4, batch_size=3, decode_threads=2)
    assert list(results) == ["a/v1.mp4", "a/v2.avi", "b/v3.mp4"]  # the order of the list
    for name in ("a/v1", "a/v2", "b/v3"):
        np.testing.assert_array_equal(np.load(tmp_path / "pieces" / f"{name}.npy"),
                                      np.load(tmp_path / "whole" / f"{name}.npy"))


def test_a_video_backbone_reads_clips_and_a_flow_backbone_stacks(videos, tmp_path):
    backbone = tiny("video", clip_length=4)
    grid = resolve_grid(backbone, stride=3)
    assert (grid.window, grid.stride) == (4, 3)
    run(videos, tmp_path / "clips", backbone, grid=grid, dtype="float32", piece_units=5)
    with VideoReader(videos / "a" / "v1.mp4") as reader:
        frames = scaled(torch.from_numpy(reader.read_all()).permute(0, 3, 1, 2))
    clips = torch.stack([frames[s:s + 4].transpose(0, 1) for s in range(0, 20, 3)])
    np.testing.assert_allclose(np.load(tmp_path / "clips" / "a" / "v1.npy"),
                               Statistics()(clips).numpy(), rtol=1e-5, atol=1e-6)

    flow_root = tmp_path / "flow"
    rng = np.random.default_rng(0)
    write_compact_flow(flow_root / "c" / "w.flow", rng.normal(0, 5, (7, 2, 8, 10)))
    flow = tiny("flow", channels=4, clip_length=2)
    with pytest.raises(InputError, match="stacks of 2 fields"):
        resolve_grid(flow, window=3)
    grid = resolve_grid(flow, stride=2)
    failed = run(flow_root, tmp_path / "flow_features", flow, grid=grid)
    assert "give --frame-rate" in failed["c/w.flow"].error
    done = run(flow_root, tmp_path / "flow_features", flow, grid=grid, frame_rate=10.0)
    assert done["c/w.flow"].status == "done" and done["c/w.flow"].steps == 3
    sequence = open_feature_set(tmp_path / "flow_features").open("c/w.avi")
    np.testing.assert_allclose(sequence.times, (np.array([0, 2, 4]) + 1) / 10)  # (s + L/2) / r
    assert sequence.duration == pytest.approx(0.7)


def test_resume_bad_videos_and_other_settings(videos, tmp_path):
    out = tmp_path / "features"
    (videos / "b" / "broken.mp4").write_bytes(b"\x00 not a video")
    results = run(videos, out, tiny())
    assert results["b/broken.mp4"].status == "failed"
    assert "broken.mp4" in results["b/broken.mp4"].error
    assert not claim_path(out / "b" / "broken.npy").exists()  # released when the run ended
    finished = out / "a" / "v1.npy"
    stamp = finished.stat().st_mtime_ns
    (out / "a" / "v2.json").unlink()  # as if it had stopped between its two files
    (out / "a" / ".v2.npy.tmp-dead-1").write_bytes(b"half")  # another host's: left alone
    again = run(videos, out, tiny())
    assert again["a/v1.mp4"].status == "skipped" and finished.stat().st_mtime_ns == stamp
    assert again["a/v2.avi"].status == "done" and again["b/broken.mp4"].status == "failed"
    assert (out / "a" / ".v2.npy.tmp-dead-1").exists()
    with pytest.raises(InputError, match="other settings .*grid"):
        run(videos, out, tiny(), grid=TimeGrid(stride=2))
    write_video(videos / "a" / "v1.avi", moving_frames(3))
    with pytest.raises(InputError, match="would both write"):
        run(videos, tmp_path / "other", tiny())


def test_float16_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(InputError, match="--dtype float32"):
        write_features(tmp_path / "x.npy", np.full((2, 3), 1e6, np.float32), {})
    assert not (tmp_path / "x.npy").exists()


def test_shards_claims_frame_folders_and_lists(videos, tmp_path):
    out = tmp_path / "features"
    _, found = list_sources(videos)
    first = [r.video for r in extract_features(videos, out, shard(found, 0, 2), tiny(),
                                               FeatureOptions())]
    assert first == ["a/v1.mp4", "b/v3.mp4"]
    claim = claim_path(out / "a" / "v2.npy")
    claim.write_text(f"{socket.gethostname()} {os.getppid()}\n")  # alive: this test's parent
    second = run(videos, out, tiny())
    assert second["a/v2.avi"].status == "claimed"
    assert second["a/v2.avi"].holder == f"{socket.gethostname()} {os.getppid()}"
    claim.unlink()

    frames = tmp_path / "frames"
    write_frames(frames / "x" / "f1", moving_frames(5))
    assert list_sources(frames) == (frames, ["x/f1"])
    missing_rate = run(frames, tmp_path / "from_frames", tiny())
    assert "give --frame-rate" in missing_rate["x/f1"].error
    assert run(frames, tmp_path / "from_frames", tiny(), frame_rate=5.0)["x/f1"].steps == 5

    listed = tmp_path / "videos" / "train.txt"
    listed.write_text("b/v3.mp4 1\na/v1.mp4 0\n")
    assert list_sources(listed) == (videos, ["b/v3.mp4", "a/v1.mp4"])
    listed.write_text("b/v3.mp4\n/elsewhere/x.mp4\n")
    with pytest.raises(DataError, match=r"train.txt:2: /elsewhere/x.mp4 is not under"):
        list_sources(listed)


def test_the_command_reports_bad_videos_and_refuses_bad_names(videos, tmp_path, capsys):
    (videos / "a" / "broken.mp4").write_bytes(b"nothing")
    args = ["features", str(videos), str(tmp_path / "out"), "--backbone", "resnet18",
            "--stride", "10", "--dtype", "float32"]
    assert main(args) == 1
    output = capsys.readouterr().out
    assert "4 videos: 3 extracted" in output and "FAILED a/broken.mp4:" in output
    features = open_feature_set(tmp_path / "out")
    assert features.open("b/v3.mp4").features.shape == (3, 512)
    assert main(["features", str(videos), str(tmp_path / "x"), "--backbone", "resnet_18"]) == 2
    assert "error: --backbone resnet_18: not a torchvision" in capsys.readouterr().err
    assert main(["features", str(videos), str(tmp_path / "x")]) == 2
    assert "give --backbone NAME" in capsys.readouterr().err


def test_bf16_autocast_stays_close_to_float32(videos):
    """The bf16 path (CUDA's default) run on the CPU: the same steps, values to bf16's rounding."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten())
    backbone = FrozenBackbone(module=network.eval(), kind="image", channels=8, transform=scaled,
                              settings={"backbone": {"name": "conv"}, "transform": {}})
    exact, _ = extract_video(videos / "a" / "v2.avi", backbone, FeatureOptions(grid=TimeGrid()))
    rounded, _ = extract_video(videos / "a" / "v2.avi", backbone,
                               FeatureOptions(grid=TimeGrid(), precision="bf16"))
    np.testing.assert_allclose(rounded, exact, rtol=0.05, atol=0.05 * np.abs(exact).max())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_matches_the_cpu(videos, tmp_path):
    backbone = torchvision_resnet()
    cpu, _ = extract_video(videos / "b" / "v3.mp4", backbone, FeatureOptions(device="cpu"))
    results = run(videos, tmp_path / "cuda", torchvision_resnet(), device="cuda",
                  decode_threads=2, batch_size=8)
    assert {r.status for r in results.values()} == {"done"}
    record = json.loads((tmp_path / "cuda" / "b" / "v3.json").read_text())
    assert record["device"].startswith("cuda") and record["precision"] == "bf16"
    cuda = np.load(tmp_path / "cuda" / "b" / "v3.npy").astype(np.float32)
    np.testing.assert_allclose(cuda, cpu, rtol=0.05, atol=0.05 * np.abs(cpu).max())


def torchvision_resnet() -> FrozenBackbone:
    torch.manual_seed(0)
    from datp.features.backbones import torchvision_backbone

    return torchvision_backbone("resnet18", weights=None)
