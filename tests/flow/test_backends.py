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
