import pytest
import torch

from datp.models import TSN, build_backbone
from datp.pooling import AveragePooling, build_pooling

B, N, C = 2, 3, 5


def _tsn(kind="datp", aux_input="conv", **kwargs):
    backbone = build_backbone("small_cnn", in_channels=3)
    pooling = build_pooling(
        kind=kind,
        num_classes=C,
        num_segments=N,
        pool="probabilities",
        aux_input="conv" if aux_input == "conv" else "scores",
        feature_channels=backbone.feature_channels,
        feature_size=2,
    )
    return TSN(backbone=backbone, num_classes=C, pooling=pooling, aux_input=aux_input, **kwargs)


@pytest.mark.parametrize("aux_input", ["scores", "conv"])
def test_tsn_with_datp_returns_scores_weights_and_segment_scores(aux_input):
    model = _tsn(aux_input=aux_input)
    out = model(torch.randn(B, N, 3, 32, 32), torch.rand(B, N))
    assert out.scores.shape == (B, C) and out.weights.shape == (B, N)
    assert out.segment_scores.shape == (B, N, C)
    out.scores.sum().backward()
    assert model.backbone.trunk[0].weight.grad.abs().sum() > 0


def test_average_pooling_output_is_the_mean_of_segment_logits():
    model = _tsn()
    model.pooling = AveragePooling(pool="logits")
    model.eval()
    out = model(torch.randn(B, N, 3, 32, 32))
    torch.testing.assert_close(out.scores, out.segment_scores.mean(1))


def test_a_mixture_model_runs_at_another_number_of_segments():
    model = _tsn().eval()
    out = model(torch.randn(1, 7, 3, 32, 32))
    assert out.weights.shape == (1, 7)


def test_partial_bn_freezes_every_batch_norm_but_the_first():
    model = _tsn(partial_bn=True).train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms[0].training and norms[0].weight.requires_grad
    assert all(not bn.training and not bn.weight.requires_grad for bn in norms[1:])
    before = norms[1].running_mean.clone()
    model(torch.randn(B, N, 3, 32, 32))
    torch.testing.assert_close(norms[1].running_mean, before)


def test_wrong_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"expected inputs \[B, N, 3, H, W\]"):
        _tsn()(torch.randn(B, 3, 32, 32))
