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
