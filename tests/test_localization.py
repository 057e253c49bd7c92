"""Weak localization: segments, frames and seconds where the temporal weights peak."""

import numpy as np
import pytest
import torch

from datp.data.sampling import eval_starts
from datp.localization import frame_seconds, peak_ranges, segment_frame_ranges


def test_peak_ranges_cover_the_frames_where_handcrafted_weights_peak():
    ranges = segment_frame_ranges(80, 8)  # 10 frames per segment
    assert ranges.tolist() == [[10 * i, 10 * i + 10] for i in range(8)]
    weights = torch.tensor([0.1, 0.2, 1.0, 0.9, 0.1, 0.6, -0.5, 0.0])
    peaks = peak_ranges(weights, ranges, fps=20.0, fraction=0.5)
    assert [(p.first_segment, p.last_segment) for p in peaks] == [(2, 3), (5, 5)]
    top = peaks[0]
    assert (top.start_frame, top.end_frame, top.start_s, top.end_s) == (20, 40, 1.0, 2.0)
    assert top.peak == 1.0 and peaks[1].peak == pytest.approx(0.6)
    assert top.share == pytest.approx(1.9 / 2.9)  # the negative weight counts as 0
    uniform = peak_ranges(torch.ones(8), ranges, fps=None)
    assert len(uniform) == 1 and (uniform[0].start_frame, uniform[0].end_frame) == (0, 80)
    assert uniform[0].start_s is None  # no frame rate, no seconds
    assert peak_ranges(torch.zeros(8), ranges, fps=20.0) == []
    with pytest.raises(ValueError, match="expected frame ranges"):
        peak_ranges(torch.ones(5), ranges, fps=20.0)


@pytest.mark.parametrize(("units", "segments", "length", "flow"), [
    (47, 10, 5, True), (15, 4, 2, True), (16, 4, 1, False), (3, 8, 1, False), (100, 25, 1, False),
])
def test_each_segment_range_holds_the_frames_its_test_stack_reads(units, segments, length, flow):
    ranges = segment_frame_ranges(units, segments, length=length, flow=flow)
    starts = eval_starts(units, segments, length=length)
    last_frame = np.minimum(starts + length - 1, units - 1) + (1 if flow else 0)
    assert (ranges[:, 0] <= starts).all() and (last_frame < ranges[:, 1]).all()
    assert (np.diff(ranges[:, 0]) >= 0).all() and ranges.max() <= units + (1 if flow else 0)




def test_seconds_come_from_frame_times_when_the_video_gives_them():
    times = np.array([0.0, 0.1, 0.2, 0.3, 0.3333, 0.3667])  # 10 fps, then 30 fps
    seconds = frame_seconds([0, 2, 3.5, 5, 6], fps=16.4, frame_times=times)
    np.testing.assert_allclose(seconds, [0.0, 0.2, 0.31665, 0.3667, 0.4001])  # end: + last step
    np.testing.assert_allclose(frame_seconds([0, 8], fps=20.0), [0.0, 0.4])  # no times: / fps
    assert frame_seconds([3], fps=None) is None
    ranges = np.array([[0, 3], [3, 6]])
    peaks = peak_ranges(torch.tensor([0.0, 1.0]), ranges, fps=16.4, frame_times=times)
    assert (peaks[0].start_s, peaks[0].end_s) == pytest.approx((0.3, 0.4001))
