import subprocess
import sys

import pytest

from datp.cli import COMMANDS, build_parser


def test_every_command_builds_its_parser():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_module_entry_point_prints_help():
    done = subprocess.run(
        [sys.executable, "-m", "datp", "--help"], capture_output=True, text=True, check=True
    )
    for name in COMMANDS:
        assert name in done.stdout


def test_help_starts_with_a_sentence_for_users_and_says_what_errors_look_like(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    description = text.split("\n\n")[1]  # after the usage line
    assert description.startswith("datp trains and evaluates video action recognition models")
    assert "literal table" not in text and "exit\nstatus 2" in text
