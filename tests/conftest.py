"""Fixtures shared by the tests of prediction, streams and export: a tiny synthetic dataset with
compact flow, and untrained but decisive checkpoints saved as ``datp train`` saves them."""

from pathlib import Path

import pytest
import torch

from datp.checkpoint import save_checkpoint
from datp.config import load_config, to_dict
from datp.data.splits import read_ucf101_classes
from datp.data.synthetic import SynthConfig, generate
from datp.engine.build import build_model
from datp.engine.synthetic_runs import CONFIGS
from datp.flow.extract import ExtractOptions, extract_dataset, find_videos
from datp.flow.storage import read_settings


def make_dataset(subset: str = "train", *, device: str = "cpu", num_segments: int | None = None,
                 resize_short: int | None = 256, **settings):
    """``build_dataset`` of a ``DataConfig`` with ``settings``, as the data tests ask for one:
    ``num_segments`` is the subset's N (training's or testing's), ``resize_short=None`` resizes
    nothing, and the loader normalizes and decodes unless told otherwise."""
    from datp.config import DataConfig
    from datp.data.build import build_dataset

    if num_segments is not None:
        settings.update(num_segments=num_segments, test_segments=num_segments)
    settings.setdefault("normalize_on_device", False)
    settings.setdefault("decode", "workers")
    data = DataConfig(resize_short=resize_short or 0, **settings)
    return build_dataset(data, subset=subset, device=device)


N = 4
TINY = SynthConfig(classes=3, videos_per_class=2, clips_per_group=1, frames=16, height=32, width=32)
FLOW = ["data.modality=flow", "data.flow_length=2", "data.flow_root=flow"]


def make_checkpoint(
    path: Path, root: Path, overrides=(), *, seed: int = 0, extra: dict | None = None
) -> Path:
    """An untrained but decisive tiny model (small_cnn, 32 px, N = 4) saved as datp train does."""
    config = load_config(
        CONFIGS["rgb"],
        [
            f"data.root={root}",
            "data.image_size=32",
            "data.resize_short=36",
            f"data.num_segments={N}",
            f"data.test_segments={N}",
            "data.workers=0",
            "train.batch_size=2",
            f"train.seed={seed}",
            *overrides,
        ],
    )
    classes = read_ucf101_classes(root / "ucfTrainTestlist" / "classInd.txt")
    model = build_model(config, num_classes=len(classes))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # no near-ties between classes
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=generator) * 0.5)
    state = {"model": model.state_dict(), "config": to_dict(config), "classes": classes}
    save_checkpoint(path, {**state, **(extra or {})})
    return path


@pytest.fixture(autouse=True)
def no_network_for_weights(monkeypatch, tmp_path_factory):
    """No test may download pretrained parameters or read the user's own cache: the hub folder is
    an empty one of the test run's, and a download that no test injected fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The synthetic dataset, an RGB checkpoint and a flow checkpoint with compact flow extracted
    by datp flow (Farneback, short side 32: fast)."""
    base = tmp_path_factory.mktemp("predict")
    root = generate(TINY, base / "data")
    videos = find_videos(root / "videos")
    options = ExtractOptions(backend="farneback", fmt="compact", short_side=32)
    results = list(extract_dataset(root / "videos", root / "flow", videos, options))
    assert all(r.status == "done" for r in results)
    return {
        "root": root,
        "videos": [root / "videos" / v for v in videos],
        "rgb": make_checkpoint(base / "rgb.pt", root),
        "flow": make_checkpoint(base / "flow.pt", root, FLOW, seed=1),
        # As datp train saves it: with the settings datp flow recorded for the training flow.
        "flow_recorded": make_checkpoint(
            base / "flow_recorded.pt", root, FLOW, seed=1,
            extra={"flow_extraction": read_settings(root / "flow")},
        ),
    }
