"""Host synchronizations per training step in the steady state, counted on the CPU.

    PYTHONPATH=. python benchmarks/train_syncs.py                 # this checkout
    PYTHONPATH=. python benchmarks/train_syncs.py --base 94b5dad  # and before it, in one run

Runs the real :func:`datp.engine.train.train` (the code path ``datp train`` runs) under the torch
profiler twice, S1 and S2 steps of one epoch (in-memory clips, a tiny network, no test split),
and counts the ATen ops that make a CUDA host wait for the device (FACTS.md, "Counting host
waits"): ``aten::item`` / ``aten::_local_scalar_dense`` (``.item()``, ``int(t)``),
``aten::is_nonzero`` (``bool(t)``), ``aten::nonzero`` (boolean indexing), and datp's own read of
its step sums (``tolist()``, which the profiler sees as no op: it runs in a named range), leaving
out those
inside ``Optimizer.*`` ranges (torch.optim reads its CPU step counters there), each read once
(not again for the ops nested in it). Syncs per step =
(count2 - count1) / (S2 - S1): set-up and the epoch's end cancel out. ``--log-every`` is the
logging interval (``train(log_every=...)``, 10 as ``datp train`` uses).

``--device cuda`` counts the same profiler events there (each one a real wait for the GPU)
and, in the same runs, the warnings of CUDA's sync debug mode
(``torch.cuda.set_sync_debug_mode("warn")``): every operation that makes the host wait, blocking
host-to-device copies included, which the CPU cannot show. ``FIGURE`` lines give both per step
(``benchmarks/gpu_plan.py`` reads them).

``--base REV`` also runs this script at commit REV, in a temporary ``git worktree``, and prints
its figure first ("before"); the script must exist at REV or be given as this file (it is: the
temporary checkout runs this very file with the older ``datp`` on its path).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero",
            "datp.engine.train.host_read")
"""The last is datp.engine.train.HOST_READ (written out: the base commit has no such name):
the range around the training loop's read of its sums with ``tolist()``, which runs no ATen op."""
REPO = Path(__file__).resolve().parents[1]
N, C, SIZE = 4, 3, 8


class Clips(torch.utils.data.Dataset):
    def __init__(self, count: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(count, N, 3, SIZE, SIZE, generator=g)
        self.labels = torch.randint(0, C, (count,), generator=g).tolist()  # no item() per clip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"inputs": self.inputs[i], "label": self.labels[i],
                "times": (torch.arange(N) + 0.5) / N}


class Tiny(nn.Module):
    def __init__(self, pooling: nn.Module) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, C))
        self.pooling = pooling

    def forward(self, inputs: torch.Tensor, times: torch.Tensor):
        b, n = inputs.shape[:2]
        logits = self.features(inputs.flatten(0, 1)).reshape(b, n, C)  # [B, N, C]
        return self.pooling(logits, None, times)


def _counts(event) -> bool:
    """A host read of a tensor, not inside another one (``.item()`` runs ``aten::item`` and in
    it ``aten::_local_scalar_dense``: one read) nor inside an ``Optimizer.*`` range."""
    if event.name not in SYNC_OPS:
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer.") or parent.name in SYNC_OPS:
            return False
        parent = parent.cpu_parent
    return True


def count_syncs(steps: int, *, batch: int, log_every: int, run_dir: Path,
                device: str = "cpu") -> tuple[int, int | None]:
    """Host reads of a whole ``train`` run of ``steps`` steps, outside Optimizer.* ranges, and
    on CUDA the synchronizing operations CUDA's sync debug mode warns of (blocking copies too;
    None elsewhere)."""
    from datp.config import load_config
    from datp.pooling import build_pooling

    try:
        from datp.data.build import DataBundle
    except ImportError:  # a base commit of before the data builder
        from datp.engine.build import DataBundle

    config = load_config(None, ["train.epochs=1", f"train.batch_size={batch}",
                                f"train.max_steps_per_epoch={steps}", "data.workers=0",
                                f"train.device={device}", "model.partial_bn=false",
                                "train.lr=0.01"])
    data = DataBundle(train=Clips(batch * steps), test=None, classes=list("abc"))
    torch.manual_seed(0)
    model = Tiny(build_pooling(kind="datp", num_classes=C, num_segments=N, pool="probabilities",
                               aux_input="scores", num_gaussians=1))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught, \
                profile(activities=[ProfilerActivity.CPU]) as prof:
            warnings.simplefilter("always")
            _train(config, run_dir, data, model, log_every=log_every)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    reads = sum(_counts(e) for e in prof.events())
    return reads, sum("synchronizing" in str(w.message) for w in caught) if cuda else None


def _train(config, run_dir: Path, data, model, *, log_every: int) -> None:
    """``datp train``'s loop on ``data`` and ``model``, as this revision or a base one runs it."""
    from datp.engine.train import train

    try:
        from datp.engine.build import training_run
    except ImportError:  # a base commit of before the run was built whole
        train(config, run_dir=run_dir, data=data, model=model, log_every=log_every)
        return
    train(training_run(config, run_dir, data=data, model=model), log_every=log_every)


def measure(s1: int, s2: int, *, batch: int, log_every: int,
            device: str = "cpu") -> tuple[float, float | None]:
    """(host reads per step, CUDA sync-debug warnings per step or None) in the steady state."""
    with tempfile.TemporaryDirectory() as tmp:
        first = count_syncs(s1, batch=batch, log_every=log_every, run_dir=Path(tmp) / "a",
                            device=device)
        second = count_syncs(s2, batch=batch, log_every=log_every, run_dir=Path(tmp) / "b",
                             device=device)
    reads = (second[0] - first[0]) / (s2 - s1)
    debug = None if first[1] is None else (second[1] - first[1]) / (s2 - s1)
    return reads, debug


def _at_commit(rev: str, argv: list[str]) -> str:
    """This script's output at ``rev`` (a temporary worktree on PYTHONPATH)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(tree),
                        rev], check=True)
        try:
            done = subprocess.run([sys.executable, __file__, *argv], capture_output=True,
                                  text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=False)
    if done.returncode != 0:
        raise SystemExit(f"at {rev}:\n{done.stderr}")
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs=2, default=(20, 60), metavar=("S1", "S2"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--base", help="also measure this commit (before)")
    parser.add_argument("--device", default="cpu",
                        help="cuda: count what torch.cuda.set_sync_debug_mode warns of instead")
    args = parser.parse_args()
    own = ["--steps", *map(str, args.steps), "--batch", str(args.batch),
           "--log-every", str(args.log_every), "--device", args.device]
    if args.base:
        print(f"before ({args.base}): {_at_commit(args.base, own)}", flush=True)
    torch.set_num_threads(1)
    s1, s2 = args.steps
    per_step, debug = measure(s1, s2, batch=args.batch, log_every=args.log_every,
                              device=args.device)
    label = "after: " if args.base else ""
    print(f"{label}{per_step:.2f} host syncs per step, {per_step * args.log_every:.2f} per logging "
          f"interval of {args.log_every} steps (steps {s1} vs {s2}, batch {args.batch}, "
          f"{args.device}, torch {torch.__version__})", flush=True)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    print(f"FIGURE train_host_syncs_per_step_{kind} {per_step:.2f} syncs/step", flush=True)
    if debug is not None:
        print(f"CUDA sync debug mode: {debug:.2f} synchronizing operations per step", flush=True)
        print(f"FIGURE train_cuda_sync_warnings_per_step {debug:.2f} syncs/step", flush=True)


if __name__ == "__main__":
    main()
