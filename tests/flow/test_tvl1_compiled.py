"""The TV-L1 inner loop without host round-trips, and its compiled form against the eager one.

B frame pairs, h, w image size. Needs neither OpenCV nor a GPU: torch.compile runs on the CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from datp.flow.tvl1 import (
    TVL1Params,
    compiled_steps,
    inner_block,
    median_network,
    median_step,
    tvl1_flow,
    tvl1_level,
)

FAST = TVL1Params(nscales=2, warps=2, inner_iterations=6, outer_iterations=3)
SYNCS = ("aten::_local_scalar_dense", "aten::nonzero")
"""The ATen ops that make a CUDA host wait for the device (a value read, a boolean index)."""


def smooth_images(batch: int, height: int, width: int, *, seed: int) -> torch.Tensor:
    """uint8 ``[B, h, w]``: noise smoothed bicubically, texture at several scales."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 1, height // 4 + 2, width // 4 + 2, generator=gen)
    image = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    return (255 * image[:, 0].clamp(0, 1)).round().to(torch.uint8)


def block_inputs(batch: int = 3, height: int = 20, width: int = 24) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(batch, 2, height, width, generator=gen)
    p = 0.1 * torch.randn(batch, 2, 2, height, width, generator=gen)
    grad = 5 * torch.randn(batch, 2, height, width, generator=gen)
    rho_c = 3 * torch.randn(batch, height, width, generator=gen)
    neg_inv_grad = -1.0 / grad.square().sum(1).clamp_min(1e-30)
    return u, p, grad, rho_c, neg_inv_grad


def sync_count(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(event.name in SYNCS for event in prof.events())


def test_frozen_pairs_do_not_move():
    u, p, grad, rho_c, neg_inv_grad = block_inputs()
    active = torch.tensor([True, False, True])
    new_u, new_p, new_active = inner_block(
        u, p, active, grad, rho_c, neg_inv_grad, steps=4, params=FAST
    )
    assert torch.equal(new_u[1], u[1]) and torch.equal(new_p[1], p[1]) and not new_active[1]
    assert not torch.equal(new_u[0], u[0]) and not torch.equal(new_p[2], p[2])


def test_a_pair_stops_after_the_iteration_that_met_the_rule():
    """OpenCV's rule: the iteration whose update fell below epsilon still counts, the next
    does not run. With a huge epsilon every pair stops after exactly one iteration."""
    u, p, grad, rho_c, neg_inv_grad = block_inputs()
    active = torch.ones(3, dtype=torch.bool)
    loose = TVL1Params(epsilon=1e6)
    one = inner_block(u, p, active, grad, rho_c, neg_inv_grad, steps=1, params=loose)
    many = inner_block(u, p, active, grad, rho_c, neg_inv_grad, steps=5, params=loose)
    assert not one[2].any()
    assert not torch.equal(one[0], u)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


def test_check_interval_changes_no_answer():
    """Pairs stop at different iterations; how often the host looks must not matter."""
    prev = smooth_images(3, 32, 40, seed=1)
    next_ = torch.stack([prev[0], smooth_images(1, 32, 40, seed=2)[0], prev[2].roll(1, 1)])
    params = TVL1Params(nscales=2, warps=2, inner_iterations=15, outer_iterations=3)
    every = tvl1_flow(prev, next_, params, check_every=1)
    for check_every in (4, 15):
        assert torch.equal(tvl1_flow(prev, next_, params, check_every=check_every), every)
    for i in range(3):  # and a pair's answer does not depend on its batch
        alone = tvl1_flow(prev[i : i + 1], next_[i : i + 1], params)
        assert torch.equal(alone[0], every[i])


def _mixed_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Six pairs that stop at different iterations: still ones, small and larger motion."""
    prev = smooth_images(6, 32, 40, seed=1)
    moving = smooth_images(6, 32, 40, seed=2)
    next_ = torch.stack([prev[0], moving[1], prev[2], prev[3].roll(1, 1), prev[4], moving[5]])
    return prev, next_


MIXED = TVL1Params(nscales=2, warps=2, inner_iterations=6, outer_iterations=3)
"""As FAST, whose block of 6 iterations the compiled tests compile once: no other graph."""


def _compactions(monkeypatch) -> list[tuple[int, int]]:
    """(batch, kept) of every compaction from now on."""
    from datp.flow import tvl1

    seen, keep = [], tvl1._Running.keep

    def counted(self, order):
        seen.append((len(self.active), len(order)))
        return keep(self, order)

    monkeypatch.setattr(tvl1._Running, "keep", counted)
    return seen


@pytest.mark.parametrize("check_every", [1, 4, 10])
def test_leaving_stopped_pairs_behind_changes_no_answer(monkeypatch, check_every):
    """The pairs still iterating go on alone, and every pair's flow is the masked batch's to the
    bit (a pair's arithmetic never depends on the others)."""
    prev, next_ = _mixed_pairs()
    masked = tvl1_flow(prev, next_, MIXED, check_every=check_every, compact=False)
    compactions = _compactions(monkeypatch)
    compacted = tvl1_flow(prev, next_, MIXED, check_every=check_every)
    assert compactions and all(kept < batch for batch, kept in compactions)
    assert torch.equal(compacted, masked)


def test_host_is_asked_once_per_block_at_most():
    prev, next_ = smooth_images(2, 24, 30, seed=3), smooth_images(2, 24, 30, seed=4)
    params = TVL1Params(epsilon=0.0, warps=2, inner_iterations=12, outer_iterations=2)
    i0, i1 = prev.float(), next_.float()
    u = torch.zeros(2, 2, 24, 30)
    # epsilon 0: no pair ever stops, so every block runs and is checked once.
    for check_every, checks in ((12, 2 * 2), (4, 2 * 2 * 3)):
        count = sync_count(lambda k=check_every: tvl1_level(i0, i1, u, params, check_every=k))
        assert count == checks


@pytest.fixture(scope="module")
def compiled():
    torch._dynamo.reset()  # a fresh compile in this module, whatever ran before
    return compiled_steps()


def test_compiled_block_and_median_match_eager(compiled):
    block, median = compiled
    u, p, grad, rho_c, neg_inv_grad = block_inputs()
    active = torch.tensor([True, False, True])
    eager = inner_block(u, p, active, grad, rho_c, neg_inv_grad, steps=6, params=FAST)
    fused = block(u, p, active, grad, rho_c, neg_inv_grad, steps=6, params=FAST)
    for a, b in zip(eager, fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert torch.equal(fused[0][1], u[1]) and torch.equal(fused[1][1], p[1])
    network = median_network(25)
    torch.testing.assert_close(
        median(u, active, size=5, network=network),
        median_step(u, active, size=5, network=network),
        rtol=0,
        atol=0,
    )


def test_compiled_batches_left_behind_keep_the_compiled_floor(compiled, monkeypatch):
    """Compiled, the batch never shrinks below MIN_COMPILED_BATCH (sizes 1 and 2 would each
    compile a graph of their own) and the answers are the masked batch's to the bit."""
    from datp.flow.tvl1 import MIN_COMPILED_BATCH

    prev, next_ = _mixed_pairs()
    masked = tvl1_flow(prev, next_, MIXED, compiled=True, compact=False)
    compactions = _compactions(monkeypatch)
    compacted = tvl1_flow(prev, next_, MIXED, compiled=True)
    assert compactions and min(kept for _, kept in compactions) == MIN_COMPILED_BATCH
    assert torch.equal(compacted, masked)


@pytest.mark.parametrize(
    "case", ["textured", "constant", "single pair", "3x3 frames", "noise"]
)
def test_compiled_flow_matches_eager(compiled, case):
    if case == "constant":
        prev = next_ = torch.full((3, 24, 30), 77, dtype=torch.uint8)
    elif case == "single pair":
        prev, next_ = smooth_images(1, 24, 30, seed=5), smooth_images(1, 24, 30, seed=6)
    elif case == "3x3 frames":
        prev, next_ = smooth_images(3, 3, 3, seed=7), smooth_images(3, 3, 3, seed=8)
    elif case == "noise":
        gen = torch.Generator().manual_seed(9)
        prev, next_ = (torch.randint(0, 256, (4, 24, 30), generator=gen, dtype=torch.uint8)
                       for _ in range(2))
    else:
        prev = smooth_images(4, 24, 30, seed=10)
        next_ = prev.roll(shifts=(1, 2), dims=(1, 2))
    eager = tvl1_flow(prev, next_, FAST)
    fused = tvl1_flow(prev, next_, FAST, compiled=True)
    assert fused.shape == eager.shape == (prev.shape[0], 2, *prev.shape[1:])
    assert torch.isfinite(fused).all()
    # Fused arithmetic rounds differently; a pair may then stop an iteration earlier or later.
    torch.testing.assert_close(fused, eager, rtol=0, atol=2e-2)
    if case == "constant":
        assert fused.abs().max() == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_on_cuda_matches_eager_on_cpu():
    prev, next_ = smooth_images(4, 48, 64, seed=11), smooth_images(4, 48, 64, seed=12)
    cpu = tvl1_flow(prev, next_, FAST)
    gpu = tvl1_flow(prev.cuda(), next_.cuda(), FAST, compiled=True).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=2e-2)
