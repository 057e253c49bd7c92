"""Long videos as streams: frames in chunks, frames at times, segment counts from durations."""

import numpy as np
import pytest

from datp.data.sampling import (
    AUTO_SECONDS_PER_SEGMENT,
    MAX_SEGMENTS,
    eval_starts,
    parse_segments,
    segments_for_duration,
)
from datp.data.stream import frames_at_times, stream_frames
from datp.data.video import VideoReader, write_video
from datp.errors import InputError
from tests.data.conftest import VFR_PTS, moving_frames, write_timed_video


def test_a_stream_gives_the_frames_a_whole_read_gives(tmp_path):
    path = tmp_path / "long.avi"
    write_video(path, moving_frames(90), gop=12)
    with VideoReader(path) as reader:
        wanted = np.sort(np.concatenate([eval_starts(90, 25), [0, 0, 89]]))  # repeats too
        whole = reader.read(wanted)
        firsts, indices, frames, buffers = [], [], [], set()
        for chunk in stream_frames(reader, wanted, chunk_frames=7):
            firsts.append(chunk.first)
            indices.append(chunk.indices)
            frames.append(chunk.frames.copy())  # the next chunk overwrites this one
            buffers.add(chunk.frames.__array_interface__["data"][0])
        assert firsts == list(range(0, len(wanted), 7))
        assert max(len(f) for f in frames) == 7 and len(buffers) == 1  # one buffer, reused
        np.testing.assert_array_equal(np.concatenate(indices), wanted)
        np.testing.assert_array_equal(np.concatenate(frames), whole)
        out = np.zeros((3, 48, 64, 3), np.uint8)
        assert reader.read([4, 2, 4], out=out) is out
        np.testing.assert_array_equal(out, reader.read([4, 2, 4]))
        with pytest.raises(ValueError, match=r"out must be uint8 \[2, H, W, 3\]"):
            reader.read([1, 2], out=out)
        assert list(stream_frames(reader, [])) == []
        with pytest.raises(ValueError, match="reads forward"):
            next(stream_frames(reader, [5, 3]))
        with pytest.raises(IndexError, match=r"must lie in \[0, 90\)"):
            next(stream_frames(reader, [3, 90]))


def test_frames_at_times_follow_the_presentation_times(tmp_path):
    path = tmp_path / "vfr.mkv"
    write_timed_video(path, moving_frames(len(VFR_PTS), height=32, width=32), VFR_PTS)
    with VideoReader(path) as reader:
        times = reader.frame_times
        # 10 fps for 2 s, then 30 fps: at 2.51 s the frame shown is 20 + 15 = 35 (shown from 2.5 s).
        at = frames_at_times([0.0, 0.15, 1.99, 2.51, 99.0], num_frames=reader.num_frames,
                             fps=reader.fps, frame_times=times)
        assert at.tolist() == [0, 1, 19, 35, len(VFR_PTS) - 1]
    assert frames_at_times([0.2, 0.199, -1.0], num_frames=100, fps=25.0).tolist() == [5, 4, 0]
    with pytest.raises(ValueError, match="presentation times or a frame rate"):
        frames_at_times([1.0], num_frames=10, fps=None)


def test_segment_counts_from_durations():
    assert segments_for_duration(3600.0) == 3600 == 3600 / AUTO_SECONDS_PER_SEGMENT
    assert segments_for_duration(60.0, seconds_per_segment=0.1) == 600
    assert segments_for_duration(7.1, seconds_per_segment=2.0) == 4
    assert segments_for_duration(7.1, minimum=25) == 25  # a short video keeps the test's N
    assert segments_for_duration(10 * 3600.0) == MAX_SEGMENTS
    assert segments_for_duration(100.0, maximum=50) == 50
    assert segments_for_duration(0.0) == 1
    for bad in (dict(duration=float("nan")), dict(duration=5, seconds_per_segment=0),
                dict(duration=5, minimum=3, maximum=2)):
        with pytest.raises(ValueError):
            segments_for_duration(**bad)
    assert parse_segments("25") == 25 and isinstance(parse_segments("25"), int)
    assert parse_segments("2s") == 2.0 and parse_segments(" 0.5S ") == 0.5
    assert parse_segments("auto") == AUTO_SECONDS_PER_SEGMENT
    for bad in ("0", "-3", "2 min", "0s", "infs", "s", ""):
        with pytest.raises(InputError, match="expected a count"):
            parse_segments(bad)
