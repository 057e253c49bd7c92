"""Every backend has the same call; TV-L1 backends agree."""

from __future__ import annotations

import numpy as np
import pytest

from datp.flow.backends import BACKEND_NAMES, TorchTVL1, build_backend
from datp.flow.tvl1 import TVL1Params
from tests.flow.test_tvl1 import textured

pytest.importorskip("cv2")


@pytest.mark.parametrize("name", ["opencv", "farneback", "dis"])
def test_same_interface(name):
    prev = np.stack([textured(32, 40), textured(32, 40)])
    next_ = np.stack([textured(32, 40, shift=(1.0, 0.0)), textured(32, 40)])
    backend = build_backend(name)
    flow = backend.compute(prev, next_)
    assert flow.shape == (2, 2, 32, 40) and flow.dtype == np.float32
    assert abs(float(np.median(flow[0, 0])) - 1.0) < 0.3  # x moves by one pixel
    assert np.abs(flow[1]).mean() < 0.05  # identical frames


def test_torch_backend_batches_and_validates():
    params = TVL1Params(nscales=2, warps=2, inner_iterations=5, outer_iterations=2)
    backend = TorchTVL1(params=params, device="cpu", batch_size=2)
    prev = np.stack([textured(24, 32)] * 3)
    flow = backend.compute(prev, prev)
    assert flow.shape == (3, 2, 24, 32) and np.abs(flow).max() < 1e-3  # sampling rounding
    with pytest.raises(ValueError, match="uint8"):
        backend.compute(prev.astype(np.float32), prev)
    with pytest.raises(ValueError, match="unknown flow backend"):
        build_backend("raft")
    assert set(BACKEND_NAMES) == {"torch", "opencv", "farneback", "dis"}


def test_torch_backend_compiles_on_cuda_only_by_default():
    assert TorchTVL1(device="cpu").compiled is False
    assert TorchTVL1(device="cpu", compiled=True).compiled is True
    assert build_backend("torch", device="cpu", compiled=True).compiled is True


def test_the_torch_backend_takes_one_pair_at_a_time_on_a_cpu_by_default():
    """The fastest CPU setting measured (BENCHMARKS.md): a masked batch waits for its slowest
    pair, so batching costs a CPU more than it saves."""
    from datp.flow.backends import build_backend

    assert build_backend("torch", device="cpu").batch_size == 1
    assert build_backend("torch", device="cpu", batch_size=4).batch_size == 4


def test_a_failing_compile_falls_back_to_eager_with_one_warning(monkeypatch, caplog):
    """No Triton or an old driver makes torch.compile fail: the flow is still computed, eagerly,
    and the user reads one warning line, not one per batch."""
    import logging

    import torch

    from datp.flow import tvl1

    def broken_compile(*args, **kwargs):
        raise RuntimeError("Cannot find a working triton installation")

    tvl1.compiled_steps.cache_clear()
    monkeypatch.setattr(torch, "compile", broken_compile)
    params = TVL1Params(nscales=2, warps=2, inner_iterations=5, outer_iterations=2)
    backend = TorchTVL1(params=params, device="cpu", batch_size=3, compiled=True)
    prev = np.stack([textured(24, 32)] * 6)
    next_ = np.stack([textured(24, 32, shift=(0.2 * i, 0.0)) for i in range(6)])
    try:
        with caplog.at_level(logging.WARNING, logger="datp.flow.backends"):
            flow = backend.compute(prev, next_)  # two batches
    finally:
        tvl1.compiled_steps.cache_clear()
    eager = TorchTVL1(params=params, device="cpu", batch_size=3).compute(prev, next_)
    np.testing.assert_array_equal(flow, eager)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "torch.compile failed" in warnings[0].getMessage()
    assert "triton" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()
    assert backend.compiled is False
