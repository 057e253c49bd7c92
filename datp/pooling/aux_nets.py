"""Auxiliary ConvNets of DATP (paper Table 2): per-segment features -> theta.

Dimension key: B batch, N segments, D feature channels, h, w feature-map size, P size of theta.

Both nets share the temporal part: 1-D convolutions over the N segments ("same" padding, ReLU),
flatten, fully connected layers, and a final regression layer to P. The flatten ties the fc
layers to one sequence length, ``temporal_bins`` (the training N); another N is resampled to it
by linear interpolation over time, so a net trained at N = 10 also reads 25 segments.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn
from torch.nn import functional as F


class SequenceAuxNet(nn.Module):
    """Reads a feature sequence ``[B, N, D]`` (softmax scores in the paper, or any features).

    Table 2, softmax-score column: two temporal convolutions (kernel 3, 32 channels, ReLU),
    flatten, fc, fc.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_parameters: int,
        temporal_bins: int,
        conv_channels: Sequence[int] = (32, 32),
        kernel_size: int = 3,
        fc_channels: Sequence[int] = (128,),
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.in_channels = in_channels
        self.temporal_bins = temporal_bins
        # Not in Table 2: features of a backbone that is still training can grow without bound,
        # and an optimizer such as Adam then moves theta by the layer's fan-in times the feature
        # scale per step, saturating mu and sigma within a few steps (measured: theta at +-100
        # and every weight on one segment). Normalizing each sequence removes the scale; a
        # LayerNorm per segment did too, but it erased the contrast between segments and cost
        # DATP its lead on the sequence task (docs/DESIGN.md). GroupNorm with one group on
        # [B, D, N] is exactly that: each sequence's own mean and standard deviation over all N
        # and D, then a per-channel affine map; segments keep their contrast.
        self.norm = nn.GroupNorm(1, in_channels) if normalize_input else nn.Identity()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in conv_channels:
            layers += [nn.Conv1d(channels, width, kernel_size, padding=kernel_size // 2), nn.ReLU()]
            channels = width
        self.temporal = nn.Sequential(*layers)
        fcs: list[nn.Module] = [nn.Flatten()]
        features = channels * temporal_bins
        for width in fc_channels:
            fcs += [nn.Linear(features, width), nn.ReLU()]
            features = width
        self.fc = nn.Sequential(*fcs)
        self.regression = nn.Linear(features, num_parameters)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B, N, D]`` -> theta ``[B, P]``."""
        if x.dim() != 3 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected features [B, N, {self.in_channels}], got {tuple(x.shape)}")
        x = self.norm(x.transpose(1, 2))  # [B, D, N]
        if x.shape[-1] != self.temporal_bins:
            x = F.interpolate(x, size=self.temporal_bins, mode="linear", align_corners=False)
        x = self.temporal(x)  # [B, 32, bins]
        return self.regression(self.fc(x))  # [B, P]


class ConvFeatureAuxNet(nn.Module):
    """Reads last-conv feature maps ``[B, N, D, h, w]`` (Table 2, conv-feature column).

    A convolution with a kernel as large as the map reduces each segment to ``reduce_channels``
    (64 in the paper, a 7 x 7 kernel for ResNet34 at 224 px), then the temporal part of
    :class:`SequenceAuxNet`. A map of another size is average-pooled to ``feature_size`` first.
    The reduction is per segment (:meth:`segment_features`), so a long video can be reduced a
    chunk of segments at a time and the net given the reduced sequence ``[B, N, R]``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        feature_size: int,
        num_parameters: int,
        temporal_bins: int,
        reduce_channels: int = 64,
        conv_channels: Sequence[int] = (32, 32),
        kernel_size: int = 3,
        fc_channels: Sequence[int] = (128,),
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.feature_size = feature_size
        self.reduce = nn.Conv2d(in_channels, reduce_channels, kernel_size=feature_size)
        self.sequence = SequenceAuxNet(
            in_channels=reduce_channels,
            num_parameters=num_parameters,
            temporal_bins=temporal_bins,
            conv_channels=conv_channels,
            kernel_size=kernel_size,
            fc_channels=fc_channels,
            normalize_input=normalize_input,
        )

    @property
    def regression(self) -> nn.Linear:
        return self.sequence.regression

    def segment_features(self, x: Tensor) -> Tensor:
        """The per-segment reduction: x ``[B, N, D, h, w]`` -> ``[B, N, R]``."""
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError(
                f"expected conv features [B, N, {self.in_channels}, h, w], got {tuple(x.shape)}"
            )
        b, n = x.shape[:2]
        maps = x.flatten(0, 1)  # [B*N, D, h, w]
        if maps.shape[-2:] != (self.feature_size, self.feature_size):
            maps = F.adaptive_avg_pool2d(maps, self.feature_size)
        # A convolution whose kernel covers the whole map is a linear layer on the flattened map;
        # as a matrix product it runs about 4x faster on CPU than the convolution kernel.
        reduced = F.linear(maps.flatten(1), self.reduce.weight.flatten(1), self.reduce.bias)
        return F.relu(reduced).reshape(b, n, -1)  # [B, N, R]

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B, N, D, h, w]``, or its :meth:`segment_features` ``[B, N, R]`` -> theta
        ``[B, P]``."""
        reduced = x if x.dim() == 3 and x.shape[-1] == self.reduce.out_channels else \
            self.segment_features(x)
        return self.sequence(reduced)
