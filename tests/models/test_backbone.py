import pytest
import torch
import torchvision

from datp.models.backbone import (
    BACKBONES,
    PretrainedError,
    batch_norms,
    build_backbone,
    cross_modality_weight,
)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_maps_images_to_conv_features_and_trains(name):
    # oneDNN builds a kernel per layer shape on first use, seconds per large network on 2 cores;
    # the generic kernels answer the same question in a fraction of that.
    with torch.backends.mkldnn.flags(enabled=False):
        backbone = build_backbone(name, in_channels=10)
        x = torch.randn(2, 10, 32, 32)
        maps = backbone(x)
        assert maps.dim() == 4 and maps.shape[:2] == (2, backbone.feature_channels)
        assert maps.shape[-1] == backbone.feature_size(32)
        assert torch.isfinite(maps).all()
        maps.mean().backward()
        backbone.eval()
        torch.testing.assert_close(backbone.forward_pooled(x), backbone(x).mean(dim=(-2, -1)))
    first = next(p for p in backbone.parameters() if p.dim() == 4)
    assert first.shape[1] == 10 and first.grad is not None and first.grad.abs().sum() > 0


def _randomized_resnet18():
    """resnet18 with BatchNorm statistics and affine parameters away from their defaults."""
    reference = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(0)
    for bn in batch_norms(reference):
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.num_batches_tracked.fill_(1000)
        bn.weight.data.copy_(torch.rand(bn.num_features, generator=g))
    return reference


def test_cross_modality_initialization_from_a_torchvision_state_dict(tmp_path):
    reference = _randomized_resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    rgb = build_backbone("resnet18", pretrained=path)
    torch.testing.assert_close(rgb.trunk[0].weight, reference.conv1.weight)
    torch.testing.assert_close(rgb.trunk[4][0].conv1.weight, reference.layer1[0].conv1.weight)
    flow = build_backbone("resnet18", in_channels=10, pretrained=path)
    expected = reference.conv1.weight.mean(dim=1, keepdim=True).repeat(1, 10, 1, 1)
    torch.testing.assert_close(flow.trunk[0].weight, expected)
    torch.testing.assert_close(flow.trunk[4][0].conv1.weight, reference.layer1[0].conv1.weight)
    # Building must not move the pretrained BatchNorm statistics (no probe in train mode).
    for built in (rgb, flow):
        for ours, theirs in zip(batch_norms(built), batch_norms(reference), strict=True):
            assert torch.equal(ours.running_mean, theirs.running_mean)
            assert torch.equal(ours.running_var, theirs.running_var)
            assert torch.equal(ours.num_batches_tracked, theirs.num_batches_tracked)


def test_cross_modality_weight_is_the_colour_mean_repeated():
    weight = torch.randn(4, 3, 3, 3)
    out = cross_modality_weight(weight, 6)
    assert out.shape == (4, 6, 3, 3)
    for c in range(6):
        torch.testing.assert_close(out[:, c], weight.mean(1))


def _checkpoint(backbone, path, prefix=""):
    """A datp-style checkpoint: a dict whose ``model`` is a TSN-like state dict."""
    state = {f"{prefix}backbone.{k}": v for k, v in backbone.state_dict().items()}
    state[f"{prefix}fc.weight"] = torch.zeros(5, backbone.feature_channels)
    torch.save({"model": state, "epoch": 3}, path)


def test_a_datp_checkpoint_initializes_the_backbone(tmp_path):
    torch.manual_seed(0)
    flow = build_backbone("small_cnn", in_channels=10)
    _checkpoint(flow, tmp_path / "flow.pt", prefix="module.")  # saved from a DDP wrapper
    again = build_backbone("small_cnn", in_channels=10, pretrained=tmp_path / "flow.pt")
    for key, value in flow.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key

    rgb = build_backbone("small_cnn", in_channels=3)
    _checkpoint(rgb, tmp_path / "rgb.pt")
    from_rgb = build_backbone("small_cnn", in_channels=4, pretrained=tmp_path / "rgb.pt")
    torch.testing.assert_close(
        from_rgb.trunk[0].weight, cross_modality_weight(rgb.trunk[0].weight, 4)
    )
    torch.testing.assert_close(from_rgb.trunk[3].weight, rgb.trunk[3].weight)

    with pytest.raises(PretrainedError, match="takes 10 input channels"):
        build_backbone("small_cnn", in_channels=20, pretrained=tmp_path / "flow.pt")
    with pytest.raises(PretrainedError, match="flow.pt does not fit backbone resnet18: 1.weight"):
        build_backbone("resnet18", in_channels=10, pretrained=tmp_path / "flow.pt")
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "headless.pt")
    with pytest.raises(PretrainedError, match="without a backbone"):
        build_backbone("small_cnn", pretrained=tmp_path / "headless.pt")


def test_missing_and_mismatched_files_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedError, match="nope.pth: pretrained parameters do not exist: "
                       "give the path"):
        build_backbone("resnet18", pretrained=tmp_path / "nope.pth")
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(PretrainedError, match="does not fit torchvision's resnet18: unexpected"):
        build_backbone("resnet18", pretrained=path)
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    del state["layer4.1.bn2.bias"]
    torch.save(state, tmp_path / "edited.pth")
    with pytest.raises(PretrainedError) as error:
        build_backbone("resnet18", pretrained=tmp_path / "edited.pth")
    message = str(error.value)
    assert "edited.pth" in message and "missing layer4.1.bn2.bias" in message
    assert "layer1.0.conv1.weight: expected (64, 64, 3, 3), got (64, 64, 1, 1)" in message
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(PretrainedError, match="junk.pth: pretrained parameters cannot be "
                       "loaded: it is not a file"):
        build_backbone("resnet18", pretrained=junk)
    torch.save({"state_dict": {"a": torch.zeros(1)}, "meta": "x"}, tmp_path / "wrapped.pth")
    with pytest.raises(PretrainedError, match="wrapped.pth: a is not a parameter of an mmaction2"):
        build_backbone("resnet18", pretrained=tmp_path / "wrapped.pth")
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'"):
        build_backbone("resnet9")
