import numpy as np
import pytest

from datp.data.frames import (
    FlowFolder,
    FlowSource,
    FrameFolder,
    dequantize_flow,
    quantize_flow,
    write_flow,
    write_frames,
)
from datp.errors import DataError
from tests.data.conftest import moving_frames


def test_frame_folder_reads_one_based_jpegs(tmp_path):
    frames = moving_frames(12)
    write_frames(tmp_path / "v", frames, quality=100)
    folder = FrameFolder(tmp_path / "v")
    assert folder.num_frames == 12
    got = folder.read([11, 0, 5])
    assert got.shape == (3, 48, 64, 3) and got.dtype == np.uint8
    # JPEG is lossy: each frame read must be nearest to the frame requested, in request order.
    distance = np.abs(got[:, None].astype(int) - frames[None].astype(int)).mean(axis=(2, 3, 4))
    assert distance.argmin(axis=1).tolist() == [11, 0, 5]


def test_missing_frame_is_named(tmp_path):
    write_frames(tmp_path / "v", moving_frames(8))
    (tmp_path / "v" / "img_00004.jpg").unlink()
    with pytest.raises(DataError, match="img_00004.jpg"):
        FrameFolder(tmp_path / "v")


def test_missing_or_empty_folder_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        FrameFolder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no frames"):
        FrameFolder(tmp_path / "empty")


def test_unreadable_frame_is_named(tmp_path):
    write_frames(tmp_path / "v", moving_frames(4))
    (tmp_path / "v" / "img_00002.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="img_00002.jpg"):
        FrameFolder(tmp_path / "v").read([1])


def test_flow_quantization_matches_tsn():
    assert quantize_flow(np.array([0.0]))[0] == 128
    assert quantize_flow(np.array([-20.0, 20.0, 35.0])).tolist() == [0, 255, 255]
    values = np.linspace(-20, 20, 101)
    assert np.abs(dequantize_flow(quantize_flow(values)) - values).max() <= 20 / 255 + 1e-4


def test_flow_folder_stacks_consecutive_fields(tmp_path):
    rng = np.random.default_rng(0)
    fields = np.zeros((9, 2, 16, 16), np.uint8)
    for i in range(9):  # flat fields compress losslessly enough to identify each one
        fields[i, 0] = 20 * i + 10
        fields[i, 1] = 250 - 20 * i
    write_flow(tmp_path / "f", fields)
    flow = FlowFolder(tmp_path / "f")
    assert isinstance(flow, FlowSource)
    assert flow.num_frames == 9
    starts = rng.permutation(5)[:3]
    stacks = flow.read_flow(starts, 5)
    assert stacks.shape == (3, 5, 2, 16, 16)
    for stack, start in zip(stacks, starts, strict=True):
        np.testing.assert_allclose(stack[:, :, 8, 8], fields[start : start + 5, :, 8, 8], atol=2)
    clamped = flow.read_flow([7], 3)  # fields 7, 8, then 8 again
    np.testing.assert_array_equal(clamped[0, 2], clamped[0, 1])
    with pytest.raises(IndexError, match="f"):
        flow.read_flow([9], 5)


def test_flow_folder_with_unequal_x_and_y_counts_is_an_error(tmp_path):
    write_flow(tmp_path / "f", np.full((4, 2, 8, 8), 128, np.uint8))
    (tmp_path / "f" / "flow_y_00004.jpg").unlink()
    with pytest.raises(DataError, match="4 x flow fields but 3 y"):
        FlowFolder(tmp_path / "f")
