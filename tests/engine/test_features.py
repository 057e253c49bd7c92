"""The same model either way: a head on features extracted with a checkpoint's frozen backbone
equals, outputs and gradients, the checkpoint's TSN run on the same sampled frames."""

from __future__ import annotations

import copy

import pytest
import torch

from datp.data.feature_dataset import feature_dataset
from datp.data.features import open_feature_set
from datp.data.formats import read_split
from datp.engine.build import model_from_checkpoint
from datp.engine.features import checkpoint_backbone
from datp.features.extract import FeatureOptions, extract_features, resolve_grid
from datp.features.sources import list_sources
from datp.models.feature_head import FeatureHead
from tests.conftest import FLOW, N, make_checkpoint, make_dataset

pytest.importorskip("av")

SCORES = ["pooling.kind=datp", "pooling.aux_input=scores", "model.dropout=0"]


@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_a_head_on_extracted_features_is_the_tsn_on_its_frozen_backbone(tiny, tmp_path, modality):
    root = tiny["root"]
    flow = modality == "flow"
    checkpoint = make_checkpoint(tmp_path / f"{modality}.pt", root,
                                 [*(FLOW if flow else []), *SCORES], seed=3)
    backbone = checkpoint_backbone(checkpoint)
    assert backbone.kind == ("flow" if flow else "image")
    base, sources = list_sources(root / ("flow" if flow else "videos"), flow=flow)
    options = FeatureOptions(grid=resolve_grid(backbone), dtype="float32",
                             frame_rate=25.0 if flow else None)
    results = list(extract_features(base, tmp_path / "features", sources, backbone, options))
    assert {r.status for r in results} == {"done"}

    split, _ = read_split(root=root, format="ucf101", subset="test")
    features = feature_dataset(split, features=open_feature_set(tmp_path / "features"),
                               num_segments=N, train=False)
    frames = make_dataset("test", root=root, num_segments=N, image_size=32, resize_short=36,
                          modality=modality, flow_root="flow", flow_length=2)
    items = [(features[i], frames[i]) for i in range(len(features))]
    for ours, theirs in items:  # the same steps, at the same times
        assert ours["video"] == theirs["video"]
        assert ours["frame_indices"].tolist() == theirs["frame_indices"].tolist()
        torch.testing.assert_close(ours["times"], theirs["times"], rtol=0, atol=1e-6)
    inputs = torch.stack([ours["inputs"][0] for ours, _ in items])  # [B, N, D]
    clips = torch.stack([theirs["inputs"][0] for _, theirs in items])  # [B, N, D_in, S, S]
    times = torch.stack([ours["times"] for ours, _ in items])
    labels = torch.tensor([ours["label"] for ours, _ in items])

    tsn = model_from_checkpoint(checkpoint).model.eval()
    for parameter in tsn.backbone.parameters():  # frozen, as the features' backbone
        parameter.requires_grad_(False)
    head = FeatureHead(feature_channels=backbone.channels, num_classes=tsn.num_classes,
                       pooling=copy.deepcopy(tsn.pooling), aux_input="scores", dropout=0.0)
    head.fc.load_state_dict(tsn.fc.state_dict())
    head.eval()
    expected, got = tsn(clips, times), head(inputs, times)
    for name in ("scores", "weights", "segment_scores", "log_probs"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name),
                                   rtol=1e-4, atol=1e-5)
    torch.nn.functional.nll_loss(expected.log_probs, labels).backward()
    torch.nn.functional.nll_loss(got.log_probs, labels).backward()
    for (name, ours), (_, theirs) in zip(
            [*head.fc.named_parameters(), *head.pooling.named_parameters()],
            [*tsn.fc.named_parameters(), *tsn.pooling.named_parameters()], strict=True):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-3, atol=1e-6, msg=name)
    assert any(p.grad.abs().sum() > 0 for p in head.pooling.parameters())


def test_the_checkpoint_backbone_records_what_made_the_features(tiny):
    backbone = checkpoint_backbone(tiny["flow_recorded"])
    record = backbone.settings["backbone"]
    assert record["kind"] == "flow" and backbone.clip_length == 2
    assert record["flow_extraction"]["backend"] == "farneback"
    assert backbone.settings["transform"]["crop"] == 32
    assert len(record["weights_sha256"]) == 64
