"""Training throughput (videos/s) of the TSN segment network with each temporal pooling.

    python benchmarks/train_step.py                      # CPU: resnet18, 112 px, B = 4, N = 10
    python benchmarks/train_step.py --device cuda        # B = 32, N = 10, resnet34, 224, bf16
    python benchmarks/train_step.py --loader runs/synthetic   # also through the real DataLoader

Part 1, compute-bound: inputs already in memory on the device; each variant runs a full training
step (forward, loss, backward, SGD step), interleaved over repeats so that every variant sees the
same machine state; the DATP overhead is the ratio of step times to average pooling's.
Part 2, with ``--loader DATASET``: the same steps fed by datp's DataLoader from a dataset in
UCF101 layout (``datp synth`` writes one), compared with the compute-bound rate measured in
the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from datp.build import build_data_bundle, build_model
from datp.config import load_config
from datp.inference import autocast
from datp.pooling.functional import pooled_log_probabilities

VARIANTS = {
    "average": ["pooling.kind=average", "pooling.pool=logits"],
    "datp MoG K=1 / scores": ["pooling.kind=datp", "pooling.num_gaussians=1",
                              "pooling.aux_input=scores"],
    "datp MoG K=2 / conv": ["pooling.kind=datp", "pooling.num_gaussians=2",
                            "pooling.aux_input=conv"],
    "datp discrete / conv": ["pooling.kind=datp", "pooling.generator=discrete",
                             "pooling.aux_input=conv"],
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backbone")
    parser.add_argument("--size", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--compile", action="store_true")
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
    base = [f"model.backbone={backbone}", f"data.image_size={size}",
            f"data.resize_short={max(size, 256)}",
            f"data.num_segments={args.segments}", "model.partial_bn=false", f"train.amp={amp}",
            f"train.channels_last={'true' if cuda else 'false'}"]
    models = {}
    for name, overrides in VARIANTS.items():
        config = load_config(None, [*base, *overrides])
        torch.manual_seed(0)
        model = build_model(config, num_classes=args.classes).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        step_model = torch.compile(model) if args.compile else model
        models[name] = (step_model, optimizer, model.pooling.pool)
    inputs = torch.randn(batch, args.segments, 3, size, size, device=device)
    times = ((torch.arange(args.segments, device=device) + 0.5) / args.segments).expand(batch, -1)
    labels = torch.randint(0, args.classes, (batch,), device=device)

    def step(name: str, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        model, optimizer, pool = models[name]
        with autocast(device, amp):
            out = model(x, t)
        loss = torch.nn.functional.nll_loss(pooled_log_probabilities(out.scores.float(), pool), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for name in models:  # warm-up (and compilation)
        for _ in range(2):
            step(name, inputs, times, labels)
    seconds = {name: [] for name in models}
    for _ in range(repeats):
        for name in models:
            _sync(device)
            start = time.perf_counter()
            step(name, inputs, times, labels)
            _sync(device)
            seconds[name].append(time.perf_counter() - start)
    where = torch.cuda.get_device_name(device) if cuda else platform.machine()
    print(f"device {device} ({where}), torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; {backbone} at {size} px, B={batch} videos x N="
          f"{args.segments}, C={args.classes}, amp={amp}, compile={args.compile}")
    print("part 1, compute-bound (inputs in memory):")
    baseline = statistics.median(seconds["average"])
    print(f"  {'pooling':24s} {'step ms':>9s} {'videos/s':>9s} {'vs average':>11s}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:24s} {1e3 * median:9.1f} {batch / median:9.1f} "
              f"{100 * (median / baseline - 1):+10.1f}%")
    if args.loader:
        _loader_part(args, base, models, step, device, batch, baseline)


def _endless(loader):
    while True:
        yield from loader


def _loader_part(args, base, models, step, device, batch, compute_seconds) -> None:
    config = load_config(None, [*base, f"data.root={args.loader}", f"data.workers={args.workers}",
                                f"train.batch_size={batch}"])
    data = build_data_bundle(config, with_test=False)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=batch, shuffle=True, num_workers=args.workers, drop_last=True,
        collate_fn=data.collate, pin_memory=device.type == "cuda", persistent_workers=True,
    )
    if len(loader) == 0:
        raise SystemExit(f"{args.loader}: fewer training videos than one batch of {batch}")
    steps = 3 * (args.repeats or 5)
    batches = _endless(loader)  # a small dataset is read epoch after epoch, as in training
    next(batches)  # start the workers
    start = time.perf_counter()
    for _, b in zip(range(steps), batches, strict=False):
        labels = torch.randint(0, args.classes, (batch,), device=device)
        step("average", b["inputs"].to(device, non_blocking=True),
             b["times"].to(device, non_blocking=True), labels)
    _sync(device)
    per_step = (time.perf_counter() - start) / steps
    print(f"part 2, real loader ({args.loader}, {args.workers} workers, average pooling): "
          f"{batch / per_step:.1f} videos/s = {100 * compute_seconds / per_step:.0f} % of the "
          "compute-bound rate")


if __name__ == "__main__":
    main()
