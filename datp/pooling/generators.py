"""Weights generators: turn the auxiliary net's regression output theta into temporal weights.

Dimension key: B batch, N segments, K Gaussians, P size of theta.

Each generator says how many parameters it needs (``num_parameters``, P) and which bias of the
auxiliary net's last layer makes it start from the paper's initialization (``initial_theta``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from datp.choices import DiscreteActivation
from datp.pooling.functional import mog_log_weights, rescale_log_weights

# theta beyond this magnitude saturates every constraint anyway; clamping it keeps an exploding
# auxiliary net from turning into inf - inf = NaN further down.
THETA_LIMIT = 50.0


class GeneratedWeights(NamedTuple):
    """The weights ``w`` ``[B, N]`` of the paper, and a positive rescaling of them for Eq. (3)
    that cannot underflow (``scaled = c * w`` with one ``c > 0`` per video); for a mixture its
    ``(rho, mu, sigma)`` stacked ``[B, 3, K]`` (None for the discrete generator)."""

    weights: Tensor
    scaled: Tensor
    mixture: Tensor | None = None


def _bounded_theta(theta: Tensor) -> Tensor:
    return theta.nan_to_num(0.0, posinf=THETA_LIMIT, neginf=-THETA_LIMIT).clamp(
        -THETA_LIMIT, THETA_LIMIT
    )


class _Activation(NamedTuple):
    weight: Callable[[Tensor], Tensor]
    """theta -> w."""
    unit_theta: float
    """The theta whose weight is 1."""


ACTIVATIONS: dict[DiscreteActivation, _Activation] = {
    "identity": _Activation(weight=lambda theta: theta, unit_theta=1.0),
    "softplus": _Activation(weight=F.softplus, unit_theta=math.log(math.e - 1)),
}
"""pooling.discrete_activation -> how the discrete generator maps theta to weights."""


class DiscreteGenerator(nn.Module):
    """Discrete weights, one per segment (paper Sec. 3.2): ``w = theta`` (``"identity"``, the
    paper's generator) or ``w = softplus(theta)`` (``"softplus"``, non-negative weights).

    Identity weights may turn negative. Pooling probabilities, a video whose weights are all
    negative pools to a vector with no positive entry, whose loss is flat: measured on the
    synthetic benchmark, training fell into that state and stayed at chance in 2 of 3 seeds
    (docs/RESULTS.md). Softplus keeps every weight positive, as the mixture's are.

    It is tied to the number of segments it was built for and refuses any other.
    """

    def __init__(self, *, num_segments: int, activation: str = "identity") -> None:
        super().__init__()
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
            )
        self.num_segments = num_segments
        self.activation = activation

    @property
    def num_parameters(self) -> int:
        return self.num_segments

    def initial_theta(self) -> Tensor:
        """Equal weights of 1: the module starts as (scaled) average pooling."""
        return torch.full((self.num_segments,), ACTIVATIONS[self.activation].unit_theta)

    def forward(self, theta: Tensor, times: Tensor) -> GeneratedWeights:
        """theta ``[B, N]``, times ``[B, N]`` (unused beyond their count) -> weights ``[B, N]``."""
        if times.shape[-1] != self.num_segments:
            raise ValueError(
                f"the discrete weights generator was built for N = {self.num_segments} segments "
                f"and cannot weight {times.shape[-1]}; use a mixture of Gaussians to change N "
                "between training and testing"
            )
        weights = ACTIVATIONS[self.activation].weight(_bounded_theta(theta))
        return GeneratedWeights(weights=weights, scaled=weights)


class MixtureOfGaussians(nn.Module):
    """A mixture of K Gaussians over segment time, Eq. (1).

    theta holds K unconstrained triples mapped to valid parameters: ``rho = softmax`` over the K
    components (Eq. (3) ignores the overall scale of rho, so only its proportions matter),
    ``mu = sigmoid`` into [0, 1], ``sigma = sigma_floor + softplus``.
    """

    def __init__(
        self, *, num_gaussians: int, init_sigma: float = 0.2, sigma_floor: float = 0.05
    ) -> None:
        super().__init__()
        if num_gaussians < 1:
            raise ValueError(f"num_gaussians must be >= 1, got {num_gaussians}")
        if not 0 < sigma_floor < init_sigma:
            raise ValueError(
                f"need 0 < sigma_floor < init_sigma, got {sigma_floor} and {init_sigma}"
            )
        self.num_gaussians = num_gaussians
        self.init_sigma = init_sigma
        self.sigma_floor = sigma_floor

    @property
    def num_parameters(self) -> int:
        return 3 * self.num_gaussians

    def initial_theta(self) -> Tensor:
        """Raw theta ``[3K]`` giving the paper's start: mu_k = k / (K + 1), sigma = 0.2,
        rho = 1 / K (Sec. 4.2; "variance to 0.2" read as sigma, NOTES.md)."""
        k = self.num_gaussians
        mu = torch.arange(1, k + 1, dtype=torch.float64) / (k + 1)
        mu_raw = torch.log(mu) - torch.log1p(-mu)  # inverse sigmoid
        excess = torch.tensor(self.init_sigma - self.sigma_floor, dtype=torch.float64)
        sigma_raw = excess + torch.log(-torch.expm1(-excess))  # inverse softplus
        rho_raw = torch.zeros(k, dtype=torch.float64)
        return torch.cat([rho_raw, mu_raw, sigma_raw.expand(k)]).float()

    def parameters_from_theta(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """theta ``[B, 3K]`` -> (rho, mu, sigma), each ``[B, K]``."""
        if theta.shape[-1] != self.num_parameters:
            raise ValueError(f"expected theta [B, {self.num_parameters}], got {tuple(theta.shape)}")
        rho_raw, mu_raw, sigma_raw = _bounded_theta(theta).chunk(3, dim=-1)
        rho = torch.softmax(rho_raw, dim=-1)
        mu = torch.sigmoid(mu_raw)
        sigma = self.sigma_floor + F.softplus(sigma_raw)
        return rho, mu, sigma

    def forward(self, theta: Tensor, times: Tensor) -> GeneratedWeights:
        """theta ``[B, 3K]``, times ``[B, N]`` -> weights ``[B, N]`` (any N)."""
        rho, mu, sigma = self.parameters_from_theta(theta)
        log_weights = mog_log_weights(times, rho, mu, sigma)  # [B, N]
        return GeneratedWeights(weights=log_weights.exp(), scaled=rescale_log_weights(log_weights),
                                mixture=torch.stack((rho, mu, sigma), dim=1))


def random_mixture(
    batch_size: int,
    num_gaussians: int,
    *,
    sigma_range: tuple[float, float] = (0.05, 0.5),
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Random (rho, mu, sigma), each ``[B, K]``: the P1 test scheme of Table 4.

    mu uniform in [0, 1], sigma log-uniform in ``sigma_range``, rho uniform on the simplex.
    """
    shape = (batch_size, num_gaussians)
    mu = torch.rand(shape, generator=generator)
    low, high = math.log(sigma_range[0]), math.log(sigma_range[1])
    sigma = torch.exp(low + (high - low) * torch.rand(shape, generator=generator))
    rho = -torch.log(torch.rand(shape, generator=generator).clamp_min(1e-12))  # Dirichlet(1)
    return rho / rho.sum(dim=-1, keepdim=True), mu, sigma
