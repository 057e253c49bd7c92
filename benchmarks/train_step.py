"""Training throughput (videos/s, images/s) of the TSN segment network with each temporal pooling.

    python benchmarks/train_step.py                      # CPU: resnet18, 112 px, B = 4, N = 10
    python benchmarks/train_step.py --device cuda        # B = 32, N = 10, resnet34, 224, bf16
    python benchmarks/train_step.py --device cuda --compile --variants average,mog2-conv
    python benchmarks/train_step.py --loader runs/synthetic   # also through the real DataLoader

Every step is :func:`datp.engine.step.training_step`, the step ``datp train`` takes
(forward with the uint8 clips normalized on the device, loss, backward, SGD step with datp's
parameter groups), and no step reads the device: the clock stops after a synchronize.

Part 1, compute-bound: uint8 inputs already on the device. Each variant is built, warmed up (and
compiled, the first call timed) and timed alone at once, so that a variant whose compile runs
past a time limit still leaves the ones before it; then every variant is timed again in
interleaved rounds (variant A, B, A, B, ...: the GPU's clock and temperature drift alike for
all), the figures to read. The DATP overhead is the ratio of step times to average pooling's.
``FIGURE`` lines (``benchmarks/gpu_plan.py`` reads them) give each variant's interleaved step
time and overhead.
Part 2, with ``--loader DATASET``: the same steps fed by datp's DataLoader from a dataset in
UCF101 layout (``datp synth`` writes one), compared with the compute-bound rate measured in
the same run (benchmarks/loader_step.py writes its own JPEG frame set).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch

from datp.config import load_config

VARIANTS = {
    "average": ("average", ["pooling.kind=average", "pooling.pool=logits"]),
    "mog1-scores": ("datp MoG K=1 / scores", ["pooling.kind=datp", "pooling.num_gaussians=1",
                                              "pooling.aux_input=scores"]),
    "mog2-conv": ("datp MoG K=2 / conv", ["pooling.kind=datp", "pooling.num_gaussians=2",
                                          "pooling.aux_input=conv"]),
    "discrete-conv": ("datp discrete / conv", ["pooling.kind=datp", "pooling.generator=discrete",
                                               "pooling.aux_input=conv"]),
}
"""id -> (label, config overrides); the first one run is the baseline of the overheads."""


def engine_step(config, *, num_classes: int, device: torch.device,
                compiled: bool) -> Callable[[dict], None]:
    """One :func:`datp.engine.step.training_step` on a batch, with the model and optimizer
    ``config`` makes (built by the engine's public builders: the one place this script calls
    them, to adapt when they change)."""
    from datp.engine.build import build_model, build_optimizer
    from datp.engine.step import training_step

    model = build_model(config, num_classes=num_classes).to(device)
    if config.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    trained = torch.compile(model) if compiled else model
    optimizer = build_optimizer(model, config)
    scaler = torch.amp.GradScaler(device.type, enabled=config.train.amp == "fp16")

    def step(batch: dict) -> None:
        training_step(model, trained, optimizer, scaler, batch, device, amp=config.train.amp)

    return step


def ident(name: str) -> str:
    """A variant's id as a figure name's part."""
    return name.replace("-", "_")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[dict], None], batch: dict, device: torch.device) -> float:
    """Seconds of one step, the device synchronized before and after."""
    _sync(device)
    start = time.perf_counter()
    step(batch)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone")
    parser.add_argument("--size", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--repeats", type=int, help="interleaved rounds")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--loader", help="a dataset root in UCF101 layout for part 2")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    backbone = args.backbone or ("resnet34" if cuda else "resnet18")
    size = args.size or (224 if cuda else 112)
    batch = args.batch or (32 if cuda else 4)
    repeats = args.repeats or (20 if cuda else 5)
    amp = "bf16" if cuda else "none"
    kind = "compiled" if args.compile else "eager"
    base = [f"model.backbone={backbone}", f"data.image_size={size}",
            f"data.resize_short={max(size, 256)}",
            f"data.num_segments={args.segments}", f"data.test_segments={args.segments}",
            "model.partial_bn=false", f"train.amp={amp}",
            f"train.channels_last={'true' if cuda else 'false'}", "train.lr=0.001",
            f"train.device={device}"]
    print(f"device {device} ({where(device)}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; {backbone} at {size} px, B={batch} videos x N="
          f"{args.segments}, C={args.classes}, amp={amp}, channels_last={cuda}, "
          f"compile={args.compile}", flush=True)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (batch, args.segments, 3, size, size), dtype=torch.uint8,
                           generator=generator).to(device)
    times = ((torch.arange(args.segments) + 0.5) / args.segments).expand(batch, -1)
    labels = torch.randint(0, args.classes, (batch,), generator=generator)
    on_device = {"inputs": inputs, "times": times.to(device), "label": labels.to(device)}
    chosen = args.variants.split(",")
    steps = {}
    print("part 1, compute-bound (uint8 inputs on the device), each variant alone:", flush=True)
    for name in chosen:
        label, overrides = VARIANTS[name]
        config = load_config(None, [*base, *overrides])
        steps[name] = engine_step(config, num_classes=args.classes, device=device,
                                  compiled=args.compile)
        first = timed(steps[name], on_device, device)  # compiles, when compiled
        alone = statistics.median(timed(steps[name], on_device, device) for _ in range(3))
        print(f"  {label:24s} first step {first:7.1f} s, then {1e3 * alone:8.1f} ms", flush=True)
        print(f"FIGURE train_step_{kind}_{ident(name)}_alone_ms {1e3 * alone:.2f} ms", flush=True)
    rounds: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(repeats):
        for name in chosen:
            rounds[name].append(timed(steps[name], on_device, device))
    print(f"interleaved, median of {repeats} rounds:", flush=True)
    print(f"  {'pooling':24s} {'step ms':>9s} {'videos/s':>9s} {'img/s':>9s} "
          f"{'vs ' + chosen[0]:>11s}", flush=True)
    baseline = statistics.median(rounds[chosen[0]])
    for name in chosen:
        median = statistics.median(rounds[name])
        overhead = 100 * (median / baseline - 1)
        print(f"  {VARIANTS[name][0]:24s} {1e3 * median:9.1f} {batch / median:9.1f} "
              f"{batch * args.segments / median:9.0f} {overhead:+10.1f}%", flush=True)
        print(f"FIGURE train_step_{kind}_{ident(name)}_ms {1e3 * median:.2f} ms", flush=True)
        if name != chosen[0]:
            print(f"FIGURE datp_overhead_{kind}_{ident(name)}_pct {overhead:.2f} %", flush=True)
    if args.loader:
        _loader_part(args, base, steps[chosen[0]], device, batch, baseline,
                     label=VARIANTS[chosen[0]][0])


def where(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()


def _endless(loader):
    while True:
        yield from loader


def _loader_part(args, base, step, device, batch, compute_seconds, *, label: str) -> None:
    from datp.data.device_decode import decode_ahead
    from datp.engine.build import build_data_bundle

    config = load_config(None, [*base, f"data.root={args.loader}", f"data.workers={args.workers}",
                                f"train.batch_size={batch}"])
    data = build_data_bundle(config, with_test=False)  # uint8 clips on CUDA ("auto")
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=batch, shuffle=True, num_workers=args.workers, drop_last=True,
        collate_fn=data.collate, pin_memory=device.type == "cuda", persistent_workers=True,
    )
    if len(loader) == 0:
        raise SystemExit(f"{args.loader}: fewer training videos than one batch of {batch}")
    steps = 3 * (args.repeats or 5)
    batches = decode_ahead(_endless(loader), device)  # as datp train reads its loader
    step(next(batches))  # start the workers
    _sync(device)
    start = time.perf_counter()
    for _, b in zip(range(steps), batches, strict=False):
        b["label"] = b["label"] % args.classes
        step(b)
    _sync(device)
    per_step = (time.perf_counter() - start) / steps
    print(f"part 2, real loader ({args.loader}, {args.workers} workers, {label} pooling): "
          f"{batch / per_step:.1f} videos/s = {100 * compute_seconds / per_step:.0f} % of the "
          "compute-bound rate", flush=True)


if __name__ == "__main__":
    main()
