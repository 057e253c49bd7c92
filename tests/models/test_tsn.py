import pytest
import torch

from datp.models import TSN, batch_norms, build_backbone
from datp.pooling import AveragePooling, build_pooling
from datp.pooling.functional import pooled_log_probabilities

B, N, C = 2, 3, 5


def _tsn(kind="datp", aux_input="conv", **kwargs):
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_channels=3)
    pooling = build_pooling(
        kind=kind,
        num_classes=C,
        num_segments=N,
        pool="probabilities",
        aux_input="conv" if aux_input == "conv" else "scores",
        feature_channels=backbone.feature_channels,
        feature_size=backbone.feature_size(32),
    )
    return TSN(backbone=backbone, num_classes=C, pooling=pooling, aux_input=aux_input, **kwargs)


@pytest.mark.parametrize("aux_input", ["scores", "conv"])
def test_tsn_with_datp_returns_scores_weights_and_segment_scores(aux_input):
    model = _tsn(aux_input=aux_input)
    out = model(torch.randn(B, N, 3, 32, 32), torch.rand(B, N))
    assert out.scores.shape == (B, C) and out.weights.shape == (B, N)
    assert out.segment_scores.shape == (B, N, C)
    assert all(torch.isfinite(t).all() for t in out)
    loss = torch.nn.functional.nll_loss(
        pooled_log_probabilities(out.scores, "probabilities"), torch.tensor([0, 3])
    )
    loss.backward()
    assert model.backbone.trunk[0].weight.grad.abs().sum() > 0
    assert model.fc.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.pooling.parameters())


def test_the_auxiliary_net_reads_softmax_scores_or_conv_maps():
    seen = {}

    class Spy(AveragePooling):
        def forward(self, scores, features=None, times=None):
            seen["features"] = features
            return super().forward(scores, features, times)

    x = torch.randn(B, N, 3, 32, 32)
    model = _tsn(aux_input="scores").eval()
    model.pooling = Spy(pool="logits")
    out = model(x)
    torch.testing.assert_close(seen["features"], out.segment_scores.softmax(-1))
    model.aux_input = "conv"
    model(x)
    maps = model.backbone(x.flatten(0, 1))  # [B*N, D, h, w]
    torch.testing.assert_close(seen["features"], maps.unflatten(0, (B, N)))


def test_average_pooling_output_is_the_mean_of_segment_logits():
    model = _tsn()
    model.pooling = AveragePooling(pool="logits")
    model.eval()
    out = model(torch.randn(B, N, 3, 32, 32))
    torch.testing.assert_close(out.scores, out.segment_scores.mean(1))
    torch.testing.assert_close(out.weights, torch.full((B, N), 1 / N))


def test_a_mixture_model_runs_at_another_number_of_segments():
    model = _tsn().eval()
    out = model(torch.randn(1, 7, 3, 32, 32))
    assert out.weights.shape == (1, 7) and torch.isfinite(out.scores).all()


def test_channels_last_gives_the_same_scores():
    model = _tsn().eval()
    x, times = torch.randn(B, N, 3, 32, 32), torch.rand(B, N)
    expected = model(x, times)
    model.channels_last = True
    model = model.to(memory_format=torch.channels_last)
    out = model(x, times)
    torch.testing.assert_close(out.scores, expected.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.weights, expected.weights, rtol=1e-4, atol=1e-5)


def test_partial_bn_freezes_affine_now_and_statistics_when_asked():
    model = _tsn(partial_bn=True).train()
    norms = batch_norms(model.backbone)
    assert norms[0].weight.requires_grad and norms[0].bias.requires_grad
    assert all(not bn.weight.requires_grad and not bn.bias.requires_grad for bn in norms[1:])
    # First epoch: every statistic still adapts.
    before = [bn.running_mean.clone() for bn in norms]
    model(torch.randn(B, N, 3, 32, 32))
    assert all(not torch.equal(bn.running_mean, b) for bn, b in zip(norms, before, strict=True))
    # Later epochs: only the first BatchNorm moves, also after an eval() / train() round trip.
    model.freeze_partial_bn()
    model.eval()
    model.train()
    assert norms[0].training and all(not bn.training for bn in norms[1:])
    before = [bn.running_mean.clone() for bn in norms]
    model(torch.randn(B, N, 3, 32, 32))
    assert not torch.equal(norms[0].running_mean, before[0])
    for bn, b in zip(norms[1:], before[1:], strict=True):
        assert torch.equal(bn.running_mean, b)
    with pytest.raises(RuntimeError, match="partial_bn=True"):
        _tsn().freeze_partial_bn()


def test_feature_size_keeps_the_mode_and_the_statistics():
    model = _tsn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.feature_size(64) == 4
    assert model.training and model.backbone.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_the_model_traces_to_torchscript():
    model = _tsn().eval()
    x, times = torch.randn(B, N, 3, 32, 32), torch.rand(B, N)
    traced = torch.jit.trace(model, (x, times))
    x2, times2 = torch.randn(B, N, 3, 32, 32), torch.rand(B, N)
    for ours, theirs in zip(traced(x2, times2), model(x2, times2), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"expected inputs \[B, N, 3, H, W\]"):
        _tsn()(torch.randn(B, 3, 32, 32))
    with pytest.raises(ValueError, match="aux_input must be one of"):
        _tsn(aux_input="pixels")
