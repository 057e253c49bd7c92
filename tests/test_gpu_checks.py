"""benchmarks/gpu_checks.sh runs the plan of benchmarks/gpu_plan.py on the GPU image (torch,
torchvision, Python 3.12; no PyAV, no OpenCV contrib, no zstandard). Here: the plan's arithmetic
and its driver with a fake device, the real runner on a tiny script, and every planned script
importing (and the loader step running on the CPU) with those three modules hidden. A subprocess
hides them as the image lacks them (``sys.modules[name] = None`` makes ``import name`` fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_plan
from benchmarks.gpu_plan import (
    BUDGET,
    LEASE,
    PLAN,
    RERUN_BUDGET,
    Outcome,
    StepRun,
    lease_seconds,
    parse_figures,
    planned_seconds,
    rerun_command,
    run_plan,
    select,
    summary,
)

ROOT = Path(__file__).resolve().parents[1]
MISSING_ON_THE_IMAGE = ("av", "cv2", "zstandard")

HIDE = f"""
import runpy, sys
for name in {MISSING_ON_THE_IMAGE!r}:
    sys.modules[name] = None
for name in {MISSING_ON_THE_IMAGE!r}:
    try:
        __import__(name)
    except ImportError:
        continue
    raise SystemExit(f"{{name}} was not hidden")
script, *arguments = sys.argv[1:]
sys.argv = [script, *arguments]
sys.path.insert(0, str(__import__("pathlib").Path(script).parent))  # as `python script` does
runpy.run_path(script, run_name="__main__")
"""


def _run_hidden(arguments: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-c", HIDE, *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


class FakeDevice:
    """A device on which every step takes its whole limit (the worst case) and prints a value
    for each of its goal figures, unless told to fail, hang or stay silent."""

    def __init__(self, *, fail: str = "", hang: str = "") -> None:
        self.now = 0.0
        self.fail, self.hang = fail, hang
        self.limits: dict[str, int] = {}

    def clock(self) -> float:
        return self.now

    def run(self, step, limit, say) -> StepRun:
        self.limits[step.name] = limit
        self.now += limit
        lines = [f"FIGURE {goal.figure} {i + 1.5} unit" for i, goal in enumerate(step.goals)]
        if step.name == self.fail:
            return StepRun(1, ["Traceback (most recent call last):", '  File "x.py"',
                               "RuntimeError: CUDA error: out of memory"])
        if step.name == self.hang:
            return StepRun(None, lines[:1])  # one figure printed, then killed at its limit
        return StepRun(0, ["some other line", *lines])


def _with_every_script(monkeypatch, tmp_path) -> Path:
    """A root where the reserved scripts exist too (to run every step on the fake device)."""
    for step in PLAN:
        (tmp_path / step.script).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / step.script).write_text("")
    return tmp_path


def test_the_plan_fits_its_budget_and_leaves_a_rerun_in_the_lease(capsys):
    assert BUDGET <= 400
    assert planned_seconds(PLAN) <= BUDGET
    assert lease_seconds() <= LEASE  # a fresh start, the first call, the rerun, their overheads
    assert len({step.name for step in PLAN}) == len(PLAN)
    assert PLAN[0].name == "train_step_compiled"  # the most important figures first
    repo = Path(__file__).resolve().parents[1]
    assert all((repo / step.script).is_file() or step.reserved_for for step in PLAN)
    with capsys.disabled():  # the planned time against the budget, for BENCHMARKS.md
        print("\n" + "\n".join(gpu_plan.plan_table(PLAN, BUDGET)))


def test_on_a_fake_device_every_step_gets_its_limit_and_every_goal_figure_is_kept(
        monkeypatch, tmp_path):
    root = _with_every_script(monkeypatch, tmp_path)
    device = FakeDevice()
    outcomes = run_plan(PLAN, budget=BUDGET - gpu_plan.PREAMBLE, runner=device.run,
                        say=lambda line: None, clock=device.clock, root=root,
                        has_module=lambda name: True)
    assert device.limits == {step.name: step.limit for step in PLAN}  # none cut by the budget
    assert device.now <= BUDGET - gpu_plan.PREAMBLE
    assert [o.status for o in outcomes] == ["measured"] * len(PLAN)
    table = "\n".join(summary(outcomes))
    for step in PLAN:
        for goal in step.goals:
            assert f"| {goal.figure} |" in table
    assert "not printed" not in table and "skipped" not in table
    assert rerun_command(outcomes) is None


def test_one_failure_or_time_out_loses_only_its_own_figures(monkeypatch, tmp_path):
    root = _with_every_script(monkeypatch, tmp_path)
    device = FakeDevice(fail="decode_race", hang="loader_step")
    outcomes = {o.step.name: o for o in run_plan(
        PLAN, budget=BUDGET, runner=device.run, say=lambda line: None, clock=device.clock,
        root=root, has_module=lambda name: True)}
    assert outcomes["decode_race"].status == "failed"
    assert outcomes["decode_race"].reason == "RuntimeError: CUDA error: out of memory"
    assert outcomes["loader_step"].status == "timed out"
    assert list(outcomes["loader_step"].figures) == ["loader_vs_step_pct"]  # printed in time
    assert all(o.status == "measured" for name, o in outcomes.items()
               if name not in ("decode_race", "loader_step"))
    table = summary(list(outcomes.values()))
    assert any("decode_race_datp_baseline" in row and "failed: RuntimeError" in row
               for row in table)
    assert any("| loader_vs_step_pct |" in row and "1.5 %" not in row for row in table)
    assert any("| fed_vs_step_pct |" in row and "timed out after 50 s" in row for row in table)
    command = rerun_command(list(outcomes.values()))
    assert command.endswith("--only decode_race:45,loader_step:100")
    assert f"--budget {RERUN_BUDGET}" in command


def test_a_missing_script_is_skipped_at_no_cost_and_a_short_budget_skips_the_rest_for_time():
    device = FakeDevice()
    later = gpu_plan.Step("not_yet", "a step whose script is not written yet", 10,
                          "benchmarks/not_yet.py", (), (gpu_plan.Goal("not_yet_s"),),
                          reserved_for="issue 99")
    plan = (*PLAN[:2], later, *PLAN[2:])
    budget = PLAN[0].limit + PLAN[1].limit + 10  # room for two steps and a little
    outcomes = run_plan(plan, budget=budget, runner=device.run, say=lambda line: None,
                        clock=device.clock, has_module=lambda name: True)
    status = {o.step.name: (o.status, o.reason) for o in outcomes}
    assert status["not_yet"] == ("skipped", "benchmarks/not_yet.py does not exist yet (issue 99)")
    assert "not_yet" not in device.limits
    assert [o.status for o in outcomes[:2]] == ["measured", "measured"]
    assert all(o.reason.startswith("no time left") for o in outcomes[3:]
               if not o.step.reserved_for)
    command = rerun_command(outcomes)
    assert "loader_step" in command and "not_yet" not in command
    rerun = select(PLAN, command.split("--only ")[1])
    # Six steps left for the rerun fit but for the last (skipped for time again at worst).
    assert planned_seconds(rerun[:-1]) <= RERUN_BUDGET + gpu_plan.PREAMBLE < planned_seconds(rerun)


def test_a_step_whose_module_is_not_there_is_skipped_at_no_cost_saying_which():
    device = FakeDevice()
    (needy,) = [s for s in PLAN if s.needs]
    outcomes = run_plan([PLAN[0], needy], budget=BUDGET, runner=device.run,
                        say=lambda line: None, clock=device.clock,
                        has_module=lambda name: name != "av")
    assert [o.status for o in outcomes] == ["measured", "skipped"]
    assert outcomes[1].reason.startswith("needs av: carry its wheel")
    assert needy.name not in device.limits


def test_figures_are_read_from_their_lines_only():
    lines = ["FIGURE a_b 12.5 pairs/s", "noise FIGURE x 1", "FIGURE c -3e-2", "FIGURE d nan %",
             "FIGURE e twelve units", "  FIGURE f 7 ms  "]
    figures = parse_figures(lines)
    assert figures["a_b"] == (12.5, "pairs/s") and figures["c"] == (-0.03, "")
    assert figures["f"] == (7.0, "ms") and "x" not in figures and "e" not in figures
    assert figures["d"][1] == "%"


def test_select_keeps_the_plans_order_and_takes_new_limits():
    chosen = select(PLAN, "loader_step:90,train_step_compiled")
    assert [s.name for s in chosen] == ["train_step_compiled", "loader_step"]
    assert chosen[1].limit == 90 and chosen[0].limit == PLAN[0].limit
    with pytest.raises(SystemExit, match="unknown step"):
        select(PLAN, "no_such_step")


def test_the_real_runner_keeps_what_was_printed_and_kills_the_group_at_the_limit(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import subprocess, sys, time\n"
                      "child = subprocess.Popen([sys.executable, '-c', "
                      "'import time; time.sleep(60)'])\n"
                      "print(child.pid, flush=True)\n"
                      "print('FIGURE early 3 s', flush=True)\n"
                      "time.sleep(60)\n")
    step = gpu_plan.Step("slow", "a step that hangs", 2, str(script), (), ())
    said = []
    done = gpu_plan.subprocess_runner(step, 2, said.append)
    assert done.returncode is None and said == done.lines
    assert parse_figures(done.lines) == {"early": (3.0, "s")}
    child = int(done.lines[0])
    with pytest.raises(ProcessLookupError):  # the step's own child went with it
        for _ in range(50):
            os.kill(child, 0)
            __import__("time").sleep(0.1)


def test_gpu_checks_sh_runs_the_plan_and_says_how_to_rerun():
    text = (ROOT / "benchmarks" / "gpu_checks.sh").read_text()
    assert "benchmarks/gpu_plan.py run" in text
    assert "--budget 200 --only" in text and str(RERUN_BUDGET) in text


@pytest.mark.parametrize("script", sorted({s.script for s in PLAN if not s.reserved_for}))
def test_each_planned_script_imports_without_av_cv2_and_zstandard(script):
    assert (ROOT / script).is_file()
    done = _run_hidden([script, "--help"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "usage:" in done.stdout


def test_a_hidden_module_is_caught(tmp_path):
    """The check can fail: a script that imports OpenCV at its top does not import here."""
    script = tmp_path / "uses_cv2.py"
    script.write_text("import argparse\nimport cv2\nargparse.ArgumentParser().parse_args()\n")
    done = _run_hidden([str(script), "--help"])
    assert done.returncode != 0 and "cv2" in done.stderr


def test_the_loader_step_runs_on_the_cpu_without_av_cv2_and_zstandard():
    """The plan's loader step at a tiny size, with the CPU for the GPU: its FIGURE lines."""
    (step,) = [s for s in PLAN if s.name == "loader_step"]
    arguments = [a if a != "cuda" else "cpu" for a in step.arguments if a != "--compile"]
    arguments += ["--classes", "2", "--videos-per-class", "2", "--frames", "6", "--segments",
                  "2", "--size", "32", "--batch", "2", "--workers", "1", "--repeats", "1",
                  "--seconds", "0.1"]
    done = _run_hidden([step.script, *arguments])
    assert done.returncode == 0, done.stderr[-3000:]
    figures = parse_figures(done.stdout.splitlines())
    assert {goal.figure for goal in step.goals} <= set(figures)


def test_every_benchmark_script_imports():
    """A benchmark a later change broke fails here, not on the day its figure is wanted: every
    script's module loads (in one process: one torch import), its main left unrun."""
    code = ("import importlib, sys\n"
            "for path in sys.argv[1:]:\n"
            "    importlib.import_module('benchmarks.' + path)\n")
    names = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py"))
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_outcome_without_its_figure_says_so():
    step = PLAN[0]
    table = summary([Outcome(step, "measured", figures={})])
    assert all("not printed" in row for row in table[2:2 + len(step.goals)])
