"""The training loop on in-memory data with a tiny segment network."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from datp.checkpoint import CheckpointError
from datp.config import load_config
from datp.data.build import DataBundle
from datp.data.dataset import SkippedVideo, collate_videos
from datp.engine.build import training_run
from datp.engine.stop_signals import TrainingStopped, stop_signals
from datp.engine.train import NonFiniteLossError, train
from datp.errors import DataError, WriteError
from datp.pooling import build_pooling
from datp.run_state import load_checkpoint

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
    metrics = train(training_run(config, tmp_path, data=data, model=model))
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
    train(training_run(config, tmp_path / "whole", data=data, model=model))
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path / "split", data=data, model=model))
    config, data, model = _setup()
    train(training_run(config, tmp_path / "split", data=data, model=model, resume=True))
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    split = _parameters(tmp_path / "split" / "checkpoints" / "last.pt")
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], rtol=0, atol=0)


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path):
    config, data, model = _setup()
    train(training_run(config, tmp_path / "whole", data=data, model=model))

    def interrupt(info):
        if info.epoch == 1 and info.step == 3:
            raise KeyboardInterrupt

    config, data, model = _setup()
    with pytest.raises(KeyboardInterrupt):
        train(training_run(config, tmp_path / "cut", data=data, model=model), on_step=interrupt)
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)
    config, data, model = _setup()
    train(training_run(config, tmp_path / "cut", data=data, model=model, resume=True))
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole:
        torch.testing.assert_close(cut[key], whole[key])


def test_a_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path, data=data, model=model))
    before = _parameters(tmp_path / "checkpoints" / "last.pt")
    config, data, model = _setup(["train.epochs=2"])

    def poison(info):  # the parameters turn NaN in the middle of epoch 1
        if info.epoch == 1 and info.step == 2:
            with torch.no_grad():
                model.fc.weight.fill_(float("nan"))

    # read at the epoch's end (step 8), the first logging point after the poisoned step 3
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 between steps 1 and 8 \(first at step "
                                                 r"3.*last good checkpoint is .*last.pt"):
        train(training_run(config, tmp_path, data=data, model=model, resume=True), on_step=poison)
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert after["epoch"] == 0
    for key in before:
        torch.testing.assert_close(after["model"][key], before[key])


def test_parameters_made_nan_after_the_last_loss_read_are_never_saved(tmp_path):
    """A gradient can overflow with a finite loss: the parameters turn NaN after the epoch's
    last read of the losses; the epoch's checkpoint is not written over the good one."""
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path, data=data, model=model))
    before = _parameters(tmp_path / "checkpoints" / "last.pt")
    config, data, model = _setup(["train.epochs=2"])

    def poison_after_the_last_read(info):
        if info.epoch == 1 and info.step == info.steps_in_epoch:
            with torch.no_grad():
                model.fc.weight.fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at the end of epoch 1 "
                                                 r"\(the losses were finite.*last.pt"):
        train(training_run(config, tmp_path, data=data, model=model, resume=True),
              on_step=poison_after_the_last_read)
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert after["epoch"] == 0
    for key in before:
        assert torch.equal(after["model"][key], before[key])


def test_ctrl_c_after_a_nan_loss_saves_nothing(tmp_path):
    """The steps are not checked one by one, but before any checkpoint is written: Ctrl-C after
    a NaN loss inside a logging interval must not save the parameters it stepped."""
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path, data=data, model=model))
    before = _parameters(tmp_path / "checkpoints" / "last.pt")
    config, data, model = _setup(["train.epochs=2"])

    def poison_then_interrupt(info):
        if info.epoch == 1 and info.step == 2:
            with torch.no_grad():
                model.fc.weight.fill_(float("nan"))
        if info.epoch == 1 and info.step == 4:
            raise KeyboardInterrupt

    with pytest.raises(NonFiniteLossError, match=r"between steps 1 and 4 \(first at step 3"):
        train(training_run(config, tmp_path, data=data, model=model, resume=True),
              on_step=poison_then_interrupt)
    after = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert (after["epoch"], after["step_in_epoch"]) == (0, 0)
    for key in before:
        assert torch.equal(after["model"][key], before[key])


class ListLabels(ColourVideos):
    """Labels kept as Python ints, so that reading a clip reads no tensor."""

    def __init__(self, count: int, seed: int) -> None:
        super().__init__(count, seed)
        self.label_list = self.labels.tolist()

    def __getitem__(self, i):
        return {"inputs": self.inputs[i], "label": self.label_list[i],
                "times": (torch.arange(N) + 0.5) / N}


def _host_reads(tmp_path, steps: int, log_every: int) -> int:
    """Reads of a tensor's value by the host in a whole run (as benchmarks/train_syncs.py counts:
    outside Optimizer.* ranges, nested reads once)."""
    from torch.profiler import ProfilerActivity, profile

    from datp.engine.step import HOST_READ

    reads = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero",
             HOST_READ}
    config, _, model = _setup(["train.epochs=1", "train.batch_size=2",
                               f"train.max_steps_per_epoch={steps}"])
    data = DataBundle(train=ListLabels(2 * steps, 0), test=None, classes=list("abc"))

    def counted(event):
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("Optimizer.") or parent.name in reads:
                return False
            parent = parent.cpu_parent
        return event.name in reads

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(training_run(config, tmp_path / f"{steps}-{log_every}", data=data, model=model),
              log_every=log_every)
    return sum(counted(event) for event in prof.events())


def test_the_steady_state_step_never_waits_for_the_device(tmp_path):
    """One read of the device per logging interval, none in a step (3 per step before)."""
    assert _host_reads(tmp_path, 12, 100) - _host_reads(tmp_path, 4, 100) == 0
    assert _host_reads(tmp_path, 12, 4) - _host_reads(tmp_path, 4, 4) == 2


def test_an_existing_run_is_never_overwritten(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path, data=data, model=model))
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(training_run(config, tmp_path, data=data, model=model))


def test_resume_refuses_every_change_that_alters_what_is_learned(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path, data=data, model=model))
    saved_config = (tmp_path / "config.toml").read_text()
    changes = ["train.lr=0.05", "train.optimizer=adamw", "pooling.num_gaussians=3",
               "data.num_segments=6", "train.lr_steps=[2]", "train.batch_size=4"]
    for change in changes:
        config, data, model = _setup(["train.epochs=2", change])
        key = change.split("=")[0]
        with pytest.raises(CheckpointError, match=rf"cannot resume.*{key}"):
            train(training_run(config, tmp_path, data=data, model=model, resume=True))
    # Another dataset whose classes differ (or come in another order) would permute the labels.
    config, data, model = _setup(["train.epochs=2"])
    permuted = DataBundle(train=data.train, test=data.test, classes=list("bac"))
    with pytest.raises(CheckpointError, match=r"classes: 3 \(a, b, c\) -> 3 \(b, a, c\)"):
        train(training_run(config, tmp_path, data=permuted, model=model, resume=True))
    assert (tmp_path / "config.toml").read_text() == saved_config  # the record is unchanged
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["epoch"] == 0


def test_resume_allows_and_records_changes_that_cannot_alter_the_result(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path, data=data, model=model))
    config, data, model = _setup(["train.epochs=2", "train.eval_every=2"])
    train(training_run(config, tmp_path, data=data, model=model, resume=True))
    record = json.loads((tmp_path / "run.json").read_text())
    (resumed,) = record["resumes"]
    assert resumed["after_epoch"] == 0
    assert resumed["changed"] == {"train.epochs": {"was": 1, "now": 2},
                                  "train.eval_every": {"was": 1, "now": 2}}
    assert "epochs = 2" in (tmp_path / "config.toml").read_text()


def test_resume_without_a_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(training_run(config, tmp_path / "new", data=data, model=model, resume=True))
    assert not (tmp_path / "new").exists()


def test_two_runs_of_one_config_are_identical_bit_for_bit(tmp_path):
    """The model is built from the config's seed, whatever the caller's random state."""
    from datp.data.synthetic import SynthConfig, generate
    from datp.engine.build import build_model
    from datp.engine.synthetic_runs import CONFIGS

    root = generate(SynthConfig(classes=3, videos_per_class=4, clips_per_group=2, frames=12,
                                height=24, width=24), tmp_path / "data")
    overrides = [f"data.root={root}", "data.image_size=24", "data.resize_short=24",
                 "data.num_segments=3", "data.test_segments=3", "data.workers=0",
                 "train.epochs=1", "train.batch_size=2", "train.device=cpu"]
    config = load_config(CONFIGS["rgb"], overrides)
    runs = []
    for name, caller_seed in (("a", 1), ("b", 2)):
        torch.manual_seed(caller_seed)  # what the caller did before must not matter
        from datp.engine.build import build_data_bundle

        data = build_data_bundle(config)
        model = build_model(config, num_classes=len(data.classes))
        train(training_run(config, tmp_path / name, data=data, model=model))
        runs.append(_parameters(tmp_path / name / "checkpoints" / "last.pt"))
    assert runs[0].keys() == runs[1].keys()
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


class Unreadable(Dataset):
    """A test split whose second video cannot be decoded, as a skipping dataset reports it."""

    def __init__(self, base: Dataset, *, skip: bool) -> None:
        self.base, self.skip = base, skip
        self.missing = ["testlist01.txt:9: file test/v9.avi does not exist"] if skip else []

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        if i == 1:
            if not self.skip:
                raise DataError("test/v1.avi: cannot decode frame 3 (truncated)")
            return SkippedVideo(video="test/v1.avi", reason="cannot decode frame 3")
        return {**self.base[i], "video": f"test/v{i}.avi"}


def test_an_unreadable_test_video_loses_no_training_and_is_counted_when_skipped(tmp_path):
    config, data, model = _setup(["train.epochs=2"])
    broken = DataBundle(train=data.train, test=Unreadable(data.test, skip=False),
                        classes=data.classes, collate=collate_videos)
    with pytest.raises(DataError, match="v1.avi"):
        train(training_run(config, tmp_path, data=broken, model=model))
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 0 and state["evaluation_pending"]  # epoch 0 was kept
    config, data, model = _setup(["train.epochs=2", "data.skip_bad_videos=true"])
    skipping = DataBundle(train=data.train, test=Unreadable(data.test, skip=True),
                          classes=data.classes, collate=collate_videos)
    metrics = train(training_run(config, tmp_path, data=skipping, model=model, resume=True))
    # one video unreadable, one named by the list but not on disk: both counted
    assert metrics["skipped_videos"] == 2 and metrics["videos"] == len(data.test) - 1
    evaluations = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text()
                   .splitlines() if json.loads(line)["kind"] == "eval"]
    assert [e["epoch"] for e in evaluations] == [0, 1]  # the pending evaluation ran first
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["evaluation_pending"] is False


def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path):
    import os
    import shutil
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        config, data, model = _setup(["train.epochs=1"])
        train(training_run(config, small / "run", data=data, model=model))
        before = _parameters(small / "run" / "checkpoints" / "last.pt")
        size = os.path.getsize(small / "run" / "checkpoints" / "last.pt")
        free = shutil.disk_usage(small).free
        (small / "filler").write_bytes(b"\0" * (free - size // 2))  # room for half a checkpoint
        config, data, model = _setup(["train.epochs=2"])
        with pytest.raises(WriteError, match=r"last.pt: cannot write the checkpoint: no space "
                                             r"left on the device \(the previous checkpoint is "
                                             r"intact\)"):
            train(training_run(config, small / "run", data=data, model=model, resume=True))
        after = _parameters(small / "run" / "checkpoints" / "last.pt")
        for key in before:
            assert torch.equal(before[key], after[key])
        assert not [p for p in (small / "run" / "checkpoints").iterdir() if p.suffix == ".tmp"]
    finally:
        subprocess.run(["umount", str(small)], check=False)


class NoisyColourVideos(ColourVideos):
    """Each item draws fresh noise from torch's generator, as a random crop or flip would."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return {**item, "inputs": item["inputs"] + 0.3 * torch.randn(item["inputs"].shape)}


def _noisy_setup(overrides=()):
    config, data, model = _setup(overrides)
    data = DataBundle(train=NoisyColourVideos(64, 0), test=ColourVideos(32, 1), classes=list("abc"))
    return config, data, model


def test_resume_after_ctrl_c_is_exact_with_loader_workers(tmp_path):
    """Item randomness follows (seed, epoch, item), not the worker that loads it, so a run
    resumed at a step that is not a multiple of the workers sees the same data, bit for bit."""
    workers = ["data.workers=2"]
    config, data, model = _noisy_setup(workers)
    train(training_run(config, tmp_path / "whole", data=data, model=model))

    def interrupt(info):
        if info.epoch == 1 and info.step == 3:
            raise KeyboardInterrupt

    config, data, model = _noisy_setup(workers)
    with pytest.raises(KeyboardInterrupt):
        train(training_run(config, tmp_path / "cut", data=data, model=model), on_step=interrupt)
    config, data, model = _noisy_setup(["data.workers=1"])  # workers may change on resume
    train(training_run(config, tmp_path / "cut", data=data, model=model, resume=True))
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole:
        assert torch.equal(cut[key], whole[key]), key


class SignalAt(nn.Module):
    """The model, with a real signal delivered inside its n-th training forward: ``sig`` sent
    ``repeat`` times to this process, or to its whole process group (``group``: as Slurm
    signals every process of a job, loader workers included)."""

    def __init__(self, model: nn.Module, call: int, sig: int = signal.SIGINT, *,
                 repeat: int = 1, group: bool = False) -> None:
        super().__init__()
        self.model, self.call, self.calls = model, call, 0
        self.sig, self.repeat, self.group = sig, repeat, group

    @property
    def pooling(self):
        return self.model.pooling

    def forward(self, inputs, times):
        self.calls += self.training
        if self.training and self.calls == self.call:
            for _ in range(self.repeat):
                if self.group:
                    os.killpg(os.getpgrp(), self.sig)
                else:
                    os.kill(os.getpid(), self.sig)
        return self.model(inputs, times)


@pytest.mark.parametrize(("sig", "repeat", "stopped"), [
    (signal.SIGINT, 1, KeyboardInterrupt),
    (signal.SIGTERM, 1, TrainingStopped),
    (signal.SIGUSR1, 1, TrainingStopped),
    (signal.SIGTERM, 2, TrainingStopped),  # a repeated stop signal does not break the step
], ids=["ctrl-c", "sigterm", "sigusr1", "sigterm-twice"])
def test_a_signal_inside_a_step_stops_after_it_and_resume_is_exact(tmp_path, sig, repeat, stopped):
    config, data, model = _setup()
    train(training_run(config, tmp_path / "whole", data=data, model=model))
    steps_per_epoch = 64 // 8
    config, data, model = _setup()
    handler = signal.getsignal(sig)
    with pytest.raises(stopped) as raised:  # the 3rd step of epoch 1
        signalling = SignalAt(model, steps_per_epoch + 3, sig, repeat=repeat)
        train(training_run(config, tmp_path / "cut", data=data, model=signalling), on_step=None)
    assert raised.type is stopped
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)  # the step it was in finished
    assert signal.getsignal(sig) is handler  # restored
    config, data, model = _setup()
    train(training_run(config, tmp_path / "cut", data=data, model=SignalAt(model, 0), resume=True))
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = {k.removeprefix("model."): v
           for k, v in _parameters(tmp_path / "cut" / "checkpoints" / "last.pt").items()}
    for key in whole:
        assert torch.equal(cut[key], whole[key]), key


def test_a_signal_in_the_last_step_of_an_epoch_keeps_that_epoch(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path / "whole", data=data, model=SignalAt(model, 0)))
    config, data, model = _setup(["train.epochs=1"])
    with pytest.raises(TrainingStopped):
        signalling = SignalAt(model, 64 // 8, signal.SIGTERM)
        train(training_run(config, tmp_path / "cut", data=data, model=signalling))
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (-1, 8, 8)
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path / "cut", data=data, model=SignalAt(model, 0), resume=True))
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole:
        assert torch.equal(cut[key], whole[key]), key


def _signal_at_first_call(function, sig=signal.SIGTERM):
    """``function``, sending ``sig`` to this process at its first call on a checkpoint (a call
    without a path, or on a path of ``last.pt``), before running."""
    calls = []

    def wrapped(*args, **kwargs):
        paths = [str(a) for a in args if isinstance(a, str | Path)]
        if not calls and (not paths or any("last.pt" in p for p in paths)):
            calls.append(1)
            os.kill(os.getpid(), sig)
        return function(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("stage", ["checking", "writing", "syncing", "renaming"])
def test_a_stop_during_the_end_of_epoch_save_lets_it_finish_and_keeps_the_epoch(
        tmp_path, monkeypatch, stage):
    """SIGTERM at each stage of the first checkpoint's write (the parameters checked, the file
    written, synced, renamed into place): the write finishes, the run stops right after it with
    the epoch it had finished saved, and resuming does not redo that epoch."""
    import datp.checkpoint
    import datp.engine.train

    config, data, model = _setup(["train.epochs=2"])
    train(training_run(config, tmp_path / "whole", data=data, model=model))
    config, data, model = _setup(["train.epochs=2"])
    target = {"checking": (datp.engine.train, "all_finite"), "writing": (torch, "save"),
              "syncing": (datp.checkpoint, "fsync_file"), "renaming": (os, "replace")}[stage]
    with monkeypatch.context() as patch:
        patch.setattr(*target, _signal_at_first_call(getattr(*target)))
        with pytest.raises(TrainingStopped):
            train(training_run(config, tmp_path / "cut", data=data, model=model))
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 0, 8)
    assert state["evaluation_pending"]  # epoch 0's evaluation had not run: it runs first
    steps = []
    config, data, model = _setup(["train.epochs=2"])
    train(training_run(config, tmp_path / "cut", data=data, model=model, resume=True),
          on_step=lambda info: steps.append((info.epoch, info.step)))
    assert steps[0] == (1, 1)  # epoch 0 was not trained again
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole:
        assert torch.equal(cut[key], whole[key]), key


def test_stop_signals_are_named_and_checked():
    assert stop_signals("TERM,usr1") == (signal.SIGTERM, signal.SIGUSR1)
    assert stop_signals("SIGUSR2, SIGTERM,TERM") == (signal.SIGUSR2, signal.SIGTERM)
    assert stop_signals("none") == ()
    for wrong in ("INT", "KILL", "CHLD", "SEGV", "TREM", ""):
        with pytest.raises(ValueError, match="cannot stop a run; choose among TERM, USR1"):
            stop_signals(wrong)


def test_resume_auto_starts_a_new_run_then_resumes_it(tmp_path):
    config, data, model = _setup(["train.epochs=1"])
    train(training_run(config, tmp_path / "auto", data=data, model=model, resume="auto"))
    config, data, model = _setup()
    train(training_run(config, tmp_path / "auto", data=data, model=model, resume="auto"))
    config, data, model = _setup()
    train(training_run(config, tmp_path / "whole", data=data, model=model))
    assert json.loads((tmp_path / "auto" / "run.json").read_text())["resumes"][0][
        "after_epoch"] == 0
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    auto = _parameters(tmp_path / "auto" / "checkpoints" / "last.pt")
    for key in whole:
        assert torch.equal(auto[key], whole[key]), key
    config, data, model = _setup(["train.epochs=4", "train.lr=0.05"])
    with pytest.raises(CheckpointError, match=r"cannot resume.*train.lr"):
        train(training_run(config, tmp_path / "auto", data=data, model=model, resume="auto"))


def _synthetic(root: Path) -> Path:
    from datp.data.synthetic import SynthConfig, generate

    return generate(SynthConfig(classes=3, videos_per_class=4, clips_per_group=2, frames=12,
                                height=24, width=24), root)


def _real_config(root: Path, overrides=()):
    from datp.engine.synthetic_runs import CONFIGS

    return load_config(CONFIGS["rgb"], [
        f"data.root={root}", "data.image_size=24", "data.resize_short=24",
        "data.num_segments=3", "data.test_segments=3", "train.epochs=1",
        "train.batch_size=2", "train.device=cpu", *overrides])


def test_the_number_of_loader_workers_does_not_change_what_is_learned(tmp_path):
    """A batch collated in this process keeps its items' memory layout, one collated by a worker
    is contiguous; the model runs in one layout whatever it gets, so the sums are the same. A
    run interrupted with 0 workers and resumed with 2 ends there too."""
    from datp.engine.build import build_data_bundle, build_model

    def run(name: str, workers: int, *, resume: bool = False, **kwargs) -> None:
        config = _real_config(root, [f"data.workers={workers}"])
        data = build_data_bundle(config)
        model = build_model(config, num_classes=len(data.classes))
        train(training_run(config, tmp_path / name, data=data, model=model, resume=resume),
              **kwargs)

    def interrupt(info):
        if info.step == 1:
            raise KeyboardInterrupt

    root = _synthetic(tmp_path / "data")
    run("w0", 0)
    run("w2", 2)
    with pytest.raises(KeyboardInterrupt):
        run("w0_then_2", 0, on_step=interrupt)
    run("w0_then_2", 2, resume=True)
    runs = [_parameters(tmp_path / name / "checkpoints" / "last.pt")
            for name in ("w0", "w2", "w0_then_2")]
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key
        assert torch.equal(runs[0][key], runs[2][key]), key


def test_datp_train_refuses_signals_that_cannot_stop_a_run(tmp_path, capsys):
    from datp.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "--out", str(tmp_path), "--stop-signals", "TERM,KILL"])
    assert exited.value.code == 2
    assert "--stop-signals: stop signals 'TERM,KILL': KILL cannot stop a run" in (
        capsys.readouterr().err)


CHILD = """
import signal, sys
import datp.engine.build
from datp.cli import main
from tests.engine.test_train import SignalAt

build, call = datp.engine.build.build_model, int(sys.argv[1])
datp.engine.build.build_model = lambda *a, **k: SignalAt(build(*a, **k), call, signal.SIGTERM,
                                                         group=True)
sys.exit(main(sys.argv[2:]))
"""


def _datp_train(config: Path, out: Path, *, signal_at: int = 0) -> subprocess.CompletedProcess:
    """``datp train CONFIG --out OUT --resume auto`` in its own process group, with SIGTERM sent
    to the whole group (loader workers too) inside its ``signal_at``-th training forward."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(signal_at), "train", str(config), "--out", str(out),
         "--resume", "auto", "--no-progress"],
        capture_output=True, text=True, cwd=config.parent, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(root)}, timeout=600,
    )


@pytest.mark.slow
def test_sigterm_to_every_process_of_the_job_saves_and_resume_auto_is_exact(tmp_path):
    """As Slurm stops a job: SIGTERM to datp train and its loader workers, in the middle of a
    step of epoch 1. The step finishes, last.pt holds its position, the exit status is 75, and
    the same command line (--resume auto) ends where the uninterrupted run ends."""
    root = _synthetic(tmp_path / "data")
    config = tmp_path / "rgb.toml"
    config.write_text(
        f'[data]\nroot = "{root}"\nimage_size = 24\nresize_short = 24\nnum_segments = 3\n'
        'test_segments = 3\nworkers = 2\n[train]\nepochs = 2\nbatch_size = 2\n'
        'lr_steps = [1]\ndevice = "cpu"\n'
    )
    whole = _datp_train(config, tmp_path / "whole")  # --resume auto on a new folder: a new run
    assert whole.returncode == 0, whole.stderr
    steps_per_epoch = 6 // 2
    cut = _datp_train(config, tmp_path / "cut", signal_at=steps_per_epoch + 2)
    assert cut.returncode == 75, cut.stderr
    assert "stopped by SIGTERM; continue with --resume" in cut.stderr.splitlines()[-1]
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 2)
    resumed = _datp_train(config, tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    whole_state = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut_state = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole_state:
        assert torch.equal(cut_state[key], whole_state[key]), key


class ShortVideos(ColourVideos):
    """Items that say how many frames their video has: every fourth has fewer than N."""

    def __getitem__(self, i):
        return {**super().__getitem__(i), "video": f"v{i}.avi",
                "num_frames": 1 if i % 4 == 0 else 30}


def test_a_video_shorter_than_its_segments_is_logged_once(tmp_path, caplog):
    config, _, model = _setup(["train.epochs=2"])
    data = DataBundle(train=ShortVideos(16, 0), test=None, classes=list("abc"))
    with caplog.at_level(logging.WARNING, logger="datp.engine.train"):
        train(training_run(config, tmp_path, data=data, model=model))
    warned = [r.getMessage() for r in caplog.records if "too few for" in r.getMessage()]
    assert sorted(warned) == sorted(
        f"v{i}.avi: 1 frames, too few for 10 segments of 1: frames repeat" for i in range(0, 16, 4)
    )  # each short video once, over both epochs


def _ranks_worker(rank: int, world_size: int, port: int, run_dir: str, signal_at: int,
                  resume: bool) -> None:
    """One of two gloo processes (as torchrun starts them); rank 1 gets SIGTERM inside its
    ``signal_at``-th training forward, rank 0 none."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import datp.engine.train

    datp.engine.train.STOP_CHECK_EVERY = 2
    config, data, model = _setup(["train.epochs=2", "train.batch_size=4"])
    model = SignalAt(model, signal_at if rank == 1 else 0, signal.SIGTERM)
    try:
        train(training_run(config, run_dir, data=data, model=model, resume=resume))
        outcome = "done"
    except TrainingStopped as stop:
        outcome = f"stopped by {stop.signal_name} at {model.calls}"
    Path(run_dir, f"rank{rank}.txt").write_text(outcome)


@pytest.mark.slow
def test_under_torchrun_every_process_stops_after_the_same_step_and_resume_is_exact(tmp_path):
    """SIGTERM reaches one process only (or each at another moment): they compare requests every
    STOP_CHECK_EVERY steps, stop together, rank 0 writes one checkpoint, and resuming with two
    processes ends where the uninterrupted run ends."""
    import torch.multiprocessing as mp

    from tests.test_distributed import _free_port

    def spawn(run_dir: Path, signal_at: int = 0, resume: bool = False) -> list[str]:
        mp.spawn(_ranks_worker, args=(2, _free_port(), str(run_dir), signal_at, resume),
                 nprocs=2, join=True)
        return [(run_dir / f"rank{rank}.txt").read_text() for rank in range(2)]

    assert spawn(tmp_path / "whole") == ["done", "done"]
    steps_per_epoch = 64 // 2 // 4
    outcome = spawn(tmp_path / "cut", signal_at=steps_per_epoch + 3)  # in the 3rd step of epoch 1
    # both stop after the 4th step, the first where they compare (every 2 steps)
    assert outcome == [f"stopped by a stop signal to another process at {steps_per_epoch + 4}",
                       f"stopped by SIGTERM at {steps_per_epoch + 4}"]
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 4)
    assert spawn(tmp_path / "cut", resume=True) == ["done", "done"]
    whole = _parameters(tmp_path / "whole" / "checkpoints" / "last.pt")
    cut = _parameters(tmp_path / "cut" / "checkpoints" / "last.pt")
    for key in whole:
        assert torch.equal(cut[key], whole[key]), key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_training_step_holds_the_host_nowhere(tmp_path):
    """What CUDA's sync debug mode warns of (blocking copies too): none more with more steps,
    when no logging interval falls between (uint8 clips from pinned memory, normalized there)."""
    import warnings

    def warned(steps):
        config, _, model = _setup(["train.epochs=1", "train.batch_size=2", "train.device=cuda",
                                   f"train.max_steps_per_epoch={steps}"])
        data = DataBundle(train=ListLabels(2 * steps, 0), test=None, classes=list("abc"))
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train(training_run(config, tmp_path / str(steps), data=data, model=model),
                      log_every=100)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert warned(12) == warned(4)


def test_a_blank_step_leaves_batch_norm_statistics_as_they_were():
    """The zero clip a torchrun process steps on when its whole batch was unreadable must not
    move the running means that DDP then broadcasts to every process."""
    from datp.engine.step import statistics_kept as _statistics_kept

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    model(torch.randn(2, 3, 8, 8))
    before = [b.clone() for b in model[1].buffers()]
    with _statistics_kept(model):
        model(torch.zeros(2, 3, 8, 8))
    assert torch.equal(model[1].running_mean, before[0])
    assert torch.equal(model[1].running_var, before[1])
    assert model[1].momentum == 0.1


def test_a_resumed_run_never_reads_its_pretrained_file(tmp_path):
    """A requeued job on a node without the pretrained file (or the hub cache) still resumes:
    the parameters come from the checkpoint."""
    import torchvision

    from datp.cli import main
    from datp.engine.synthetic_runs import CONFIGS

    root = _synthetic(tmp_path / "data")
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    settings = [f"data.root={root}", "data.image_size=24", "data.resize_short=24",
                "data.num_segments=2", "data.test_segments=2", "train.batch_size=4",
                "data.workers=0", "model.backbone=resnet18", f"model.pretrained={weights}"]
    args = ["train", str(CONFIGS["rgb"]), "--out", str(tmp_path / "run"), "--no-progress"]
    for setting in settings:
        args += ["--set", setting]
    assert main([*args, "--set", "train.epochs=1"]) == 0
    weights.unlink()
    assert main([*args, "--set", "train.epochs=2", "--resume", "auto"]) == 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1


class PidVideos(ColourVideos):
    """ColourVideos that note which process loaded each item, one line each, in ``log``."""

    def __init__(self, count: int, seed: int, log: Path) -> None:
        super().__init__(count, seed)
        self.log = log

    def __getitem__(self, i):
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return super().__getitem__(i)


def test_loader_workers_are_kept_across_epochs(tmp_path):
    """Two epochs are loaded by the same two worker processes (no fork per epoch); what they
    load is what fresh workers would (the worker-count and resume tests above hold it bit for
    bit)."""
    config, _, model = _setup(["train.epochs=2", "train.eval_every=0"])
    data = DataBundle(train=PidVideos(64, 0, tmp_path / "pids.txt"), test=None,
                      classes=list("abc"), collate=None, workers=2)
    train(training_run(config, tmp_path / "run", data=data, model=model))
    pids = (tmp_path / "pids.txt").read_text().split()
    assert len(pids) == 128 and os.getpid() not in map(int, pids)
    assert set(pids[:64]) == set(pids[64:]) and len(set(pids)) == 2
