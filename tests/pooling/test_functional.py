"""Eqs. (1)-(4): autograd against the closed forms, float64, random inputs."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from datp.pooling.functional import (
    mog_log_weights,
    mog_weights,
    pooled_log_probabilities,
    rescale_log_weights,
    segment_centres,
    weighted_pool,
)


def _gaussian(t, mu, sigma):
    return torch.exp(-((t - mu) ** 2) / (2 * sigma**2)) / math.sqrt(2 * math.pi) / sigma


def _random_mixture(k, seed):
    g = torch.Generator().manual_seed(seed)
    rho = torch.rand(k, generator=g, dtype=torch.float64) + 0.1
    mu = torch.rand(k, generator=g, dtype=torch.float64)
    sigma = 0.05 + 0.4 * torch.rand(k, generator=g, dtype=torch.float64)
    times = torch.rand(7, generator=g, dtype=torch.float64)
    return times, rho, mu, sigma


def test_eq1_matches_a_direct_sum_of_gaussian_densities():
    times, rho, mu, sigma = _random_mixture(3, seed=0)
    expected = sum(rho[k] * _gaussian(times, mu[k], sigma[k]) for k in range(3))
    got = mog_weights(times[None], rho[None], mu[None], sigma[None])[0]
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq2_gradients_of_the_mixture_equal_the_closed_forms(k, seed):
    times, rho, mu, sigma = _random_mixture(k, seed)

    def weights(rho, mu, sigma):
        return mog_weights(times[None], rho[None], mu[None], sigma[None])[0]  # [N]

    d_rho, d_mu, d_sigma = jacobian(weights, (rho, mu, sigma))  # each [N, K]
    t = times[:, None]
    density = _gaussian(t, mu[None], sigma[None])  # N_{t_i}(mu_j, sigma_j^2), [N, K]
    # Eq. (2) simplified (NOTES.md): the paper's rho_j N / rho_j is N.
    torch.testing.assert_close(d_rho, density)
    torch.testing.assert_close(d_mu, rho * density * (t - mu) / sigma**2)
    torch.testing.assert_close(d_sigma, rho * density / sigma * ((t - mu) ** 2 / sigma**2 - 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eq4_gradients_of_the_pooling_equal_the_closed_forms(seed):
    g = torch.Generator().manual_seed(seed)
    n, c = 6, 4
    values = torch.rand(n, c, generator=g, dtype=torch.float64)  # I_i
    w = torch.randn(n, generator=g, dtype=torch.float64)

    def pooled(values, w):
        return weighted_pool(values[None], w[None])[0]  # [C]

    d_values, d_w = jacobian(pooled, (values, w))  # [C, N, C], [C, N]
    norm = torch.linalg.vector_norm(w)
    # dS[k] / dw_i = (||w||^2 I_i[k] - w_i sum_j w_j I_j[k]) / ||w||^3, per class k.
    weighted_sum = (w[:, None] * values).sum(0)  # [C]
    expected_d_w = (norm**2 * values - w[:, None] * weighted_sum[None]) / norm**3  # [N, C]
    torch.testing.assert_close(d_w, expected_d_w.T)
    # dS[k] / dI_i[l] = w_i / ||w|| if k == l else 0.
    expected_d_values = torch.einsum("kl,i->kil", torch.eye(c, dtype=torch.float64), w / norm)
    torch.testing.assert_close(d_values, expected_d_values)
    # The paper's Eq. (4) is the gradient of sum_k S[k].
    torch.testing.assert_close(d_w.sum(0), expected_d_w.sum(1))


def test_scaling_rho_leaves_the_pooled_vector_unchanged():
    times, rho, mu, sigma = _random_mixture(2, seed=3)
    values = torch.rand(1, 7, 5, dtype=torch.float64)
    base = weighted_pool(values, mog_weights(times[None], rho[None], mu[None], sigma[None]))
    for scale in (1e-6, 0.3, 7.0, 1e6):
        scaled = weighted_pool(
            values, mog_weights(times[None], scale * rho[None], mu[None], sigma[None])
        )
        torch.testing.assert_close(scaled, base)


def test_rescaled_log_weights_pool_like_the_weights_and_survive_underflow():
    times = segment_centres(1, 10, dtype=torch.float64)
    rho = torch.tensor([[1.0]], dtype=torch.float64)
    values = torch.rand(1, 10, 3, dtype=torch.float64)
    # A moderate mixture: both routes agree.
    mu, sigma = torch.tensor([[0.4]]).double(), torch.tensor([[0.2]]).double()
    log_w = mog_log_weights(times, rho, mu, sigma)
    torch.testing.assert_close(
        weighted_pool(values, rescale_log_weights(log_w)),
        weighted_pool(values, log_w.exp()),
    )
    # A narrow Gaussian far from every segment: the density underflows to 0 in float32, the
    # rescaled weights still select the nearest segment.
    mu, sigma = torch.tensor([[3.0]]), torch.tensor([[0.02]])
    log_w = mog_log_weights(times.float(), rho.float(), mu, sigma)
    assert log_w.exp().max() == 0
    pooled = weighted_pool(values.float(), rescale_log_weights(log_w))
    torch.testing.assert_close(pooled, values.float()[:, -1], rtol=1e-5, atol=1e-6)


def test_zero_weights_give_zero_and_finite_gradients():
    values = torch.rand(2, 4, 3, requires_grad=True)
    w = torch.zeros(2, 4, requires_grad=True)
    pooled = weighted_pool(values, w)
    assert torch.equal(pooled, torch.zeros(2, 3))
    pooled.sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(values.grad).all()


def test_segment_centres():
    torch.testing.assert_close(
        segment_centres(2, 4), torch.tensor([[0.125, 0.375, 0.625, 0.875]] * 2)
    )


def test_pooled_log_probabilities_normalizes_both_spaces():
    pooled = torch.rand(3, 5) + 0.1
    for pool in ("probabilities", "logits"):
        log_p = pooled_log_probabilities(pooled, pool)
        torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(3))
    # Pooled probabilities: renormalized, so the ratios are kept.
    log_p = pooled_log_probabilities(pooled, "probabilities")
    torch.testing.assert_close(log_p.exp(), pooled / pooled.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="pool must be one of"):
        pooled_log_probabilities(pooled, "softmax")
