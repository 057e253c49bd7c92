"""Classification metrics on video scores, as pure functions.

Dimension key: V videos, C classes.
"""

from __future__ import annotations

import torch
from torch import Tensor


def topk_accuracy(scores: Tensor, labels: Tensor, k: int = 1) -> float:
    """Share of videos whose label is among the k highest scores ``[V, C]``; labels ``[V]``."""
    k = min(k, scores.shape[-1])
    top = scores.topk(k, dim=-1).indices  # [V, k]
    return (top == labels[:, None]).any(dim=-1).float().mean().item()


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` counts; row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """``[C]`` recall of each class; NaN for a class with no test video."""
    totals = confusion.sum(dim=1).double()
    correct = confusion.diagonal().double()
    return torch.where(totals > 0, correct / totals.clamp_min(1), torch.nan)


def mean_class_accuracy(confusion: Tensor) -> float:
    """TSN's headline metric: the mean of per-class accuracies over classes that have videos."""
    per_class = per_class_accuracy(confusion)
    return per_class[~per_class.isnan()].mean().item()


def summarize(scores: Tensor, labels: Tensor) -> dict[str, float]:
    """top1, top5 and mean class accuracy of scores ``[V, C]`` against labels ``[V]``."""
    confusion = confusion_matrix(scores.argmax(-1), labels, scores.shape[-1])
    return {
        "top1": topk_accuracy(scores, labels, 1),
        "top5": topk_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(confusion),
    }
