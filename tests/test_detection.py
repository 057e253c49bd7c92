"""From per-step scores and temporal weights to detections, and ActivityNet's result file."""

import json

import numpy as np
import pytest
import torch

from datp.detection import (
    Detection,
    LocalizationSettings,
    Mixture,
    classes_to_localize,
    fuse_activations,
    grid_times,
    localize,
    non_maximum_suppression,
    outer_inner_contrast,
    temporal_class_activation,
    threshold_runs,
    weight_curve,
)
from datp.detection_file import read_results, results_json
from datp.detection_map import evaluate_detections
from datp.errors import InputError
from datp.pooling.functional import mog_weights


def test_weight_curves_of_each_pooling():
    grid = grid_times(40)
    steps = (np.arange(10) + 0.5) / 10
    rho, mu, sigma = [0.3, 0.7], [0.2, 0.75], [0.05, 0.1]
    curve = weight_curve(Mixture(np.array(rho), np.array(mu), np.array(sigma)), grid, steps)
    expected = mog_weights(*(torch.tensor(v, dtype=torch.float64)[None]
                             for v in (grid, rho, mu, sigma)))[0].numpy()
    np.testing.assert_allclose(curve, expected / expected.max(), rtol=1e-12)  # Eq. (1) exactly
    # Far-apart narrow Gaussians underflow in linear space, not here.
    far = weight_curve(Mixture(np.array([1.0]), np.array([5.0]), np.array([0.01])), grid, steps)
    assert np.isfinite(far).all() and far.max() == 1.0
    per_step = np.array([0, 0, 1, 2, 4, 2, 0, -3, 0, 0], dtype=float)
    curve = weight_curve(per_step, grid, steps)
    interpolated = np.interp(grid, steps, per_step.clip(0))  # negative weights count as 0
    np.testing.assert_allclose(curve, interpolated / interpolated.max())
    assert weight_curve(None, grid, steps).tolist() == [1.0] * 40
    assert weight_curve(np.zeros(10), grid, steps).tolist() == [0.0] * 40
    with pytest.raises(ValueError, match=r"expected weights \[10\]"):
        weight_curve(np.ones(9), grid, steps)


def test_activation_is_weights_times_interpolated_probabilities():
    scores = np.log(np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]]))
    steps = np.array([1 / 6, 3 / 6, 5 / 6])
    activation = temporal_class_activation(scores, step_times=steps, weights=np.array([1, 2, 0.]),
                                           grid_size=6)
    grid = grid_times(6)  # 1/12, 3/12, ...: halfway between steps at 4/12 and 8/12
    probability = np.interp(grid, steps, [0.2, 0.8, 0.5])
    weight = np.interp(grid, steps, [1, 2, 0])
    weight /= weight.max()  # the curve's peak on the grid is 1
    np.testing.assert_allclose(activation[:, 1], weight * probability, rtol=1e-12)
    np.testing.assert_allclose(activation.sum(axis=1), weight, rtol=1e-12)
    with pytest.raises(ValueError, match="must not decrease"):
        temporal_class_activation(scores, step_times=steps[::-1], grid_size=6)


def test_runs_contrast_and_suppression_by_hand():
    activation = np.array([0.0, 0.5, 1.0, 0.2, 0.9, 0.0])
    assert threshold_runs(activation, [0.3, 0.6]) == [(1, 2), (4, 4), (2, 2)]
    assert threshold_runs(np.full(5, 0.3), [0.5]) == [(0, 4)]  # flat: the whole video
    # Run 4..7 (length 4) with bands of 1 on each side: inner 0.8, outer (0.1 + 0.3) / 2.
    values = np.array([0, 0, 0, 0.1, 0.8, 0.8, 0.8, 0.8, 0.3, 0])
    assert outer_inner_contrast(values, 4, 7, 0.25) == pytest.approx(0.8 - 0.2)
    assert outer_inner_contrast(values, 0, 9, 0.25) == pytest.approx(values.mean() - 0.0)
    found = [Detection("A", 0.5, 0, 10), Detection("A", 0.9, 1, 10), Detection("A", 0.9, 30, 40),
             Detection("A", 0.4, 5, 15)]
    # 0.9 [1, 10] first, then 0.9 [30, 40]; [0, 10] overlaps [1, 10] at 0.9 -> dropped;
    # [5, 15] overlaps [1, 10] at 5 / 14 < 0.5 -> kept.
    assert non_maximum_suppression(found, 0.5) == [found[1], found[2], found[3]]


def test_classes_to_localize():
    assert classes_to_localize(np.array([0.05, 0.6, 0.15, 0.2]), threshold=0.1,
                               max_classes=3) == [1, 3, 2]
    assert classes_to_localize(np.array([0.05, 0.6, 0.15, 0.2]), threshold=0.1,
                               max_classes=2) == [1, 3]
    assert classes_to_localize(np.array([0.04, 0.06, 0.05]), threshold=0.1, max_classes=3) == [1]


def video(num_steps=20, action=(6, 10), label=1, num_classes=3):
    """Per-step scores of a video whose class ``label`` shows at steps ``action`` (end
    exclusive), class 0 elsewhere."""
    scores = np.zeros((num_steps, num_classes))
    scores[:, 0] = 2.0
    scores[action[0]:action[1], label] = 5.0
    return scores, (np.arange(num_steps) + 0.5) / num_steps


@pytest.mark.parametrize("weights", ["mixture", "per_step", None])
def test_localize_finds_the_action_and_scores_one(weights):
    scores, steps = video()
    duration = 40.0  # 2 s per step: the action is at 12-20 s
    chosen = {"mixture": Mixture(np.array([1.0]), np.array([0.4]), np.array([0.08])),
              "per_step": np.exp(-0.5 * ((steps - 0.4) / 0.08) ** 2), None: None}[weights]
    probabilities = np.array([0.3, 0.7, 0.0])
    found = localize(scores, step_times=steps, duration=duration, classes=["bg", "act", "x"],
                     video_probabilities=probabilities, weights=chosen)
    best = found[0]
    assert best.label == "act"
    assert abs(best.start - 12.0) <= 2.0 and abs(best.end - 20.0) <= 2.0
    assert all(d.label in ("bg", "act") for d in found)  # "x" is below the class threshold
    assert all(np.isfinite([d.score, d.start, d.end]).all() and 0 <= d.start < d.end <= duration
               for d in found)
    truth = {"v": [type("I", (), {"label": "act", "start": 12.0, "end": 20.0})()]}
    assert evaluate_detections(truth, {"v": found}, thresholds=[0.5]).average_precision[0, 0] == 1


def test_degenerate_input_gives_finite_detections():
    scores, steps = video()
    found = localize(scores, step_times=steps, duration=10.0, classes=["a", "b", "c"],
                     video_probabilities=np.array([0.2, 0.5, 0.3]), weights=np.zeros(20))
    assert found and all(np.isfinite([d.score, d.start, d.end]).all() for d in found)
    single = localize(np.array([[1.0, 0.0]]), step_times=[0.5], duration=3.0, classes=["a", "b"],
                      video_probabilities=np.array([0.95, 0.05]))
    # One step: a flat activation, one run over the whole video, no outer band.
    assert single == [Detection("a", pytest.approx(0.2 * 0.95 + np.exp(1) / (1 + np.exp(1))),
                                0.0, 3.0)]
    with pytest.raises(InputError, match="thresholds"):
        LocalizationSettings(thresholds=(1.5,))


def test_streams_fuse_before_localizing():
    a, b = np.ones((4, 2)), np.zeros((4, 2))
    np.testing.assert_allclose(fuse_activations([a, b], [1.0, 1.5]), np.full((4, 2), 0.4))
    with pytest.raises(ValueError, match="share one grid"):
        fuse_activations([a, np.ones((5, 2))], [1, 1])


def test_result_file_round_trip_and_errors(tmp_path):
    found = {"v_1": [Detection("A", 0.75, 1.0, 2.5)], "v_2": []}
    data = results_json(found)
    assert data == {"version": "VERSION 1.3",
                    "results": {"v_1": [{"label": "A", "score": 0.75, "segment": [1.0, 2.5]}],
                                "v_2": []},
                    "external_data": {"used": False, "details": ""}}
    path = tmp_path / "detections.json"
    path.write_text(json.dumps(data))
    assert read_results(path) == found
    for bad, message in [
        ({"results": []}, "expected an object whose 'results'"),
        ({"results": {"v": [{"label": "A", "score": "high", "segment": [0, 1]}]}},
         r"results\['v'\]\[0\].score: expected a number, got 'high'"),
        ({"results": {"v": [{"label": "A", "score": 1, "segment": [0]}]}},
         r"results\['v'\]\[0\].segment: expected \[start, end\] in seconds, got \[0\]"),
        ({"results": {"v": [{"score": 1, "segment": [0, 1]}]}},
         r"results\['v'\]\[0\].label: expected a class name, got None"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(InputError, match=message):
            read_results(path)
