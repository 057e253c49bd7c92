"""The config -> model translation, and rebuilding a model from a checkpoint."""

import pytest
import torch
from torch import nn

from datp.checkpoint import CheckpointError, save_checkpoint
from datp.config import load_config, to_dict
from datp.engine.build import build_model, model_from_checkpoint

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


def test_memory_the_settings_ask_for_is_estimated_before_anything_is_allocated():
    from datp.data.build import batch_memory, check_memory
    from datp.errors import InputError

    config = load_config(None, ["data.num_segments=1000", "data.image_size=2048",
                                "data.resize_short=2048", "train.batch_size=64"]).data
    # 64 x 1000 x 3 x 2048 x 2048 float32 (3.0 TiB), plus 64 x 1000 decoded 2048 x 3640 frames.
    expected = 64 * (1000 * 3 * 2048 * 2048 * 4 + 1000 * 3 * 2048 * 3640)
    assert batch_memory(config, videos=64, segments=1000, crops=1) == expected
    for available in (None, 8 << 30, 1 << 50):  # this machine, a small one, a huge one
        with pytest.raises(InputError) as error:
            check_memory(config, what="a training batch", settings="data.num_segments = 1000",
                         videos=64, segments=1000, crops=1, available=available)
        message = str(error.value)
        assert "\n" not in message
        assert message.startswith("data.num_segments = 1000: a training batch of 64 video(s)")
        assert f"needs about {expected / 2**30:.1f} GiB" in message
    # The same settings fit a machine with twice their memory, up to the absurdity bound.
    small = load_config(None, ["data.num_segments=100", "data.image_size=224"]).data
    needed = batch_memory(small, videos=8, segments=100, crops=10)
    check_memory(small, what="a test batch", settings="x", videos=8, segments=100, crops=10,
                 available=2 * needed + 2)
    with pytest.raises(InputError, match="more than half of this machine's"):
        check_memory(small, what="a test batch", settings="x", videos=8, segments=100, crops=10,
                     available=2 * needed - 2)


def test_a_pretrained_tsn_classifier_is_taken_only_when_asked_and_when_it_fits(tmp_path):
    from tests.models.test_pretrained import _mmaction2_checkpoint, _randomized_resnet18

    path = tmp_path / "tsn.pth"
    state = _mmaction2_checkpoint(_randomized_resnet18(), path, num_classes=3)
    base = ["model.backbone=resnet18", f"model.pretrained={path}", "data.image_size=32",
            "data.resize_short=36", "data.num_segments=2"]
    taken = build_model(load_config(None, [*base, "model.pretrained_classifier=true"]),
                        num_classes=3)
    assert torch.equal(taken.fc.weight, state["cls_head.fc_cls.weight"])
    new = build_model(load_config(None, base), num_classes=3)
    assert not torch.equal(new.fc.weight, state["cls_head.fc_cls.weight"])
    torch.testing.assert_close(new.backbone.trunk[0].weight, taken.backbone.trunk[0].weight)
    from datp.models import PretrainedError

    with pytest.raises(PretrainedError, match="has 3 classes of 512 features and this model 5"):
        build_model(load_config(None, [*base, "model.pretrained_classifier=true"]), num_classes=5)


def test_a_training_run_carries_what_the_config_says(tmp_path):
    from datp.data.build import DataBundle
    from datp.engine.build import training_run

    config = load_config(None, [*SMALL, "data.modality=flow", "data.flow_length=3",
                                "data.test_crops=3", "train.batch_size=7", "train.lr=0.5",
                                "train.schedule=cosine", "pooling.kind=average"])
    data = DataBundle(train=[], test=None, classes=["a", "b"])
    run = training_run(config, tmp_path, data=data, model=nn.Linear(1, 1))
    assert run.settings is config.train and run.settings.batch_size == 7
    assert run.optimizer.lr == 0.5 and run.schedule.kind == "cosine"
    assert run.schedule.factor(0, 10) == pytest.approx(1.0)
    assert run.identity.classes == ["a", "b"] and run.config == to_dict(config)
    warning = run.data.short_video("v.avi", 5)  # 4 segments of 3 flow fields: 6 are needed
    assert warning is not None and "5 flow fields, too few for 4 segments of 3" in warning


def test_a_stream_reads_videos_as_its_test_split_does(tmp_path):
    from datp.engine.build import load_stream

    config = load_config(None, [*SMALL, "data.modality=flow", "data.flow_length=3",
                                "data.test_crops=3", "data.test_segments=5"])
    model = build_model(config, num_classes=2)
    save_checkpoint(tmp_path / "flow.pt", {"model": model.state_dict(), "config": to_dict(config),
                                           "classes": ["a", "b"]})
    stream = load_stream(tmp_path / "flow.pt", segments=6)
    assert (stream.modality, stream.segments, stream.flow_length) == ("flow", 6, 3)
    assert stream.transform.crops == 3 and not stream.model.training
