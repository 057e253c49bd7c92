"""Progress: a bar on a terminal, a few lines in a log."""

from __future__ import annotations

import io

from datp.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_twentieth_not_one_per_step():
    log = io.StringIO()
    with Progress(1000, desc="evaluate", unit="video", stream=log, every_seconds=1e9) as bar:
        for _ in range(1000):
            bar.update(1, loss=0.25)
    lines = log.getvalue().splitlines()
    assert len(lines) == 20
    assert "\r" not in log.getvalue()
    assert lines[0].startswith("evaluate: 50/1000 video (5 %)") and "loss 0.25" in lines[0]
    assert lines[-1].startswith("evaluate: 1000/1000 video (100 %)")


def test_the_last_count_is_always_written_and_callbacks_set_totals():
    log = io.StringIO()
    bar = Progress(None, desc="check", unit="video", stream=log, every_seconds=1e9)
    bar.callback(3, 7)
    bar.close()
    assert log.getvalue().splitlines() == [log.getvalue().splitlines()[-1]]
    assert log.getvalue().startswith("check: 3/7 video (43 %)")


def test_a_terminal_gets_a_bar_and_disabled_progress_writes_nothing():
    terminal = FakeTerminal()
    with Progress(10, desc="train", stream=terminal) as bar:
        bar.update(10)
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()
    quiet = io.StringIO()
    with Progress(10, desc="train", stream=quiet, enabled=False) as bar:
        bar.update(10)
        bar.close()
    assert quiet.getvalue() == ""


def test_write_can_send_results_to_another_stream_than_the_bar():
    for stream in (io.StringIO(), FakeTerminal()):
        out = io.StringIO()
        with Progress(2, desc="check", stream=stream, every_seconds=1e9) as bar:
            bar.write("x.avi: error: cannot open", file=out)
            bar.update(2)
        assert out.getvalue() == "x.avi: error: cannot open\n"
        assert "x.avi" not in stream.getvalue() and "2/2" in stream.getvalue()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_rate_is_shown_only_once_it_rests_on_time_and_units():
    log, clock = io.StringIO(), Clock()
    # As datp train opens its bar: at the first step's callback, the step already done.
    bar = Progress(100, desc="epoch 0", unit="step", stream=log, every_fraction=0.01,
                   every_seconds=1e9, clock=clock)
    clock.now += 0.0002
    bar.set(1, loss=0.5)
    clock.now += 0.5
    bar.set(2)
    clock.now += 1.5
    bar.set(5)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0] == "epoch 0: 1/100 step (1 %) loss 0.5"  # not "5000.0 step/s"
    assert lines[1] == "epoch 0: 2/100 step (2 %) loss 0.5"  # 0.5 s: too short to say
    assert lines[2] == "epoch 0: 5/100 step (5 %), 2.0 step/s loss 0.5"  # 4 steps in 2 s


def test_a_terminal_bar_counts_its_first_count_as_where_it_starts():
    terminal = FakeTerminal()
    with Progress(10_000, desc="evaluate", unit="video", stream=terminal) as bar:
        bar.callback(5_000, 10_000)  # a count reported the moment the bar opens
    shown = terminal.getvalue().split("\r")[-1]
    assert "5000/10000" in shown and "?video/s" in shown


def test_a_slow_rate_is_written_in_seconds_per_unit():
    from datp.progress import speed_text

    log, clock = io.StringIO(), Clock()
    bar = Progress(10, desc="epoch 0", unit="step", stream=log, every_fraction=0.1,
                   every_seconds=1e9, clock=clock)
    bar.set(1)
    clock.now += 24.0
    bar.set(3)  # 2 steps in 24 s: 12 s a step, which "0.1 step/s" would hide
    bar.close()
    assert log.getvalue().splitlines()[-1] == "epoch 0: 3/10 step (30 %), 12.0 s/step"
    assert speed_text(2.5, "video") == "2.5 video/s" and speed_text(0.25, "video") == "4.0 s/video"


def test_datp_trains_bar_shows_no_loss_before_the_device_is_read(tmp_path, capsys):
    """Steps before the first read of the device (every 10 steps, and at the epoch's end: here
    its 8th step) show "-", not a loss of 0 read from nowhere."""
    from datp.cli import main
    from datp.data.synthetic import SynthConfig, generate

    root = generate(SynthConfig(classes=2, videos_per_class=6, clips_per_group=2, frames=8,
                                height=16, width=16), tmp_path / "data")
    assert main(["train", "--out", str(tmp_path / "run"), "--set", f"data.root={root}",
                 "--set", "model.backbone=small_cnn", "--set", "model.partial_bn=false",
                 "--set", "data.image_size=16", "--set", "data.resize_short=16",
                 "--set", "data.num_segments=2", "--set", "data.test_segments=2",
                 "--set", "data.workers=0", "--set", "train.epochs=1",
                 "--set", "train.batch_size=1", "--set", "train.lr_steps=[]",
                 "--set", "train.device=cpu"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("epoch 0: ")]
    before = [line for line in lines if not line.split()[2].startswith("8/")]
    assert before and all("loss - acc -" in line for line in before), lines
    assert "loss -" not in lines[-1] and lines[-1].startswith("epoch 0: 8/8 step"), lines
