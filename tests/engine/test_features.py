"""The same model either way: a head on features extracted with a checkpoint's frozen backbone
equals, outputs and gradients, the checkpoint's TSN run on the same sampled frames; and trained
by ``datp train``'s loop, it ends where the same head trained end to end with that backbone
frozen ends."""

from __future__ import annotations

import copy

import pytest
import torch

from datp.config import load_config
from datp.data.build import DataBundle
from datp.data.dataset import collate_videos
from datp.data.feature_dataset import feature_dataset
from datp.data.features import open_feature_set
from datp.data.formats import read_split
from datp.engine.build import build_model, load_stream, model_from_checkpoint, training_run
from datp.engine.features import checkpoint_backbone
from datp.engine.synthetic_runs import CONFIGS
from datp.engine.train import train
from datp.features.extract import FeatureOptions, extract_features, resolve_grid
from datp.features.sources import list_sources
from datp.models.feature_head import FeatureHead
from datp.run_state import RunState
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
    inputs = torch.stack([ours["inputs"] for ours, _ in items])  # [B, N, D]
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


def test_training_on_features_is_training_end_to_end_on_the_frozen_backbone(tiny, tmp_path):
    """``datp train`` on the features of a frozen backbone, and the loop's training of the same
    head on that backbone (frozen: no gradient, BatchNorm in eval mode) reading the same frames
    (the same segments drawn, the extraction's one centre crop), from the same initial head:
    the two heads end equal to float rounding. No dropout: the two models draw their masks
    differently (the head's is cheaper on a CPU), which is the only other difference."""
    root, backbone_file = tiny["root"], tiny["rgb"]
    backbone = checkpoint_backbone(backbone_file)
    base, sources = list_sources(root / "videos")
    options = FeatureOptions(grid=resolve_grid(backbone), dtype="float32")
    assert {r.status for r in extract_features(base, tmp_path / "features", sources, backbone,
                                               options)} == {"done"}
    common = [f"data.root={root}", f"data.num_segments={N}", f"data.test_segments={N}",
              "data.workers=0", "model.dropout=0", "pooling.aux_input=sequence",
              "train.optimizer=sgd", "train.lr=0.05", "train.epochs=2", "train.lr_steps=[1]",
              "train.batch_size=2", "train.eval_every=0", "train.seed=5", "train.device=cpu"]
    on_features = training_run(
        load_config(CONFIGS["features"], [*common, f"data.features_root={tmp_path / 'features'}"]),
        tmp_path / "on_features")
    head = on_features.model
    start = copy.deepcopy(head.state_dict())

    frames_config = load_config(CONFIGS["rgb"], [*common, "data.image_size=32",
                                                 "data.resize_short=36"])
    tsn = build_model(frames_config, num_classes=len(on_features.data.classes))
    saved = RunState.load_trained(backbone_file).model
    tsn.backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in saved.items()
                                  if k.startswith("backbone.")})
    tsn.fc.load_state_dict(head.fc.state_dict())
    tsn.pooling.load_state_dict(head.pooling.state_dict())
    for parameter in tsn.backbone.parameters():
        parameter.requires_grad_(False)
    frozen = tsn.backbone
    frozen.train = lambda mode=True: torch.nn.Module.train(frozen, False)  # statistics fixed
    one_crop = load_stream(backbone_file).transform  # what the extraction read: [1, N, 3, S, S]
    datasets = {}
    for subset in ("train", "test"):
        datasets[subset] = make_dataset(subset, root=root, num_segments=N, image_size=32,
                                        resize_short=36)
        datasets[subset].transform = (lambda video, rng=None: one_crop(video)[0]) \
            if subset == "train" else one_crop
    data = DataBundle(train=datasets["train"], test=datasets["test"],
                      classes=on_features.data.classes, collate=collate_videos, workers=0,
                      test_batch_size=2)
    end_to_end = training_run(frames_config, tmp_path / "end_to_end", data=data, model=tsn)

    ours, theirs = train(on_features), train(end_to_end)
    moved = [name for name, value in head.state_dict().items()
             if not torch.equal(value, start[name])]
    assert "fc.weight" in moved and any(name.startswith("pooling.") for name in moved)
    for name, value in head.state_dict().items():
        torch.testing.assert_close(value, tsn.state_dict()[name], rtol=1e-4, atol=1e-6,
                                   msg=name)
    assert ours["top1"] == theirs["top1"]
