"""The time grid: which frames each step reads and when it is, from presentation times."""

import numpy as np
import pytest

from datp.data.sampling import normalized_times
from datp.errors import InputError
from datp.features.grid import TimeGrid, frame_spans, plan_grid, resample, step_windows
from tests.data.conftest import VFR_PTS


def test_every_frame_of_a_constant_rate_video_is_timed_as_datp_samples_it():
    grid = plan_grid(TimeGrid(), num_frames=50, frame_times=None, fps=25.0)
    assert grid.windows.shape == (50, 1) and grid.duration == pytest.approx(2.0)
    np.testing.assert_allclose(grid.times, (np.arange(50) + 0.5) / 25)
    np.testing.assert_allclose(grid.times / grid.duration,
                               normalized_times(np.arange(50), num_frames=50), rtol=1e-6)


def test_windows_every_stride_drop_the_frames_after_the_last_whole_window():
    windows = step_windows(20, window=8, stride=4)
    assert windows[:, 0].tolist() == [0, 4, 8, 12]  # (20 - 8) // 4 + 1 steps; 16..19 unread
    assert (np.diff(windows, axis=1) == 1).all()
    grid = plan_grid(TimeGrid(window=8, stride=4), num_frames=20, frame_times=None, fps=10.0)
    np.testing.assert_allclose(grid.times, (np.array([0, 4, 8, 12]) + 4) / 10)  # centres
    assert grid.step_frames().tolist() == [[0, 7], [4, 11], [8, 15], [12, 19]]


def test_a_video_shorter_than_a_window_gives_one_step_repeating_its_last_frame():
    assert step_windows(3, window=5, stride=2).tolist() == [[0, 1, 2, 2, 2]]
    with pytest.raises(ValueError):
        step_windows(0, window=1, stride=1)


def test_variable_frame_rate_spans_come_from_presentation_times():
    stamps = np.asarray(VFR_PTS) / 30.0  # 20 frames at 10 fps, then 40 at 30 fps
    begin, end = frame_spans(stamps, num_frames=60, fps=20.0)
    assert end[0] - begin[0] == pytest.approx(0.1) and end[30] - begin[30] == pytest.approx(1 / 30)
    grid = plan_grid(TimeGrid(), num_frames=60, frame_times=stamps, fps=20.0)
    # The 21st frame (the first at 30 fps) starts at 2 s: index / fps would put it at 1 s.
    assert grid.times[20] == pytest.approx(2.0 + 1 / 60)


def test_fps_picks_the_frame_shown_at_the_middle_of_each_unit():
    stamps = np.asarray(VFR_PTS) / 30.0
    begin, end = frame_spans(stamps, num_frames=60, fps=20.0)
    frames, start, stop = resample(begin, end, 2.0)  # 3.33 s at 2 fps: 7 units
    assert len(frames) == 7
    middles = (np.arange(7) + 0.5) / 2
    for frame, middle in zip(frames, middles, strict=True):
        assert begin[frame] <= middle < end[frame]
    assert stop[-1] == pytest.approx(end[-1]) and start[1] == 0.5


def test_bad_grids_are_one_line():
    with pytest.raises(InputError, match="--fps"):
        TimeGrid(fps=0)
    with pytest.raises(InputError, match="--window 0"):
        TimeGrid(window=0)
