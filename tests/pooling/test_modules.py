"""The pooling modules behind one interface."""

import pytest
import torch

from datp.choices import PoolingKind, names
from datp.pooling import (
    AttentionPooling,
    AveragePooling,
    DATPPooling,
    MaxPooling,
    RandomGaussianPooling,
    build_pooling,
)
from datp.pooling.functional import pooled_log_probabilities

POOLING_KINDS = names(PoolingKind)

B, N, C, D, HW = 3, 10, 7, 16, 4


def _inputs(aux_input, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, N, C, generator=g)
    features = {
        "scores": None,
        "sequence": torch.randn(B, N, D, generator=g),
        "conv": torch.randn(B, N, D, HW, HW, generator=g),
    }[aux_input]
    return scores, features


def _build(kind, aux_input, pool="probabilities", **kwargs):
    return build_pooling(
        kind=kind,
        num_classes=C,
        num_segments=N,
        pool=pool,
        aux_input=aux_input,
        feature_channels=D,
        feature_size=HW,
        **kwargs,
    )


@pytest.mark.parametrize("kind", POOLING_KINDS)
@pytest.mark.parametrize("aux_input", ["scores", "sequence", "conv"])
@pytest.mark.parametrize("pool", ["probabilities", "logits"])
def test_every_pooling_has_the_same_interface_and_trains(kind, aux_input, pool):
    pooling = _build(kind, aux_input, pool)
    scores, features = _inputs(aux_input)
    scores.requires_grad_(True)
    out = pooling(scores, features)
    assert out.scores.shape == (B, C) and out.weights.shape == (B, N)
    assert torch.isfinite(out.scores).all() and torch.isfinite(out.weights).all()
    out.scores.sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0
    # The output offers the right distribution for the loss, whatever was pooled.
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(B))
    torch.testing.assert_close(out.log_probs, pooled_log_probabilities(out.scores, pool))


def test_pooled_probabilities_are_not_a_distribution_and_log_probs_give_the_papers_loss():
    """cross_entropy on out.scores, what one would write for any pooling layer, trains another
    loss when probabilities are pooled: the pooled vector sums to sum(w) / ||w||_2, not 1."""
    pooling = _build("datp", "scores", "probabilities")
    scores, _ = _inputs("scores")
    out = pooling(scores)
    w = out.weights
    torch.testing.assert_close(out.scores.sum(-1), w.sum(-1) / w.norm(dim=-1), rtol=1e-4,
                               atol=1e-5)
    labels = torch.tensor([0, 3, 6])
    weighted_mean = torch.einsum("bn,bnc->bc", w / w.sum(-1, keepdim=True), scores.softmax(-1))
    paper = torch.nn.functional.nll_loss(weighted_mean.log(), labels)
    torch.testing.assert_close(torch.nn.functional.nll_loss(out.log_probs, labels), paper)
    assert not torch.isclose(torch.nn.functional.cross_entropy(out.scores, labels), paper)


def test_datp_starts_from_the_papers_mixture_whatever_the_features():
    pooling = _build("datp", "conv", num_gaussians=2)
    scores, features = _inputs("conv")
    out = pooling(scores, features)
    times = (torch.arange(N) + 0.5) / N
    expected = sum(
        0.5 * torch.exp(-((times - mu) ** 2) / (2 * 0.2**2)) / (0.2 * (2 * torch.pi) ** 0.5)
        for mu in (1 / 3, 2 / 3)
    )
    torch.testing.assert_close(out.weights, expected.expand(B, N))


def test_datp_pools_by_eq3_with_its_own_weights():
    pooling = _build("datp", "scores", pool="logits")
    scores, _ = _inputs("scores")
    out = pooling(scores)
    w = out.weights
    expected = (w[..., None] * scores).sum(1) / torch.linalg.vector_norm(w, dim=1, keepdim=True)
    torch.testing.assert_close(out.scores, expected)


def test_datp_with_a_mixture_runs_at_another_number_of_segments():
    pooling = _build("datp", "conv")
    for n in (4, 25):
        scores = torch.randn(2, n, C)
        features = torch.randn(2, n, D, HW, HW)
        out = pooling(scores, features)
        assert out.scores.shape == (2, C) and out.weights.shape == (2, n)


def test_datp_gives_its_mixture_to_evaluate_at_any_time():
    from datp.pooling.functional import mog_weights

    pooling = _build("datp", "conv", num_gaussians=2)
    torch.nn.init.normal_(pooling.aux_net.regression.weight, std=0.1)  # a mixture per video
    scores, features = _inputs("conv", seed=3)
    out = pooling(scores, features)
    rho, mu, sigma = out.mixture.unbind(1)
    assert rho.shape == mu.shape == sigma.shape == (B, 2)
    times = (torch.arange(N) + 0.5).expand(B, N) / N
    torch.testing.assert_close(mog_weights(times, rho, mu, sigma), out.weights)
    assert not torch.allclose(mu[0], mu[1])  # each video its own
    assert _build("datp", "scores", generator="discrete")(scores).mixture is None


def test_datp_with_discrete_weights_refuses_another_number_of_segments():
    pooling = _build("datp", "scores", generator="discrete")
    with pytest.raises(ValueError, match="discrete weights generator was built for N = 10"):
        pooling(torch.randn(2, 25, C))


def test_datp_uses_the_given_times():
    pooling = _build("datp", "scores", num_gaussians=1)  # one Gaussian at 0.5
    scores = torch.randn(1, N, C)
    early = torch.linspace(0.0, 0.2, N)[None]
    out = pooling(scores, times=early)
    assert out.weights[0].argmax() == N - 1  # the time closest to mu = 0.5


def test_conv_maps_of_another_size_are_pooled_to_the_kernel():
    pooling = _build("datp", "conv")
    out = pooling(torch.randn(2, N, C), torch.randn(2, N, D, 7, 7))
    assert out.scores.shape == (2, C)


def test_average_pooling_equals_the_mean():
    scores = torch.randn(B, N, C)
    torch.testing.assert_close(AveragePooling(pool="logits")(scores).scores, scores.mean(1))
    torch.testing.assert_close(
        AveragePooling(pool="probabilities")(scores).scores, scores.softmax(-1).mean(1)
    )


def test_attention_with_equal_segment_scores_equals_the_mean():
    pooling = AttentionPooling(in_channels=D, pool="logits")
    with torch.no_grad():  # a non-trivial scorer, fed identical features for every segment
        for p in pooling.parameters():
            p.normal_()
    scores = torch.randn(B, N, C)
    features = torch.randn(B, 1, D).expand(B, N, D)
    out = pooling(scores, features)
    torch.testing.assert_close(out.scores, scores.mean(1))
    torch.testing.assert_close(out.weights, torch.full((B, N), 1.0 / N))


def test_max_pooling_takes_the_maximum_and_marks_its_segment():
    scores = torch.zeros(1, 4, 2)
    scores[0, 2, 1] = 5.0
    out = MaxPooling(pool="logits")(scores)
    torch.testing.assert_close(out.scores, torch.tensor([[0.0, 5.0]]))
    torch.testing.assert_close(out.weights, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))


def test_random_gaussians_are_reproducible_from_the_seed_and_differ_per_video():
    scores = torch.randn(4, N, C)
    a = RandomGaussianPooling(seed=3)(scores)
    b = RandomGaussianPooling(seed=3)(scores)
    torch.testing.assert_close(a.scores, b.scores)
    assert not torch.allclose(a.weights[0], a.weights[1])


def test_bad_shapes_are_refused_with_the_expected_shape():
    pooling = _build("datp", "conv")
    with pytest.raises(ValueError, match=r"expected scores \[B, N, C\]"):
        pooling(torch.randn(B, C))
    with pytest.raises(ValueError, match=r"features must start with \[B, N\]"):
        pooling(torch.randn(B, N, C), torch.randn(B, N + 1, D, HW, HW))
    with pytest.raises(ValueError, match=r"expected times \[B, N\]"):
        pooling(torch.randn(B, N, C), torch.randn(B, N, D, HW, HW), torch.rand(B, N + 1))
    with pytest.raises(ValueError, match=r"expected conv features \[B, N, 16, h, w\]"):
        pooling(torch.randn(B, N, C), torch.randn(B, N, D + 1, HW, HW))


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown pooling 'mean'; choose one of datp, average"):
        _build("mean", "scores")
    with pytest.raises(ValueError, match='pooling.generator = "gmm": must be one of mog, '
                                         "discrete"):
        _build("datp", "scores", generator="gmm")
    with pytest.raises(ValueError, match="unknown key pooling.num_gausians; did you mean "
                                         "'num_gaussians'"):
        _build("datp", "scores", num_gausians=2)
    with pytest.raises(TypeError, match="needs 'pool'"):
        build_pooling(kind="datp", num_classes=C, num_segments=N)
    with pytest.raises(ValueError, match="pool must be one of"):
        DATPPooling(
            aux_net=_build("datp", "scores").aux_net,
            generator=_build("datp", "scores").generator,
            pool="softmax",
        )


@pytest.mark.parametrize("aux_input", ["sequence", "conv"])
def test_theta_does_not_depend_on_the_scale_of_the_features(aux_input):
    # Growing backbone features once drove theta to +-100 under Adam and collapsed the mixture
    # onto one segment; the auxiliary net now normalizes each video's feature sequence.
    pooling = _build("datp", aux_input)
    with torch.no_grad():  # a trained-looking regression layer, not the zero initialization
        pooling.aux_net.regression.weight.normal_()
    scores, features = _inputs(aux_input)
    # Once features dominate the biases, scaling them further changes nothing.
    large = pooling.aux_net(features * 1e3)
    huge = pooling.aux_net(features * 1e6)
    torch.testing.assert_close(huge, large, rtol=1e-3, atol=1e-3)
    assert large.abs().max() < 100


def test_sequence_norm_removes_the_scale_but_keeps_the_contrast_between_segments():
    from datp.pooling.aux_nets import SequenceAuxNet

    aux = SequenceAuxNet(in_channels=D, num_parameters=3, temporal_bins=N)

    def norm(x):  # the aux net's input normalization, [B, N, D] -> [B, N, D]
        return aux.norm(x.transpose(1, 2)).transpose(1, 2)

    x = torch.randn(2, N, D)
    x[:, 2] *= 6.0  # one segment responds much more strongly than the others
    y = norm(x)
    torch.testing.assert_close(norm(1e4 * x + 3.0), y, rtol=1e-4, atol=1e-4)
    segment_norms = y.norm(dim=-1)  # [B, N]
    assert (segment_norms.argmax(-1) == 2).all()
    assert (segment_norms[:, 2] > 2 * segment_norms.median(-1).values).all()
    # Each video is normalized by its own statistics: rescaling one leaves the other alone.
    other = x.clone()
    other[0] *= 100.0
    torch.testing.assert_close(norm(other)[1], y[1])
    torch.testing.assert_close(norm(other)[0], y[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("segments", "normalize", "grad"),
                         [(N, True, False), (7, True, True), (N, False, True)])
def test_the_sequence_layout_is_the_same_auxiliary_net(segments, normalize, grad):
    """What the feature heads compute (the normalization and the first convolution in the
    sequence's own layout, one matrix product) equals the TSN paths' net, outputs and gradients
    (of the input too), at the training N and at another; and it is one state dict."""
    import copy

    from datp.pooling.aux_nets import SequenceAuxNet

    torch.manual_seed(0)
    net = SequenceAuxNet(in_channels=D, num_parameters=6, temporal_bins=N,
                         normalize_input=normalize)
    if normalize:  # not the identity affine map a new GroupNorm starts from
        torch.nn.init.normal_(net.norm.weight)
        torch.nn.init.normal_(net.norm.bias)
    fast = copy.deepcopy(net)
    fast.sequence_layout = True
    x = (3 * torch.randn(B, segments, D) + 1).requires_grad_(grad)
    expected, got = net(x), fast(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    extra = [x] if grad else []
    grads = torch.autograd.grad(expected.square().sum(), [*net.parameters(), *extra])
    ours = torch.autograd.grad(got.square().sum(), [*fast.parameters(), *extra])
    assert len(ours) == len(list(net.parameters())) + grad
    for a, b in zip(ours, grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert fast.state_dict().keys() == net.state_dict().keys()
