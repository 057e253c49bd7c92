"""mAP as ActivityNet's Eval_Detection computes it, held against cases computed by hand."""

from typing import NamedTuple

import numpy as np
import pytest

from datp.detection_map import (
    ACTIVITYNET_THRESHOLDS,
    THUMOS14_THRESHOLDS,
    evaluate_detections,
    interpolated_average_precision,
    localization_metrics,
    segment_iou,
    threshold_name,
)
from datp.errors import InputError


class Gt(NamedTuple):
    label: str
    start: float
    end: float


class Det(NamedTuple):
    label: str
    score: float
    start: float
    end: float


def ap(ground_truth, detections, thresholds, **kwargs):
    return evaluate_detections(ground_truth, detections, thresholds=thresholds, **kwargs)


def test_thresholds_are_the_references_linspace():
    assert tuple(np.linspace(0.1, 0.7, 7)) == THUMOS14_THRESHOLDS
    assert tuple(np.linspace(0.5, 0.95, 10)) == ACTIVITYNET_THRESHOLDS
    assert ACTIVITYNET_THRESHOLDS[8] == 0.8999999999999999  # the reference's 0.9
    assert [threshold_name(t) for t in ACTIVITYNET_THRESHOLDS][:3] == ["0.5", "0.55", "0.6"]
    assert threshold_name(ACTIVITYNET_THRESHOLDS[8]) == "0.9"


def test_segment_iou_by_hand():
    iou = segment_iou((1.0, 11.5), np.array([[0.0, 10.0], [2.0, 12.0], [20.0, 30.0],
                                             [5.0, 5.0]]))
    np.testing.assert_allclose(iou, [9 / 11.5, 9.5 / 11, 0.0, 0.0], rtol=0, atol=1e-12)
    assert segment_iou((3.0, 3.0), np.array([[3.0, 3.0]])).tolist() == [0.0]  # no 0 / 0


def test_interpolated_average_precision_by_hand():
    # TP, FP, TP over 2 instances: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    value = interpolated_average_precision(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))
    assert value == pytest.approx(0.5 * 1 + 0.5 * 2 / 3, abs=1e-12)
    # Precision rises later: the earlier point takes the later maximum.
    value = interpolated_average_precision(np.array([0.0, 0.5]), np.array([0.0, 1.0]))
    assert value == pytest.approx(0.5, abs=1e-12)


def test_true_and_false_positives_at_two_thresholds():
    truth = {"v1": [Gt("A", 0, 10), Gt("A", 20, 30)]}
    found = {"v1": [Det("A", 0.9, 0, 10), Det("A", 0.8, 21, 30), Det("A", 0.7, 40, 50)]}
    scores = ap(truth, found, [0.5, 0.95])
    # 0.5: TP TP FP -> AP 1. 0.95: the second has tIoU 0.9 -> TP FP FP -> AP 1/2.
    np.testing.assert_allclose(scores.average_precision, [[1.0, 0.5]], rtol=0, atol=1e-9)
    assert scores.classes == ("A",) and scores.instances == 2 and scores.detections == 3


def test_a_detection_overlapping_two_instances_takes_the_one_it_overlaps_most():
    # g1 [0, 10] and g2 [2, 12] overlap. d1 [1, 11.5]: tIoU 9/11.5 = 0.783 with g1,
    # 9.5/11 = 0.864 with g2 -> g2. d2 [2, 12] (= g2): g2 is taken; g1 at 8/12 = 0.667.
    truth = {"v": [Gt("A", 0, 10), Gt("A", 2, 12)]}
    found = {"v": [Det("A", 0.9, 1, 11.5), Det("A", 0.8, 2, 12)]}
    scores = ap(truth, found, [0.5, 0.7])
    # 0.5: d2 falls back to g1 -> TP TP -> 1. 0.7: g1 is too far -> TP FP -> 1/2. Matching d1
    # to the first free instance (g1) instead would give 1 at 0.7.
    np.testing.assert_allclose(scores.average_precision, [[1.0, 0.5]], rtol=0, atol=1e-9)


def test_instances_tied_in_tiou_go_to_the_later_one_first():
    # d [1, 11] has tIoU 9/11 with both g1 [0, 10] and g2 [2, 12]; the reference's
    # argsort()[::-1] visits g2 first. Then d2 = g2 finds g2 taken and g1 at 0.667 < 0.7.
    truth = {"v": [Gt("A", 0, 10), Gt("A", 2, 12)]}
    found = {"v": [Det("A", 0.9, 1, 11), Det("A", 0.8, 2, 12)]}
    assert ap(truth, found, [0.7]).average_precision[0, 0] == pytest.approx(0.5, abs=1e-9)


def test_duplicate_detections_match_once():
    truth = {"v": [Gt("A", 0, 10), Gt("A", 20, 30)]}
    found = {"v": [Det("A", 0.9, 0, 10), Det("A", 0.8, 0, 10), Det("A", 0.7, 20, 30)]}
    # TP FP TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> 1/2 + 1/2 * 2/3 = 5/6.
    assert ap(truth, found, [0.5]).average_precision[0, 0] == pytest.approx(5 / 6, abs=1e-9)
    # Exactly equal duplicates: one TP, one FP, whichever is first.
    same = {"v": [Det("A", 0.9, 0, 10), Det("A", 0.9, 0, 10)]}
    assert ap({"v": [Gt("A", 0, 10)]}, same, [0.5]).average_precision[0, 0] == pytest.approx(
        1.0, abs=1e-9)


def test_tied_scores_rank_the_later_detection_first():
    # Equal scores: the reference's argsort()[::-1] puts the later one (the TP) first -> AP 1;
    # the other order would give FP TP -> 1/2.
    truth = {"v": [Gt("A", 0, 10)]}
    found = {"v": [Det("A", 0.5, 40, 50), Det("A", 0.5, 0, 10)]}
    assert ap(truth, found, [0.5]).average_precision[0, 0] == pytest.approx(1.0, abs=1e-9)
    swapped = {"v": [Det("A", 0.5, 0, 10), Det("A", 0.5, 40, 50)]}
    assert ap(truth, swapped, [0.5]).average_precision[0, 0] == pytest.approx(0.5, abs=1e-9)
    # Across videos: the results' video order decides, the later video's detection first.
    truth = {"a": [Gt("A", 0, 10)], "b": [Gt("A", 0, 10)]}
    found = {"a": [Det("A", 0.5, 0, 10)], "b": [Det("A", 0.5, 50, 60)]}
    # b's FP first: FP TP over 2 instances -> precision 0, 1/2 at recall 0, 1/2 -> 1/4.
    assert ap(truth, found, [0.5]).average_precision[0, 0] == pytest.approx(0.25, abs=1e-9)


def test_classes_are_the_ground_truths_labels():
    truth = {"v1": [Gt("A", 0, 10)], "v2": [Gt("B", 5, 9)]}
    found = {
        "v1": [Det("A", 0.9, 0, 10), Det("C", 0.95, 0, 10), Det("C", 0.1, 1, 2)],
        "v3": [Det("A", 0.99, 0, 10)],  # a video without ground truth: a false positive
    }
    scores = ap(truth, found, [0.5])
    assert scores.classes == ("A", "B")
    # A: FP (v3) then TP -> precision 0, 1/2 at recall 0, 1 -> 1/2. B: no detection -> 0.
    np.testing.assert_allclose(scores.average_precision, [[0.5], [0.0]], rtol=0, atol=1e-9)
    assert scores.mean_average_precision.tolist() == pytest.approx([0.25], abs=1e-9)
    assert scores.ignored_labels == {"C": 2} and scores.detections == 2
    assert scores.at(0.5) == pytest.approx(0.25, abs=1e-9)


def test_an_instance_of_another_class_in_the_same_video_is_not_a_match():
    truth = {"v": [Gt("A", 0, 10), Gt("B", 20, 30)]}
    found = {"v": [Det("A", 0.9, 20, 30), Det("A", 0.8, 0, 10)]}
    scores = ap(truth, found, [0.5])
    # A: FP TP -> 1/2; B: 0.
    np.testing.assert_allclose(scores.average_precision[:, 0], [0.5, 0.0], rtol=0, atol=1e-9)


def test_ambiguous_spans_take_unmatched_detections_out_of_the_ranking():
    truth = {"v": [Gt("A", 0, 10), Gt("A", 20, 30)]}
    found = {"v": [Det("A", 0.9, 0, 10), Det("A", 0.8, 42, 50), Det("A", 0.7, 20, 30),
                   Det("A", 0.6, 45, 60)]}
    without = ap(truth, found, [0.5])
    # TP FP TP FP -> 1/2 + 1/2 * 2/3 = 5/6.
    assert without.average_precision[0, 0] == pytest.approx(5 / 6, abs=1e-9)
    # Both FPs overlap the ambiguous span [40, 46] -> TP TP -> 1.
    ambiguous = {"v": [(40.0, 46.0)], "other": [(0.0, 100.0)]}
    assert ap(truth, found, [0.5], ambiguous=ambiguous).average_precision[0, 0] == (
        pytest.approx(1.0, abs=1e-9))
    # A span that only touches (no positive overlap) leaves them in.
    touching = {"v": [(50.0, 52.0)]}  # touches [42, 50] at 50; overlaps [45, 60]
    assert ap(truth, found, [0.5], ambiguous=touching).average_precision[0, 0] == (
        pytest.approx(5 / 6, abs=1e-9))
    # A true positive inside an ambiguous span stays a true positive; at 0.95 all but exact
    # matches are unmatched: [0, 10] TP, [20, 30] TP either way.
    inside = {"v": [(0.0, 100.0)]}
    assert ap(truth, found, [0.5], ambiguous=inside).average_precision[0, 0] == pytest.approx(
        1.0, abs=1e-9)


def test_localization_metrics_names_thresholds_and_averages_sets():
    truth = {"v": [Gt("A", 0, 10)]}
    found = {"v": [Det("A", 0.9, 0, 8)]}  # tIoU 0.8
    metrics = localization_metrics(truth, found)
    assert list(metrics["mAP"]) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.55", "0.6", "0.65",
                                    "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]
    assert metrics["mAP"]["0.8"] == pytest.approx(100.0) and metrics["mAP"]["0.85"] == 0.0
    assert metrics["average_mAP"]["thumos14"] == pytest.approx(100.0, abs=1e-9)
    assert metrics["average_mAP"]["activitynet"] == pytest.approx(100.0 * 7 / 10, abs=1e-9)
    assert metrics["ambiguous_spans_left_out"] is False and metrics["classes"] == 1


def test_bad_input_is_named():
    truth = {"v": [Gt("A", 0, 10)]}
    with pytest.raises(InputError, match=r"detection 0 of video 'v': score"):
        ap(truth, {"v": [Det("A", float("nan"), 0, 1)]}, [0.5])
    with pytest.raises(InputError, match="holds no instance"):
        ap({"v": []}, {}, [0.5])
    with pytest.raises(InputError, match="thresholds"):
        ap(truth, {}, [1.5])
