import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datp.data.sampling import (
    dense_starts,
    eval_starts,
    normalized_times,
    stack_indices,
    train_starts,
)

videos = st.integers(1, 400)
segments = st.integers(1, 30)
lengths = st.integers(1, 10)


@settings(max_examples=200, deadline=None)
@given(videos, segments, lengths, st.integers(0, 2**32 - 1))
def test_train_starts_fall_in_their_segment(num_frames, num_segments, length, seed):
    starts = train_starts(num_frames, num_segments, length=length,
                          rng=np.random.default_rng(seed))
    span = max(num_frames - length + 1, 1)
    assert starts.shape == (num_segments,) and starts.dtype == np.int64
    assert (starts >= 0).all() and (starts < span).all()
    assert (np.diff(starts) >= 0).all()  # temporal order kept
    average = span // num_segments
    if average > 0:  # one start inside each equal segment
        assert ((starts // average) == np.arange(num_segments)).all()


@settings(max_examples=200, deadline=None)
@given(videos, segments, lengths)
def test_eval_starts_are_centres_and_ordered(num_frames, num_segments, length):
    starts = eval_starts(num_frames, num_segments, length=length)
    span = max(num_frames - length + 1, 1)
    assert ((starts >= 0) & (starts < span)).all()
    assert (np.diff(starts) >= 0).all()
    centres = (np.arange(num_segments) + 0.5) * span / num_segments
    assert (np.abs(starts - centres) <= 1).all()


def test_train_starts_are_random_and_reproducible():
    first = train_starts(300, 10, rng=np.random.default_rng(0))
    again = train_starts(300, 10, rng=np.random.default_rng(0))
    other = train_starts(300, 10, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_tsn_values():
    assert eval_starts(100, 4).tolist() == [12, 37, 62, 87]
    assert eval_starts(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short video: repeats in order
    assert train_starts(3, 6, rng=np.random.default_rng(0)).tolist() == [0, 0, 1, 1, 2, 2]
    assert eval_starts(20, 2, length=5).tolist() == [4, 12]  # 16 valid starts


def test_dense_starts_cover_each_segment():
    starts = dense_starts(100, 4, num_clips=2)
    assert starts.shape == (2, 4)
    assert starts.tolist() == [[6, 31, 56, 81], [18, 43, 68, 93]]
    np.testing.assert_array_equal(dense_starts(100, 4, num_clips=1)[0], eval_starts(100, 4))


def test_flow_stacks_fit_and_times_use_the_centre():
    starts = eval_starts(30, 5, length=5)
    stacks = stack_indices(starts, length=5, num_frames=30)
    assert stacks.shape == (5, 5) and stacks.max() <= 29
    assert (np.diff(stacks, axis=1) == 1).all()  # consecutive fields
    assert stack_indices(np.array([0]), length=5, num_frames=3).tolist() == [[0, 1, 2, 2, 2]]
    times = normalized_times(starts, num_frames=30, length=5)
    np.testing.assert_allclose(times, (starts + 2.5) / 30)
    assert normalized_times(np.array([0, 9]), num_frames=10).tolist() == pytest.approx([0.05, 0.95])
    assert normalized_times(np.array([0]), num_frames=2, length=5).tolist() == [0.5]


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_frames"):
        eval_starts(0, 3)
    with pytest.raises(ValueError, match="num_segments"):
        train_starts(10, 0, rng=np.random.default_rng(0))
