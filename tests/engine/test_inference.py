"""One forward pass over a batch, shared by training, evaluation and prediction."""

import pytest
import torch

from datp.config import load_config
from datp.data.synthetic import SynthConfig, generate
from datp.engine.build import build_model
from datp.engine.inference import forward_batch
from tests.conftest import make_dataset

TINY = SynthConfig(classes=3, videos_per_class=4, clips_per_group=2, frames=16, height=32, width=32)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate(TINY, tmp_path_factory.mktemp("inference"))


@pytest.mark.parametrize("subset", ["train", "test"])
def test_uint8_batches_are_normalized_on_the_device_like_the_loader_does(root, subset):
    settings = dict(root=root, subset=subset, num_segments=4, image_size=24, resize_short=28,
                    test_crops=3)
    on_cpu = make_dataset(**settings)
    on_device = make_dataset(**settings, normalize_on_device=True)
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


@pytest.mark.parametrize("channels", [3, 10])
def test_normalizing_after_the_copy_gives_the_loaders_bits(channels):
    from datp.data.functional import normalize, normalize_on

    clips = torch.randint(0, 256, (2, 4, channels, 9, 7), dtype=torch.uint8)
    expected = normalize(clips, modality="rgb" if channels == 3 else "flow")
    assert torch.equal(normalize_on(clips), expected)


def test_auto_normalizes_on_cuda_and_as_measured_on_a_cpu():
    from datp.data.build import NORMALIZE_ON_CPU, normalizes_on_device

    assert normalizes_on_device("auto", "cuda") and normalizes_on_device("auto", "cuda:1")
    assert normalizes_on_device("auto", "cpu") is NORMALIZE_ON_CPU
    assert normalizes_on_device(True, "cpu") and not normalizes_on_device(False, "cuda")


def test_configs_and_checkpoints_that_say_true_or_false_still_load():
    from datp.config import ConfigError, dump_toml, from_dict, to_dict

    for value in (True, False, "auto"):
        config = from_dict({"data": {"normalize_on_device": value}}, origin="old.toml")
        assert config.data.normalize_on_device == value
        assert from_dict(to_dict(config)).data.normalize_on_device == value  # a checkpoint
        assert load_config(None, [f"data.normalize_on_device={str(value).lower()}"]
                           ).data.normalize_on_device == value
    assert load_config(None, []).data.normalize_on_device == "auto"
    assert "normalize_on_device = \"auto\"" in dump_toml(load_config(None, []))
    with pytest.raises(ConfigError, match="normalize_on_device.*must be one of auto, true, false"):
        load_config(None, ["data.normalize_on_device=yes"])


@pytest.mark.parametrize("pool", ["logits", "probabilities"])
def test_one_crop_takes_the_model_s_own_log_probabilities_in_float32(pool):
    """The pooling's log-probabilities are those of its pooled vector in float32, outside any
    autocast: bit for bit what the loss and the metrics computed from the pooled vector."""
    from datp.pooling.functional import pooled_log_probabilities

    config = load_config(None, ["model.backbone=small_cnn", "data.image_size=24",
                                "data.num_segments=4", "model.partial_bn=false",
                                f"pooling.pool={pool}"])
    model = build_model(config, num_classes=3).eval()
    generator = torch.Generator().manual_seed(0)
    batch = {"inputs": torch.randn(2, 4, 3, 24, 24, generator=generator),
             "times": torch.rand(2, 4, generator=generator).sort(-1).values}
    with torch.no_grad():
        for amp in ("none", "bf16"):
            result = forward_batch(model, batch, torch.device("cpu"), amp)
            assert result.log_probs.dtype == torch.float32
            assert torch.equal(result.log_probs, pooled_log_probabilities(result.pooled, pool))


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch, caplog):
    """amp = "auto" autocasts to bf16 where the device computes it natively, and runs float32
    where bf16 would be emulated; asking for bf16 there is said once, naming the setting."""
    import logging

    import datp.engine.inference as inference

    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(inference, "native_bf16", lambda device, native=native: native)
        with inference.autocast(cpu, "auto"):
            dtype = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        assert dtype == (torch.bfloat16 if native else torch.float32)
        with caplog.at_level(logging.WARNING, logger="datp.engine.inference"):
            caplog.clear()
            inference.prepare_device(cpu, "bf16")
        said = [r.getMessage() for r in caplog.records]
        assert said == ([] if native else [inference.precision_warning("bf16", cpu)])
    assert 'train.amp = "bf16" on a CPU without native bfloat16' in said[0]


def test_a_gpu_computes_bf16_natively_from_ampere_on_not_by_emulation(monkeypatch):
    """torch.cuda.is_bf16_supported() counts emulation (a V100 says yes): "auto" asks for the
    device's compute capability instead."""
    import datp.engine.inference as inference

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for capability, native in (((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability",
                            lambda device=None, c=capability: c)
        assert inference.native_bf16(torch.device("cuda", 0)) is native
        assert inference.AMP_DTYPES["auto"](torch.device("cuda")) == (
            torch.bfloat16 if native else None)
