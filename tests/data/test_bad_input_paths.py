"""One meaning per data setting, whatever the code path: every way a dataset can be read (video
files or JPEG frame folders, decoded in the loader workers or on the device, and feature files)
meets the same bad inputs (a video that is missing, one that cannot be read) and does the same
with them: a ``DataError`` naming the file, or with ``data.skip_bad_videos`` the video left out
and listed, the others read. The batches go through what the training loop and the evaluation
run on them (``decode_ahead``, then ``inputs_on`` as ``forward_batch`` does), so that a path
which would stop the run only once its batch is decoded fails here too."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from datp.data.dataset import collate_videos
from datp.data.device_decode import decode_ahead, inputs_on
from datp.data.frames import write_frames
from datp.data.splits import read_ucf101
from datp.data.video import VideoReader
from datp.errors import DataError
from tests.conftest import make_dataset

CPU = torch.device("cpu")

PATHS = {
    "video, workers": dict(source="video", decode="workers"),
    "video, device": dict(source="video", decode="device"),
    "frames, workers": dict(source="frames", decode="workers"),
    "frames, device": dict(source="frames", decode="device"),
    "features": dict(source="features"),
}
"""Every way a dataset is read: source and where its frames are decoded."""


@pytest.fixture(scope="module")
def data(tiny_synth, tmp_path_factory):
    """The tiny benchmark with every kind of media: videos, JPEG frame folders, features."""
    from datp.features.storage import record_folder, write_features

    root = tmp_path_factory.mktemp("paths")
    shutil.copytree(tiny_synth, root, dirs_exist_ok=True)
    settings = {"backbone": {"name": "b"}}
    record_folder(root / "features", settings)
    for subset in ("train", "test"):
        for item in read_ucf101(root / "ucfTrainTestlist", split=1, subset=subset).items:
            stem = item.path[: -len(".avi")]
            with VideoReader(root / "videos" / item.path) as reader:
                frames = reader.read_all()
            write_frames(root / "rawframes" / stem, frames)
            steps = np.random.default_rng(len(stem)).normal(size=(len(frames), 8))
            write_features(root / "features" / f"{stem}.npy", steps.astype(np.float32),
                           {"settings": settings, "times": (np.arange(len(frames)) / 25).tolist(),
                            "duration": len(frames) / 25}, dtype="float32")
    return root


def _first_video(root: Path) -> str:
    return read_ucf101(root / "ucfTrainTestlist", split=1, subset="train").items[0].path


def _break(root: Path, path: str, how: str) -> None:
    """Make the first training video missing or unreadable in each of its forms."""
    stem = path[: -len(".avi")]
    video, frames = root / "videos" / path, root / "rawframes" / stem
    features = root / "features" / f"{stem}.npy"
    if how == "missing":
        video.unlink()
        shutil.rmtree(frames)
        features.unlink()
        return
    video.write_bytes(video.read_bytes()[:300])  # the container's header, no frames
    for image in sorted(frames.glob("img_*.jpg"))[2:]:  # a JPEG header, then nothing decodable
        image.write_bytes(image.read_bytes()[:200] + b"\xff\xd9")
    features.write_bytes(b"\x93NUMPY broken")


def _read(root: Path, path: dict, *, skip: bool):
    """Every training batch as the loop gets it: collated, decoded ahead, put on the device."""
    dataset = make_dataset(root=root, num_segments=3, image_size=24, resize_short=28,
                           skip_bad_videos=skip, normalize_on_device=True, **path)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_videos)
    batches = []
    for batch in decode_ahead(loader, CPU):
        if "inputs" in batch:
            batch["inputs"] = inputs_on(batch["inputs"], CPU)
        batches.append(batch)
    return batches, dataset


@pytest.mark.parametrize("how", ["missing", "unreadable"])
@pytest.mark.parametrize("name", list(PATHS))
def test_a_bad_video_means_the_same_on_every_path(data, tmp_path, name, how):
    root = tmp_path / "data"
    shutil.copytree(data, root, symlinks=True)
    bad = _first_video(root)
    _break(root, bad, how)
    with pytest.raises(DataError, match=bad[: -len(".avi")]):
        _read(root, PATHS[name], skip=False)
    batches, dataset = _read(root, PATHS[name], skip=True)
    read = [video for batch in batches for video in batch.get("video", [])]
    skipped = [s.video for batch in batches for s in batch["skipped"]]
    left_out = skipped if how == "unreadable" else [m.split(": ")[0] for m in dataset.missing]
    assert bad not in read and len(read) == len(dataset.items) - (how == "unreadable")
    assert len(left_out) == 1 and (how == "missing" or left_out == [bad])
    assert all(torch.isfinite(b["inputs"]).all() for b in batches if "inputs" in b)


def test_a_setting_that_cannot_apply_to_a_path_is_said_at_start(caplog):
    import logging

    from datp.config import DataConfig
    from datp.data.build import inapplicable

    assert inapplicable(DataConfig()) == []
    assert inapplicable(DataConfig(source="frames", decoder="torchcodec")) == [
        'data.decoder = "torchcodec" decodes video files, and these data are frame folders: it '
        "does not apply"]
    assert len(inapplicable(DataConfig(source="features", decode="device"))) == 1
    with caplog.at_level(logging.WARNING, logger="datp.data.build"), pytest.raises(DataError):
        from datp.data.build import build_data

        build_data(DataConfig(root="/nowhere", source="frames", decoder="torchcodec"),
                   batch_size=2)
    assert any("does not apply" in r.getMessage() for r in caplog.records)
