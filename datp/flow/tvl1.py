"""TV-L1 optical flow in PyTorch, batched over frame pairs, on CPU or CUDA.

B frame pairs, H, W image size, h, w the size of one pyramid level.

The duality-based TV-L1 of Zach, Pock and Bischof (DAGM 2007) as OpenCV's
``DualTVL1OpticalFlow`` runs it (Sanchez, Meinhardt-Llopis and Facciolo's formulation), with
the same defaults and the same numerical choices, so that the two agree to a fraction of a pixel:

- images are float in 0..255; the pyramid is built by repeated bilinear resizing with factor
  ``scale_step`` (OpenCV's ``resize`` with ``fx = fy = 0.8``: output size rounded, source
  coordinate ``(x + 0.5) / 0.8 - 0.5``), stopping before a level smaller than 16 pixels;
- the flow is upsampled to the next finer level bilinearly (to that level's size) and divided by
  ``scale_step``;
- at each level the dual variables start at zero; each warp samples the target image and its
  centred gradient at ``x + u`` bicubically (kernel parameter -0.75, zero outside the image,
  sampling positions rounded to 1/32 pixel as OpenCV's ``remap`` does);
- inner iterations: thresholding step for ``v``, ``u = v + theta div p``, forward-difference
  gradient, dual step ``p = (p + tau/theta grad u) / (1 + tau/theta |grad u|)``; a 5x5 median
  filter on ``u`` (replicated border) before each outer iteration;
- per pair, the iterations of a warp stop once the summed squared update of ``u`` falls to
  ``epsilon**2 * h * w`` (OpenCV's stopping rule); pairs that stopped are frozen by a mask
  while the rest of the batch goes on, and once enough of them have stopped the rest go on
  without them until the warp ends (the same arithmetic for every pair, to the bit).

Everything is tensor code: Python loops run over levels, warps and iterations, never pixels.
The inner iterations never wait on the host: the host counts the pairs still iterating once per
block of ``check_every`` iterations. ``compiled=True`` runs the blocks (and the median filter)
through ``torch.compile(fullgraph=True)``, which fuses each iteration into a few kernels: the
path for GPUs. On a CPU the eager path is as fast or faster and compiles nothing
(BENCHMARKS.md, "Optical flow").
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MIN_LEVEL_SIZE = 16
"""OpenCV stops adding pyramid levels before one whose side is below this."""

REMAP_SUBPIXELS = 32
"""OpenCV's ``remap`` rounds sampling positions to 1/32 pixel (INTER_BITS = 5)."""


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's ``DualTVL1OpticalFlow`` parameters, with its defaults."""

    tau: float = 0.25
    """Time step of the dual update."""
    lambda_: float = 0.15
    """Weight of the data term (OpenCV's ``lambda``)."""
    theta: float = 0.3
    """Coupling between ``u`` and ``v``."""
    nscales: int = 5
    """Pyramid levels (fewer when a level would fall below 16 pixels)."""
    warps: int = 5
    """Warps of the target image per level."""
    epsilon: float = 0.01
    """Stopping threshold on the root mean squared update of ``u``."""
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    """Size ratio between consecutive pyramid levels."""
    gamma: float = 0.0
    """Illumination term weight; only 0 (OpenCV's default) is implemented."""
    median_filtering: int = 5
    """Median filter size applied to ``u`` before each outer iteration; 1 or less: none."""

    def __post_init__(self) -> None:
        if self.gamma != 0:
            raise ValueError(f"only gamma = 0 is implemented, got {self.gamma}")
        if not 0 < self.scale_step < 1:
            raise ValueError(f"scale_step must lie in (0, 1), got {self.scale_step}")
        for name in ("nscales", "warps", "inner_iterations", "outer_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.median_filtering > 1 and self.median_filtering % 2 == 0:
            raise ValueError(f"median_filtering must be odd, got {self.median_filtering}")
        if self.tau <= 0 or self.theta <= 0 or self.lambda_ <= 0 or self.epsilon < 0:
            raise ValueError("tau, theta and lambda_ must be > 0 and epsilon >= 0")


# --------------------------------------------------------------------------- resizing


def linear_resize_matrix(
    size_out: int, size_in: int, scale: float, *, device: torch.device | None = None
) -> torch.Tensor:
    """``[size_out, size_in]`` bilinear weights along one axis, OpenCV's ``INTER_LINEAR``.

    Output pixel ``i`` samples input coordinate ``(i + 0.5) * scale - 0.5``, clamped to the
    image (replicated border).
    """
    # Built where it is used: a copy from the host would wait for the device (CUDA).
    source = (torch.arange(size_out, dtype=torch.float64, device=device) + 0.5) * scale - 0.5
    left = torch.floor(source)
    frac = source - left
    left = left.long()
    weights = torch.zeros(size_out, size_in, dtype=torch.float64, device=device)
    rows = torch.arange(size_out, device=device)
    weights.index_put_((rows, left.clamp(0, size_in - 1)), 1 - frac, accumulate=True)
    weights.index_put_((rows, (left + 1).clamp(0, size_in - 1)), frac, accumulate=True)
    return weights.to(device=device, dtype=torch.float32)


def resize_linear(
    images: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]
) -> torch.Tensor:
    """Bilinear resize ``[..., h, w] -> [..., size]``; ``scale`` = (y, x) input step per output."""
    rows = linear_resize_matrix(size[0], images.shape[-2], scale[0], device=images.device)
    cols = linear_resize_matrix(size[1], images.shape[-1], scale[1], device=images.device)
    return rows @ images @ cols.T


def pyramid_sizes(height: int, width: int, params: TVL1Params) -> list[tuple[int, int]]:
    """Level sizes, finest first, as OpenCV builds them (each level rounded from the last)."""
    sizes = [(height, width)]
    for _ in range(1, params.nscales):
        h, w = sizes[-1]
        size = (round(h * params.scale_step), round(w * params.scale_step))
        if min(size) < MIN_LEVEL_SIZE:
            break
        sizes.append(size)
    return sizes


def build_pyramid(images: torch.Tensor, params: TVL1Params) -> list[torch.Tensor]:
    """``[B, H, W]`` -> list of ``[B, h, w]``, finest first."""
    sizes = pyramid_sizes(images.shape[-2], images.shape[-1], params)
    levels = [images]
    inverse = 1.0 / params.scale_step
    for size in sizes[1:]:
        levels.append(resize_linear(levels[-1], size, (inverse, inverse)))
    return levels


def upsample_flow(flow: torch.Tensor, size: tuple[int, int], scale_step: float) -> torch.Tensor:
    """``[B, 2, h, w]`` -> ``[B, 2, size]``, resized bilinearly and divided by ``scale_step``."""
    h, w = flow.shape[-2:]
    return resize_linear(flow, size, (h / size[0], w / size[1])) / scale_step


# --------------------------------------------------------------------------- finite differences


def centered_gradient(images: torch.Tensor) -> torch.Tensor:
    """``[B, h, w]`` -> ``[B, 2, h, w]`` (d/dx, d/dy): central differences, one-sided halves at
    the border (OpenCV's ``centeredGradient``)."""
    padded = F.pad(images[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]  # [B, h + 2, w + 2]
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return torch.stack([dx, dy], dim=1)


def forward_gradient(u: torch.Tensor) -> torch.Tensor:
    """``[B, 2, h, w]`` -> ``[B, 2, 2, h, w]`` (component, d/dx d/dy): forward differences,
    zero on the last column (d/dx) and row (d/dy)."""
    if torch.compiler.is_compiling():
        # One padded expression that inductor fuses into its consumers.
        dx = F.pad(u[..., :, 1:] - u[..., :, :-1], (0, 1))
        dy = F.pad(u[..., 1:, :] - u[..., :-1, :], (0, 0, 0, 1))
        return torch.stack([dx, dy], dim=2)
    # Eager: the same values written into one buffer, fewer allocations.
    grad = u.new_zeros(*u.shape[:2], 2, *u.shape[2:])
    torch.sub(u[..., :, 1:], u[..., :, :-1], out=grad[:, :, 0, :, :-1])
    torch.sub(u[..., 1:, :], u[..., :-1, :], out=grad[:, :, 1, :-1, :])
    return grad


def divergence(p: torch.Tensor) -> torch.Tensor:
    """``[B, 2, 2, h, w]`` -> ``[B, 2, h, w]``: backward differences with zero before the
    first row and column (the adjoint of :func:`forward_gradient`, OpenCV's ``divergence``)."""
    px, py = p[:, :, 0], p[:, :, 1]
    if torch.compiler.is_compiling():
        div_x = px - F.pad(px[..., :, :-1], (1, 0))
        return div_x + (py - F.pad(py[..., :-1, :], (0, 0, 1, 0)))
    div = torch.empty_like(px)
    div[..., :, 0] = px[..., :, 0]
    torch.sub(px[..., :, 1:], px[..., :, :-1], out=div[..., :, 1:])
    div[..., 0, :] += py[..., 0, :]
    div[..., 1:, :] += py[..., 1:, :] - py[..., :-1, :]
    return div


def _batcher_comparators(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort network for ``n`` (a power of two) wires."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@functools.cache
def median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """Comparators ``(low, high, keep_min, keep_max)`` that leave the median of ``n`` (odd)
    values on wire ``n // 2``: a sorting network pruned to what the median depends on."""
    size = 1 << max(n - 1, 1).bit_length()
    # Wires >= n carry +inf, so comparators that touch them change nothing.
    pairs = [(a, b) for a, b in _batcher_comparators(size) if b < n]
    needed = {n // 2}
    kept = []
    for a, b in reversed(pairs):
        keep_min, keep_max = a in needed, b in needed
        if keep_min or keep_max:
            kept.append((a, b, keep_min, keep_max))
            needed |= {a, b}
    return tuple(reversed(kept))


def median_filter(
    u: torch.Tensor, size: int, *, network: tuple[tuple[int, int, bool, bool], ...] | None = None
) -> torch.Tensor:
    """``[..., h, w]`` median over ``size x size`` windows, replicated border (OpenCV's
    ``medianBlur``), computed with a pruned sorting network of elementwise min/max
    (``network``: :func:`median_network` of ``size**2``, looked up when None)."""
    network = median_network(size * size) if network is None else network
    r = size // 2
    h, w = u.shape[-2:]
    lead = u.shape[:-2]
    padded = F.pad(u.reshape(-1, 1, h, w), (r, r, r, r), mode="replicate")
    wires = [padded[..., i : i + h, j : j + w] for i in range(size) for j in range(size)]
    for a, b, keep_min, keep_max in network:
        x, y = wires[a], wires[b]
        if keep_min:
            wires[a] = torch.minimum(x, y)
        if keep_max:
            wires[b] = torch.maximum(x, y)
    return wires[size * size // 2].reshape(*lead, h, w)


# --------------------------------------------------------------------------- warping


def pixel_grid(height: int, width: int, *, device: torch.device) -> torch.Tensor:
    """``[2, h, w]`` pixel coordinates (x, y)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack([xs, ys])


def warp_bicubic(images: torch.Tensor, flow: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample ``images [B, C, h, w]`` at ``grid + flow`` (``flow [B, 2, h, w]``, ``grid [2, h,
    w]``) bicubically, zero outside, positions rounded to 1/32 pixel (OpenCV's ``remap``)."""
    h, w = images.shape[-2:]
    positions = torch.round((grid + flow) * REMAP_SUBPIXELS) / REMAP_SUBPIXELS  # [B, 2, h, w]
    # Python scales, not a tensor made on the host: its copy to a GPU would wait (a sync).
    sample_grid = torch.stack(
        [positions[:, 0] * (2.0 / max(w - 1, 1)) - 1, positions[:, 1] * (2.0 / max(h - 1, 1)) - 1],
        dim=-1,
    )  # [B, h, w, 2]
    return F.grid_sample(
        images, sample_grid, mode="bicubic", padding_mode="zeros", align_corners=True
    )


# --------------------------------------------------------------------------- one level


def inner_block(
    u: torch.Tensor,
    p: torch.Tensor,
    active: torch.Tensor,
    i1w_grad: torch.Tensor,
    rho_c: torch.Tensor,
    neg_inv_grad: torch.Tensor,
    *,
    steps: int,
    params: TVL1Params,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``steps`` inner iterations on ``u [B, 2, h, w]`` and ``p [B, 2, 2, h, w]``; pairs whose
    ``active [B]`` is False keep their ``u`` and ``p``. Returns new ``u``, ``p``, ``active``.

    ``i1w_grad [B, 2, h, w]``, ``rho_c`` and ``neg_inv_grad [B, h, w]`` are the warp's
    linearization (see :func:`tvl1_level`). A pair whose update fell to OpenCV's threshold
    (summed squared update ``<= epsilon**2 h w``) keeps that iteration's result and is frozen
    from the next one on: the same stopping rule as OpenCV's per-pair loop, with a mask instead
    of a branch. Pure tensor code with no host synchronization, no data-dependent Python
    control flow and no ``out=`` writes, so ``torch.compile(fullgraph=True)`` fuses it.
    """
    l_t = params.lambda_ * params.theta
    taut = params.tau / params.theta
    scaled_epsilon = params.epsilon**2 * u.shape[-2] * u.shape[-1]
    for _ in range(steps):
        # A frozen pair gets a zero update of u and a dual step of size 0, which leave u and p
        # exactly as they are (x + 0 = x, x / 1 = x): a mask without a torch.where pass.
        keep = active[:, None, None, None].to(u.dtype)  # [B, 1, 1, 1], 1 or 0
        taut_kept = keep * taut
        # Thresholding step: v = u + step * grad I1w, step = clamp(-rho / |grad|^2).
        rho = (i1w_grad * u).sum(1).add_(rho_c)  # [B, h, w]
        step = rho.mul_(neg_inv_grad).clamp_(-l_t, l_t)
        # u_new - u = (v - u) + theta div p
        du = torch.mul(i1w_grad, step[:, None]).add_(divergence(p), alpha=params.theta)
        du = du.mul_(keep)  # [B, 2, h, w]
        error = du.square().sum((1, 2, 3))  # [B]
        u = u + du
        # Dual step on p.
        grad_u = forward_gradient(u)  # [B, 2, 2, h, w]
        norm = torch.hypot(grad_u[:, :, 0], grad_u[:, :, 1]).mul_(taut_kept).add_(1.0)
        p = grad_u.mul_(taut_kept[..., None]).add_(p).div_(norm[:, :, None])  # [B, 2, 2, h, w]
        active = active & (error > scaled_epsilon)
    return u, p, active


def median_step(
    u: torch.Tensor, active: torch.Tensor, *, size: int, network: tuple
) -> torch.Tensor:
    """``u [B, 2, h, w]`` median-filtered where ``active [B]``, unchanged elsewhere
    (``network``: :func:`median_network` of ``size**2``)."""
    filtered = median_filter(u, size, network=network)
    return torch.where(active[:, None, None, None], filtered, u)


@functools.cache
def compiled_steps() -> tuple:
    """(inner_block, median_step) compiled by ``torch.compile(fullgraph=True, dynamic=True)``.

    Dynamic shapes: one graph serves every pyramid level and batch size (a static graph per
    level and batch would recompile for each), so a dataset run compiles once per process;
    inductor's on-disk caches (``TORCHINDUCTOR_CACHE_DIR``) make later processes cheaper.
    """
    options = {"fullgraph": True, "dynamic": True}
    return torch.compile(inner_block, **options), torch.compile(median_step, **options)


DEFAULT_CHECK_EVERY = 10
"""Inner iterations between two host checks of "has every pair stopped?" (see tvl1_level)."""

MIN_COMPILED_BATCH = 3
"""The compiled path pads smaller batches to this size (see tvl1_flow)."""

COMPACT_BELOW = 0.75
"""At a check, the pairs still iterating leave the others behind once they are at most this
share of the batch that ran the block (see tvl1_level)."""


@dataclass
class _Running:
    """The pairs of one warp still iterating, and the warp's linearization of them: ``u [b, 2,
    h, w]``, ``p [b, 2, 2, h, w]``, ``active [b]``, ``i1w_grad [b, 2, h, w]``, ``rho_c`` and
    ``neg_inv_grad [b, h, w]``; ``where [b]``: their places in the level's batch (None: all
    of it, in order)."""

    u: torch.Tensor
    p: torch.Tensor
    active: torch.Tensor
    i1w_grad: torch.Tensor
    rho_c: torch.Tensor
    neg_inv_grad: torch.Tensor
    where: torch.Tensor | None = None

    def keep(self, order: torch.Tensor) -> _Running:
        """The pairs at ``order`` (indices into this batch, on its device)."""
        pick = functools.partial(torch.index_select, dim=0, index=order)
        return _Running(pick(self.u), pick(self.p), pick(self.active), pick(self.i1w_grad),
                        pick(self.rho_c), pick(self.neg_inv_grad),
                        order if self.where is None else self.where[order])

    def merged(self, u: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The level's ``u`` and ``p`` with these pairs' values put back in their places."""
        if self.where is None:
            return self.u, self.p
        return u.index_copy(0, self.where, self.u), p.index_copy(0, self.where, self.p)


def tvl1_level(
    i0: torch.Tensor,
    i1: torch.Tensor,
    u: torch.Tensor,
    params: TVL1Params,
    *,
    compiled: bool = False,
    check_every: int = DEFAULT_CHECK_EVERY,
    compact: bool = True,
) -> torch.Tensor:
    """Refine ``u [B, 2, h, w]`` between ``i0`` and ``i1`` ``[B, h, w]`` at one pyramid level.

    Pairs that meet the stopping rule are frozen by a mask inside :func:`inner_block`, so the
    inner iterations never wait on the host. The host counts the pairs still iterating once per
    ``check_every`` inner iterations (the loop's one read of the device) to leave the warp once
    none is; ``compact``: once they are at most :data:`COMPACT_BELOW` of the batch that ran, the
    next blocks run on them alone (with frozen pairs to pad the compiled path's batch to
    :data:`MIN_COMPILED_BATCH`) and the others wait for the next warp unchanged, as the mask
    leaves them. Every pair's arithmetic is its own, so neither ``check_every`` nor ``compact``
    changes an answer, only the wasted work. ``compiled`` runs the blocks through
    :func:`compiled_steps`.
    """
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    block, median = compiled_steps() if compiled else (inner_block, median_step)
    network = median_network(params.median_filtering**2)
    floor = MIN_COMPILED_BATCH if compiled else 1
    batch, _, h, w = u.shape
    grid = pixel_grid(h, w, device=u.device)
    # The target image and its gradient, warped together: [B, 3, h, w].
    target = torch.cat([i1[:, None], centered_gradient(i1)], dim=1)
    p = u.new_zeros(batch, 2, 2, h, w)  # dual variables: [B, component, d/dx d/dy, h, w]

    for _ in range(params.warps):
        warped = warp_bicubic(target, u, grid)
        # Dense, so that compiled kernels see one layout whatever sliced it: [B, h, w], [B, 2, h, w]
        i1w, i1w_grad = warped[:, 0], warped[:, 1:].contiguous()
        # rho(u) = rho_c + <grad I1w, u>, the linearized brightness residual.
        rho_c = i1w - (i1w_grad * u).sum(1) - i0
        # -1 / |grad I1w|^2, huge where the gradient vanishes so that the clamp below picks
        # the +-l_t branches as OpenCV does (and 0 when rho is 0).
        neg_inv_grad = -1.0 / i1w_grad.square().sum(1).clamp_min(1e-30)  # [B, h, w]
        active = torch.ones(batch, dtype=torch.bool, device=u.device)
        run = _Running(u, p, active, i1w_grad, rho_c, neg_inv_grad)
        run, u, p = _outer_iterations(run, u, p, params, block=block, median=median,
                                      network=network, check_every=check_every,
                                      floor=floor if compact else None)
        u, p = run.merged(u, p)
    return u


def _outer_iterations(
    run: _Running, u: torch.Tensor, p: torch.Tensor, params: TVL1Params, *, block, median,
    network, check_every: int, floor: int | None,
) -> tuple[_Running, torch.Tensor, torch.Tensor]:
    """One warp's outer iterations on the pairs of ``run``, until every pair has stopped;
    returns the pairs still running and ``u``, ``p`` with those left behind (``floor``: compact
    the batch, not below that many pairs; None: never)."""
    iterating = len(run.active)
    for _ in range(params.outer_iterations):
        if params.median_filtering > 1:
            run.u = median(run.u, run.active, size=params.median_filtering, network=network)
        for first in range(0, params.inner_iterations, check_every):
            steps = min(check_every, params.inner_iterations - first)
            run.u, run.p, run.active = block(
                run.u, run.p, run.active, run.i1w_grad, run.rho_c, run.neg_inv_grad,
                steps=steps, params=params,
            )
            iterating = int(run.active.sum())  # the loop's one host sync, once a block
            if iterating == 0:
                break
            kept = max(iterating, floor or 0)
            if (floor is not None and iterating <= COMPACT_BELOW * len(run.active)
                    and kept < len(run.active)):
                u, p = run.merged(u, p)  # the pairs left behind, in their places
                # The iterating pairs first (in order), then frozen ones up to the floor.
                order = torch.argsort(run.active.to(torch.uint8), descending=True,
                                      stable=True)[:kept]
                run = run.keep(order)
        if iterating == 0:
            break
    return run, u, p


def coarse_to_fine(
    prev: torch.Tensor, next: torch.Tensor, params: TVL1Params, *, level=tvl1_level
) -> torch.Tensor:
    """``[B, H, W]`` twice -> ``[B, 2, H, W]``: ``level(i0, i1, u, params)`` from the coarsest
    pyramid level to the finest, the flow upsampled in between."""
    i0_levels = build_pyramid(prev.float(), params)
    i1_levels = build_pyramid(next.float(), params)
    coarsest = i0_levels[-1]
    u = coarsest.new_zeros(prev.shape[0], 2, *coarsest.shape[-2:])
    for index in range(len(i0_levels) - 1, -1, -1):
        u = level(i0_levels[index], i1_levels[index], u, params)
        if index > 0:
            u = upsample_flow(u, tuple(i0_levels[index - 1].shape[-2:]), params.scale_step)
    return u


def tvl1_flow(
    prev: torch.Tensor,
    next: torch.Tensor,
    params: TVL1Params | None = None,
    *,
    compiled: bool = False,
    check_every: int = DEFAULT_CHECK_EVERY,
    compact: bool = True,
) -> torch.Tensor:
    """TV-L1 flow from ``prev`` to ``next``, both ``[B, H, W]`` (uint8 or float in 0..255).

    Returns float32 ``[B, 2, H, W]`` (x, y displacement in pixels): ``prev(p)`` matches
    ``next(p + flow(p))``. Runs on the inputs' device; ``compiled`` fuses the inner iterations
    with ``torch.compile`` (see :func:`compiled_steps`; the first call compiles). ``compact``
    runs the pairs still iterating without those that stopped (see :func:`tvl1_level`; the
    same answers, less work on a batch whose pairs stop at different iterations).
    """
    params = params or TVL1Params()
    if prev.shape != next.shape or prev.ndim != 3:
        raise ValueError(
            f"expected prev and next [B, H, W] of one shape, got {tuple(prev.shape)} and "
            f"{tuple(next.shape)}"
        )
    if min(prev.shape[-2:]) < 3:
        raise ValueError(f"frames must be at least 3x3 pixels, got {tuple(prev.shape[-2:])}")
    batch = prev.shape[0]
    if compiled and batch < MIN_COMPILED_BATCH:
        # Sizes 1 and 2 would each get a graph of their own (torch specializes on 1, and on 2
        # when it equals the x, y channel count); pairs are independent, so padding with copies
        # of the last pair changes nothing for the others.
        extra = MIN_COMPILED_BATCH - batch
        prev, next = (torch.cat([x, x[-1:].expand(extra, *x.shape[1:])]) for x in (prev, next))
    level = functools.partial(tvl1_level, compiled=compiled, check_every=check_every,
                              compact=compact)
    return coarse_to_fine(prev, next, params, level=level)[:batch]


def endpoint_error(flow: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean endpoint error per pair: ``[B, 2, H, W]`` twice -> ``[B]``."""
    return torch.linalg.vector_norm(flow - reference, dim=1).mean((-2, -1))
