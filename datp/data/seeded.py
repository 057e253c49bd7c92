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

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of item ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return ((seed * 1_000_003 + epoch) * 2_654_435_761 + index) % 2**63


class SeededItems(Dataset):
    """``dataset`` with item ``i`` of epoch ``e`` loaded under ``item_seed(seed, e, i)``.

    Its keys are ``(epoch, index)`` pairs (:class:`EpochKeys` makes them from a sampler), so
    that the epoch travels with each key and loader workers kept across epochs (which hold their
    own copy of this object) load each epoch's items as freshly forked ones would. A plain
    index is loaded in the epoch of :meth:`set_epoch`.
    """

    def __init__(self, dataset: Dataset, *, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, epoch, index))
            return self.dataset[index]


class EpochKeys(Sampler):
    """``sampler``'s indices as ``(epoch, index)`` keys of :class:`SeededItems`, the epoch read
    from ``sampler.epoch`` when an epoch's iteration starts."""

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)
