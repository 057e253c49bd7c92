"""TV-L1 in PyTorch: building blocks against OpenCV, known motion, degenerate input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datp.flow.tvl1 import (
    TVL1Params,
    centered_gradient,
    divergence,
    endpoint_error,
    forward_gradient,
    median_filter,
    pyramid_sizes,
    resize_linear,
    tvl1_flow,
)

cv2 = pytest.importorskip("cv2")

FAST = TVL1Params(nscales=3, warps=3, inner_iterations=10, outer_iterations=4)


def textured(height: int, width: int, *, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A smooth texture sampled at ``(x - dx, y - dy)``: the shifted image moves by ``shift``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    xs, ys = xs - shift[0], ys - shift[1]
    image = np.zeros_like(xs)
    rng = np.random.default_rng(0)
    for _ in range(12):
        fx, fy = rng.uniform(0.05, 0.35, size=2) * rng.choice([-1, 1], size=2)
        image += rng.uniform(10, 25) * np.sin(fx * xs + fy * ys + rng.uniform(0, 6.3))
    return np.clip(128 + image, 0, 255).round().astype(np.uint8)


def test_resize_matches_opencv():
    image = np.random.default_rng(1).uniform(0, 255, size=(48, 64)).astype(np.float32)
    ours = resize_linear(torch.from_numpy(image)[None], (38, 51), (1.25, 1.25))[0].numpy()
    theirs = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert pyramid_sizes(256, 340, TVL1Params()) == [
        (256, 340),
        (205, 272),
        (164, 218),
        (131, 174),
        (105, 139),
    ]


def test_median_filter_matches_opencv():
    u = np.random.default_rng(2).normal(size=(2, 20, 30)).astype(np.float32)
    ours = median_filter(torch.from_numpy(u), 5).numpy()
    for i in range(2):
        np.testing.assert_array_equal(ours[i], cv2.medianBlur(u[i], 5))


def test_divergence_is_minus_adjoint_of_forward_gradient():
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(2, 2, 9, 11, generator=gen, dtype=torch.float64)
    p = torch.randn(2, 2, 2, 9, 11, generator=gen, dtype=torch.float64)
    # The dual variables stay zero where the forward gradient is (last column / row).
    p[:, :, 0, :, -1] = 0
    p[:, :, 1, -1, :] = 0
    lhs = (forward_gradient(u) * p).sum()
    rhs = -(u * divergence(p)).sum()
    assert torch.allclose(lhs, rhs)


def test_centered_gradient_of_a_ramp():
    ramp = torch.arange(6.0).repeat(5, 1)[None]  # [1, 5, 6], d/dx = 1
    grad = centered_gradient(ramp)
    assert torch.allclose(grad[0, 0, :, 1:-1], torch.ones(5, 4))
    assert torch.allclose(grad[0, 0, :, 0], torch.full((5,), 0.5))  # one-sided half at the border
    assert torch.all(grad[0, 1] == 0)


@pytest.mark.parametrize("shift", [(1.5, -0.75), (-2.25, 1.0)])
def test_known_translation_is_recovered(shift):
    prev = textured(48, 64)
    next_ = textured(48, 64, shift=shift)
    flow = tvl1_flow(torch.from_numpy(prev)[None], torch.from_numpy(next_)[None], FAST)
    interior = flow[0, :, 8:-8, 8:-8]
    truth = torch.tensor(shift, dtype=torch.float32).view(2, 1, 1)
    assert torch.linalg.vector_norm(interior - truth, dim=0).mean() < 0.1


def test_agrees_with_opencv_on_a_generated_pair():
    prev = textured(48, 64)
    next_ = textured(48, 64, shift=(1.2, 0.6))
    algorithm = cv2.optflow.DualTVL1OpticalFlow_create()
    algorithm.setScalesNumber(FAST.nscales)
    algorithm.setWarpingsNumber(FAST.warps)
    algorithm.setInnerIterations(FAST.inner_iterations)
    algorithm.setOuterIterations(FAST.outer_iterations)
    reference = torch.from_numpy(algorithm.calc(prev, next_, None)).permute(2, 0, 1)[None]
    ours = tvl1_flow(torch.from_numpy(prev)[None], torch.from_numpy(next_)[None], FAST)
    assert endpoint_error(ours, reference).item() < 0.05


def test_constant_frames_give_zero_flow():
    frames = torch.full((2, 40, 50), 77, dtype=torch.uint8)
    flow = tvl1_flow(frames, frames, FAST)
    assert flow.shape == (2, 2, 40, 50)
    assert torch.isfinite(flow).all()
    assert flow.abs().max() == 0


def test_batch_equals_pairs_one_by_one():
    """Pairs stop at different iterations; the frozen ones must not move."""
    still = torch.from_numpy(textured(40, 52))
    moving = torch.from_numpy(textured(40, 52, shift=(2.0, 1.0)))
    prev = torch.stack([still, still])
    next_ = torch.stack([still, moving])
    batch = tvl1_flow(prev, next_, FAST)
    for i in range(2):
        alone = tvl1_flow(prev[i : i + 1], next_[i : i + 1], FAST)
        assert torch.allclose(batch[i], alone[0], atol=1e-4)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        tvl1_flow(torch.zeros(2, 8, 8), torch.zeros(2, 8, 9))
    with pytest.raises(ValueError, match="gamma"):
        TVL1Params(gamma=0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    prev = torch.from_numpy(textured(48, 64))[None]
    next_ = torch.from_numpy(textured(48, 64, shift=(1.0, 0.5)))[None]
    cpu = tvl1_flow(prev, next_, FAST)
    gpu = tvl1_flow(prev.cuda(), next_.cuda(), FAST).cpu()
    assert endpoint_error(gpu, cpu).item() < 0.01


def test_no_nonfinite_on_noise():
    gen = torch.Generator().manual_seed(5)
    prev = torch.randint(0, 256, (1, 32, 32), generator=gen, dtype=torch.uint8)
    next_ = torch.randint(0, 256, (1, 32, 32), generator=gen, dtype=torch.uint8)
    assert torch.isfinite(tvl1_flow(prev, next_, FAST)).all()
