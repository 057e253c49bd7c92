"""The learning-rate schedules."""

import pytest

from datp.config import load_config
from datp.engine.build import learning_rate_schedule


def test_learning_rate_schedules():
    config = load_config(
        None, ["train.epochs=10", "train.lr_steps=[4, 8]", "train.warmup_epochs=1"]
    )
    factors = [learning_rate_schedule(config).factor(step, 10) for step in (0, 9, 10, 45, 85)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.1, 0.01])
    config = load_config(None, ["train.epochs=10", "train.schedule=cosine"])
    assert learning_rate_schedule(config).factor(0, 10) == pytest.approx(1.0)
    assert learning_rate_schedule(config).factor(50, 10) == pytest.approx(0.5)


def test_each_group_learns_at_the_base_rate_times_its_own_factor():
    from datp.engine.build import build_model, build_optimizer
    from datp.engine.optimizer import base_learning_rate, set_learning_rate

    config = load_config(None, ["model.backbone=small_cnn", "train.lr=0.01",
                                "train.pooling_lr_factor=5", "model.partial_bn=false"])
    model = build_model(config, num_classes=3)
    optimizer = build_optimizer(model, config)
    set_learning_rate(optimizer, 0.25 * config.train.lr)
    pooling = {id(p) for p in model.pooling.parameters()}
    for group in optimizer.param_groups:
        in_pooling = any(id(p) in pooling for p in group["params"])
        assert group["lr"] == pytest.approx(0.0025 * (5 if in_pooling else 1))
    assert base_learning_rate(optimizer) == pytest.approx(0.0025)
