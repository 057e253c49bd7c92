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


def temporal_conv_as_matmul(
    x: Tensor, weight: Tensor, bias: Tensor | None, *, scale: Tensor | None = None,
    shift: Tensor | None = None,
) -> Tensor:
    """``nn.Conv1d`` with "same" padding (odd kernel, zeros outside) of ``x * scale + shift``,
    on a sequence kept in its own layout: x ``[B, L, D]``, weight ``[O, D, k]``, bias ``[O]``,
    scale and shift ``[D]`` (a per-channel affine map first, or none) -> ``[B, L, O]``.

    The sequence times every tap's weights is one matrix product ``[B*L, D] @ [D, k*O]``; each
    output step then adds tap j of step ``n + j - k // 2``. The affine map is folded into the
    weights (``scale`` scales their rows, ``shift @ weights`` is added to every tap inside the
    sequence), so no ``[B, L, D]`` product is made, nor, for an ``x`` without gradient, any
    gradient of that size. The same sums as the convolution in another order: equal to float
    rounding.
    """
    o, d, k = weight.shape
    length = x.shape[1]
    taps_weight = weight.permute(1, 2, 0).reshape(d, k * o)  # [D, k*O]
    offset = None if shift is None else shift @ taps_weight  # [k*O]
    if scale is not None:
        taps_weight = scale[:, None] * taps_weight
    taps = x @ taps_weight  # [B, L, k*O]
    if offset is not None:
        taps = taps + offset
    taps = F.pad(taps.unflatten(-1, (k, o)), (0, 0, 0, 0, k // 2, k // 2))  # [B, L + k - 1, k, O]
    out = sum(taps[:, j:j + length, j] for j in range(k))  # [B, L, O]
    return out if bias is None else out + bias


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
        sequence_layout: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.in_channels = in_channels
        self.temporal_bins = temporal_bins
        # The normalization and the first convolution in the sequence's own layout [B, N, D], the
        # convolution as one matrix product: the same function with the same parameters, to float
        # rounding. On a CPU with a wide D (a frozen backbone's 768 features) it takes about a
        # quarter of the time: GroupNorm and Conv1d on the transposed [B, D, N] copy it, and
        # oneDNN's convolution of a 25-step, 768-channel sequence runs several times slower than
        # the same sums as a matrix product (BENCHMARKS.md, "Features"). Off by default, so that
        # the TSN paths compute exactly what they always have.
        self.sequence_layout = sequence_layout
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
        if self.sequence_layout:
            return self._forward_in_sequence_layout(x)
        x = self.norm(x.transpose(1, 2))  # [B, D, N]
        if x.shape[-1] != self.temporal_bins:
            x = F.interpolate(x, size=self.temporal_bins, mode="linear", align_corners=False)
        x = self.temporal(x)  # [B, 32, bins]
        return self.regression(self.fc(x))  # [B, P]

    def _forward_in_sequence_layout(self, x: Tensor) -> Tensor:
        """:meth:`forward` with ``sequence_layout``: x ``[B, N, D]`` -> theta ``[B, P]``."""
        n, d = int(x.shape[1]), int(x.shape[2])  # plain ints: ONNX takes a constant norm shape
        scale = shift = None
        if isinstance(self.norm, nn.GroupNorm):
            # GroupNorm(1, D) of [B, D, N] is each sequence's mean and deviation over N and D
            # (a layer norm over both), then a per-channel affine map, folded into the
            # convolution below.
            x = F.layer_norm(x, (n, d), eps=self.norm.eps)  # [B, N, D]
            scale, shift = self.norm.weight, self.norm.bias
        if n != self.temporal_bins:  # linear in time, so before or after the affine map alike
            x = F.interpolate(x.transpose(1, 2), size=self.temporal_bins, mode="linear",
                              align_corners=False).transpose(1, 2)  # [B, bins, D]
        first = self.temporal[0]
        x = temporal_conv_as_matmul(x, first.weight, first.bias, scale=scale,
                                    shift=shift)  # [B, bins, 32]
        x = self.temporal[1:](x.transpose(1, 2))  # [B, 32, bins]
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
