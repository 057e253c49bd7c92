"""A score file is read whole and consistent, or refused in one line naming it: a file edited or
written by something else never fails halfway through a fusion or a localization."""

import pytest
import torch

from datp.errors import DataError
from datp.score_file import ScoreFile


def _scores(**changes) -> ScoreFile:
    """Two videos, three classes, 4 and 2 steps."""
    fields = dict(
        videos=["a", "b"], labels=torch.tensor([0, 2]), pooled=torch.randn(2, 3),
        classes=["x", "y", "z"], log_probs=torch.randn(2, 3).log_softmax(-1),
        weights=[torch.rand(4), torch.rand(2)],
        segment_scores=[torch.randn(4, 3), torch.randn(2, 3)],
        times=[torch.linspace(0, 1, 4), torch.linspace(0, 1, 2)], pool="logits",
    )
    return ScoreFile(**{**fields, **changes})


def test_a_written_file_reads_back_and_pooled_probabilities_may_underflow(tmp_path):
    path = tmp_path / "scores.pt"
    underflow = torch.tensor([[0.0, -float("inf"), -1.0], [-2.0, -1.0, -0.5]])  # log(0) is fine
    _scores(log_probs=underflow).save(path)
    loaded = ScoreFile.load(path)
    assert loaded.videos == ["a", "b"] and loaded.segment_scores[0].shape == (4, 3)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"pooled": torch.randn(2, 4)}, r"pooled is \(2, 4\), not \[2, 3\] for 2 videos and 3 classes"),
    ({"labels": torch.tensor([0])}, r"labels is \(1,\), not \[2\]"),
    ({"log_probs": torch.full((2, 3), float("nan"))}, "log_probs holds NaN"),
    ({"times": [torch.rand(4)]}, "times has 1 entries for 2 videos"),
    ({"segment_scores": [torch.randn(4, 3), torch.randn(3, 3)]},
     r"segment_scores of b is \(3, 3\), not \[2, 3\]"),
    ({"segment_scores": [torch.randn(4, 3), torch.full((2, 3), float("nan"))]},
     "segment_scores of b are not all finite"),
])
def test_an_inconsistent_file_is_refused_naming_it_and_the_problem(tmp_path, changes, problem):
    path = tmp_path / "bad.pt"
    _scores(**changes).save(path)
    with pytest.raises(DataError, match=rf"bad.pt: not a consistent score file: {problem}"):
        ScoreFile.load(path)
