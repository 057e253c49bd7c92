"""One forward pass over a batch, shared by training, evaluation and prediction."""

import pytest
import torch

from datp.build import build_model
from datp.config import load_config
from datp.data.dataset import build_dataset
from datp.data.synthetic import SynthConfig, generate
from datp.inference import forward_batch

TINY = SynthConfig(classes=3, videos_per_class=4, clips_per_group=2, frames=16, height=32, width=32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(TINY, tmp_path_factory.mktemp("inference"))


@pytest.mark.parametrize("subset", ["train", "test"])
def test_uint8_batches_are_normalized_on_the_device_like_the_loader_does(root, subset):
    settings = dict(root=root, subset=subset, num_segments=4, image_size=24, resize_short=28,
                    test_crops=3)
    on_cpu = build_dataset(**settings)
    on_device = build_dataset(**settings, normalize_on_device=True)
    torch.manual_seed(0)
    floats = torch.utils.data.default_collate([on_cpu[0], on_cpu[1]])
    torch.manual_seed(0)
    raw = torch.utils.data.default_collate([on_device[0], on_device[1]])
    assert floats["inputs"].dtype == torch.float32 and raw["inputs"].dtype == torch.uint8
    config = load_config(None, ["model.backbone=small_cnn", "data.image_size=24",
                                "data.num_segments=4", "model.partial_bn=false"])
    model = build_model(config, num_classes=3).eval()
    with torch.no_grad():
        expected = forward_batch(model, floats, torch.device("cpu"))
        got = forward_batch(model, raw, torch.device("cpu"))
    torch.testing.assert_close(got.log_probs, expected.log_probs)
    torch.testing.assert_close(got.weights, expected.weights)
