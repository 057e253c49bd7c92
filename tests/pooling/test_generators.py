import pytest
import torch

from datp.pooling.generators import DiscreteGenerator, MixtureOfGaussians, random_mixture


@pytest.mark.parametrize("k", [1, 2, 3])
def test_initial_theta_gives_the_papers_initialization(k):
    generator = MixtureOfGaussians(num_gaussians=k)
    rho, mu, sigma = generator.parameters_from_theta(generator.initial_theta()[None])
    expected_mu = torch.arange(1, k + 1) / (k + 1)  # [1/(K+1), ..., K/(K+1)]
    torch.testing.assert_close(mu[0], expected_mu)
    torch.testing.assert_close(sigma[0], torch.full((k,), 0.2))
    torch.testing.assert_close(rho[0], torch.full((k,), 1.0 / k))


def test_constraints_hold_for_any_theta():
    generator = MixtureOfGaussians(num_gaussians=3, sigma_floor=0.05)
    theta = torch.randn(100, 9) * 30
    rho, mu, sigma = generator.parameters_from_theta(theta)
    assert (mu >= 0).all() and (mu <= 1).all()
    assert (sigma >= 0.05).all()
    assert (rho >= 0).all()
    torch.testing.assert_close(rho.sum(-1), torch.ones(100))


def test_mixture_runs_at_any_number_of_segments():
    generator = MixtureOfGaussians(num_gaussians=2)
    theta = generator.initial_theta()[None]
    for n in (1, 3, 10, 25):
        times = (torch.arange(n) + 0.5)[None] / n
        out = generator(theta, times)
        assert out.weights.shape == (1, n) and torch.isfinite(out.weights).all()
        # The scaled weights are a positive multiple of the weights, peak 1.
        ratio = out.scaled / out.weights
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
        assert out.scaled.max() == 1


def test_discrete_generator_refuses_another_number_of_segments():
    generator = DiscreteGenerator(num_segments=10)
    theta = torch.randn(2, 10)
    out = generator(theta, torch.rand(2, 10))
    torch.testing.assert_close(out.weights, theta)
    with pytest.raises(ValueError, match="built for N = 10 segments and cannot weight 8"):
        generator(theta[:, :8], torch.rand(2, 8))


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="num_gaussians"):
        MixtureOfGaussians(num_gaussians=0)
    with pytest.raises(ValueError, match="sigma_floor"):
        MixtureOfGaussians(num_gaussians=1, init_sigma=0.01, sigma_floor=0.02)
    with pytest.raises(ValueError, match="expected theta"):
        MixtureOfGaussians(num_gaussians=2).parameters_from_theta(torch.zeros(1, 5))


def test_random_mixture_is_valid_and_reproducible():
    a = random_mixture(50, 2, generator=torch.Generator().manual_seed(1))
    b = random_mixture(50, 2, generator=torch.Generator().manual_seed(1))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    rho, mu, sigma = a
    torch.testing.assert_close(rho.sum(-1), torch.ones(50))
    assert ((sigma >= 0.05) & (sigma <= 0.5)).all() and ((mu >= 0) & (mu <= 1)).all()


def test_softplus_discrete_weights_start_equal_and_stay_positive():
    generator = DiscreteGenerator(num_segments=6, activation="softplus")
    times = torch.rand(4, 6)
    start = generator(generator.initial_theta().expand(4, -1), times)
    torch.testing.assert_close(start.weights, torch.ones(4, 6))
    theta = torch.randn(4, 6) * 30  # an auxiliary net driving weights far negative
    theta[0] = -1e4
    weights = generator(theta, times).weights
    assert (weights > 0).all() and weights.isfinite().all()
    identity = DiscreteGenerator(num_segments=6)
    assert (identity(theta, times).weights < 0).any()  # the paper's generator may go negative
    with pytest.raises(ValueError, match="activation must be one of identity, softplus"):
        DiscreteGenerator(num_segments=6, activation="relu")
