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
