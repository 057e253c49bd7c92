"""DATP learns to look at the key window of the sequence task; average pooling cannot."""

import torch

from datp.engine.toy import ToyTask, make_sequences, train_and_evaluate


def test_sequences_put_the_true_class_inside_a_window_of_the_requested_size():
    task = ToyTask(num_segments=10, key_fraction=0.3)
    x, y, key = make_sequences(task, 50, seed=0)
    assert x.shape == (50, 10, task.channels) and y.shape == (50,)
    assert (key.sum(-1) == 3).all()
    # Contiguous windows.
    starts = key.float().argmax(-1)
    for row, start in zip(key, starts, strict=True):
        assert row[start : start + 3].all()
    torch.testing.assert_close(make_sequences(task, 50, seed=0)[0], x)


def test_datp_moves_its_weight_into_the_key_window():
    task = ToyTask(key_fraction=0.2)
    kwargs = dict(train_size=3000, test_size=1000, epochs=8, seed=0)
    datp = train_and_evaluate(task, pooling="datp", num_gaussians=1, **kwargs)
    average = train_and_evaluate(task, pooling="average", pool="logits", **kwargs)
    assert abs(average["weight_in_window"] - 0.2) < 1e-6
    # Uniform weights would put 20 % inside the window; the initial Gaussian at 0.5 about 35 %.
    assert datp["weight_in_window"] > 0.45
    assert datp["accuracy"] > average["accuracy"]
