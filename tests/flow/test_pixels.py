"""The pixel work around TV-L1 (issue 29): gray conversion and resizing, quantization, and the
torch backend's ``fields`` that runs them with TV-L1 where it computes. Needs neither OpenCV nor
PyAV; the CUDA check is marked gpu."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datp.data.frames import quantize_flow
from datp.flow.backends import TorchTVL1
from datp.flow.pixels import gray_resized, to_gray_resized
from datp.flow.tvl1 import TVL1Params
from tests.data.conftest import moving_frames

FAST = TVL1Params(nscales=2, warps=2, inner_iterations=5, outer_iterations=2)


def _numpy_quantization(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """The quantization as numpy computed it before it moved to torch (TSN's mapping)."""
    return np.round((np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))).astype(
        np.uint8)


def test_quantization_has_numpys_bits_for_numpy_and_torch_input():
    rng = np.random.default_rng(0)
    steps = np.arange(256, dtype=np.float32)  # the values that round half way between steps
    values = np.concatenate([
        rng.uniform(-30, 30, 100_000).astype(np.float32),
        ((steps + 0.5) / 6.375 - 20).astype(np.float32),
        np.array([-20, 20, -20.001, 20.001, 0, -0.0, 1e9, -1e9], dtype=np.float32),
    ])
    for flow in (values, values.astype(np.float64)):
        expected = _numpy_quantization(flow)
        assert np.array_equal(quantize_flow(flow), expected)
        as_tensor = quantize_flow(torch.from_numpy(flow))
        assert isinstance(as_tensor, torch.Tensor) and np.array_equal(as_tensor.numpy(), expected)


def test_a_frames_gray_does_not_depend_on_the_frames_converted_with_it():
    """Whole videos on a CPU, batches on a GPU, a few frames for prediction: the same gray."""
    frames = torch.from_numpy(moving_frames(37, height=61, width=83, seed=4))
    for size in ((61, 83), (40, 52)):
        whole = gray_resized(frames, size)
        pieces = torch.cat([gray_resized(frames[i : i + 5], size) for i in range(0, 37, 5)])
        assert whole.dtype == torch.uint8 and whole.shape == (37, *size)
        assert torch.equal(whole, pieces)
        assert torch.equal(gray_resized(frames[7:8], size), whole[7:8])
    assert np.array_equal(to_gray_resized(frames.numpy(), (40, 52)), whole.numpy())
    flat = torch.full((1, 4, 4, 3), 200, dtype=torch.uint8)
    assert gray_resized(flat, (4, 4)).unique().tolist() == [200]  # 0.299 + 0.587 + 0.114 = 1


@pytest.mark.parametrize("given", ["rgb", "gray"])
def test_fields_are_each_pairs_flow_quantized_as_the_writers_did(given):
    """The same bits as converting, computing float flow and quantizing one after the other
    (how ``datp flow`` made its files before issue 29), across batches."""
    frames = moving_frames(6, height=40, width=48, seed=2)
    size = (32, 40)
    gray = to_gray_resized(frames, size)
    backend = TorchTVL1(params=FAST, device="cpu", batch_size=2)
    assert not backend.pixels_on_device
    expected = _numpy_quantization(backend.compute(gray[:-1], gray[1:]))
    fields = backend.fields(frames if given == "rgb" else gray, size=size)
    assert fields.dtype == np.uint8 and fields.shape == (5, 2, *size)
    assert np.array_equal(fields, expected)
    assert expected.std() > 0  # the square moves


def test_fields_stop_between_batches_and_refuse_what_is_not_frames():
    frames = moving_frames(5, height=24, width=24, seed=3)
    backend = TorchTVL1(params=FAST, device="cpu", batch_size=2)
    calls = []

    def between() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise InterruptedError("stopped")

    with pytest.raises(InterruptedError):
        backend.fields(frames, size=(24, 24), between=between)
    assert calls == [0, 1]  # before the first batch and the second, never inside one
    for bad in (frames[:1], frames.astype(np.float32), frames[..., 0]):
        with pytest.raises(ValueError, match="expected at least 2 uint8 frames"):
            backend.fields(bad, size=(20, 20))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fields_on_cuda_are_the_cpus_to_rounding():
    """On a GPU the gray conversion, resizing, TV-L1 and quantization run there, batches copied
    ahead on a stream of their own: the fields are the CPU's but for float rounding."""
    frames = moving_frames(9, height=96, width=128, seed=5)
    size = (64, 80)
    cpu = TorchTVL1(params=FAST, device="cpu", batch_size=3).fields(frames, size=size)
    backend = TorchTVL1(params=FAST, device="cuda", batch_size=3, compiled=False)
    assert backend.pixels_on_device
    gpu = backend.fields(frames, size=size)
    difference = np.abs(gpu.astype(int) - cpu.astype(int))
    assert gpu.shape == cpu.shape and difference.mean() < 0.1 and difference.max() <= 3
