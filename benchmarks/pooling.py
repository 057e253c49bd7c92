"""Forward + backward time of every temporal pooling, as ratios to average pooling.

    python benchmarks/pooling.py [--device cuda] [--repeats 50]

B = 32 videos, N = 10 segments, C = 101 classes; DATP and attention read either the softmax
scores [B, N, C] or conv features [B, N, 512, 7, 7] (ResNet34 at 224 px). All variants are timed in
one run, interleaved, so the ratios share the machine's state.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from datp.pooling import build_pooling

B, N, C, D, HW = 32, 10, 101, 512, 7

VARIANTS = {
    "average": dict(kind="average", pool="logits"),
    "max": dict(kind="max", pool="logits"),
    "random_gaussians": dict(kind="random_gaussians"),
    "attention / scores": dict(kind="attention", aux_input="scores"),
    "attention / conv": dict(kind="attention", aux_input="conv"),
    "datp discrete / scores": dict(kind="datp", generator="discrete", aux_input="scores"),
    "datp MoG K=1 / scores": dict(kind="datp", num_gaussians=1, aux_input="scores"),
    "datp MoG K=2 / scores": dict(kind="datp", num_gaussians=2, aux_input="scores"),
    "datp MoG K=2 / conv": dict(kind="datp", num_gaussians=2, aux_input="conv"),
    "datp MoG K=3 / conv": dict(kind="datp", num_gaussians=3, aux_input="conv"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    modules = {
        name: build_pooling(
            num_classes=C,
            num_segments=N,
            feature_channels=D,
            feature_size=HW,
            **{"pool": "probabilities", **settings},
        ).to(device)
        for name, settings in VARIANTS.items()
    }
    scores = torch.randn(B, N, C, device=device, requires_grad=True)
    conv = torch.randn(B, N, D, HW, HW, device=device, requires_grad=True)

    def step(name: str) -> None:
        features = conv if "conv" in name else None
        out = modules[name](scores, features)
        out.scores.sum().backward()

    times: dict[str, list[float]] = {name: [] for name in modules}
    for name in modules:  # warm-up
        for _ in range(3):
            step(name)
    for _ in range(args.repeats):
        for name in modules:
            _sync(device)
            start = time.perf_counter()
            step(name)
            _sync(device)
            times[name].append(time.perf_counter() - start)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({where or platform.machine()}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, B={B} N={N} C={C} conv=[{D},{HW},{HW}]"
    )
    base = statistics.median(times["average"])
    print(f"{'pooling':26s} {'median ms':>10s} {'x average':>10s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:26s} {1e3 * median:10.3f} {median / base:10.1f}")


if __name__ == "__main__":
    main()
