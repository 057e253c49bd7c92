import csv
import filecmp
import json

import numpy as np
import pytest
import torch

from datp.cli import main
from datp.data.splits import read_ucf101, read_ucf101_classes
from datp.data.synthetic import (
    SynthConfig,
    class_cues,
    generate,
    held_out_groups,
    plan_video,
    read_key_windows,
    recorded,
    written_before,
)
from datp.data.video import VideoReader
from datp.errors import InputError
from tests.data.conftest import TINY


def test_layout_is_read_by_the_ucf101_reader(tiny_synth):
    lists = tiny_synth / "ucfTrainTestlist"
    train = read_ucf101(lists, split=1, subset="train")
    test = read_ucf101(lists, split=1, subset="test")
    assert len(train.classes) == 3
    assert len(train.items) + len(test.items) == 12
    train_groups = {item.path.split("_g")[1][:2] for item in train.items}
    test_groups = {item.path.split("_g")[1][:2] for item in test.items}
    assert not train_groups & test_groups  # split by groups, as UCF101
    for item in train.items + test.items:
        name = item.path.split("/")[1]
        assert name.startswith(f"v_{train.classes[item.label]}_g") and name.endswith(".avi")
        with VideoReader(tiny_synth / "videos" / item.path) as reader:
            assert reader.num_frames == 16
    for split in (2, 3):
        assert read_ucf101(lists, split=split, subset="test").items


def test_key_windows_file(tiny_synth):
    windows = read_key_windows(tiny_synth / "annotations" / "key_windows.csv")
    assert len(windows) == 12
    for start, end in windows.values():
        assert 0 <= start < end <= 16
        assert end - start == round(0.3 * 16)
    with open(tiny_synth / "annotations" / "key_windows.csv") as handle:
        for row in csv.DictReader(handle):
            assert int(row["decoy_class"]) != int(row["label"])
            for window in filter(None, row["decoys"].split(";")):
                span, kind = window.split(":")
                s, e = map(int, span.split("-"))
                key = windows[row["video"]]
                assert e <= key[0] or s >= key[1]  # decoys lie outside the key window
                assert kind in ("appearance", "motion")


def test_same_seed_same_bytes_other_seed_other_frames(tmp_path, tiny_synth):
    again = generate(SynthConfig(**TINY), tmp_path / "again")
    lists = ["classInd.txt", "trainlist01.txt", "testlist01.txt", "trainlist03.txt"]
    match, mismatch, errors = filecmp.cmpfiles(tiny_synth / "ucfTrainTestlist",
                                               again / "ucfTrainTestlist", lists, shallow=False)
    assert match == lists
    video = "RedDiscRight/v_RedDiscRight_g01_c01.avi"
    with VideoReader(tiny_synth / "videos" / video) as a:
        first = a.read_all()
    with VideoReader(again / "videos" / video) as b:
        np.testing.assert_array_equal(first, b.read_all())
    other = generate(SynthConfig(**TINY, seed=1), tmp_path / "other")
    with VideoReader(other / "videos" / video) as b:
        assert not np.array_equal(first, b.read_all())


def test_the_class_object_is_drawn_only_in_the_key_window(tmp_path):
    config = SynthConfig(classes=2, videos_per_class=2, clips_per_group=1, frames=20, height=48,
                         width=48, decoys=0, clutter=0, noise=0, key_fraction=0.25)
    out = generate(config, tmp_path)
    red = np.array(class_cues(config)[0].colour)
    dark_red = red * (1 - config.texture)  # the object's checker cells
    windows = read_key_windows(out / "annotations" / "key_windows.csv")
    video = "RedDiscRight/v_RedDiscRight_g01_c01.avi"
    with VideoReader(out / "videos" / video) as reader:
        frames = reader.read_all().astype(int)
    red_pixels = ((np.abs(frames - red).sum(axis=-1) < 60)
                  | (np.abs(frames - dark_red).sum(axis=-1) < 60)).sum(axis=(1, 2))
    start, end = windows[video]
    inside = np.zeros(20, bool)
    inside[start:end] = True
    assert (red_pixels[inside] > 20).all() and (red_pixels[~inside] < 5).all()


def test_cues_are_distinct_and_plans_respect_the_knobs():
    config = SynthConfig(classes=12, decoys=3, frames=48, key_fraction=0.1, decoy_fraction=0.125)
    cues = class_cues(config)
    assert len({c.name for c in cues}) == 12
    assert len({(c.colour, c.motion) for c in cues}) == 12
    rng = np.random.default_rng(0)
    for label in range(12):
        plan = plan_video(config, label, rng)
        assert plan.key[1] - plan.key[0] == 5
        assert len(plan.decoys) == 3
        windows = sorted([plan.key] + [(s, e) for s, e, _ in plan.decoys])
        assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:], strict=False))
        assert all(e - s == 6 for s, e, _ in plan.decoys)
        kinds = [kind for _, _, kind in plan.decoys]
        assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))  # they alternate
    assert held_out_groups(25, 1) == set(range(1, 8))  # UCF101: 7 of 25 groups


# (SynthConfig fields, the whole message): each names the datp synth option and what to change.
BAD_SETTINGS = [
    (dict(videos_per_class=4, clips_per_group=4),
     "--videos-per-class 4 with --clips-per-group 4 makes 1 group per class; a train/test split "
     "needs at least 2 groups: raise --videos-per-class to 8 or lower --clips-per-group to 2"),
    (dict(videos_per_class=3, clips_per_group=5),
     "--videos-per-class 3 with --clips-per-group 5 makes 1 group per class; a train/test split "
     "needs at least 2 groups: raise --videos-per-class to 10 or lower --clips-per-group to 1"),
    (dict(classes=1), "--classes 1: must be >= 2"),
    (dict(videos_per_class=1), "--videos-per-class 1: must be >= 2"),
    (dict(clips_per_group=0), "--clips-per-group 0: must be >= 1"),
    (dict(frames=3), "--frames 3: must be >= 4"),
    (dict(fps=0), "--fps 0: must be >= 1"),
    (dict(decoys=-1), "--decoys -1: must be >= 0"),
    (dict(clutter=-2), "--clutter -2: must be >= 0"),
    (dict(seed=-1), "--seed -1: must be >= 0"),
    (dict(camera_motion=float("nan")), "--camera-motion nan: must be a finite number >= 0"),
    (dict(speed=-0.1), "--speed -0.1: must be a finite number >= 0"),
    (dict(noise=float("inf")), "--noise inf: must be a finite number >= 0"),
    (dict(key_fraction=0), "--key-fraction 0: must lie in (0, 1], a share of the video"),
    (dict(decoy_fraction=1.5), "--decoy-fraction 1.5: must lie in (0, 1], a share of the video"),
    (dict(texture=2.0), "--texture 2.0: must lie in [0, 1]"),
    (dict(height=33), "--size 64x33: width and height must be even and >= 16"),
    (dict(width=8, height=8), "--size 8x8: width and height must be even and >= 16"),
    (dict(extension=".gif"), "--extension .gif: must be one of .avi, .mp4, .mkv, .webm, .mov, "
                             ".m4v, .mpg, .mpeg, .flv"),
    (dict(gop=0), "--gop 0: must be >= 1"),
    (dict(classes=2, names=["A"]), "names: 1 names for 2 classes"),
    (dict(classes=2, names=["A b", "C/D"]), "names ['A b', 'C/D']: a class name must be one word "
                                            "without '/' (it is a folder name and a field of "
                                            "UCF101's lists)"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_SETTINGS, ids=[m[:24] for _, m in BAD_SETTINGS])
def test_a_bad_setting_names_its_option(fields, message):
    with pytest.raises(InputError) as error:
        SynthConfig(**fields)
    assert str(error.value) == message


def test_every_bad_setting_is_reported_at_once(tmp_path, capsys):
    with pytest.raises(InputError) as error:
        SynthConfig(classes=1, frames=2)
    assert str(error.value).splitlines() == ["--classes 1: must be >= 2",
                                             "--frames 2: must be >= 4"]
    out = tmp_path / "out"
    assert main(["synth", str(out), "--videos-per-class", "4", "--clips-per-group", "4"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --videos-per-class 4 with --clips-per-group 4 makes"
    )
    assert main(["synth", str(out), "--size", "64x"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: --size 64x: must be WIDTHxHEIGHT or one number"
    )
    assert not out.exists()  # refused before anything was written


def _object_flow(texture: float) -> float:
    """Mean TV-L1 x-flow inside a red disc that moves 2 px right over grey of its own brightness."""
    from datp.data.synthetic import _draw
    from datp.flow.tvl1 import tvl1_flow

    red = np.array(class_cues(SynthConfig())[0].colour, dtype=np.float32)
    luma = float(red @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    frames = np.full((2, 48, 48, 3), luma, dtype=np.float32)
    for t, cx in enumerate((20.0, 22.0)):
        _draw(frames[t], "Disc", red, cx, 24.0, 8.0, texture)
    grey = torch.from_numpy(frames @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    flow = tvl1_flow(grey[:1], grey[1:])[0]  # [2, H, W]
    inside = np.zeros((48, 48), bool)
    inside[20:29, 17:24] = True  # the disc's core in the first frame
    return float(flow[0][torch.from_numpy(inside)].mean())


def test_texture_makes_an_object_of_background_brightness_visible_to_flow():
    # Flat colour of the background's luminance is invisible on grey frames; the checker is not.
    assert abs(_object_flow(0.0)) < 0.5
    assert 1.5 < _object_flow(SynthConfig().texture) < 2.5


# --- untrimmed videos (--instances K) -----------------------------------------------------------

# sha256 of what datp synth writes with the default config, computed with the code before
# --instances existed (889aa9f): every text file, and the frames handed to the encoder (the
# .avi bytes are then the encoder's business). The trimmed default must not change.
DEFAULT_DIGESTS = {
    "frames": "21407a52b251879c1b8709d31bc0c8d489e25a5ddf821b3ca5f8c8fc99793e43",
    "annotations/key_windows.csv":
        "ac56394e7fc9698008fbbc3127c0bd2b96f40dc439df326d78532c681933f511",
    "synth.json": "83a650151dce5af9ca30a98857b2956304a485a521a436c39d8ebf08a087b478",
    "ucfTrainTestlist/classInd.txt":
        "47cb91e81a7fdec2784142f7e104896cde1095080cee133e3047edda7599cc98",
    "ucfTrainTestlist/testlist01.txt":
        "03bf03e0a72125612d8e1f4d18c25d789bc72c6ce7258792805cb3807630cad3",
    "ucfTrainTestlist/testlist02.txt":
        "52b871bfe05e6f23656020a36432faa48d3d6ecf5feb755c1e1af3abd54d876b",
    "ucfTrainTestlist/testlist03.txt":
        "a6f6cbf1e098ec577868eb2dae467590406b05471cbcd7c40be2bfd8aabbce19",
    "ucfTrainTestlist/trainlist01.txt":
        "54f0259a137f8f81bcf25f17d9c0191724987e0c806d596332f8609e96478390",
    "ucfTrainTestlist/trainlist02.txt":
        "6053dd370e8f67a4749154e27b9677c3cd6d6c12e41dac5affe5e254a72976ec",
    "ucfTrainTestlist/trainlist03.txt":
        "fb54d8da22719e4cd9b34ffb64c162538a084163652ba32bfedd8bc52eb142f3",
}


def test_the_trimmed_default_is_byte_identical(tmp_path, monkeypatch):
    import hashlib

    import datp.data.synthetic as synthetic

    frames = hashlib.sha256()

    def hash_frames(path, video, **settings):
        frames.update(str(path.relative_to(tmp_path)).encode())
        frames.update(video.tobytes())
        frames.update(repr(sorted(settings.items())).encode())

    monkeypatch.setattr(synthetic, "write_video", hash_frames)
    generate(SynthConfig(), tmp_path)
    written = {str(p.relative_to(tmp_path)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert {"frames": frames.hexdigest(), **written} == DEFAULT_DIGESTS


def test_untrimmed_plans_are_a_fair_localization_test():
    from datp.data.synthetic import plan_untrimmed_video, untrimmed_lengths

    config = SynthConfig(classes=5, frames=200, instances=3, key_fraction=0.15, decoys=2,
                         decoy_fraction=0.08)
    longest, shortest, gap, background = untrimmed_lengths(config)
    assert (longest, shortest, gap, background) == (30, 15, 10, 40)
    rng = np.random.default_rng(0)
    counts, lengths, starts = [], [], []
    for label in range(5):
        for _ in range(40):
            plan = plan_untrimmed_video(config, label, rng)
            counts.append(len(plan.instances))
            assert plan.key in plan.instances and plan.actions == plan.instances
            lengths += [e - s for s, e in plan.instances]
            starts += [s for s, _ in plan.instances]
            windows = sorted(list(plan.instances) + [(s, e) for s, e, _ in plan.decoys])
            assert windows[0][0] >= 0 and windows[-1][1] <= 200
            assert all(b[0] - a[1] >= gap for a, b in zip(windows, windows[1:], strict=False))
            assert 200 - sum(e - s for s, e in windows) >= background
            assert all(e - s == 16 for s, e, _ in plan.decoys)
            kinds = [kind for _, _, kind in plan.decoys]
            assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))
            assert plan.decoy_class != label
    assert set(counts) == {1, 2, 3} and min(lengths) == 15 and max(lengths) == 30
    assert min(starts) < 20 and max(starts) > 150  # anywhere in the video


def test_untrimmed_videos_and_their_activitynet_ground_truth(tmp_path):
    from datp.data.temporal_annotations import annotation_problems, read_activitynet_json

    config = SynthConfig(classes=2, videos_per_class=2, clips_per_group=1, frames=40, height=32,
                         width=32, fps=10, instances=2, key_fraction=0.2, decoys=1, clutter=0,
                         noise=0)
    out = generate(config, tmp_path / "untrimmed")
    annotations = read_activitynet_json(out / "annotations" / "instances.json")
    lists = out / "ucfTrainTestlist"
    items = (read_ucf101(lists, split=1, subset="train").items
             + read_ucf101(lists, split=1, subset="test").items)
    assert sorted(annotations.videos) == sorted(item.path for item in items)
    assert annotations.in_subset("test").videos.keys() == {
        i.path for i in read_ucf101(lists, split=1, subset="test").items}
    classes = read_ucf101_classes(lists / "classInd.txt")
    assert annotation_problems(annotations, classes=classes) == []
    red = np.array(class_cues(config)[0].colour)
    dark_red = red * (1 - config.texture)
    video = "RedDiscRight/v_RedDiscRight_g01_c01.avi"
    entry = annotations.videos[video]
    assert (entry.duration, entry.fps) == (4.0, 10.0)
    assert all(i.label == "RedDiscRight" for i in entry.instances)
    with VideoReader(out / "videos" / video) as reader:
        frames = reader.read_all().astype(int)
    red_pixels = ((np.abs(frames - red).sum(axis=-1) < 60)
                  | (np.abs(frames - dark_red).sum(axis=-1) < 60)).sum(axis=(1, 2))
    inside = np.zeros(40, bool)
    for instance in entry.instances:  # seconds * fps = the frames the action was drawn in
        inside[round(instance.start * 10):round(instance.end * 10)] = True
    assert (red_pixels[inside] > 10).all() and (red_pixels[~inside] < 3).all()
    import json
    assert json.loads((out / "synth.json").read_text())["instances"] == 2


def test_instances_that_do_not_fit_are_refused_with_the_options_to_change(tmp_path, capsys):
    with pytest.raises(InputError) as error:
        SynthConfig(frames=48, instances=3, key_fraction=0.3)
    assert str(error.value) == (
        "--instances 3 with --key-fraction 0.3 and --frames 48: 3 instances of up to 14 frames, "
        "2 gaps of 2 and 10 frames of background need 56 frames: lower --key-fraction (the "
        "longest instance's share) or --instances, or raise --frames")
    with pytest.raises(InputError, match="--instances -1: must be >= 0"):
        SynthConfig(instances=-1)
    out = tmp_path / "cli"
    assert main(["synth", str(out), "--classes", "2", "--videos-per-class", "2",
                 "--clips-per-group", "1", "--frames", "24", "--size", "32", "--instances", "2",
                 "--key-fraction", "0.2"]) == 0
    assert "instances.json" in capsys.readouterr().out
    assert (out / "annotations" / "instances.json").exists()


def test_a_benchmark_that_differs_only_in_instances_is_refused_naming_them(tmp_path):
    trimmed = SynthConfig(classes=2, frames=8)
    (tmp_path / "synth.json").write_text(json.dumps(recorded(trimmed)))
    assert written_before(trimmed, tmp_path)
    untrimmed = SynthConfig(classes=2, frames=8, instances=2)
    with pytest.raises(InputError, match=r"made with other settings \(instances\)"):
        written_before(untrimmed, tmp_path)
    (tmp_path / "synth.json").write_text(json.dumps(recorded(untrimmed)))
    with pytest.raises(InputError, match=r"made with other settings \(instances\)"):
        written_before(trimmed, tmp_path)
