"""Evaluation wall time with 1 and 2 gloo processes on the same checkpoint, and the same results.

    PYTHONPATH=. python benchmarks/eval_ranks.py              # 16 test videos, N = 25, 112 px
    PYTHONPATH=. python benchmarks/eval_ranks.py --videos-per-class 32 --workers 1

Writes a synthetic UCF101-like dataset, trains a small_cnn checkpoint on it for one epoch, then
runs :func:`datp.engine.build.evaluate_checkpoint` (what ``datp evaluate`` runs) once in one
process and once in 2 processes joined by a gloo process group (as under torchrun: each
evaluates its shard of the test split, the scores are gathered, the first writes the report).
Each process uses 1 thread, standing for one device. Prints the wall time of the evaluation
call (the slowest process's, for 2), the total with process start-up, and whether
metrics.json, per_class.csv, confusion.csv and scores.pt are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _evaluate(checkpoint: Path, out_dir: Path, workers: int) -> float:
    from datp.engine.build import evaluate_checkpoint

    torch.set_num_threads(1)
    start = time.perf_counter()
    evaluate_checkpoint(checkpoint, out_dir=out_dir, overrides=[f"data.workers={workers}"])
    return time.perf_counter() - start


def _rank(rank: int, port: int, checkpoint: str, out_dir: str, workers: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    seconds = _evaluate(Path(checkpoint), Path(out_dir), workers)
    Path(out_dir, f"seconds{rank}").parent.mkdir(parents=True, exist_ok=True)
    Path(out_dir, f"seconds{rank}").write_text(str(seconds))


def _checkpoint(root: Path, args: argparse.Namespace) -> Path:
    from datp.config import load_config
    from datp.data.synthetic import SynthConfig, generate
    from datp.engine.build import build_data_bundle, build_model, training_run
    from datp.engine.train import train

    generate(SynthConfig(classes=args.classes, videos_per_class=args.videos_per_class,
                         clips_per_group=2, frames=24, height=args.size, width=args.size),
             root / "data")
    config = load_config(None, [
        f"data.root={root / 'data'}", "model.backbone=small_cnn", "model.partial_bn=false",
        f"data.image_size={args.size}", f"data.resize_short={args.size}", "data.num_segments=4",
        f"data.test_segments={args.segments}", "data.workers=0", "train.epochs=1",
        "train.batch_size=4", "train.device=cpu", "train.lr_steps=[]", "pooling.kind=datp",
    ])
    data = build_data_bundle(config)
    model = build_model(config, num_classes=len(data.classes))
    train(training_run(config, root / "run", data=data, model=model))
    return root / "run" / "checkpoints" / "last.pt"


def _same(one: Path, two: Path) -> dict[str, bool]:
    """Which report files are identical, leaving out the date each protocol records."""
    same = {name: (one / name).read_bytes() == (two / name).read_bytes()
            for name in ("per_class.csv", "confusion.csv")}
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (one, two)]
    a = torch.load(one / "scores.pt", weights_only=True)
    b = torch.load(two / "scores.pt", weights_only=True)
    for record in (*metrics, a, b):
        record.get("protocol", {}).pop("date", None)
    same["metrics.json"] = metrics[0] == metrics[1]
    same["scores.pt"] = a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if torch.is_tensor(a[k])
        else (len(a[k]) == len(b[k]) and all(map(torch.equal, a[k], b[k])))
        if isinstance(a[k], list) and a[k] and torch.is_tensor(a[k][0]) else a[k] == b[k]
        for k in a)
    return same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--videos-per-class", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--segments", type=int, default=25, help="test segments")
    parser.add_argument("--workers", type=int, default=0, help="loader workers per process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = _checkpoint(root, args)
        start = time.perf_counter()
        one_seconds = _evaluate(checkpoint, root / "one", args.workers)
        one_total = time.perf_counter() - start
        start = time.perf_counter()
        mp.spawn(_rank, args=(_free_port(), str(checkpoint), str(root / "two"), args.workers),
                 nprocs=2, join=True)
        two_total = time.perf_counter() - start
        two_seconds = max(float((root / "two" / f"seconds{r}").read_text()) for r in (0, 1))
        videos = len(torch.load(root / "one" / "scores.pt", weights_only=True)["videos"])
        print(f"{videos} test videos, N = {args.segments}, {args.size} px, small_cnn, 1 thread "
              f"per process, {args.workers} loader workers per process, torch {torch.__version__}")
        print(f"1 process:   evaluation {one_seconds:6.2f} s (with start-up {one_total:6.2f} s)")
        print(f"2 processes: evaluation {two_seconds:6.2f} s (with start-up {two_total:6.2f} s), "
              f"x{one_seconds / two_seconds:.2f}")
        same = _same(root / "one", root / "two")
        print("identical: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))


if __name__ == "__main__":
    main()
