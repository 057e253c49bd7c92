"""The learning-rate schedules."""

import pytest

from datp.build import learning_rate_factor
from datp.config import load_config


def test_learning_rate_schedules():
    config = load_config(
        None, ["train.epochs=10", "train.lr_steps=[4, 8]", "train.warmup_epochs=1"]
    )
    factors = [learning_rate_factor(config, step, 10) for step in (0, 9, 10, 45, 85)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.1, 0.01])
    config = load_config(None, ["train.epochs=10", "train.schedule=cosine"])
    assert learning_rate_factor(config, 0, 10) == pytest.approx(1.0)
    assert learning_rate_factor(config, 50, 10) == pytest.approx(0.5)
