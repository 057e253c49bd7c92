"""The zstd flow file ``<video>.zflow``: exact round trip, random access, bad files named."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from datp.data.compact_flow import CompactFlow, open_flow
from datp.data.frames import FlowSource, quantize_flow
from datp.data.sources import SourceOpener
from datp.data.splits import VideoItem
from datp.data.zstd_flow import ZSTD_HEADER, ZstdFlow
from datp.errors import DataError
from datp.flow.storage import is_finished, output_path, write_compact_flow, write_zstd_flow

pytest.importorskip("zstandard")


def smooth_flow(t: int = 6, h: int = 16, w: int = 24, seed: int = 0) -> np.ndarray:
    """float32 ``[T, 2, H, W]``: a few pixels of smooth motion plus noise (every field differs)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    base = np.sin(xs / 5.0 + ys / 7.0)[None, None] * rng.uniform(1, 4, size=(t, 2, 1, 1))
    return (base + rng.normal(0, 0.3, size=(t, 2, h, w))).astype(np.float32)


def test_round_trip_is_exact_and_random_access(tmp_path):
    flow = smooth_flow()
    path = output_path(tmp_path, "cls/v1", "zstd")
    assert path.name == "v1.zflow"
    write_zstd_flow(path, flow)
    assert is_finished(path, "zstd")
    expected = quantize_flow(flow)
    with ZstdFlow(path) as source:
        assert isinstance(source, FlowSource)
        assert (source.num_frames, source.height, source.width, source.bound) == (6, 16, 24, 20)
        assert np.array_equal(source.read_flow([0], 6)[0], expected)
        stacks = source.read_flow([4, 1, 5], 3)  # [T, L, 2, H, W], unsorted starts
        assert stacks.shape == (3, 3, 2, 16, 24)
        assert np.array_equal(stacks[0], expected[[4, 5, 5]])  # past the end: the last repeats
        assert np.array_equal(stacks[1], expected[1:4])
        with pytest.raises(IndexError, match="v1.zflow"):
            source.read_flow([6], 1)


def test_open_flow_and_the_dataset_find_every_format(tmp_path):
    flow = smooth_flow(t=3)
    write_zstd_flow(tmp_path / "a.zflow", flow)
    write_compact_flow(tmp_path / "b.flow", flow)
    assert isinstance(open_flow(tmp_path / "a"), ZstdFlow)
    assert isinstance(open_flow(tmp_path / "a.zflow"), ZstdFlow)
    assert isinstance(open_flow(tmp_path / "b"), CompactFlow)
    opener = SourceOpener(kind="flow", base=tmp_path)
    item = VideoItem(path="a.avi", label=0, origin="list:1")
    assert opener.exists(item) and opener.locate(item).name == "a.zflow"
    source = opener(item)
    assert np.array_equal(source.read_flow([0, 2], 1)[:, 0], quantize_flow(flow)[[0, 2]])
    source.close()
    assert not opener.exists(VideoItem(path="missing.avi", label=0, origin="list:2"))


def test_truncated_and_corrupt_files_are_named(tmp_path):
    path = tmp_path / "v.zflow"
    write_zstd_flow(path, smooth_flow())
    data = path.read_bytes()
    cases = {
        "truncated flow header": data[:20],
        "truncated or corrupt flow index": data[:-10],
        "not a datp zstd flow file": b"NOTAFLOW" + data[8:],
        "flow field 2 is corrupt": bytearray(data),
    }
    index = np.frombuffer(data[ZSTD_HEADER.size : ZSTD_HEADER.size + 8 * 7], dtype="<u8")
    corrupt = cases["flow field 2 is corrupt"]
    middle = (int(index[2]) + int(index[3])) // 2
    corrupt[middle] ^= 0xFF  # one flipped byte inside field 2: its checksum fails
    for problem, content in cases.items():
        path.write_bytes(bytes(content))
        with pytest.raises(DataError, match=f"v.zflow: {problem}"):
            ZstdFlow(path).read_flow([0, 2], 2)
    with pytest.raises(DataError, match="missing.zflow: cannot open"):
        ZstdFlow(tmp_path / "missing.zflow")
    # A header whose counts were flipped: an error, never a huge allocation (MemoryError).
    magic, version, t, h, w, bound, level = ZSTD_HEADER.unpack(data[:ZSTD_HEADER.size])
    for fields, height in ((0xFFFFFFFF, h), (t, 0xFFFFFF)):
        path.write_bytes(ZSTD_HEADER.pack(magic, version, fields, height, w, bound, level)
                         + data[ZSTD_HEADER.size:])
        with pytest.raises(DataError, match="v.zflow: corrupt flow header"):
            ZstdFlow(path)


def test_without_zstandard_the_error_names_the_extra(tmp_path, monkeypatch):
    write_zstd_flow(tmp_path / "v.zflow", smooth_flow(t=2))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"datp\[zstd\]"):
        ZstdFlow(tmp_path / "v.zflow")
