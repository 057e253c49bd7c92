"""The TV-L1 level loop as it was before issue 13 (datp/flow/tvl1.py at commit 95f5e43), kept
verbatim so that benchmarks measure before against after on the same machine in one run.

B frame pairs, h, w the size of one pyramid level.

It compacts the batch instead of masking: after every inner iteration the host reads whether
each pair has stopped (``bool(going.all())``) and, when one has, boolean-indexes the working
batch (``aten::nonzero``, a second host synchronization on a GPU). Not used by the library.

    tvl1_flow_before(prev [B, H, W], next [B, H, W], params) -> [B, 2, H, W]
"""

from __future__ import annotations

import torch

from datp.flow.tvl1 import (
    TVL1Params,
    centered_gradient,
    coarse_to_fine,
    median_filter,
    pixel_grid,
    warp_bicubic,
)


def forward_gradient(u: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 2, h, w]`` -> ``[B, 2, 2, h, w]`` (component, d/dx d/dy): forward differences,
    zero on the last column (d/dx) and row (d/dy)."""
    if out is None:
        out = u.new_zeros(*u.shape[:2], 2, *u.shape[2:])
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=out[:, :, 0, :, :-1])
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=out[:, :, 1, :-1, :])
    return out


def divergence(p: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 2, 2, h, w]`` -> ``[B, 2, h, w]``: backward differences with zero before the
    first row and column (the adjoint of :func:`forward_gradient`, OpenCV's ``divergence``)."""
    px, py = p[:, :, 0], p[:, :, 1]
    if out is None:
        out = torch.empty_like(px)
    out[..., :, 0] = px[..., :, 0]
    torch.sub(px[..., :, 1:], px[..., :, :-1], out=out[..., :, 1:])
    out[..., 0, :] += py[..., 0, :]
    out[..., 1:, :] += py[..., 1:, :] - py[..., :-1, :]
    return out


def tvl1_level(
    i0: torch.Tensor, i1: torch.Tensor, u: torch.Tensor, params: TVL1Params
) -> torch.Tensor:
    """Refine ``u [B, 2, h, w]`` between ``i0`` and ``i1`` ``[B, h, w]`` at one pyramid level.

    Within a warp, pairs that meet the stopping rule leave the working batch (their ``u`` and
    ``p`` are written back), so the rest run on a smaller batch instead of idling along.
    """
    batch, _, h, w = u.shape
    u = u.clone()
    l_t = params.lambda_ * params.theta
    taut = params.tau / params.theta
    scaled_epsilon = params.epsilon**2 * h * w
    grid = pixel_grid(h, w, device=u.device)
    # The target image and its gradient, warped together: [B, 3, h, w].
    target = torch.cat([i1[:, None], centered_gradient(i1)], dim=1)
    p = u.new_zeros(batch, 2, 2, h, w)  # dual variables: [B, component, d/dx d/dy, h, w]

    for _ in range(params.warps):
        warped = warp_bicubic(target, u, grid)
        i1w, i1w_grad = warped[:, 0], warped[:, 1:]  # [B, h, w], [B, 2, h, w]
        # rho(u) = rho_c + <grad I1w, u>, the linearized brightness residual.
        rho_c = i1w - (i1w_grad * u).sum(1) - i0
        # -1 / |grad I1w|^2, huge where the gradient vanishes so that the clamp below picks
        # the +-l_t branches as OpenCV does (and 0 when rho is 0).
        neg_inv_grad = -1.0 / i1w_grad.square().sum(1).clamp_min(1e-30)  # [B, h, w]

        pairs = torch.arange(batch, device=u.device)  # the working batch, as indices into B
        wu, wp = u, p
        for _ in range(params.outer_iterations):
            if params.median_filtering > 1:
                wu = median_filter(wu, params.median_filtering)
            for _ in range(params.inner_iterations):
                # Thresholding step: v = u + step * grad I1w, step = clamp(-rho / |grad|^2).
                rho = rho_c + (i1w_grad * wu).sum(1)  # [b, h, w]
                step = (rho * neg_inv_grad).clamp_(-l_t, l_t)
                # u_new - u = (v - u) + theta div p
                du = i1w_grad * step[:, None]  # [b, 2, h, w]
                du.add_(divergence(wp), alpha=params.theta)
                wu = wu + du
                error = du.square().sum((1, 2, 3))  # [b]
                # Dual step on p.
                grad_u = forward_gradient(wu)  # [b, 2, 2, h, w]
                norm = torch.hypot(grad_u[:, :, 0], grad_u[:, :, 1]).mul_(taut).add_(1.0)
                wp = grad_u.mul_(taut).add_(wp).div_(norm[:, :, None])
                going = error > scaled_epsilon
                if not bool(going.all()):
                    done = ~going
                    u[pairs[done]] = wu[done]
                    p[pairs[done]] = wp[done]
                    pairs, wu, wp = pairs[going], wu[going], wp[going]
                    i1w_grad, rho_c = i1w_grad[going], rho_c[going]
                    neg_inv_grad = neg_inv_grad[going]
                    if pairs.numel() == 0:
                        break
            if pairs.numel() == 0:
                break
        if pairs.numel():
            u[pairs] = wu
            p[pairs] = wp
    return u


def tvl1_flow_before(
    prev: torch.Tensor, next: torch.Tensor, params: TVL1Params | None = None
) -> torch.Tensor:
    """The pre-issue-13 ``tvl1_flow``: the same pyramid, the compacting level loop."""
    return coarse_to_fine(prev, next, params or TVL1Params(), level=tvl1_level)
