"""One training step of a head on cached features, and its parts, in CPU milliseconds: where the
head's time goes (issue 26), without the loader.

    PYTHONPATH=. python benchmarks/features_head_step.py [--threads 1] [--rounds 8]

The batch of benchmarks/features_head.py (128 videos x N = 25 x D = 768, C = 101), random. Each
variant runs ``--rounds`` rounds of 4 steps (forward, loss, backward, SGD), rounds interleaved
across the variants so that a busy machine slows them alike; the minimum and the median CPU time
of a step over the rounds are printed (process time: what the step costs, whatever else runs).

    head, conv layout       DATP MoG's auxiliary net as the TSN paths compute it: GroupNorm and
                            Conv1d on the transposed [B, D, N] sequence
    head, sequence layout   the same function in the features' [B, N, D] layout, the first
                            convolution one matrix product (what datp train builds for features)
    ... without dropout     the dropout mask's share
    average pooling         the classifier alone
    aux net, conv / sequence layout   the auxiliary net's forward and backward alone
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from datp.config import ModelConfig, PoolingConfig
from datp.models.build import build_feature_head
from datp.pooling.aux_nets import SequenceAuxNet

B, N, D, C = 128, 25, 768, 101


def head(*, sequence_layout: bool, dropout: float = 0.5, kind: str = "datp") -> torch.nn.Module:
    model = build_feature_head(ModelConfig(dropout=dropout),
                               PoolingConfig(kind=kind, aux_input="sequence"), num_classes=C,
                               feature_channels=D, num_segments=N, seed=0)
    for module in model.modules():
        if isinstance(module, SequenceAuxNet):
            module.sequence_layout = sequence_layout
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch "
          f"{torch.__version__}; batch [{B}, {N}, {D}], C = {C}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, N, D, generator=g)
    times = torch.rand(B, N, generator=g).sort(1).values
    labels = torch.randint(0, C, (B,), generator=g)

    def training(model: torch.nn.Module):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            loss = torch.nn.functional.nll_loss(model(x, times).log_probs, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    def aux(sequence_layout: bool):
        net = SequenceAuxNet(in_channels=D, num_parameters=6, temporal_bins=N,
                             sequence_layout=sequence_layout)
        return lambda: net(x).sum().backward()

    variants = {
        "head, conv layout": training(head(sequence_layout=False)),
        "head, sequence layout": training(head(sequence_layout=True)),
        "head, sequence layout, no dropout": training(head(sequence_layout=True, dropout=0.0)),
        "average pooling": training(head(sequence_layout=True, kind="average")),
        "aux net, conv layout": aux(False),
        "aux net, sequence layout": aux(True),
    }
    spent: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            step()  # warm
            started = time.process_time()
            for _ in range(4):
                step()
            spent[name].append((time.process_time() - started) / 4 * 1000)
    for name, values in spent.items():
        print(f"{name:36s} min {min(values):6.1f} ms   median {statistics.median(values):6.1f} "
              "ms per step (CPU)")


if __name__ == "__main__":
    main()
