"""Does the synthetic benchmark model the paper's premise? A small CNN, RGB, three poolings.

For each key fraction: writes the synthetic dataset (10 classes x 20 videos, 48 frames, 64x64),
decodes it into memory once, trains a 4-layer CNN on N = 8 TSN segments with average pooling
(TSN, logits), max pooling and DATP (mixture of 2 Gaussians on softmax scores), and prints
test accuracy (split 1, centre sampling). Average pooling should fall behind as the key window
shrinks. CPU minutes, not a tuned result.

    python benchmarks/synthetic_premise.py --key-fractions 0.3,0.15 --epochs 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from datp.data.functional import normalize
from datp.data.sampling import eval_starts, normalized_times, train_starts
from datp.data.splits import read_ucf101
from datp.data.synthetic import SynthConfig, generate
from datp.data.video import VideoReader
from datp.pooling.build import build_pooling
from datp.pooling.functional import pooled_log_probabilities


def load(root: Path, subset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[V, T, 3, H, W]`` and labels ``[V]`` of one subset of split 1."""
    split = read_ucf101(root / "ucfTrainTestlist", split=1, subset=subset)
    videos = []
    for item in split.items:
        with VideoReader(root / "videos" / item.path) as reader:
            videos.append(torch.from_numpy(reader.read_all()).permute(0, 3, 1, 2))
    return torch.stack(videos), torch.tensor([item.label for item in split.items])


class SmallCNN(nn.Module):
    def __init__(self, *, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers, channels = [], 3
        for out in (width, 2 * width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, N, 3, H, W]`` -> per-segment logits ``[B, N, C]``."""
        B, N = x.shape[:2]
        return self.classifier(self.features(x.flatten(0, 1))).view(B, N, -1)


def clips(videos: torch.Tensor, *, segments: int, train: bool,
          rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized ``[B, N, 3, H, W]`` and times ``[B, N]`` sampled TSN-style."""
    T = videos.shape[1]
    starts = np.stack([train_starts(T, segments, rng=rng) if train else eval_starts(T, segments)
                       for _ in range(len(videos))])
    index = torch.from_numpy(starts)
    frames = videos[torch.arange(len(videos))[:, None], index]  # [B, N, 3, H, W]
    times = torch.from_numpy(normalized_times(starts, num_frames=T))
    return normalize(frames, modality="rgb"), times


def run(kind: str, train, test, *, classes: int, segments: int, epochs: int, seed: int,
        width: int) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SmallCNN(num_classes=classes, width=width)
    pool_space = "logits" if kind in ("average", "max") else "probabilities"
    pooling = build_pooling(kind=kind, num_classes=classes, num_segments=segments,
                            pool=pool_space, aux_input="scores", seed=seed)
    parameters = list(model.parameters()) + list(pooling.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=1e-4)
    videos, labels = train
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(videos)).split(16):
            inputs, times = clips(videos[batch], segments=segments, train=True, rng=rng)
            out = pooling(model(inputs), times=times)
            loss = nn.functional.nll_loss(pooled_log_probabilities(out.scores, pool_space),
                                          labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    videos, labels = test
    with torch.no_grad():
        inputs, times = clips(videos, segments=segments, train=False, rng=rng)
        out = pooling(model(inputs), times=times)
        predicted = pooled_log_probabilities(out.scores, pool_space).argmax(-1)
    return (predicted == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--key-fractions", default="0.3,0.15")
    parser.add_argument("--poolings", default="average,max,datp")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--decoys", type=int, default=2)
    parser.add_argument("--decoy-fraction", type=float, default=0.15)
    parser.add_argument("--width", type=int, default=16, help="channels of the first conv")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; N = {args.segments}, "
          f"{args.epochs} epochs, seeds {args.seeds}, decoys {args.decoys} x "
          f"{args.decoy_fraction}, width {args.width}")
    print(f"{'key fraction':>12} " + " ".join(f"{p:>16}" for p in args.poolings.split(",")))
    for key_fraction in (float(k) for k in args.key_fractions.split(",")):
        config = SynthConfig(key_fraction=key_fraction, decoys=args.decoys,
                             decoy_fraction=args.decoy_fraction)
        with tempfile.TemporaryDirectory() as folder:
            generate(config, folder)
            train, test = load(Path(folder), "train"), load(Path(folder), "test")
        cells = []
        start = time.perf_counter()
        for kind in args.poolings.split(","):
            accuracies = [run(kind, train, test, classes=config.classes,
                              segments=args.segments, epochs=args.epochs, seed=seed,
                              width=args.width)
                          for seed in range(args.seeds)]
            cells.append(f"{100 * np.mean(accuracies):6.1f} +- {100 * np.std(accuracies):4.1f}")
        print(f"{key_fraction:>12.2f} " + " ".join(f"{c:>16}" for c in cells)
              + f"   ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
