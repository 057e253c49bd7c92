import pytest
import torch
import torchvision

from datp.models.backbone import (
    BACKBONES,
    PretrainedError,
    build_backbone,
    cross_modality_weight,
)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_maps_images_to_conv_features_and_trains(name):
    # oneDNN builds a kernel per layer shape on first use, seconds per large network on 2 cores;
    # the generic kernels answer the same question in a fraction of that.
    with torch.backends.mkldnn.flags(enabled=False):
        backbone = build_backbone(name, in_channels=10)
        maps = backbone(torch.randn(2, 10, 32, 32))
    assert maps.dim() == 4 and maps.shape[:2] == (2, backbone.feature_channels)
    assert torch.isfinite(maps).all()
    with torch.backends.mkldnn.flags(enabled=False):
        maps.mean().backward()
    first = next(p for p in backbone.parameters() if p.dim() == 4)
    assert first.shape[1] == 10 and first.grad is not None and first.grad.abs().sum() > 0


def test_cross_modality_initialization_from_a_torchvision_state_dict(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    rgb = build_backbone("resnet18", pretrained=path)
    torch.testing.assert_close(rgb.trunk[0].weight, reference.conv1.weight)
    torch.testing.assert_close(rgb.trunk[4][0].conv1.weight, reference.layer1[0].conv1.weight)
    flow = build_backbone("resnet18", in_channels=10, pretrained=path)
    expected = reference.conv1.weight.mean(dim=1, keepdim=True).repeat(1, 10, 1, 1)
    torch.testing.assert_close(flow.trunk[0].weight, expected)
    torch.testing.assert_close(flow.trunk[4][0].conv1.weight, reference.layer1[0].conv1.weight)


def test_cross_modality_weight_is_the_colour_mean_repeated():
    weight = torch.randn(4, 3, 3, 3)
    out = cross_modality_weight(weight, 6)
    assert out.shape == (4, 6, 3, 3)
    for c in range(6):
        torch.testing.assert_close(out[:, c], weight.mean(1))


def test_missing_and_mismatched_files_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedError, match="do not exist; datp never downloads"):
        build_backbone("resnet18", pretrained=tmp_path / "nope.pth")
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(PretrainedError, match="does not fit torchvision's resnet18: unexpected"):
        build_backbone("resnet18", pretrained=path)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(PretrainedError, match="cannot be read"):
        build_backbone("resnet18", pretrained=junk)
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'"):
        build_backbone("resnet9")
