import logging
import pickle

import numpy as np
import pytest
import torch

from datp.data.dataset import SkippedVideo, VideoDataset, collate_videos
from datp.data.frames import quantize_flow, write_flow, write_frames
from datp.data.splits import read_ucf101
from datp.data.video import VideoReader
from datp.errors import DataError
from tests.conftest import make_dataset


def test_train_item_matches_the_contract(tiny_synth):
    dataset = make_dataset(root=tiny_synth, num_segments=4, image_size=24, resize_short=28)
    assert len(dataset) == 6 and len(dataset.classes) == 3  # one of 2 groups held out
    torch.manual_seed(0)
    sample = dataset[0]
    assert sample["inputs"].shape == (4, 3, 24, 24) and sample["inputs"].dtype == torch.float32
    assert isinstance(sample["label"], int) and sample["label"] == dataset.items[0].label
    assert sample["times"].shape == (4,) and sample["times"].dtype == torch.float32
    assert ((sample["times"] > 0) & (sample["times"] < 1)).all()
    assert sample["frame_indices"].dtype == torch.int64
    np.testing.assert_allclose(sample["times"], (sample["frame_indices"] + 0.5) / 16)
    assert sample["video"] == dataset.items[0].path
    torch.manual_seed(0)
    again = dataset[0]
    assert torch.equal(sample["inputs"], again["inputs"])  # reproducible under torch's seed


def test_test_items_have_views_and_fixed_segments(tiny_synth):
    dataset = make_dataset(root=tiny_synth, subset="test", num_segments=5, image_size=24,
                            resize_short=28, test_crops=3)
    sample = dataset[1]
    assert sample["inputs"].shape == (3, 5, 3, 24, 24)
    assert torch.equal(sample["frame_indices"], dataset[1]["frame_indices"])


def test_dataloader_batches_with_workers(tiny_synth):
    dataset = make_dataset(root=tiny_synth, num_segments=3, image_size=16, resize_short=16)
    pickle.dumps(dataset)  # spawned workers need a picklable dataset
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["inputs"].shape == (4, 3, 3, 16, 16)
    assert batches[0]["times"].shape == (4, 3) and len(batches[0]["video"]) == 4


def test_frames_match_the_decoded_video(tiny_synth):
    """The dataset reads exactly the frames it reports in frame_indices."""
    dataset = make_dataset(root=tiny_synth, num_segments=4, image_size=32, resize_short=None)
    dataset.transform = None
    sample = dataset[2]
    with VideoReader(tiny_synth / "videos" / sample["video"]) as reader:
        expected = reader.read(sample["frame_indices"].numpy())
    assert torch.equal(sample["inputs"], torch.from_numpy(expected).permute(0, 3, 1, 2))


def _frame_and_flow_folders(tiny_synth, tmp_path, *, flow_fields=12):
    split = read_ucf101(tiny_synth / "ucfTrainTestlist", split=1, subset="train")
    for item in split.items:
        stem = item.path[: -len(".avi")]
        with VideoReader(tiny_synth / "videos" / item.path) as reader:
            write_frames(tmp_path / "rawframes" / stem, reader.read_all())
        flow = np.zeros((flow_fields, 2, 32, 32), np.float32)
        flow[:, 0] = np.arange(flow_fields)[:, None, None] - 6.0  # x encodes the field index
        write_flow(tmp_path / "flow" / stem, quantize_flow(flow))
    (tmp_path / "ucfTrainTestlist").symlink_to(tiny_synth / "ucfTrainTestlist")
    return split


def test_frame_folders_and_flow_stacks(tiny_synth, tmp_path):
    _frame_and_flow_folders(tiny_synth, tmp_path)
    frames = make_dataset(root=tmp_path, source="frames", num_segments=3, image_size=24,
                           resize_short=28)
    assert frames[0]["inputs"].shape == (3, 3, 24, 24)
    flow = make_dataset(root=tmp_path, modality="flow", num_segments=3, flow_length=4,
                         image_size=24, resize_short=28, subset="train")
    flow.transform = None
    sample = flow[0]
    assert sample["inputs"].shape == (3, 8, 32, 32) and sample["inputs"].dtype == torch.uint8
    # Channels are x1 y1 x2 y2 ...: x holds consecutive field indices from each start.
    x = (sample["inputs"][:, 0::2, 16, 16].float() / 255 * 40 - 20 + 6).round()
    starts = sample["frame_indices"][:, None]
    assert torch.equal(x.long(), starts + torch.arange(4))
    assert ((sample["inputs"][:, 1::2].float() - 128).abs() <= 2).all()  # y: no motion
    np.testing.assert_allclose(sample["times"], (sample["frame_indices"] + 2) / 12)


def test_missing_videos_are_listed_or_skipped_with_a_log(tiny_synth, tmp_path, caplog):
    split = _frame_and_flow_folders(tiny_synth, tmp_path)
    gone = [split.items[1].path[: -len(".avi")], split.items[4].path[: -len(".avi")]]
    for stem in gone:
        for path in (tmp_path / "rawframes" / stem).iterdir():
            path.unlink()
        (tmp_path / "rawframes" / stem).rmdir()
    with pytest.raises(DataError) as error:
        make_dataset(root=tmp_path, source="frames")
    assert len(error.value.problems) == 2
    assert all("trainlist01.txt:" in p and "does not exist" in p for p in error.value.problems)
    with caplog.at_level(logging.WARNING):
        dataset = make_dataset(root=tmp_path, source="frames", skip_bad_videos=True)
    assert len(dataset) == len(split.items) - 2
    assert sum("skipping" in r.message for r in caplog.records) == 2


def test_bad_video_raises_by_default_and_is_skipped_only_when_asked(tiny_synth, tmp_path, caplog):
    split = _frame_and_flow_folders(tiny_synth, tmp_path)
    stem = split.items[0].path[: -len(".avi")]
    (tmp_path / "rawframes" / stem / "img_00003.jpg").unlink()
    strict = make_dataset(root=tmp_path, source="frames", num_segments=2, image_size=16)
    with pytest.raises(DataError, match="img_00003.jpg"):
        strict[0]
    lenient = make_dataset(root=tmp_path, source="frames", num_segments=2, image_size=16,
                            resize_short=16, skip_bad_videos=True)
    with caplog.at_level(logging.WARNING):
        skipped = lenient[0]
    assert isinstance(skipped, SkippedVideo) and skipped.video == split.items[0].path
    assert "img_00003.jpg" in skipped.reason
    assert any(stem in r.getMessage() for r in caplog.records)
    batch = collate_videos([lenient[0], lenient[1], lenient[2]])
    assert batch["inputs"].shape[0] == 2 and batch["skipped"] == [skipped]
    assert collate_videos([skipped, skipped]) == {"skipped": [skipped, skipped]}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="modality"):
        VideoDataset(items=[], classes=[], open_source=print, modality="depth")
    with pytest.raises(ValueError, match="format"):
        make_dataset(root=".", format="something")


def test_compact_flow_files_are_read_like_flow_folders(tiny_synth, tmp_path):
    from datp.flow.storage import write_compact_flow

    split = read_ucf101(tiny_synth / "ucfTrainTestlist", split=1, subset="train")
    (tmp_path / "ucfTrainTestlist").symlink_to(tiny_synth / "ucfTrainTestlist")
    (tmp_path / "videos").symlink_to(tiny_synth / "videos")
    for item in split.items:
        flow = np.zeros((15, 2, 32, 32), np.float32)
        flow[:, 1] = np.arange(15)[:, None, None] - 7.0  # y encodes the field index
        path = tmp_path / "flow" / f"{item.path[: -len('.avi')]}.flow"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_compact_flow(path, flow)
    dataset = make_dataset(root=tmp_path, modality="flow", num_segments=3, flow_length=2,
                            image_size=24)
    dataset.transform = None
    sample = dataset[0]
    assert sample["inputs"].shape == (3, 4, 32, 32)
    y = sample["inputs"][:, 1::2, 0, 0].float() / 255 * 40 - 20 + 7
    assert torch.equal(y.round().long(), sample["frame_indices"][:, None] + torch.arange(2))


def test_the_torchcodec_decoder_gives_the_same_test_items(tiny_synth):
    from datp.data.video import decoder_problem

    problem = decoder_problem("torchcodec")
    if problem is not None:  # absent, or FFmpeg's shared libraries are missing
        pytest.skip(f"torchcodec cannot decode here: {problem}")
    settings = dict(root=tiny_synth, subset="test", num_segments=5, image_size=24)
    pyav = make_dataset(**settings)
    codec = make_dataset(**settings, decoder="torchcodec")
    for i in range(len(pyav)):
        assert torch.equal(pyav[i]["inputs"], codec[i]["inputs"])
    with pytest.raises(ValueError, match="decoder must be one of"):
        make_dataset(**settings, decoder="opencv")


def test_flips_can_be_turned_off_for_labels_that_depend_on_direction(tiny_synth):
    flipping = make_dataset(root=tiny_synth, num_segments=4, image_size=24, resize_short=28)
    still = make_dataset(root=tiny_synth, num_segments=4, image_size=24, resize_short=28,
                          flip=False)
    assert flipping.transform.flip and not still.transform.flip


def test_duplicate_lines_in_a_training_list_are_one_warning(tiny_synth, tmp_path, caplog):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny_synth, root)
    trainlist = root / "ucfTrainTestlist" / "trainlist01.txt"
    lines = trainlist.read_text().splitlines()
    trainlist.write_text("\n".join([*lines, lines[0], lines[1], lines[0]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="datp.data.splits"):
        dataset = make_dataset(root=root)
    assert len(dataset) == len(lines) + 3  # each line is a sample, as before
    warnings = [r.getMessage() for r in caplog.records if "listed before" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{trainlist}: 3 line(s) name a video listed before, e.g. "
                                  f"{lines[0].split()[0]} ({trainlist}:{len(lines) + 1}, first "
                                  f"at {trainlist}:1)")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="datp.data.splits"):
        make_dataset(root=tiny_synth)
    assert not [r for r in caplog.records if "listed before" in r.getMessage()]
