"""Frozen torchvision backbones: the classifier's input as features, weights through the hub
cache with their hash checked, local files, the weights' own transform."""

import copy
import hashlib
import re

import pytest
import torch
import torchvision

from datp.errors import InputError
from datp.features.backbones import (
    CLASSIFIER_ATTRIBUTES,
    model_kind,
    remove_classifier,
    torchvision_backbone,
)
from datp.models.pretrained import PretrainedError

# (model, input shape): one model of each family of the table in datp.features.backbones.
FAMILIES = [
    ("resnet18", (2, 3, 32, 32)),  # fc
    ("mobilenet_v3_small", (2, 3, 32, 32)),  # the last Linear of classifier
    ("squeezenet1_1", (2, 3, 48, 48)),  # classifier's 1x1 convolution
    ("vit", (1, 3, 32, 32)),  # heads.head: the class token after the encoder's LayerNorm
    ("r3d_18", (1, 3, 2, 16, 16)),  # a video model's fc
]


def _model(name):
    if name == "vit":  # torchvision's ViT class, small: vit_b_16 itself takes seconds here
        return torchvision.models.VisionTransformer(image_size=32, patch_size=16, num_layers=1,
                                                   num_heads=2, hidden_dim=32, mlp_dim=64)
    return torchvision.models.get_model(name, weights=None)


def _classifier_input(model, shape):
    """What the model's last classification layer reads, captured by a hook."""
    seen = {}
    layers = [m for m in model.modules()
              if isinstance(m, torch.nn.Linear | torch.nn.Conv2d | torch.nn.Conv3d)]
    layers[-1].register_forward_pre_hook(lambda module, args: seen.setdefault("x", args[0]))
    model(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    return seen["x"]


@pytest.mark.parametrize(("name", "shape"), FAMILIES)
def test_features_are_what_the_removed_classifier_read(name, shape):
    torch.manual_seed(0)
    model = _model(name).eval()
    reference = copy.deepcopy(model)
    channels, _, description = remove_classifier(model)
    assert "replaced by Identity" in description
    with torch.no_grad():
        expected = _classifier_input(reference, shape)
        features = model(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    if expected.dim() > 2:  # S3D and SqueezeNet: a 1x1 convolution, averaged after it
        expected = expected.mean(dim=tuple(range(2, expected.dim())))
    assert features.shape == (shape[0], channels)
    torch.testing.assert_close(features, expected)


def test_the_video_models_of_the_issue_and_names_outside_torchvision():
    expected = {"mvit_v2_s": (768, "head.1"), "s3d": (1024, "classifier.1")}
    for name, removed in expected.items():  # forward passes would take seconds: the layers
        model = torchvision.models.get_model(name, weights=None)
        assert remove_classifier(model)[:2] == removed
    assert model_kind("mvit_v2_s") == "video" and model_kind("vit_b_16") == "image"
    with pytest.raises(InputError, match="did you mean resnet18"):
        model_kind("resnet_18")
    with pytest.raises(InputError, match=str(CLASSIFIER_ATTRIBUTES[0])):
        remove_classifier(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1)))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _seed(hub, state, monkeypatch):
    """A resnet18 state dict in the hub cache under torchvision's naming, and its URL pointed
    at it."""
    hub.mkdir(parents=True)
    scratch = hub / "scratch.pth"
    torch.save(state, scratch)
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    named = hub / f"resnet18-{digest[:8]}.pth"
    scratch.rename(named)
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.value, "url",
                        f"https://download.pytorch.org/models/{named.name}")
    return named, digest


def test_weights_by_name_come_from_the_hub_cache_with_the_weights_own_transform(hub, monkeypatch):
    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None).eval()
    named, digest = _seed(hub, reference.state_dict(), monkeypatch)
    backbone = torchvision_backbone("resnet18", weights="ResNet18_Weights.IMAGENET1K_V1")
    record = backbone.settings["backbone"]
    assert record["weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert record["weights_file"] == named.name and record["weights_sha256"] == digest
    assert backbone.settings["transform"]["crop"] == [224]
    assert backbone.settings["transform"]["resize"] == [256] and backbone.channels == 512
    frames = torch.randint(0, 256, (3, 3, 120, 160), dtype=torch.uint8)
    x = backbone.transform(frames)
    assert x.shape == (3, 3, 224, 224)
    torch.testing.assert_close(x, torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()(
        frames))
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(backbone.module(x), reference(x))
    assert not any(p.requires_grad for p in backbone.module.parameters())

    named.write_bytes(named.read_bytes()[:-8] + b"damaged!")  # the same name, other bytes
    with pytest.raises(PretrainedError, match="is damaged"):
        torchvision_backbone("resnet18", weights="ResNet18_Weights.IMAGENET1K_V1")


def test_a_local_file_of_parameters_and_one_of_another_model(tmp_path):
    torch.manual_seed(2)
    reference = torchvision.models.resnet18(weights=None, num_classes=7).eval()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    backbone = torchvision_backbone("resnet18", weights=str(tmp_path / "r18.pth"))
    assert backbone.settings["backbone"]["weights"] == "r18.pth"
    assert re.fullmatch("[0-9a-f]{64}", backbone.settings["backbone"]["weights_sha256"])
    assert backbone.settings["transform"]["of"] == "ResNet18_Weights.IMAGENET1K_V1"
    x = torch.randn(2, 3, 64, 64)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(backbone.module(x), reference(x))
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "m.pth")
    with pytest.raises(PretrainedError, match="not the parameters of torchvision's resnet18"):
        torchvision_backbone("resnet18", weights=str(tmp_path / "m.pth"))
