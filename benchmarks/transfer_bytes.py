"""Bytes per clip that cross from the loader to the model, RGB and flow, per device default.

    PYTHONPATH=. python benchmarks/transfer_bytes.py           # bytes, both devices' defaults
    PYTHONPATH=. python benchmarks/transfer_bytes.py --time    # and the CPU default's timing

Writes a small UCF101-like synthetic dataset at 340x256 (and random smooth flow folders of
its videos), then reads training batches through datp's DataLoader as ``datp train`` builds
them with ``data.normalize_on_device = "auto"`` (:func:`datp.data.build.normalizes_on_device`)
for a CPU and for CUDA, and sums the bytes of every tensor of a collated batch (inputs, times,
labels, frame indices, frame counts) per clip: what worker shared memory, the pin thread and
the host-to-device copy carry.

``--time`` measures what decides the CPU default: the CPU milliseconds per clip of loading
plus normalizing, by the loader (float32 clips collated) or after it (uint8 clips collated,
then normalized as ``forward_batch`` does, which is where "on the device" runs on a CPU),
counted as process time in one process so that other load on a shared machine does not count.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.loading import smooth_flow
from datp.config import DataConfig
from datp.data.build import build_dataset, normalizes_on_device
from datp.data.dataset import collate_videos
from datp.data.frames import write_flow
from datp.data.functional import normalize
from datp.data.splits import read_ucf101
from datp.data.synthetic import SynthConfig, generate
from datp.data.video import VideoReader


def write_data(root: Path, *, frames: int) -> None:
    generate(SynthConfig(classes=2, videos_per_class=4, clips_per_group=2, frames=frames,
                         height=256, width=340), root)
    seed = 0
    for subset in ("train", "test"):
        for item in read_ucf101(root / "ucfTrainTestlist", split=1, subset=subset).items:
            with VideoReader(root / "videos" / item.path) as reader:
                count = len(reader.read_all())
            seed += 1
            flow = smooth_flow(count - 1, seed=seed)  # [T, 2, 240, 320]
            flow = torch.nn.functional.interpolate(torch.from_numpy(flow).float(),
                                                   size=(256, 340)).to(torch.uint8).numpy()
            write_flow(root / "flow" / item.path[: -len(".avi")], flow, quality=90)


def batch_bytes(batch: dict) -> int:
    return sum(v.numel() * v.element_size() for v in batch.values() if torch.is_tensor(v))


def dataset(root: Path, modality: str, on_device: bool, segments: int):
    return build_dataset(DataConfig(root=str(root), source="video", modality=modality,
                                    num_segments=segments, flow_length=5, image_size=224,
                                    resize_short=256, normalize_on_device=on_device,
                                    decode="workers"), subset="train")


def cpu_ms(data, *, normalize_here: bool, batches: int) -> float:
    """CPU milliseconds per clip (process time, so other load on the machine does not count)
    of loading batches of 4 in this process (0 workers) and normalizing them here when
    ``normalize_here``, as forward_batch does with a uint8 batch, without the model."""
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, num_workers=0,
                                         collate_fn=collate_videos)
    iterator = iter(loader)
    next(iterator)  # warm-up
    seen, start = 0, time.process_time()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        if normalize_here:
            inputs = batch["inputs"]
            normalize(inputs, modality="rgb" if inputs.shape[-3] == 3 else "flow")
        seen += batch["inputs"].shape[0]
    return 1e3 * (time.process_time() - start) / seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--time", action="store_true")
    parser.add_argument("--batches", type=int, default=6, help="batches of 4 timed (--time)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="datp-transfer-"))
    try:
        write_data(root, frames=args.frames)
        print(f"N = {args.segments}, crop 224 from 340x256, flow L = 5; torch {torch.__version__}, "
              f"{platform.machine()}", flush=True)
        print(f"{'device':<6} {'stream':<6} {'auto =':<7} {'inputs':<8} {'bytes per clip':>15}")
        for device in ("cpu", "cuda"):
            on_device = normalizes_on_device("auto", device)
            for modality in ("rgb", "flow"):
                data = dataset(root, modality, on_device, args.segments)
                batch = collate_videos([data[0], data[1]])
                dtype = str(batch["inputs"].dtype).removeprefix("torch.")
                print(f"{device:<6} {modality:<6} {str(on_device).lower():<7} {dtype:<8} "
                      f"{batch_bytes(batch) / 2:>15,.0f}", flush=True)
        if args.time:
            print("CPU ms per clip, loading + normalization in one process (median of "
                  f"{args.repeats}, interleaved): normalized by the loader | by forward_batch "
                  "(normalize_on_device=true on a CPU)", flush=True)
            for modality in ("rgb", "flow"):
                times: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(args.repeats):
                    for on_device in (False, True):
                        times[on_device].append(cpu_ms(
                            dataset(root, modality, on_device, args.segments),
                            normalize_here=on_device, batches=args.batches))
                loader, device = (statistics.median(times[k]) for k in (False, True))
                print(f"  {modality:<5} {loader:7.1f} | {device:7.1f}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
