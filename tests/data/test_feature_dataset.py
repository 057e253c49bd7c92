"""The dataset over features: VideoDataset's items, TSN sampling on the feature timeline, times
from the files' seconds, bad feature files handled as bad videos."""

import numpy as np
import pytest
import torch

from datp.data.dataset import SkippedVideo, collate_videos
from datp.data.feature_dataset import FeatureDataset, feature_dataset
from datp.data.features import open_feature_set
from datp.data.sampling import eval_starts
from datp.data.splits import Split, VideoItem
from datp.errors import DataError
from datp.features.storage import record_folder, write_features

SETTINGS = {"backbone": {"name": "b"}}


def write(root, name, steps, *, times=None, duration=None):
    record_folder(root, SETTINGS)
    features = np.arange(steps * 4, dtype=np.float32).reshape(steps, 4)
    times = (np.arange(steps) + 0.5).tolist() if times is None else times
    write_features(root / f"{name}.npy", features,
                   {"settings": SETTINGS, "times": times, "duration": duration or steps},
                   dtype="float16")


@pytest.fixture
def split(tmp_path):
    root = tmp_path / "features"
    write(root, "A/v1", 20)
    write(root, "A/v2", 3)  # shorter than N: steps repeat
    write(root, "B/v3", 8, times=[0.0, 0.1, 0.2, 0.3, 4.0, 5.0, 6.0, 7.0], duration=8.0)
    items = [VideoItem(path=p, label=label, origin=f"list:{i}") for i, (p, label)
             in enumerate([("A/v1.avi", 0), ("A/v2.avi", 0), ("B/v3.avi", 1)], start=1)]
    return Split(items=items, classes=["A", "B"], annotation="list"), root


def test_items_are_video_items_with_features(split):
    data, root = split
    test = feature_dataset(data, features=open_feature_set(root), num_segments=4, train=False)
    item = test[0]
    assert set(item) == {"inputs", "label", "times", "frame_indices", "video", "num_frames"}
    assert item["inputs"].shape == (4, 4) and item["inputs"].dtype == torch.float32  # no V
    starts = eval_starts(20, 4)  # the centre step of each segment
    assert item["frame_indices"].tolist() == starts.tolist() and item["num_frames"] == 20
    np.testing.assert_array_equal(item["inputs"].numpy(),
                                  np.arange(80, dtype=np.float32).reshape(20, 4)[starts])
    np.testing.assert_allclose(item["times"], (starts + 0.5) / 20)
    assert item["video"] == "A/v1.avi" and item["label"] == 0
    # Times come from the file's seconds, not from the step's index.
    third = test[2]
    assert third["frame_indices"].tolist() == [1, 3, 5, 7]
    np.testing.assert_allclose(third["times"], np.array([0.1, 0.3, 5.0, 7.0]) / 8, rtol=1e-6)
    short = test[1]
    assert short["num_frames"] == 3 and short["frame_indices"].tolist() == [0, 1, 1, 2]


def test_training_draws_one_step_inside_each_segment(split):
    data, root = split
    train = feature_dataset(data, features=open_feature_set(root), num_segments=4, train=True)
    torch.manual_seed(0)
    draws = np.stack([train[0]["frame_indices"].numpy() for _ in range(50)])  # [50, N]
    assert train[0]["inputs"].shape == (4, 4)
    for segment in range(4):
        assert set(draws[:, segment]) == set(range(5 * segment, 5 * segment + 5))
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=3,
                                                  collate_fn=collate_videos)))
    assert batch["inputs"].shape == (3, 4, 4) and batch["skipped"] == []


def test_missing_and_broken_feature_files_are_bad_videos(split):
    data, root = split
    data.items.append(VideoItem(path="B/v9.avi", label=1, origin="list:4"))
    features = open_feature_set(root)
    with pytest.raises(DataError, match=r"list:4: .*B/v9.npy does not exist \(features of B/v9"):
        feature_dataset(data, features=features, num_segments=4, train=False)
    kept = feature_dataset(data, features=features, num_segments=4, train=False,
                           skip_bad_videos=True)
    assert len(kept) == 3 and "B/v9.npy" in kept.missing[0]
    (root / "A" / "v2.npy").write_bytes(b"\x93NUMPY broken")
    skipped = kept[1]
    assert isinstance(skipped, SkippedVideo) and "v2.npy" in skipped.reason
    strict = FeatureDataset(items=kept.items, classes=kept.classes, features=features,
                            num_segments=4, train=False)
    with pytest.raises(DataError, match="v2.npy: not a readable .npy file"):
        strict[1]


def test_the_data_builder_finds_kinetics_clips_and_class_folders_as_features(tmp_path):
    """Readers that look for the media look for features instead: Kinetics' clip names under a
    subset's folder of the features root, class folders of .npy files; a file of another D
    than its set's is a bad video."""
    from tests.conftest import make_dataset

    root = tmp_path / "kinetics"
    (root / "annotations").mkdir(parents=True)
    rows = ["label,youtube_id,time_start,time_end,split"]
    for subset, ids in (("train", ("a", "b")), ("val", ("c",))):
        for youtube_id in ids:
            label = "abseiling" if youtube_id != "b" else "air drumming"
            rows.append(f"{label},{youtube_id},0,10,{subset}")
            folder = root / "features" / f"videos_{subset}" / label.replace(" ", "_")
            write(folder.parent, f"{folder.name}/{youtube_id}_000000_000010", 12)
        (root / "annotations" / ("train.csv" if subset == "train" else "val.csv")).write_text(
            "\n".join(r for r in rows if r.endswith(subset) or r.startswith("label")) + "\n")
    kinetics = {"root": root, "format": "kinetics", "source": "features", "num_segments": 4}
    train = make_dataset("train", **kinetics)
    assert isinstance(train, FeatureDataset) and train.classes == ["abseiling", "air drumming"]
    assert sorted(item.path for item in train.items) == [
        "abseiling/a_000000_000010.mp4", "air_drumming/b_000000_000010.mp4"]
    assert make_dataset("test", **kinetics)[0]["inputs"].shape == (4, 4)

    folders = tmp_path / "folders"
    for name in ("train/A/v1", "train/B/v2", "test/A/v3"):  # one record for both subsets
        write(folders / "features", name, 10)
    test = make_dataset("test", root=folders, format="folders", source="features",
                        num_segments=4)
    assert [item.path for item in test.items] == ["A/v3"] and test[0]["label"] == 0
    np.save(folders / "features" / "test" / "A" / "v3.npy", np.zeros((10, 5), np.float32))
    fresh = make_dataset("test", root=folders, format="folders", source="features",
                         num_segments=4, features_layout="windows", features_stride=1,
                         features_window=1, features_fps=25)
    fresh.channels = 4  # the set's D, as the builder reads it from the folder's record
    with pytest.raises(DataError, match="v3.npy: 5 channels, where the other files of its set"):
        fresh[0]
