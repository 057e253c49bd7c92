"""The data builder: what it refuses before any training starts."""

from pathlib import Path
from types import SimpleNamespace

import pytest

import datp.data.build as build
from datp.config import DataConfig
from datp.data.feature_dataset import FeatureDataset
from datp.data.splits import VideoItem
from datp.errors import DataError


def test_test_features_of_another_d_than_the_training_ones_are_refused(monkeypatch):
    """Formats whose subsets lie apart (Kinetics) read the test features from another folder:
    another backbone's there failed with a matmul error at the first evaluation."""
    def dataset(*, subset, channels):
        root = Path(f"features/{subset}")
        return FeatureDataset(items=[VideoItem(path="a/v.mp4", label=0, origin="list:1")],
                              classes=["a"], features=SimpleNamespace(root=root),
                              num_segments=2, train=subset == "train", channels=channels)

    data = DataConfig(source="features", num_segments=2, test_segments=2)
    widths = {"train": 768, "test": 512}
    monkeypatch.setattr(build, "build_dataset", lambda data, *, subset, device: dataset(
        subset=subset, channels=widths[subset]))
    with pytest.raises(DataError, match=r"features/test: test features of D = 512, but the "
                                        r"training features \(features/train\) have D = 768"):
        build.build_data(data, batch_size=2)
    widths["test"] = 768
    assert build.build_data(data, batch_size=2).test.channels == 768
