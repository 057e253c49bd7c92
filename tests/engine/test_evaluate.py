"""The test schemes and the report files (collecting results: test_inference.py; fusion:
test_fusion.py)."""

from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader

from datp.engine.evaluate import SCHEMES, apply_scheme, write_report
from datp.engine.fusion import fuse, load_scores
from datp.engine.inference import collect
from datp.pooling import AveragePooling, DATPPooling, RandomGaussianPooling
from tests.engine.test_train import ColourVideos, _setup


def _collated(dataset, batch_size=8):
    def collate(items):
        batch = torch.utils.data.default_collate(items)
        batch["video"] = [f"v{int(i)}" for i in batch["label"]]  # ids only need to be strings
        return batch

    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate)


def test_collect_keeps_every_video_in_order_and_agrees_with_the_model():
    _, _, model = _setup()
    data = ColourVideos(20, 5)
    collected = collect(model, _collated(data, 6), torch.device("cpu"))
    assert collected.pooled.shape == (20, 3) and len(collected.weights) == 20
    torch.testing.assert_close(collected.labels, data.labels)
    with torch.no_grad():
        direct = model(data.inputs[:6], ((torch.arange(4) + 0.5) / 4).expand(6, 4))
    torch.testing.assert_close(collected.pooled[:6], direct.scores)
    torch.testing.assert_close(collected.log_probs.exp().sum(-1), torch.ones(20))


def test_crops_are_folded_into_the_batch_and_averaged():
    _, _, model = _setup()
    data = ColourVideos(4, 5)
    model.eval()
    batch = {
        "inputs": torch.stack([data.inputs, data.inputs.flip(-1)], 1),  # [B, V=2, N, ...]
        "times": ((torch.arange(4) + 0.5) / 4).expand(4, 4),
        "label": data.labels,
    }
    collected = collect(model, [batch], torch.device("cpu"))
    with torch.no_grad():
        times = batch["times"]
        expected = (
            model(data.inputs, times).scores + model(data.inputs.flip(-1), times).scores
        ) / 2
    torch.testing.assert_close(collected.pooled, expected)


def test_schemes_swap_the_pooling_and_check_how_the_network_was_trained():
    _, _, model = _setup()
    assert isinstance(apply_scheme(model, "datp", "datp").pooling, DATPPooling)
    assert isinstance(apply_scheme(model, "p1", "datp").pooling, RandomGaussianPooling)
    _, _, model = _setup()
    assert isinstance(apply_scheme(model, "p2", "datp").pooling, AveragePooling)
    assert SCHEMES["p2"].segments == 25 and SCHEMES["tsn"].crops == 10
    with pytest.raises(ValueError, match="p3 tests a network trained with average pooling"):
        apply_scheme(model, "p3", "datp")
    with pytest.raises(ValueError, match="unknown test scheme 'p4'"):
        apply_scheme(model, "p4", "datp")


def test_report_files_and_fusion(tmp_path):
    _, _, model = _setup()
    data = ColourVideos(12, 5)
    collected = collect(model, _collated(data), torch.device("cpu"))
    collected.videos = [f"video{i}" for i in range(12)]
    metrics = write_report(collected, ["a", "b", "c"], tmp_path / "rgb", pool="probabilities")
    for name in ("metrics.json", "per_class.csv", "confusion.csv", "scores.pt"):
        assert (tmp_path / "rgb" / name).exists()
    assert not (tmp_path / "rgb" / "skipped.txt").exists() and metrics["skipped_videos"] == 0
    assert set(metrics) >= {"top1", "top5", "mean_class_accuracy"}
    # A second "stream" in reversed video order: fusion matches videos by id.
    scores = load_scores(tmp_path / "rgb" / "scores.pt")
    reversed_stream = replace(scores, videos=scores.videos[::-1], labels=scores.labels.flip(0),
                              pooled=scores.pooled.flip(0), log_probs=scores.log_probs.flip(0))
    reversed_stream.save(tmp_path / "flow.pt")
    fused, labels, videos, classes = fuse(
        [tmp_path / "rgb" / "scores.pt", tmp_path / "flow.pt"], [1.0, 1.5]
    )
    torch.testing.assert_close(fused, 2.5 * scores.pooled)
    assert videos == scores.videos and classes == ["a", "b", "c"]
    fused_p, _, _, _ = fuse(
        [tmp_path / "rgb" / "scores.pt", tmp_path / "flow.pt"], [2.0, 1.0], softmax=True
    )
    torch.testing.assert_close(fused_p.sum(-1), torch.full((12,), 3.0))
    replace(scores, videos=[f"other{i}" for i in range(12)]).save(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="covers other videos"):
        fuse([tmp_path / "rgb" / "scores.pt", tmp_path / "other.pt"], [1.0, 1.0])
    with pytest.raises(ValueError, match="does not exist"):
        load_scores(tmp_path / "missing.pt")


def test_evaluation_checks_the_memory_of_a_whole_test_batch(tiny, monkeypatch):
    """evaluate loads test_batch_size videos at once: a machine that holds one test video but not
    the batch is told so before anything is allocated, naming --segments."""
    import datp.data.build
    from datp.data.build import batch_memory, test_batch_size
    from datp.engine.build import evaluate_checkpoint, model_from_checkpoint
    from datp.errors import InputError

    config = model_from_checkpoint(tiny["rgb"], segments=200, crops=1).config
    videos = test_batch_size(config.data, config.train.batch_size)
    assert videos > 1
    one = batch_memory(config.data, videos=1, segments=200, crops=1)
    monkeypatch.setattr(datp.data.build, "memory_bytes", lambda: 2 * one + 2)  # one video fits
    model_from_checkpoint(tiny["rgb"], segments=200, crops=1)
    with pytest.raises(InputError, match=rf"^--segments 200, .*a test batch of {videos} videos"):
        evaluate_checkpoint(tiny["rgb"], segments=200, crops=1)
