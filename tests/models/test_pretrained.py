"""Pretrained parameters by name (torch hub's cache, never the network) and from mmaction2."""

import hashlib
import re
import urllib.error

import pytest
import torch
import torchvision

from datp.models.backbone import batch_norms, build_backbone, cross_modality_weight
from datp.models.pretrained import (
    PretrainedError,
    cache_path,
    load_pretrained,
    locate,
    take_classifier,
)

RESNET18_URL = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url


def _randomized_resnet18():
    """resnet18 with every parameter and BatchNorm statistic away from its initial value."""
    reference = torchvision.models.resnet18(weights=None)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=g) * 0.05)
        for bn in batch_norms(reference):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return reference.eval()


def _never_download(url, destination, **kwargs):
    raise AssertionError(f"the network was reached for {url}")


def _offline(url, destination, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache under a TORCH_HOME of this test's own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _seed_cache(hub, state, stem="resnet18"):
    """Write ``state`` under torchvision's naming, ``<stem>-<first 8 hex digits of its SHA-256>``;
    the file is then renamed to the name torchvision's URL gives it, as a user would copy it."""
    hub.mkdir(parents=True, exist_ok=True)
    scratch = hub / "scratch.pth"
    torch.save(state, scratch)
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    named = hub / f"{stem}-{digest[:8]}.pth"
    scratch.rename(named)
    return named


def test_imagenet_by_name_reads_the_cached_file_and_checks_its_hash(hub, monkeypatch):
    reference = _randomized_resnet18()
    seeded = _seed_cache(hub, reference.state_dict())
    # Point torchvision's resnet18 weights at the seeded file's name: the URL's last part.
    digits = re.search(r"-([a-f0-9]+)\.pth", seeded.name).group(1)
    url = f"https://download.pytorch.org/models/resnet18-{digits}.pth"
    monkeypatch.setattr(
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.value, "url", url
    )
    assert cache_path(url) == seeded
    for spec in ("imagenet", "ResNet18_Weights.IMAGENET1K_V1", "ResNet18_Weights.DEFAULT"):
        assert locate(spec, backbone="resnet18", download=_never_download) == seeded
    backbone = build_backbone("resnet18", pretrained="imagenet").eval()
    torch.testing.assert_close(backbone.trunk[0].weight, reference.conv1.weight)
    x = torch.randn(2, 3, 64, 64)
    trunk_of_reference = torch.nn.Sequential(*list(reference.children())[:-2])
    torch.testing.assert_close(backbone(x), trunk_of_reference(x))
    flow = build_backbone("resnet18", in_channels=10, pretrained="imagenet")  # TSN's cross-modality
    torch.testing.assert_close(flow.trunk[0].weight,
                               cross_modality_weight(reference.conv1.weight, 10))

    # The same bytes under another digest: a damaged or foreign file is named, not loaded.
    wrong = hub / "resnet18-00000000.pth"
    seeded.rename(wrong)
    monkeypatch.setattr(
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.value,
        "url",
        "https://download.pytorch.org/models/resnet18-00000000.pth",
    )
    with pytest.raises(PretrainedError, match=r"its SHA-256 begins [0-9a-f]{8}, but its name says "
                                              r"00000000: the file is damaged"):
        locate("imagenet", backbone="resnet18", download=_never_download)


def test_offline_and_not_cached_is_one_line_naming_where_to_put_the_file(hub):
    with pytest.raises(PretrainedError) as error:
        locate("imagenet", backbone="resnet18", download=_offline)
    message = str(error.value)
    assert "\n" not in message
    assert f"put the file from {RESNET18_URL} at {hub / RESNET18_URL.rsplit('/', 1)[1]}" in message
    assert "Temporary failure in name resolution" in message
    assert not any(hub.iterdir())  # nothing half-written is left


def test_a_download_goes_into_the_cache_with_its_hash_checked(hub):
    calls = []

    def download(url, destination, *, hash_prefix, progress):
        calls.append((url, destination, hash_prefix))
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), destination)

    path = locate("ResNet18_Weights.IMAGENET1K_V1", backbone="resnet18", download=download)
    digits = RESNET18_URL.rsplit("-", 1)[1].removesuffix(".pth")
    assert calls == [(RESNET18_URL, str(hub / f"resnet18-{digits}.pth"), digits)]
    assert path == hub / f"resnet18-{digits}.pth"


def test_names_that_do_not_fit_the_backbone_are_clear_errors(hub):
    with pytest.raises(PretrainedError, match="another architecture than model.backbone = "
                                              "resnet18; its weights are ResNet18_Weights"):
        locate("ResNet50_Weights.IMAGENET1K_V2", backbone="resnet18", download=_never_download)
    with pytest.raises(PretrainedError, match="no weights of that name; backbone resnet18 has "
                                              "ResNet18_Weights.IMAGENET1K_V1"):
        locate("ResNet18_Weights.IMAGENET9K", backbone="resnet18", download=_never_download)
    with pytest.raises(PretrainedError, match="no pretrained parameters for backbone small_cnn"):
        locate("imagenet", backbone="small_cnn", download=_never_download)


# --- mmaction2 ------------------------------------------------------------------------------------

def _mmaction2_name(key):
    """torchvision's resnet name -> mmaction2's ResNet name (ConvModule: conv, bn), written out
    independently of datp's table."""
    key = re.sub(r"^conv1\.", "conv1.conv.", key)
    key = re.sub(r"^bn1\.", "conv1.bn.", key)
    key = re.sub(r"\.conv(\d)\.", r".conv\1.conv.", key)
    key = re.sub(r"\.bn(\d)\.", r".conv\1.bn.", key)
    key = key.replace(".downsample.0.", ".downsample.conv.").replace(
        ".downsample.1.", ".downsample.bn."
    )
    return "backbone." + key


def _mmaction2_checkpoint(reference, path, num_classes=7):
    state = {
        _mmaction2_name(k): v for k, v in reference.state_dict().items() if not k.startswith("fc.")
    }
    state["cls_head.fc_cls.weight"] = torch.randn(num_classes, reference.fc.in_features)
    state["cls_head.fc_cls.bias"] = torch.randn(num_classes)
    torch.save({"meta": {"mmaction2_version": "1.2.0", "epoch": 100}, "state_dict": state}, path)
    return state


def test_an_mmaction2_tsn_checkpoint_gives_the_same_features(tmp_path):
    reference = _randomized_resnet18()
    scratch = tmp_path / "tsn_r18_kinetics400.pth"
    state = _mmaction2_checkpoint(reference, scratch)
    # Named as mmaction2's model zoo names its files: date, then the SHA-256's first 8 digits.
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    path = tmp_path / f"tsn_r18_kinetics400_20220906-{digest[:8]}.pth"
    scratch.rename(path)
    renamed = tmp_path / "tsn_r18_kinetics400_20220906-0badc0de.pth"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(PretrainedError, match="but its name says 0badc0de"):
        build_backbone("resnet18", pretrained=renamed)
    assert "backbone.layer2.0.downsample.bn.running_var" in state
    assert "backbone.layer1.0.conv2.bn.weight" in state

    backbone = build_backbone("resnet18", pretrained=path).eval()
    x = torch.randn(2, 3, 64, 64)
    trunk_of_reference = torch.nn.Sequential(*list(reference.children())[:-2])
    assert torch.equal(backbone(x), trunk_of_reference(x))

    # The classifier is left out unless asked for, and taken only where it fits.
    pretrained = load_pretrained(path, backbone="resnet18")
    fc = torch.nn.Linear(512, 7)
    take_classifier(fc, pretrained)
    assert torch.equal(fc.weight, state["cls_head.fc_cls.weight"])
    assert torch.equal(fc.bias, state["cls_head.fc_cls.bias"])
    with pytest.raises(PretrainedError, match="has 7 classes of 512 features and this model 101"):
        take_classifier(torch.nn.Linear(512, 101), pretrained)

    # Cross-modality initialization from an RGB TSN, and a flow TSN's own first convolution.
    flow = build_backbone("resnet18", in_channels=10, pretrained=path)
    torch.testing.assert_close(flow.trunk[0].weight, cross_modality_weight(reference.conv1.weight,
                                                                           10))
    state["backbone.conv1.conv.weight"] = torch.randn(64, 10, 7, 7)
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "tsn_flow.pth")
    own = build_backbone("resnet18", in_channels=10, pretrained=tmp_path / "tsn_flow.pth")
    assert torch.equal(own.trunk[0].weight, state["backbone.conv1.conv.weight"])


def test_an_mmaction2_checkpoint_of_another_architecture_names_the_first_key_that_does_not_fit(
    tmp_path,
):
    resnet50 = torchvision.models.resnet50(weights=None)
    _mmaction2_checkpoint(resnet50, tmp_path / "tsn_r50.pth")
    with pytest.raises(PretrainedError) as error:
        build_backbone("resnet18", pretrained=tmp_path / "tsn_r50.pth")
    assert re.search(
        r"tsn_r50.pth does not fit torchvision's resnet18: backbone.layer1.0.conv1.conv.weight: "
        r"expected \(64, 64, 3, 3\), got \(64, 64, 1, 1\)", str(error.value)
    )
    reference = _randomized_resnet18()
    state = _mmaction2_checkpoint(reference, tmp_path / "tsn.pth")
    state["neck.conv.weight"] = torch.zeros(1)
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "with_neck.pth")
    with pytest.raises(PretrainedError, match="neck.conv.weight is not a parameter of an mmaction2 "
                                              "TSN recognizer"):
        build_backbone("resnet18", pretrained=tmp_path / "with_neck.pth")
    del state["neck.conv.weight"], state["backbone.layer4.1.conv2.bn.bias"]
    torch.save({"meta": {}, "state_dict": state}, tmp_path / "short.pth")
    with pytest.raises(PretrainedError, match="missing backbone.layer4.1.conv2.bn.bias"):
        build_backbone("resnet18", pretrained=tmp_path / "short.pth")


def test_a_local_file_is_hash_checked_only_when_its_name_is_a_published_one(tmp_path):
    """A user's own file named with a date or a counter loads as it is; a file named as torchvision
    publishes them is refused when its contents do not match, with a remedy for a local file."""
    scratch = tmp_path / "scratch.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), scratch)
    for own in ("resnet18-20240315.pth", "tsn_finetuned-00000010.pth"):
        (tmp_path / own).write_bytes(scratch.read_bytes())
        assert locate(tmp_path / own, backbone="resnet18") == tmp_path / own
        build_backbone("resnet18", pretrained=tmp_path / own)
    published = tmp_path / "resnet18-f37072fd.pth"  # torchvision's name, other contents
    published.write_bytes(scratch.read_bytes())
    with pytest.raises(PretrainedError, match="but its name says f37072fd: .*rename a file of"):
        locate(published, backbone="resnet18")
