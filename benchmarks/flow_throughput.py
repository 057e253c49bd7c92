"""Throughput of our TV-L1 (``datp.flow.tvl1``) on many frame pairs at once, and its accuracy on
pairs with known motion: the GPU goal of issues 4 and 13 (>= 1,000 pairs/s at 340x256 on an
H100 or H200, OpenCV's default parameters).

    PYTHONPATH=. python benchmarks/flow_throughput.py --device cuda --modes eager,compiled
    PYTHONPATH=. python benchmarks/flow_throughput.py --device cpu --pairs 8 --batch-sizes 4,8

Modes: ``before`` (the loop before issue 13, which compacts the batch and asks the host after
every inner iteration: benchmarks/tvl1_before.py), ``masked`` (issue 13's loop: stopped pairs
frozen by a mask until the warp ends), ``eager`` (the masked loop that leaves the stopped pairs
behind at its checks, issue 29), and ``compiled-masked`` / ``compiled`` (the same two through
``torch.compile``; the first call compiles, and the time it took is printed). Each mode's flow
is compared with the first mode's, to the bit and as an EPE. For each mode, kernels and host
synchronizations per inner iteration are counted with the profiler
(benchmarks/tvl1_counts.py). A ``FIGURE`` line gives each mode's best pairs/s.

Needs neither PyAV nor OpenCV (a device machine may have neither): the pairs are a random
textured image, smoothed like a natural scene, warped by a smooth known field (that of
``benchmarks/flow.py``, up to about 4 px, scaled), made on the CPU and moved to the device.
``--motion mixed`` (the default) makes every batch hold still pairs (no motion), slow ones
(x 0.1, under half a pixel) and fast ones (x 3, up to about 12 px) in turn, as a real video's
pairs are: a masked batch runs until its slowest pair stops, so uniform pairs (``--motion
uniform``, every field x 1) flatter large batches. Pairs/s counts whole batches after one
warm-up batch, synchronized; each line is printed as soon as it is measured.
EPE is the mean endpoint error to the known field over the interior (10 px border left out).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from benchmarks import tvl1_counts
from benchmarks.flow import smooth_field
from benchmarks.tvl1_before import tvl1_flow_before
from benchmarks.tvl1_before import tvl1_level as level_before
from datp.flow.tvl1 import TVL1Params, endpoint_error, tvl1_flow

HEIGHT, WIDTH = 256, 340


def textured_frames(count: int, *, seed: int) -> torch.Tensor:
    """uint8 ``[B, H, W]``: noise smoothed at several scales (edges at every size)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    image = torch.zeros(count, 1, HEIGHT, WIDTH)
    for scale in (4, 16, 64):
        noise = torch.rand(count, 1, HEIGHT // scale + 1, WIDTH // scale + 1, generator=g)
        image += F.interpolate(noise, size=(HEIGHT, WIDTH), mode="bicubic", align_corners=False)
    image = (image - image.amin((2, 3), keepdim=True)) / image.amax((2, 3), keepdim=True).sub(
        image.amin((2, 3), keepdim=True)
    )
    return (255 * image[:, 0]).round().to(torch.uint8)


MOTION_SCALES = {"mixed": (0.0, 0.1, 3.0), "uniform": (1.0,)}
"""The scale of the known field for pair i: ``scales[i % len(scales)]``."""


def known_motion_pairs(frames: torch.Tensor, scales: tuple[float, ...], *, seed: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(prev, next, field): ``next`` is ``frames`` (uint8 ``[B, H, W]``); ``prev(p) =
    next(p + field(p))`` by bicubic sampling; field float32 ``[B, 2, H, W]``."""
    count, height, width = frames.shape
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(),
                            indexing="ij")
    fields = torch.stack([torch.from_numpy(smooth_field(height, width, seed + i))
                          * scales[i % len(scales)] for i in range(count)])  # [B, 2, H, W]
    gx = (xs + fields[:, 0]) * 2 / (width - 1) - 1
    gy = (ys + fields[:, 1]) * 2 / (height - 1) - 1
    warped = F.grid_sample(frames[:, None].float(), torch.stack([gx, gy], -1), mode="bicubic",
                           padding_mode="border", align_corners=True)[:, 0]
    return warped.round().clamp(0, 255).to(torch.uint8), frames, fields


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ours(*, compiled: bool, compact: bool):
    """(flow function, level for the counts) of datp's TV-L1 with these settings."""
    return (
        lambda a, b, params: tvl1_flow(a, b, params, compiled=compiled, compact=compact),
        tvl1_counts.level_with(compiled=compiled, compact=compact),
    )


MODES = {
    "before": (lambda a, b, params: tvl1_flow_before(a, b, params), level_before),
    "masked": _ours(compiled=False, compact=False),
    "eager": _ours(compiled=False, compact=True),
    "compiled-masked": _ours(compiled=True, compact=False),
    "compiled": _ours(compiled=True, compact=True),
}
"""``masked``: every pair stays in the batch until the warp ends (issue 13's loop); ``eager``
and ``compiled``: the pairs still iterating go on without those that stopped (issue 29)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=512, help="pairs timed per batch size")
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--modes", default="eager,compiled", help=", ".join(MODES))
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--motion", default="mixed", choices=tuple(MOTION_SCALES),
                        help="mixed: still, slow and fast pairs in every batch")
    parser.add_argument("--no-counts", action="store_true",
                        help="skip the kernel and host-sync counts (time)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch._inductor.config.cpp.enable_kernel_profile = True  # compiled CPU kernels counted
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"device {device} ({where}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; {WIDTH}x{HEIGHT}, OpenCV's default TV-L1 parameters; "
          f"{args.motion} motion (field scales {MOTION_SCALES[args.motion]})", flush=True)
    params = TVL1Params()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    pool = max(*batches, 8)
    prev, next_, truth = (t.to(device) for t in known_motion_pairs(
        textured_frames(pool, seed=0), MOTION_SCALES[args.motion], seed=1))
    reference = None
    with torch.inference_mode():
        for mode in args.modes.split(","):
            flow_fn, level = MODES[mode]
            start = time.perf_counter()
            flow = flow_fn(prev[:8], next_[:8], params)
            sync(device)
            first = time.perf_counter() - start
            error = endpoint_error(flow[..., 10:-10, 10:-10], truth[:8, :, 10:-10, 10:-10])
            reference = flow if reference is None else reference
            compiling = ", compiling" if mode.startswith("compiled") else ""
            same = "identical" if torch.equal(flow, reference) else "not identical"
            print(f"\n{mode}: first call (8 pairs{compiling}) {first:.1f} s; EPE to the known "
                  f"motion {error.mean().item():.3f} px (mean |motion| "
                  f"{truth[:8].norm(dim=1).mean().item():.2f} px), to the first mode's flow "
                  f"{endpoint_error(flow, reference).mean().item():.4f} px ({same})",
                  flush=True)
            print(f"  {'batch':>6s} {'pairs':>6s} {'seconds':>8s} {'pairs/s':>9s}", flush=True)
            best = 0.0
            for batch in batches:
                flow_fn(prev[:batch], next_[:batch], params)  # warm-up
                sync(device)
                rounds = max(1, args.pairs // batch)
                start = time.perf_counter()
                for _ in range(rounds):
                    flow_fn(prev[:batch], next_[:batch], params)
                sync(device)
                seconds = time.perf_counter() - start
                pairs = rounds * batch
                best = max(best, pairs / seconds)
                line = f"  {batch:6d} {pairs:6d} {seconds:8.2f} {pairs / seconds:9.2f}"
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device) / 2**30
                    line += f"   peak GPU memory {peak:.1f} GiB"
                    torch.cuda.reset_peak_memory_stats(device)
                print(line, flush=True)
            print(f"FIGURE tvl1_{mode.replace('-', '_')}_{args.motion}_pairs_per_s {best:.2f} "
                  "pairs/s", flush=True)
            if args.no_counts:
                continue
            # Last: the counts' warp (epsilon 0) is one more graph to compile.
            kernels, syncs = tvl1_counts.level_counts(level, device)
            print(f"  per inner iteration: {kernels:.1f} kernels, {syncs:.2f} host syncs",
                  flush=True)


if __name__ == "__main__":
    main()
