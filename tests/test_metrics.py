import math

import torch

from datp.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    per_class_accuracy,
    summarize,
    topk_accuracy,
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
