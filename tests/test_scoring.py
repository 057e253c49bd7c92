"""Every computation of results (datp.scoring): accuracy, confusion, the metrics dict, late
fusion and its weights, and when a video is too short for its segments."""

import math

import pytest
import torch

from datp.data.sampling import eval_starts
from datp.errors import InputError
from datp.scoring import (
    confusion_from_scores,
    confusion_matrix,
    evaluation_metrics,
    frames_for_segments,
    fuse_probabilities,
    fuse_scores,
    mean_class_accuracy,
    per_class_accuracy,
    repeats_frames,
    short_video_warning,
    summarize,
    topk_accuracy,
    validate_fusion_weights,
)


def test_topk_and_confusion_on_a_hand_made_case():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 1, 1, 2])
    assert topk_accuracy(scores, labels, 1) == 0.75
    assert topk_accuracy(scores, labels, 2) == 1.0
    confusion = confusion_matrix(scores.argmax(-1), labels, 3)
    assert confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    # Class 1 has 2 videos, 1 right: mean class accuracy (1 + 0.5 + 1) / 3 differs from top-1.
    assert math.isclose(mean_class_accuracy(confusion), 2.5 / 3, rel_tol=1e-9)


def test_classes_without_videos_are_left_out_of_the_mean():
    confusion = confusion_matrix(torch.tensor([0, 0]), torch.tensor([0, 0]), 3)
    per_class = per_class_accuracy(confusion)
    assert per_class[0] == 1 and per_class[1:].isnan().all()
    assert mean_class_accuracy(confusion) == 1.0


def test_summarize_with_fewer_than_five_classes():
    result = summarize(torch.eye(3), torch.tensor([0, 1, 2]))
    assert result == {"top1": 1.0, "top5": 1.0, "mean_class_accuracy": 1.0}


def test_fusion_weights():
    assert validate_fusion_weights([1, 1.5], option="--weights") == [1.0, 1.5]
    assert validate_fusion_weights([0, 2], option="--weights", num_streams=2) == [0.0, 2.0]
    for weights, problem in [
        ([1, -1], "--weights 1 -1: weight 2 is -1: must be a finite number >= 0"),
        ([float("nan"), 1], "--weights nan 1: weight 1 is nan: must be a finite number >= 0"),
        ([float("inf")], "--weights inf: weight 1 is inf: must be a finite number >= 0"),
        ([0, 0], "--weights 0 0: all weights are 0; at least one must be > 0"),
        ([], "--weights: no weights given"),
    ]:
        with pytest.raises(InputError) as error:
            validate_fusion_weights(weights, option="--weights")
        assert str(error.value).startswith(problem)
    with pytest.raises(InputError, match=r"^--fusion-weights 1: 1 weight\(s\) for 2 stream"):
        validate_fusion_weights([1], option="--fusion-weights", num_streams=2)


def test_the_confusion_of_scores_is_that_of_their_top_class():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 1, 1, 2])
    assert torch.equal(confusion_from_scores(scores, labels),
                       confusion_matrix(scores.argmax(-1), labels, 3))
    no_videos = confusion_from_scores(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert no_videos.tolist() == [[0] * 4] * 4


def test_evaluation_metrics_come_in_the_order_reports_print_them():
    metrics = evaluation_metrics(torch.eye(3), torch.tensor([0, 1, 2]), videos=3, skipped_videos=1)
    assert list(metrics) == ["top1", "top5", "mean_class_accuracy", "videos", "skipped_videos"]
    assert (metrics["videos"], metrics["skipped_videos"], metrics["top1"]) == (3, 1, 1.0)


def test_fusion_adds_weighted_streams_in_order_and_its_mean_is_a_distribution():
    rgb = torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    flow = torch.tensor([[0.5, 0.5], [0.1, 0.9]])
    fused = fuse_scores([rgb, flow], [1.0, 1.5])
    assert torch.equal(fused, 0 + 1.0 * rgb + 1.5 * flow)  # bit for bit, stream by stream
    mean = fuse_probabilities([rgb, flow], [1.0, 1.5])
    assert torch.equal(mean, fused / 2.5)
    torch.testing.assert_close(mean.sum(-1), torch.ones(2))


@pytest.mark.parametrize("length", [1, 2, 5])
@pytest.mark.parametrize("segments", [1, 3, 10])
def test_the_short_video_rule_is_when_test_sampling_repeats(segments, length):
    assert frames_for_segments(segments, length=length) == segments + length - 1
    for frames in range(1, segments + length + 3):
        starts = eval_starts(frames, segments, length=length)
        repeats = len(set(starts.tolist())) < segments or frames < length
        assert repeats_frames(frames, segments, length=length) == repeats, frames


def test_the_short_video_warning_names_the_video_and_its_unit():
    assert short_video_warning("v.avi", 10, segments=10, length=1, flow=False) is None
    assert short_video_warning("v.avi", 1, segments=10, length=1, flow=False) == (
        "v.avi: 1 frames, too few for 10 segments of 1: frames repeat")
    assert short_video_warning("v.avi", 6, segments=3, length=5, flow=True) == (
        "v.avi: 6 flow fields, too few for 3 segments of 5: frames repeat")
    with pytest.raises(ValueError, match="must be >= 1"):
        repeats_frames(5, 0)
