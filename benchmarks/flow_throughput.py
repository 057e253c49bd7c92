"""Throughput of our TV-L1 (``datp.flow.tvl1``) on many frame pairs at once, and its accuracy on
pairs with known motion: the GPU goal of issues 4 and 13 (>= 1,000 pairs/s at 340x256 on an
H100 or H200, OpenCV's default parameters).

    PYTHONPATH=. python benchmarks/flow_throughput.py --device cuda --modes eager,compiled
    PYTHONPATH=. python benchmarks/flow_throughput.py --device cpu --pairs 8 --batch-sizes 4,8

Modes: ``before`` (the loop before issue 13, which compacts the batch and asks the host after
every inner iteration: benchmarks/tvl1_before.py), ``eager`` (the masked loop) and
``compiled`` (the masked loop through ``torch.compile``; its first call compiles, and the time
it took is printed). For each mode, kernels and host synchronizations per inner iteration are
counted with the profiler (benchmarks/tvl1_counts.py).

Needs neither PyAV nor OpenCV (a device machine may have neither): the pairs are a random
textured image, smoothed like a natural scene, warped by the smooth known field of
``benchmarks/flow.py`` (``synthetic_pairs``, up to about 4 px), made on the CPU and moved to the
device. Pairs/s counts whole batches after one warm-up batch, synchronized.
EPE is the mean endpoint error to the known field over the interior (10 px border left out).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from benchmarks import tvl1_counts
from benchmarks.flow import synthetic_pairs
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


MODES = {
    "before": (lambda a, b, params: tvl1_flow_before(a, b, params), level_before),
    "eager": (lambda a, b, params: tvl1_flow(a, b, params), tvl1_counts.level_with()),
    "compiled": (
        lambda a, b, params: tvl1_flow(a, b, params, compiled=True),
        tvl1_counts.level_with(compiled=True),
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pairs", type=int, default=512, help="pairs timed per batch size")
    parser.add_argument("--batch-sizes", default="16,32,64,128,256")
    parser.add_argument("--modes", default="eager,compiled", help=", ".join(MODES))
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch._inductor.config.cpp.enable_kernel_profile = True  # compiled CPU kernels counted
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"device {device} ({where}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; {WIDTH}x{HEIGHT}, OpenCV's default TV-L1 parameters")
    params = TVL1Params()
    batches = [int(b) for b in args.batch_sizes.split(",")]
    pool = max(*batches, 8)
    prev, next_, truth = (torch.from_numpy(a).to(device) for a in
                          synthetic_pairs(textured_frames(pool, seed=0).numpy(), seed=1))
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
            print(f"\n{mode}: first call (8 pairs{', compiling' if mode == 'compiled' else ''})"
                  f" {first:.1f} s; EPE to the known motion {error.mean().item():.3f} px "
                  f"(mean |motion| {truth[:8].norm(dim=1).mean().item():.2f} px), to the first "
                  f"mode's flow {endpoint_error(flow, reference).mean().item():.4f} px")
            print(f"  {'batch':>6s} {'pairs':>6s} {'seconds':>8s} {'pairs/s':>9s}")
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
                line = f"  {batch:6d} {pairs:6d} {seconds:8.2f} {pairs / seconds:9.1f}"
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device) / 2**30
                    line += f"   peak GPU memory {peak:.1f} GiB"
                    torch.cuda.reset_peak_memory_stats(device)
                print(line, flush=True)
            # Last: the counts' warp (epsilon 0) is one more graph to compile.
            kernels, syncs = tvl1_counts.level_counts(level, device)
            print(f"  per inner iteration: {kernels:.1f} kernels, {syncs:.2f} host syncs")


if __name__ == "__main__":
    main()
