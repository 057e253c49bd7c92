"""Flow storage: TSN quantization, JPEG folders, the compact file, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from datp.data.compact_flow import CompactFlow, open_flow
from datp.data.frames import FlowFolder, dequantize_flow, quantize_flow
from datp.errors import DataError
from datp.flow import storage
from datp.flow.storage import (
    is_finished,
    output_path,
    write_compact_flow,
    write_jpeg_flow,
)


def random_flow(t: int = 3, h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 6, size=(t, 2, h, w)).astype(np.float32)


def test_quantization_round_trip_and_flip():
    flow = random_flow()
    q = quantize_flow(flow)
    back = dequantize_flow(q)
    inside = np.abs(flow) < 20
    assert np.abs(back - flow)[inside].max() <= 20 / 255 + 1e-5  # half a step of 40 / 255
    assert np.all(back[flow >= 20] == 20) and np.all(back[flow <= -20] == -20)
    assert quantize_flow(np.array([0.0])).item() == 128  # round(127.5) -> 128 (half to even)
    # Flipping an image horizontally negates x flow: 255 - q (away from rounding ties).
    not_tie = np.abs((255 * (flow + 20) / 40) % 1 - 0.5) > 1e-3
    assert np.all((255 - q)[not_tie] == quantize_flow(-flow)[not_tie])


def test_jpeg_folder_round_trip(tmp_path):
    flow = random_flow()
    folder = output_path(tmp_path, "cls/v1", "jpeg")
    write_jpeg_flow(folder, flow, info={"backend": "test"})
    assert is_finished(folder, "jpeg")
    assert sorted(p.name for p in folder.iterdir())[:2] == ["flow.json", "flow_x_00001.jpg"]
    source = FlowFolder(folder)
    assert source.num_frames == 3
    stacks = source.read_flow([0, 2], 2)  # [T, L, 2, H, W]
    assert stacks.shape == (2, 2, 2, 16, 24)
    expected = quantize_flow(flow)
    # JPEG at quality 95 on noise: a few levels off at most.
    assert np.abs(stacks[0].astype(int) - expected[:2]).mean() < 3
    assert np.array_equal(stacks[1, 1], stacks[1, 0])  # past the end: the last field repeats


def test_compact_round_trip_is_exact(tmp_path):
    flow = random_flow(t=5)
    path = output_path(tmp_path, "cls/v1", "compact")
    assert path.name == "v1.flow"
    write_compact_flow(path, flow)
    source = open_flow(tmp_path / "cls" / "v1")
    assert isinstance(source, CompactFlow) and source.num_frames == 5 and source.bound == 20
    stacks = source.read_flow([1, 4], 3)
    q = quantize_flow(flow)
    assert np.array_equal(stacks[0], q[1:4])
    assert np.array_equal(stacks[1], q[[4, 4, 4]])
    with pytest.raises(IndexError):
        source.read_flow([5], 1)


def test_corrupt_compact_file_is_named(tmp_path):
    path = tmp_path / "v.flow"
    write_compact_flow(path, random_flow())
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(DataError, match="v.flow.*bytes"):
        CompactFlow(path)
    path.write_bytes(b"NOTAFLOW" + data[8:])
    with pytest.raises(DataError, match="not a datp flow file"):
        CompactFlow(path)


def test_crash_mid_write_leaves_video_unfinished(tmp_path, monkeypatch):
    folder = tmp_path / "v1"
    calls = {"n": 0}
    encode = storage._encode_jpeg

    def failing(image, quality):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("No space left on device")
        return encode(image, quality)

    monkeypatch.setattr(storage, "_encode_jpeg", failing)
    with pytest.raises(OSError, match="No space"):
        write_jpeg_flow(folder, random_flow())
    assert not is_finished(folder, "jpeg") and not folder.exists()
    monkeypatch.setattr(storage, "_encode_jpeg", encode)
    write_jpeg_flow(folder, random_flow())  # the rerun completes it, leftovers are replaced
    assert is_finished(folder, "jpeg")
    assert FlowFolder(folder).num_frames == 3


def test_non_finite_flow_is_refused(tmp_path):
    flow = random_flow()
    flow[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        write_compact_flow(tmp_path / "v.flow", flow)
