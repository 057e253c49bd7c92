"""The plan of ``benchmarks/gpu_checks.sh``, and the driver that runs it: every GPU measurement a
step with a time limit and the goal figures it prints, run most important first inside a budget,
every line kept, and a summary of every goal figure at the end.

    python3 benchmarks/gpu_plan.py run                     # what gpu_checks.sh runs: 400 s
    python3 benchmarks/gpu_plan.py run --budget 200 --only train_step_compiled:190
    python3 benchmarks/gpu_plan.py plan                    # the steps, their limits, the budget

Figures: a step's script prints one line ``FIGURE <name> <value> <unit>`` per figure, the moment
it is measured; the summary is built from those lines alone. Every line the steps print goes to
this process's output and, when ``$OUT`` is set (the device machine's folder that comes back
whole), to ``$OUT/gpu_checks.log``; the figures also go to ``$OUT/gpu_figures.jsonl`` and the
summary to ``$OUT/gpu_summary.md``, so a long log cut to its last 12,000 characters loses none.

Each step runs in a process group of its own, killed at its limit (what it printed before stays);
a step whose script does not exist yet (a slot another issue fills) is skipped with that reason
at no cost; a step left with fewer than :data:`MIN_START` seconds is skipped for time. The
summary ends with the command that reruns what failed or did not run, in :data:`RERUN_BUDGET`
seconds: the two calls fit in one 15-minute lease (see :func:`lease_seconds`).

Adding a step: append a :class:`Step` to :data:`PLAN` where its importance puts it, with a limit
that keeps ``planned_seconds(PLAN) <= BUDGET`` (tests/test_gpu_checks.py checks it with a fake
device), and have its script print its ``FIGURE`` lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUDGET = 400
"""Seconds for the whole first call (preamble included): with the machine's start and the rerun
below, within one 15-minute lease."""
RERUN_BUDGET = 200
"""Seconds for the second, short call that reruns what the first left without figures."""
PREAMBLE = 15
"""Seconds kept for the preamble (the GPU's name, versions) before the first step."""
MIN_START = 20
"""A step with fewer seconds left than this is skipped for time."""
LEASE = 900
"""One session's device time: 15 minutes, the machine's start and idle time included."""
START_ALLOWANCE = 150
"""The worst start of a fresh machine seen (1 to 2 minutes), with the first transfer."""
CALL_OVERHEAD = 30
"""Per call: sending the tree, fetching $OUT, the warm wait before the next call."""


@dataclass(frozen=True)
class Goal:
    """A figure a step prints, and what it should be (``op`` "" for a figure read as it is)."""

    figure: str
    text: str = ""
    op: str = ""
    value: float = 0.0

    def met(self, measured: float) -> bool | None:
        compare = {"<=": measured <= self.value, ">=": measured >= self.value,
                   "==": measured == self.value}
        return compare.get(self.op)


@dataclass(frozen=True)
class Step:
    """One measurement: ``python3 script *arguments`` for at most ``limit`` seconds."""

    name: str
    title: str
    limit: int
    script: str
    arguments: tuple[str, ...]
    goals: tuple[Goal, ...]
    reserved_for: str = ""
    """The issue whose helper writes ``script`` (a slot kept before the script exists)."""
    needs: tuple[str, ...] = ()
    """Python modules the step imports that the device image lacks (carried as wheels: see
    gpu_checks.sh); without them the step is skipped, at no cost, saying which."""


PLAN: tuple[Step, ...] = (
    Step("train_step_compiled",
         "the compiled train step, bf16 + channels_last, ResNet34 B=32 N=10: average pooling and "
         "DATP MoG K=2 / conv, interleaved (issues 5, 17, 29)",
         125, "benchmarks/train_step.py",
         ("--device", "cuda", "--compile", "--variants", "average,mog2-conv", "--repeats", "20"),
         (Goal("datp_overhead_compiled_mog2_conv_pct", "<= 1 % of the step", "<=", 1.0),
          Goal("train_step_compiled_average_ms", "the step DATP is set against"),
          Goal("train_step_compiled_mog2_conv_ms"))),
    Step("decode_race",
         "the CUDA decode_jpeg race: corrupted iterations of 200, torchvision's call vs datp's "
         "(issue 29)",
         45, "benchmarks/decode_race.py", ("--iterations", "200", "--work-ms", "20"),
         tuple(Goal(f"decode_race_{path}_{kind}", "0 of 200", "==", 0.0)
               for path in ("datp", "ahead") for kind in ("baseline", "progressive"))
         + tuple(Goal(f"decode_race_torchvision_{kind}", "before the fix: > 0 shows the race")
                 for kind in ("baseline", "progressive"))),
    Step("loader_step",
         "the compiled step fed by the real loader, RGB JPEG folders decoded on the GPU a batch "
         "ahead (issue 29)",
         50, "benchmarks/loader_step.py",
         ("--device", "cuda", "--compile", "--classes", "101", "--videos-per-class", "1",
          "--frames", "60", "--workers", "8", "--seconds", "6"),
         (Goal("loader_vs_step_pct", ">= 90 % of the compiled step", ">=", 90.0),
          Goal("fed_vs_step_pct", "what datp train gets"),
          Goal("step_clips_per_s"), Goal("loader_clips_per_s"))),
    Step("train_syncs",
         "host waits per training step on CUDA, profiler and sync debug mode (issues 17, 29)",
         25, "benchmarks/train_syncs.py", ("--device", "cuda"),
         (Goal("train_host_syncs_per_step_cuda", "<= 0.1: one read per 10-step interval", "<=",
               0.1),
          Goal("train_cuda_sync_warnings_per_step", "<= 0.1", "<=", 0.1))),
    Step("tvl1_compiled",
         "TV-L1 pairs/s at 340x256, compiled, mixed motion, masked vs stopped pairs left behind "
         "(issues 13, 17, 29)",
         55, "benchmarks/flow_throughput.py",
         ("--device", "cuda", "--modes", "compiled-masked,compiled", "--motion", "mixed",
          "--batch-sizes", "64,256", "--pairs", "512", "--no-counts"),
         (Goal("tvl1_compiled_mixed_pairs_per_s", ">= 1,000 pairs/s", ">=", 1000.0),
          Goal("tvl1_compiled_masked_mixed_pairs_per_s", "before the compaction"))),
    Step("flow_end_to_end",
         "datp flow end to end, pipelined: pixel work, TV-L1 and quantization on the GPU "
         "(issues 17, 29)",
         35, "benchmarks/flow_pipeline.py",
         ("--device", "cuda", "--videos", "8", "--frames", "100", "--modes", "pipelined"),
         (Goal("flow_pipelined_pairs_per_s", ">= 600 pairs/s", ">=", 600.0),
          Goal("flow_pipelined_host_ms_per_pair_outside_tvl1", "about 0"))),
    Step("feature_extraction",
         "datp features end to end (decode included), ViT-B/16 bf16 frames/s (issue 26)",
         25, "benchmarks/features_extract.py",
         ("--device", "cuda", "--dtype", "bf16", "--backbones", "vit_b_16", "--videos", "32",
          "--frames", "250", "--decode-threads", "8", "--batch-size", "256"),
         (Goal("features_vit_b_16_bf16_frames_per_s", ">= 2,000 frames/s on an H100", ">=",
               2000.0),)),
    Step("predict_long_video",
         "datp predict on a 1080p video, ResNet34 at 224 px, one segment a second, read a chunk "
         "at a time: multiples of real time (issue 27; time grows linearly with the length, "
         "BENCHMARKS.md, so >= 30x is a 60-minute video in <= 120 s)",
         25, "benchmarks/long_video.py",
         ("--steps", "predict", "--lengths", "1min", "--size", "1920x1080", "--device", "cuda",
          "--backbone", "resnet34", "--image-size", "224", "--bit-rate", "2000000",
          "--chunk", "32", "--repeat", "10"),
         (Goal("predict_1080p_x_realtime", ">= 30x: 60 min in <= 120 s", ">=", 30.0),
          Goal("predict_1min_1080p_s")),
         needs=("av",)),
)
"""Most important first: a budget cut short loses the last steps."""


def planned_seconds(plan: Sequence[Step]) -> int:
    """The worst case of a run: the preamble and every step to its limit."""
    return PREAMBLE + sum(step.limit for step in plan)


def lease_seconds(budget: int = BUDGET, rerun: int = RERUN_BUDGET) -> int:
    """Device time of the first call and the rerun at their worst: a fresh machine's start,
    both budgets, each call's overhead."""
    return START_ALLOWANCE + budget + rerun + 2 * CALL_OVERHEAD


# --- running -----------------------------------------------------------------------------------

FIGURE = re.compile(r"^FIGURE\s+(?P<name>[A-Za-z0-9_.\-]+)\s+(?P<value>[-+0-9.eE]+|nan|inf)"
                    r"(?:\s+(?P<unit>.*?))?\s*$")


def parse_figures(lines: Sequence[str]) -> dict[str, tuple[float, str]]:
    """``{name: (value, unit)}`` of the ``FIGURE`` lines (the last one of a name wins)."""
    figures = {}
    for line in lines:
        found = FIGURE.match(line.strip())
        if found:
            try:
                figures[found["name"]] = (float(found["value"]), found["unit"] or "")
            except ValueError:
                continue
    return figures


@dataclass
class StepRun:
    """What running a step gave: its exit status (None: killed at its limit) and its lines."""

    returncode: int | None
    lines: list[str]


@dataclass
class Outcome:
    step: Step
    status: str
    """measured | failed | timed out | skipped"""
    reason: str = ""
    limit: int = 0
    seconds: float = 0.0
    figures: dict[str, tuple[float, str]] = field(default_factory=dict)


Runner = Callable[[Step, int, Callable[[str], None]], StepRun]
"""``runner(step, limit, say) -> StepRun``: runs the step for at most ``limit`` seconds, each
line of its output handed to ``say`` as it comes."""


def one_line_reason(lines: Sequence[str]) -> str:
    """The line that says why a step failed: its last exception line, else its last line."""
    text = [line.strip() for line in lines if line.strip()]
    errors = [line for line in text
              if re.match(r"^[\w.]*(Error|Exception|Failed|Interrupt|Exit)\b", line)]
    reason = (errors or text or ["no output"])[-1]
    return reason if len(reason) <= 200 else reason[:197] + "..."


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_plan(plan: Sequence[Step], *, budget: int, runner: Runner, say: Callable[[str], None],
             clock: Callable[[], float] = time.monotonic, root: Path = ROOT,
             has_module: Callable[[str], bool] = importable) -> list[Outcome]:
    """Run ``plan`` in order inside ``budget`` seconds from now (see the module docstring)."""
    start = clock()
    outcomes = []
    for step in plan:
        missing = [m for m in step.needs if not has_module(m)]
        if not (root / step.script).is_file() or missing:
            why = (f"needs {', '.join(missing)}: carry its wheel (gpu_checks.sh says how)"
                   if missing else f"{step.script} does not exist yet")
            outcomes.append(Outcome(step, "skipped", why + (f" ({step.reserved_for})"
                                                            if step.reserved_for else "")))
            say(f"== {step.name}: skipped, {outcomes[-1].reason}")
            continue
        left = budget - (clock() - start)
        if left < MIN_START:
            outcomes.append(Outcome(step, "skipped", f"no time left ({max(left, 0):.0f} s of "
                                                     f"the {budget} s budget)"))
            say(f"== {step.name}: skipped, {outcomes[-1].reason}")
            continue
        limit = int(min(step.limit, left))
        say(f"== {step.name} (at {clock() - start:.0f} s, limit {limit} s): {step.title}")
        began = clock()
        done = runner(step, limit, say)
        seconds = clock() - began
        figures = parse_figures(done.lines)
        if done.returncode is None:
            status, reason = "timed out", f"timed out after {limit} s"
        elif done.returncode != 0:
            status, reason = "failed", one_line_reason(done.lines)
        else:
            status, reason = "measured", ""
        outcomes.append(Outcome(step, status, reason, limit, seconds, figures))
        say(f"== {step.name}: {status} in {seconds:.0f} s{', ' + reason if reason else ''}")
    return outcomes


def subprocess_runner(step: Step, limit: int, say: Callable[[str], None]) -> StepRun:
    """Run the step's script with this Python in a process group of its own; kill the group at
    ``limit`` seconds (SIGTERM, then SIGKILL 5 s later)."""
    command = [sys.executable, str(ROOT / step.script), *step.arguments]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1,
                               start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    kept, deadline, timed_out = [], time.monotonic() + limit, False
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            if timed_out:  # killed, and something still holds its output open
                break
            timed_out = True
            _kill_group(process)
            deadline = time.monotonic() + 10  # for the lines already written
            continue
        if line is None:
            break
        kept.append(line)
        say(line)
    _kill_group(process)  # what the step left running (a group ends with its steps)
    return StepRun(None if timed_out else process.returncode, kept)


def _kill_group(process: subprocess.Popen) -> None:
    """End the step's process group: SIGTERM, then SIGKILL to what is left 5 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:  # the leader ended: one more look for the rest of the group
            time.sleep(0.1)
    process.wait()


# --- the summary -------------------------------------------------------------------------------


def summary(outcomes: Sequence[Outcome]) -> list[str]:
    """A markdown table of every goal figure: measured (and whether the goal is met), failed or
    timed out with the step's reason, or skipped with why; then the other figures printed."""
    rows = ["| figure | goal | result | met |", "| --- | --- | --- | --- |"]
    for outcome in outcomes:
        for goal in outcome.step.goals:
            if goal.figure in outcome.figures:
                value, unit = outcome.figures[goal.figure]
                met = goal.met(value)
                result = f"{value:g} {unit}".strip()
                verdict = "" if met is None else ("yes" if met else "NO")
            else:
                result = {"measured": "not printed (the step ended without it)",
                          "skipped": f"skipped: {outcome.reason}"}.get(
                    outcome.status, f"{outcome.status}: {outcome.reason}")
                verdict = ""
            rows.append(f"| {goal.figure} | {goal.text} | {result} | {verdict} |")
    others = [f"{name} {value:g} {unit}".strip() for outcome in outcomes
              for name, (value, unit) in outcome.figures.items()
              if name not in {goal.figure for goal in outcome.step.goals}]
    if others:
        rows += ["", "Other figures: " + "; ".join(others)]
    return rows


def rerun_command(outcomes: Sequence[Outcome], *, budget: int = RERUN_BUDGET) -> str | None:
    """The command that reruns the steps that failed, timed out or were skipped for time (not
    those whose script does not exist), a timed-out one with twice its limit, within
    ``budget``; None when every step that exists was measured."""
    wanted = []
    for outcome in outcomes:
        missing = outcome.status == "skipped" and "does not exist" in outcome.reason
        if outcome.status == "measured" or missing:
            continue
        limit = outcome.step.limit
        if outcome.status == "timed out":
            limit = min(2 * limit, budget - PREAMBLE)
        wanted.append(f"{outcome.step.name}:{limit}")
    if not wanted:
        return None
    return f"bash benchmarks/gpu_checks.sh --budget {budget} --only {','.join(wanted)}"


def select(plan: Sequence[Step], only: str) -> list[Step]:
    """The steps ``only`` names (``name`` or ``name:seconds``, comma-separated), in plan order,
    with the limits it gives."""
    if not only:
        return list(plan)
    asked = {}
    for part in only.split(","):
        name, _, seconds = part.strip().partition(":")
        asked[name] = int(seconds) if seconds else None
    known = {step.name for step in plan}
    unknown = sorted(set(asked) - known)
    if unknown:
        raise SystemExit(f"--only: unknown step(s) {', '.join(unknown)}; the steps are "
                         f"{', '.join(step.name for step in plan)}")
    return [replace(step, limit=asked[step.name] or step.limit) for step in plan
            if step.name in asked]


def plan_table(plan: Sequence[Step], budget: int) -> list[str]:
    """Each step's limit and when it would end at the latest, against the budget."""
    lines = [f"{'step':22s} {'limit s':>8s} {'ends by s':>10s}  title",
             f"{'(preamble)':22s} {PREAMBLE:8d} {PREAMBLE:10d}"]
    at = PREAMBLE
    for step in plan:
        at += step.limit
        title = step.title + (f" [reserved for {step.reserved_for}]" if step.reserved_for else "")
        lines.append(f"{step.name:22s} {step.limit:8d} {at:10d}  {title}")
    lines.append(f"planned {planned_seconds(plan)} s of a {budget} s budget; with a fresh "
                 f"machine's start and a {RERUN_BUDGET} s rerun: {lease_seconds(budget)} s of a "
                 f"{LEASE} s lease")
    return lines


def _preamble(say: Callable[[str], None]) -> None:
    commands = (["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                 "--format=csv,noheader"],
                [sys.executable, "-c", "import os, torch, torchvision; print('torch', "
                 "torch.__version__, 'cuda', torch.version.cuda, 'torchvision', "
                 "torchvision.__version__, 'cpus', os.cpu_count())"])
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PREAMBLE)
            for line in (done.stdout + done.stderr).splitlines():
                say(line)
        except (OSError, subprocess.TimeoutExpired) as error:
            say(f"({command[0]}: {error})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("run", "plan"))
    parser.add_argument("--budget", type=int, default=BUDGET)
    parser.add_argument("--only", default="", help="name or name:seconds, comma-separated")
    args = parser.parse_args()
    plan = select(PLAN, args.only)
    if args.what == "plan":
        print("\n".join(plan_table(plan, args.budget)))
        return
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    log = open(out / "gpu_checks.log", "a", buffering=1) if out else None  # noqa: SIM115

    def say(line: str) -> None:
        print(line, flush=True)
        if log is not None:
            log.write(line + "\n")

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/datp_inductor")  # shared by steps
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT),
                                                             os.environ.get("PYTHONPATH")]))
    os.environ["PYTHONUNBUFFERED"] = "1"
    say(f"gpu_plan: {len(plan)} steps, budget {args.budget} s "
        f"(planned {planned_seconds(plan)} s)")
    began = time.monotonic()
    _preamble(say)
    outcomes = run_plan(plan, budget=args.budget - math.ceil(time.monotonic() - began),
                        runner=subprocess_runner, say=say)
    table = summary(outcomes)
    say(f"== summary ({time.monotonic() - began:.0f} s)")
    for line in table:
        say(line)
    again = rerun_command(outcomes)
    say(f"rerun what is missing: {again}" if again else "every step that exists was measured")
    if out:
        (out / "gpu_summary.md").write_text("\n".join(table) + "\n")
        with open(out / "gpu_figures.jsonl", "w") as handle:
            for outcome in outcomes:
                for name, (value, unit) in outcome.figures.items():
                    handle.write(json.dumps({"step": outcome.step.name, "figure": name,
                                             "value": value, "unit": unit}) + "\n")
    if log is not None:
        log.close()


if __name__ == "__main__":
    main()
