"""The config -> model translation, and rebuilding a model from a checkpoint."""

import pytest
import torch
from torch import nn

from datp.build import build_model, model_from_checkpoint
from datp.checkpoint import CheckpointError, save_checkpoint
from datp.config import load_config, to_dict

SMALL = ["model.backbone=small_cnn", "data.image_size=32", "data.num_segments=4",
         "model.partial_bn=false"]


def test_the_aux_input_normalization_setting_reaches_the_model():
    on = build_model(load_config(None, SMALL), num_classes=3)
    off = build_model(load_config(None, [*SMALL, "pooling.normalize_aux_input=false"]),
                      num_classes=3)
    assert not isinstance(on.pooling.aux_net.sequence.norm, nn.Identity)
    assert isinstance(off.pooling.aux_net.sequence.norm, nn.Identity)


def test_a_checkpoint_rebuilds_without_the_pretrained_file_it_started_from(tmp_path):
    config = load_config(None, SMALL)
    model = build_model(config, num_classes=3)
    # Trained elsewhere from a pretrained file that this machine does not have.
    config.model.pretrained = str(tmp_path / "on-the-training-machine" / "resnet.pth")
    state = {"model": model.state_dict(), "config": to_dict(config), "classes": ["a", "b", "c"]}
    save_checkpoint(tmp_path / "last.pt", state)
    rebuilt, rebuilt_config, classes, _ = model_from_checkpoint(tmp_path / "last.pt", segments=6)
    assert classes == ["a", "b", "c"] and rebuilt_config.data.test_segments == 6
    x = torch.randn(2, 4, 3, 32, 32)
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x).scores, model(x).scores)

    state["classes"] = ["a", "b"]
    save_checkpoint(tmp_path / "two.pt", state)
    with pytest.raises(CheckpointError, match="names 2 classes but its classifier has 3"):
        model_from_checkpoint(tmp_path / "two.pt")
