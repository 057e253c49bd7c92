"""Item randomness that depends on (seed, epoch, item) only, not on which loader process draws it.

A training item draws its random crop, flip and segment offsets from torch's generator. In a
DataLoader with workers, that generator is the worker's own, and which worker loads which batch
depends on where the epoch started: a run resumed in the middle of an epoch (or run with another
number of workers) would then see other crops than the uninterrupted run. :class:`SeededItems`
seeds torch's generator for each item from (seed, epoch, index) instead, inside
``torch.random.fork_rng`` so that the loading process's own random state is left as it was.
Datasets that draw from numpy's or Python's global generators are not covered.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return ((seed * 1_000_003 + epoch) * 2_654_435_761 + index) % 2**63


class SeededItems(Dataset):
    """``dataset`` with item ``i`` of the current epoch loaded under ``item_seed(seed, epoch, i)``.

    Call :meth:`set_epoch` before each epoch's loader is iterated (workers copy it then).
    """

    def __init__(self, dataset: Dataset, *, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, self.epoch, index))
            return self.dataset[index]
