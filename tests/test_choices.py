"""Every named choice of ``datp.choices`` is backed by its table of code, and every table entry by a
name: a choice added without its code, or code without its name, fails here instead of falling
through to a default somewhere."""

from __future__ import annotations

import typing

import pytest
import torch

from datp import choices
from datp.data.dataset import MODALITIES
from datp.data.device_decode import DECODE_PLACES
from datp.data.features import FEATURE_LAYOUTS
from datp.data.formats import FORMATS
from datp.data.sources import SOURCES
from datp.data.transforms import CROPS
from datp.data.video import DECODERS
from datp.engine.evaluate import SCHEMES
from datp.engine.inference import AMP_DTYPES
from datp.engine.localize import WEIGHTS
from datp.engine.optimizer import OPTIMIZERS, SCHEDULES
from datp.models.backbone import BACKBONES
from datp.models.tsn import AUX_FEATURES
from datp.pooling.build import AUX_NETS, GENERATORS, POOLINGS
from datp.pooling.functional import POOL_SPACES, pooled_log_probabilities, segment_values
from datp.pooling.generators import ACTIVATIONS

TABLES = {
    "Format": [FORMATS],
    "Source": [SOURCES],
    "FeatureLayout": [FEATURE_LAYOUTS],
    "Decoder": [DECODERS],
    "DecodePlace": [DECODE_PLACES],
    "Modality": [MODALITIES],
    "TestCrops": [CROPS],
    "Backbone": [BACKBONES],
    "PoolingKind": [POOLINGS],
    "PoolSpace": [POOL_SPACES],
    "AuxInput": [AUX_NETS, AUX_FEATURES],
    "GeneratorKind": [GENERATORS],
    "DiscreteActivation": [ACTIVATIONS],
    "OptimizerKind": [OPTIMIZERS],
    "ScheduleKind": [SCHEDULES],
    "Amp": [AMP_DTYPES],
    "TestScheme": [SCHEMES],
    "LocalizationWeights": [WEIGHTS],
}
"""Each Literal of datp.choices -> the tables that implement its names."""


def literals() -> dict[str, tuple]:
    return {name: typing.get_args(value) for name, value in vars(choices).items()
            if typing.get_origin(value) is typing.Literal}


def test_every_choice_has_a_table():
    assert sorted(literals()) == sorted(TABLES), "a Literal of datp.choices without its table"


@pytest.mark.parametrize("choice", sorted(TABLES))
def test_each_table_holds_the_names_of_its_choice_and_no_other(choice):
    for table in TABLES[choice]:
        assert list(table) == list(literals()[choice]), (choice, table)


def test_the_pool_spaces_are_the_branches_of_the_pooling_functions():
    scores = torch.randn(2, 3, 4)
    for pool in POOL_SPACES:
        values = segment_values(scores, pool)
        assert torch.isfinite(pooled_log_probabilities(values.mean(1), pool)).all()
    with pytest.raises(ValueError, match="pool must be one of"):
        segment_values(scores, "median")


def test_a_name_missing_from_its_table_is_caught(monkeypatch):
    """The check itself: a choice whose table lacks a name fails it."""
    monkeypatch.setitem(TABLES, "PoolingKind", [{k: v for k, v in POOLINGS.items()
                                                 if k != "max"}])
    with pytest.raises(AssertionError):
        test_each_table_holds_the_names_of_its_choice_and_no_other("PoolingKind")
    monkeypatch.setattr(choices, "Shape", typing.Literal["round", "square"], raising=False)
    with pytest.raises(AssertionError, match="without its table"):
        test_every_choice_has_a_table()
