"""The CUDA ``decode_jpeg`` race (issue 29): corrupted iterations out of 200, today's call against
datp's, on baseline JPEGs (nvJPEG's hardware engine) and progressive ones (its software path).

    PYTHONPATH=. python benchmarks/decode_race.py                  # 200 iterations, ~100 ms work
    PYTHONPATH=. python benchmarks/decode_race.py --work-ms 30 --paths datp,ahead

The reproduction of pytorch/vision PR #9606 and torchcodec PR #1634, single-threaded and
deterministic. Each iteration

1. fills one tensor per image (the size of a decoded image, a known value each) and waits for
   the device, so that the blocks are resident and free of pending work;
2. queues about ``--work-ms`` of GPU work (``torch.cuda._sleep``), then one reduction per tensor,
   on the caller's stream;
3. frees the tensors while those reductions are still queued: the caching allocator may hand
   their blocks to the next allocation on that stream at once;
4. decodes the images (whose outputs may get those blocks);
5. waits for the device and checks every reduction against its exact value.

Nothing but a decoder that writes memory queued kernels have not read yet can change a
reduction. Paths: ``torchvision``, ``torchvision.io.decode_jpeg(files, device="cuda")`` called
as datp called it before the fix (the baseline, expected to corrupt); ``datp``,
:func:`datp.data.device_decode.decode_jpegs` (a host barrier on the outputs' stream first);
``ahead``, the way training and evaluation decode (:class:`StreamWorker`: the tensors of step 1
are a batch the decode thread made on its stream and handed over, step 4 decodes in that thread).
Prints one line per path and kind, and a ``FIGURE`` line each (``benchmarks/gpu_plan.py`` reads
them); ``handed`` counts the iterations in which a decoded image took one of the freed blocks.
"""

from __future__ import annotations

import argparse
import functools
import io
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

HEIGHT, WIDTH, IMAGES = 480, 640, 8
"""Each iteration decodes IMAGES JPEGs of this size (921,600 bytes each decoded)."""


def jpeg_files(count: int, *, progressive: bool, seed: int = 0) -> list[Tensor]:
    """``count`` distinct textured 640x480 JPEGs (quality 90) as 1-D uint8 tensors (Pillow:
    torchvision writes no progressive JPEG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    files = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (HEIGHT // 16, WIDTH // 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90, progressive=progressive)
        files.append(torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8))
    return files


def cycles_per_ms(device: torch.device) -> float:
    """What ``torch.cuda._sleep`` spins per millisecond on this GPU, timed with events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(1_000_000)  # warm-up
    start.record()
    torch.cuda._sleep(20_000_000)
    end.record()
    torch.cuda.synchronize(device)
    return 20_000_000 / start.elapsed_time(end)


def _fill(count: int, numel: int, device: torch.device) -> list[Tensor]:
    return [torch.full((numel,), i + 1, dtype=torch.uint8, device=device) for i in range(count)]


Decode = Callable[[list[Tensor]], list[Tensor]]


def corruptions(
    path: str, files: list[Tensor], *, iterations: int, work_ms: float,
    device: torch.device | None = None,
) -> tuple[int, int]:
    """(corrupted iterations, iterations in which the decoder was handed a freed block) of
    ``iterations`` runs of the reproduction through ``path`` (torchvision, datp or ahead)."""
    from torchvision.io import decode_jpeg

    from datp.data.device_decode import StreamWorker, decode_jpegs

    device = device or torch.device("cuda", torch.cuda.current_device())
    numel = 3 * HEIGHT * WIDTH
    expected = torch.tensor([(i + 1) * numel for i in range(len(files))])
    cycles = int(work_ms * cycles_per_ms(device))
    thread = StreamWorker(device) if path == "ahead" else None
    decode_in_thread = functools.partial(decode_jpegs, gray=False, device=device)
    decode: Decode = {
        "torchvision": lambda f: decode_jpeg(f, device=device),
        "datp": lambda f: decode_jpegs(f, gray=False, device=device),
        "ahead": lambda f: thread.take(thread.submit(decode_in_thread, f)),
    }[path]
    corrupted = handed = 0
    try:
        for _ in range(iterations):
            if thread is None:
                held = _fill(len(files), numel, device)
            else:  # a batch made on the decode stream, handed over as decode_ahead does
                held = thread.take(thread.submit(_fill, len(files), numel, device))
            torch.cuda.synchronize(device)
            blocks = {t.data_ptr() for t in held}
            torch.cuda._sleep(cycles)
            sums = [t.sum(dtype=torch.int64) for t in held]
            del held
            images = decode(files)
            torch.cuda.synchronize(device)
            handed += any(image.data_ptr() in blocks for image in images)
            corrupted += not torch.equal(torch.stack(sums).cpu(), expected)
            del images
    finally:
        if thread is not None:
            thread.close()
    return corrupted, handed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--work-ms", type=float, default=100.0,
                        help="GPU work queued before the reductions (the threads: about 100)")
    parser.add_argument("--paths", default="torchvision,datp,ahead")
    parser.add_argument("--kinds", default="baseline,progressive")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA: the race is between CUDA streams")
    import torchvision

    device = torch.device("cuda", torch.cuda.current_device())
    print(f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}; {IMAGES} JPEGs of {WIDTH}x{HEIGHT} per iteration, "
          f"{args.work_ms:g} ms of queued work, {args.iterations} iterations", flush=True)
    for kind in args.kinds.split(","):
        files = jpeg_files(IMAGES, progressive=kind == "progressive")
        for path in args.paths.split(","):
            corrupted, handed = corruptions(path, files, iterations=args.iterations,
                                            work_ms=args.work_ms, device=device)
            print(f"  {path:12s} {kind:12s} corrupted {corrupted}/{args.iterations}, decoder "
                  f"handed a freed block in {handed}", flush=True)
            print(f"FIGURE decode_race_{path}_{kind} {corrupted} corrupted/{args.iterations}",
                  flush=True)


if __name__ == "__main__":
    main()
