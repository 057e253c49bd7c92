"""How strongly TV-L1 sees the synthetic benchmark's objects move: per frame, the 98th percentile
of the flow magnitude (px), averaged over the frames of the key windows, of the decoy windows
and of the rest, over every video of a `datp synth` folder whose flow `datp flow` (or the demo)
extracted in compact format into DATA/flow.

    python benchmarks/synthetic_flow_signal.py runs/experiments/kf0.25/data

Flow the class objects make should stand out from the rest; on the first, untextured version of
the benchmark it did not (docs/RESULTS.md, Table 5).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from datp.data.compact_flow import CompactFlow
from datp.data.frames import dequantize_flow


def window_mask(spans: list[tuple[int, int]], length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    for start, end in spans:
        mask[start:min(end, length)] = True
    return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="a datp synth folder with flow/ beside videos/")
    args = parser.parse_args()
    with open(args.data / "annotations" / "key_windows.csv") as handle:
        rows = list(csv.DictReader(handle))
    figures: dict[str, list[float]] = {"key": [], "decoy": [], "rest": []}
    for row in rows:
        source = CompactFlow(args.data / "flow" / Path(row["video"]).with_suffix(".flow"))
        quantized = source.read_flow(range(source.num_frames), 1)[:, 0]  # [T, 2, H, W]
        fields = dequantize_flow(quantized, bound=source.bound)
        magnitude = np.hypot(fields[:, 0], fields[:, 1]).reshape(len(fields), -1)  # [T, HW]
        peak = np.percentile(magnitude, 98, axis=1)  # [T]
        key = window_mask([(int(row["key_start"]), int(row["key_end"]))], len(peak))
        decoy = window_mask([tuple(int(x) for x in d.split(":")[0].split("-"))
                             for d in row["decoys"].split(";") if d], len(peak))
        for name, mask in (("key", key), ("decoy", decoy), ("rest", ~key & ~decoy)):
            if mask.any():
                figures[name].append(float(peak[mask].mean()))
    print(f"{args.data}: {len(rows)} videos; 98th percentile of the flow magnitude per frame, px")
    for name, values in figures.items():
        print(f"  {name:6s} {np.mean(values):.2f}  ({len(values)} videos)")


if __name__ == "__main__":
    main()
