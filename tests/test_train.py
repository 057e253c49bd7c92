"""The training loop on in-memory data with a tiny segment network."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from datp.checkpoint import load_checkpoint
from datp.config import load_config
from datp.pooling import build_pooling
from datp.train import DataBundle, NonFiniteLossError, learning_rate_factor, train

N, C = 4, 3


class ColourVideos(Dataset):
    """Videos of N 8x8 RGB frames; the class is the colour of one key segment, the rest is noise."""

    def __init__(self, count: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, C, (count,), generator=g)
        self.inputs = torch.randn(count, N, 3, 8, 8, generator=g) * 0.5
        key = torch.randint(0, N, (count,), generator=g)
        for i in range(count):
            self.inputs[i, key[i], self.labels[i]] += 2.0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "inputs": self.inputs[i],
            "label": int(self.labels[i]),
            "times": (torch.arange(N) + 0.5) / N,
        }


class TinyTSN(nn.Module):
    def __init__(self, pooling: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(8, C)
        self.pooling = pooling

    def forward(self, inputs, times):
        b, n = inputs.shape[:2]
        logits = self.fc(self.dropout(self.features(inputs.flatten(0, 1)))).reshape(b, n, C)
        return self.pooling(logits, None, times)


def _setup(overrides=()):
    config = load_config(
        None,
        [
            "train.epochs=3",
            "train.batch_size=8",
            "train.lr=0.2",
            "train.lr_steps=[4]",
            "data.workers=0",
            "train.device=cpu",
            "model.partial_bn=false",
            *overrides,
        ],
    )
    data = DataBundle(train=ColourVideos(64, 0), test=ColourVideos(32, 1), classes=list("abc"))
    torch.manual_seed(0)
    model = TinyTSN(
        build_pooling(
            kind="datp",
            num_classes=C,
            num_segments=N,
            pool="probabilities",
            aux_input="scores",
            num_gaussians=1,
        )
    )
    return config, data, model


def _parameters(path):
    return load_checkpoint(path)["model"]


def test_training_learns_and_writes_the_run_folder(tmp_path):
    config, data, model = _setup(["train.epochs=6"])
    metrics = train(config, run_dir=tmp_path, data=data, model=model)
    assert metrics["top1"] > 0.6  # chance is 1/3
    assert (tmp_path / "config.toml").exists() and (tmp_path / "run.json").exists()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"train", "eval"} <= {row["kind"] for row in rows}
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 5 and state["classes"] == ["a", "b", "c"]
    assert state["config"]["train"]["epochs"] == 6
    assert (tmp_path / "checkpoints" / "best.pt").exists()


def test_resuming_after_an_epoch_ends_where_an_uninterrupted_run_ends(tmp_path):
    config, data, model = _setup()
    train(config, run_dir=tmp_path / "whole", data=data, model=model)
    config, data, model = _setup(["train.epochs=1"])
    train(config, run_dir=tmp_path / "split", data=data, model=model)
    config, data, model = _setup()
    train(config, run_dir=tmp_path / "split", data=data, model=model, resume=True)
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    split = _parameters(tmp_path / "split" / "checkpoints" / "last.pt")
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], rtol=0, atol=0)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path):
    config, data, model = _setup()
    train(config, run_dir=tmp_path / "whole", data=data, model=model)

    def interrupt(info):
        if info.epoch == 1 and info.step == 3:
            raise KeyboardInterrupt

    config, data, model = _setup()
    with pytest.raises(KeyboardInterrupt):
        train(config, run_dir=tmp_path / "cut", data=data, model=model, on_step=interrupt)
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)
    config, data, model = _setup()
    train(config, run_dir=tmp_path / "cut", data=data, model=model, resume=True)
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole:
        torch.testing.assert_close(cut[key], whole[key])


def test_a_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(config, run_dir=tmp_path, data=data, model=model)
    before = _parameters(tmp_path / "checkpoints" / "last.pt")
    config, data, model = _setup(["train.lr=1e30", "train.clip_grad=0"])
    with pytest.raises(NonFiniteLossError, match="last good checkpoint is .*last.pt"):
        train(config, run_dir=tmp_path, data=data, model=model, resume=True)
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert after["epoch"] == 0
    for key in before:
        torch.testing.assert_close(after["model"][key], before[key])


def test_an_existing_run_is_never_overwritten(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(config, run_dir=tmp_path, data=data, model=model)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(config, run_dir=tmp_path, data=data, model=model)


def test_learning_rate_schedules():
    config = load_config(
        None, ["train.epochs=10", "train.lr_steps=[4, 8]", "train.warmup_epochs=1"]
    )
    factors = [learning_rate_factor(config, step, 10) for step in (0, 9, 10, 45, 85)]
    assert factors == pytest.approx([0.1, 1.0, 1.0, 0.1, 0.01])
    config = load_config(None, ["train.epochs=10", "train.schedule=cosine"])
    assert learning_rate_factor(config, 0, 10) == pytest.approx(1.0)
    assert learning_rate_factor(config, 50, 10) == pytest.approx(0.5)
