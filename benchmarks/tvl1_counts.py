"""Counting what the TV-L1 loop costs besides arithmetic: host synchronizations and kernels.

B frame pairs, h, w the size of one pyramid level. Used by benchmarks/flow.py (CPU) and
benchmarks/flow_throughput.py (any device).

- host synchronizations: the ATen ops that make a CUDA host wait for the device, counted with
  the profiler on any device: ``aten::_local_scalar_dense`` (``bool(t)``, ``t.item()``) and
  ``aten::nonzero`` (boolean indexing, whose result size the host must know);
- kernels per inner iteration: on a GPU, CUDA kernels launched; on a CPU, eager, the top-level
  ATen ops that compute (views and bare allocations left out: each one counted is a pass over
  its tensors, a kernel on a GPU); compiled, the C++ kernels inductor generated and
  the loop nests inside them (each loop nest is one pass over memory, as a GPU kernel is).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from datp.flow.tvl1 import TVL1Params, inner_block, tvl1_level

SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero")
NO_KERNEL_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "slice", "select", "unsqueeze", "squeeze", "view", "reshape", "_reshape_alias",
        "expand", "as_strided", "alias", "permute", "transpose", "t", "unbind", "split",
        "chunk", "narrow", "detach", "lift_fresh", "empty", "empty_like", "empty_strided",
        "resolve_conj", "resolve_neg",
    )
)
"""Top-level ATen ops that only make views or allocate: no pass over memory."""
REPO = Path(__file__).resolve().parents[1]


def block_inputs(
    batch: int, height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Random ``u, p, active, i1w_grad, rho_c, neg_inv_grad`` for :func:`inner_block`."""
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(batch, 2, height, width, generator=gen)
    p = 0.1 * torch.randn(batch, 2, 2, height, width, generator=gen)
    grad = 5 * torch.randn(batch, 2, height, width, generator=gen)
    rho_c = 3 * torch.randn(batch, height, width, generator=gen)
    neg_inv_grad = -1.0 / grad.square().sum(1).clamp_min(1e-30)
    active = torch.ones(batch, dtype=torch.bool)
    return tuple(t.to(device) for t in (u, p, active, grad, rho_c, neg_inv_grad))


def _profiled(fn, device: torch.device):
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return prof.events()


def sync_count(fn, device: torch.device) -> int:
    """Host synchronizations in one call of ``fn``."""
    return sum(event.name in SYNC_OPS for event in _profiled(fn, device))


def kernel_count(fn, device: torch.device, *, compiled: bool) -> int:
    """Kernels one call of ``fn`` runs (see the module docstring for what counts)."""
    events = _profiled(fn, device)
    if device.type == "cuda":
        return sum(event.device_type == torch.autograd.DeviceType.CUDA for event in events)
    if compiled:
        return sum("cpp_fused" in event.name for event in events)
    return sum(
        event.name.startswith("aten::")
        and event.name not in NO_KERNEL_OPS
        and (event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::"))
        for event in events
    )


def per_inner_iteration(count, *, steps: int = 10) -> float:
    """``count(inner_iterations)`` for ``steps`` and ``2 * steps`` iterations of one warp that
    never stops (epsilon 0, no median filter): the difference per iteration, so the setup of the
    warp does not count."""
    return (count(2 * steps) - count(steps)) / steps


def level_counts(
    level, device: torch.device, *, batch: int = 4, size=(256, 340), steps: int = 10
):
    """(kernels, host syncs) per inner iteration of ``level(i0, i1, u, params)``."""
    gen = torch.Generator().manual_seed(1)
    i0, i1 = (255 * torch.rand(2, batch, *size, generator=gen)).to(device)
    u = torch.zeros(batch, 2, *size, device=device)

    def params(n: int) -> TVL1Params:
        return TVL1Params(warps=1, outer_iterations=1, inner_iterations=n, epsilon=0.0,
                          median_filtering=1)

    def run(n: int):
        return lambda: level(i0, i1, u, params(n))

    level(i0, i1, u, params(steps))  # warm-up: compiles the one graph both counts use
    compiled = getattr(level, "keywords", {}).get("compiled", False)
    kernels = per_inner_iteration(
        lambda n: kernel_count(run(n), device, compiled=compiled), steps=steps
    )
    syncs = per_inner_iteration(lambda n: sync_count(run(n), device), steps=steps)
    return kernels, syncs


def loop_nests_per_iteration(device: torch.device, *, size=(256, 340)) -> float:
    """Loop nests (CPU) or kernels (GPU) in inductor's code per inner iteration."""
    from torch._inductor.utils import run_and_get_code

    inputs = block_inputs(4, *size, device)

    def nests(steps: int) -> int:
        torch._dynamo.reset()
        _, sources = run_and_get_code(
            torch.compile(inner_block, fullgraph=True, dynamic=True), *inputs, steps=steps,
            params=TVL1Params(),
        )
        code = "\n".join(sources)
        if device.type == "cuda":
            return code.count("@triton.jit")
        return sum(line == "    {" for line in code.splitlines())  # a loop nest's opening

    return per_inner_iteration(nests, steps=1)


def syncs_per_pair(flow_fn, prev: torch.Tensor, next_: torch.Tensor, batch: int) -> float:
    """Host synchronizations per pair of ``flow_fn(prev, next)`` over all pairs in batches."""
    device = prev.device
    total = 0
    for start in range(0, prev.shape[0], batch):
        a, b = prev[start : start + batch], next_[start : start + batch]
        total += sync_count(lambda a=a, b=b: flow_fn(a, b), device)
    return total / prev.shape[0]


def level_with(**keywords):
    """``tvl1_level`` with keyword arguments, recognisable by :func:`level_counts`."""
    import functools

    return functools.partial(tvl1_level, **keywords)


def compile_seconds(cache_dir: Path, device: str) -> float:
    """Seconds the first compiled TV-L1 call of a fresh process spends beyond a second call
    (compilation), with inductor's caches in ``cache_dir``."""
    script = textwrap.dedent(
        f"""
        import time, torch
        from datp.flow.tvl1 import tvl1_flow
        torch.set_num_threads(1)
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randint(0, 256, (4, 256, 340), generator=gen, dtype=torch.uint8)
                .to("{device}") for _ in range(2))
        with torch.inference_mode():
            times = []
            for _ in range(2):
                start = time.perf_counter()
                tvl1_flow(a, b, compiled=True)
                if "{device}" == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        print(times[0] - times[1])
        """
    )
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])

