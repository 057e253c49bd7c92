"""Feature sets datp did not make: an ActionFormer-layout folder (flat ``.npy`` windows, stride and
window from the config, fps given) and a video_features folder (``<stem>_<key>.npy`` with its
timestamps and fps) train and evaluate with ``datp train`` and ``datp evaluate``; what a folder
does not say is one line naming the setting; ``datp check`` reports their bad files as it
reports bad videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datp.cli import main

CLASSES, TRAIN, TEST, STEPS, CHANNELS = 3, 4, 2, 24, 8


def _dataset(root, layout):
    """Lists of 3 classes (``format = "list"``) and each video's features: noise, plus its
    class's prototype over half its steps."""
    rng = np.random.default_rng(0)
    prototypes = 3 * rng.standard_normal((CLASSES, CHANNELS)).astype(np.float32)
    folder = root / "features"
    folder.mkdir(parents=True)
    for subset, count in (("train", TRAIN), ("test", TEST)):
        lines = []
        for i in range(CLASSES * count):
            label, name = i % CLASSES, f"v_{subset}{i:02d}"
            x = rng.standard_normal((STEPS, CHANNELS)).astype(np.float32)
            start = int(rng.integers(0, STEPS // 2))
            x[start:start + STEPS // 2] += prototypes[label]
            if layout == "windows":  # ActionFormer: <name>.npy in one flat folder
                np.save(folder / f"{name}.npy", x)
            else:  # video_features: <stem>_<key>.npy, its timestamps in ms and its fps
                np.save(folder / f"{name}_clip.npy", x)
                np.save(folder / f"{name}_timestamps_ms.npy", np.arange(STEPS) * 250.0 + 125)
                np.save(folder / f"{name}_fps.npy", np.array(30.0))
            lines.append(f"class{label}/{name}.mp4 {label}\n")
        (root / f"{subset}.txt").write_text("".join(lines))
    config = root / "head.toml"
    config.write_text(
        f'[data]\nroot = "{root}"\nformat = "list"\ntrain_list = "train.txt"\n'
        'test_list = "test.txt"\nsource = "features"\nnum_segments = 6\ntest_segments = 6\n'
        'workers = 0\n[model]\ndropout = 0.0\n[pooling]\nkind = "datp"\n'
        'aux_input = "sequence"\n[train]\nepochs = 5\nbatch_size = 3\noptimizer = "adamw"\n'
        'lr = 0.01\nlr_steps = [4]\neval_every = 0\ndevice = "cpu"\n')
    return config


@pytest.mark.parametrize(("layout", "settings"), [
    ("windows", ["data.features_stride=8", "data.features_window=16", "data.features_fps=30"]),
    ("video_features", []),
])
def test_a_foreign_feature_set_trains_and_evaluates(tmp_path, layout, settings):
    config = _dataset(tmp_path / "data", layout)
    sets = [arg for setting in settings for arg in ("--set", setting)]
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress",
                 *sets]) == 0
    assert main(["evaluate", str(tmp_path / "run" / "checkpoints" / "last.pt"), "--out",
                 str(tmp_path / "eval"), "--no-figures", "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["videos"] == CLASSES * TEST
    assert metrics["top1"] == 1.0  # the prototypes are plain: a head that read them learns them
    features = metrics["protocol"]["data"]["features"]
    assert features["layout"] == layout
    if layout == "windows":
        assert (features["stride"], features["window"], features["fps"]) == (8, 16, 30)
    else:
        assert features["key"] == "clip"


def test_a_windows_folder_without_its_stride_is_one_line(tmp_path, capsys):
    config = _dataset(tmp_path / "data", "windows")
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress",
                 "--set", "data.features_fps=30"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert "data.features_stride and data.features_window" in error
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_datp_check_reports_bad_feature_files_like_bad_videos(tmp_path, capsys):
    root = tmp_path / "data"
    _dataset(root, "windows")
    folder = root / "features"
    (folder / "v_train00.npy").unlink()
    (folder / "v_train01.npy").write_bytes(b"not numpy")
    broken = np.load(folder / "v_test00.npy")
    broken[-1, 0] = np.nan
    np.save(folder / "v_test00.npy", broken)
    options = ["check", str(root), "--format", "list", "--train-list", "train.txt",
               "--test-list", "test.txt", "--source", "features", "--segments", "30"]
    capsys.readouterr()
    assert main([*options, "--features-stride", "8", "--features-window", "16",
                 "--features-fps", "30"]) == 1
    printed = capsys.readouterr().out
    assert "v_train00.npy: error: file does not exist (named at" in printed
    assert "v_train01.npy: error: " in printed and "not a readable .npy file" in printed
    assert "v_test00.npy: error: " in printed and "non-finite features" in printed
    assert "24 feature step(s), fewer than the 30 segments" in printed
    assert "3 error(s)" in printed
    assert main(options) == 1  # no stride: the folder is one error, naming the settings
    printed = capsys.readouterr().out
    assert printed.count("error:") == 1 and "data.features_stride" in printed
