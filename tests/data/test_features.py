"""Feature sets read memory-mapped: datp's own, ActionFormer / OpenTAD windows and video_features
output; what a layout does not say is one line naming the setting to give."""

import json
import mmap

import numpy as np
import pytest

from datp.data.features import (
    FOLDER_RECORD,
    detect_layout,
    open_feature_set,
    window_times,
)
from datp.errors import DataError
from datp.features.storage import record_folder, write_features

SETTINGS = {"backbone": {"name": "b"}, "grid": {"stride": 1}}


def write_ours(root, video, features, times, duration, settings=SETTINGS):
    record_folder(root, settings)
    name = video.rsplit(".", 1)[0]
    write_features(root / f"{name}.npy", features,
                   {"settings": settings, "times": times, "duration": duration},
                   dtype="float32")


def test_our_files_carry_their_times_and_must_match_the_folder(tmp_path):
    root = tmp_path / "ours"
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_ours(root, "Class/v_1.avi", features, [0.1, 0.4, 0.9, 1.5], 2.0)
    found = open_feature_set(root)
    assert found.layout == "datp" and detect_layout(root) == "datp"
    assert found.describe() == {"layout": "datp", "root": str(root), "settings": SETTINGS}
    sequence = found.open("Class/v_1.avi")
    assert isinstance(sequence.features.base.base.obj, mmap.mmap)  # mapped: read by rows
    assert not sequence.features.flags.writeable
    np.testing.assert_array_equal(sequence.features, features)
    np.testing.assert_allclose(sequence.normalized_times(np.array([0, 3])), [0.05, 0.75])
    assert found.exists("Class/v_1.avi") and not found.exists("Class/v_2.avi")
    with pytest.raises(DataError, match=r"v_2.npy: feature file does not exist"):
        found.open("Class/v_2.avi")
    # A file made with other settings, copied in: refused, never averaged with the others.
    other = dict(SETTINGS, grid={"stride": 4})
    write_features(root / "Class" / "v_3.npy", features,
                   {"settings": other, "times": [0, 1, 2, 3], "duration": 4}, dtype="float32")
    with pytest.raises(DataError, match=r"v_3.json: made with other settings than .* \(grid\)"):
        found.open("Class/v_3.avi")
    (root / "Class" / "v_1.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="v_1.npy: not a readable .npy file"):
        open_feature_set(root).open("Class/v_1.avi")
    with pytest.raises(DataError, match="carry their own stride"):
        open_feature_set(root, stride=4)


def test_a_truncated_file_a_missing_record_and_one_bad_step_are_each_named(tmp_path):
    root = tmp_path / "ours"
    features = np.arange(40, dtype=np.float32).reshape(10, 4)
    write_ours(root, "v_1.avi", features, list(range(10)), 10.0)
    write_ours(root, "v_2.avi", features, list(range(10)), 10.0)
    found = open_feature_set(root)
    bad = features.copy()
    bad[5, 3] = np.nan
    np.save(root / "v_2.npy", bad)
    with pytest.raises(DataError, match=r"v_2.npy: non-finite features at step\(s\) 5$"):
        found.open("v_2.avi").rows(np.arange(10))
    data = (root / "v_1.npy").read_bytes()
    (root / "v_1.npy").write_bytes(data[: len(data) - 20])
    with pytest.raises(DataError, match=r"v_1.npy: truncated: \d+ bytes where its header's "
                                        r"float32 \(10, 4\) needs \d+"):
        open_feature_set(root).open("v_1.avi")
    (root / "v_2.json").unlink()  # an extraction that did not finish: its record comes last
    assert open_feature_set(root).missing("v_2.avi") == root / "v_2.json"
    assert not open_feature_set(root).exists("v_2.avi")


def test_actionformer_windows_with_an_activitynet_json(tmp_path):
    root = tmp_path / "i3d_features"
    root.mkdir()
    np.save(root / "video_test_0000004.npy", np.ones((10, 8), np.float32))
    np.save(root / "v_abc.npy", np.ones((5, 8), np.float16))
    info = tmp_path / "thumos14.json"
    info.write_text(json.dumps({"database": {
        "video_test_0000004": {"subset": "test", "duration": 3.2, "fps": 25.0,
                               "annotations": [{"segment": [0.5, 1.0], "label": "x"}]},
        "abc": {"duration": 0.9, "fps": 30.0},  # ActivityNet's ids lack the files' "v_"
    }}))
    assert detect_layout(root) == "windows"
    with pytest.raises(DataError, match="set data.features_stride and data.features_window"):
        open_feature_set(root)
    found = open_feature_set(root, stride=4, window=16, info=info)
    assert found.describe()["info"] == str(info) and found.describe()["stride"] == 4
    sequence = found.open("Class/video_test_0000004.mp4")  # flat folder: by file name
    np.testing.assert_allclose(sequence.times, (np.arange(10) * 4 + 8) / 25)
    assert sequence.duration == 3.2
    assert found.open("v_abc").duration == 0.9
    given = open_feature_set(root, stride=4, window=16, fps=10.0, info=info)
    np.testing.assert_allclose(given.open("v_abc").times, (np.arange(5) * 4 + 8) / 10)
    no_fps = open_feature_set(root, stride=4, window=16)
    with pytest.raises(DataError, match="set data.features_fps"):
        no_fps.open("v_abc")
    end = open_feature_set(root, stride=4, window=16, fps=20.0).open("v_abc")
    assert end.duration == pytest.approx((4 * 4 + 16) / 20)  # no JSON: the last window's end
    np.testing.assert_allclose(window_times(2, stride=2, window=4, fps=2.0, offset=1), [1.5, 2.5])


def test_video_features_output_with_its_timestamps_and_fps(tmp_path):
    root = tmp_path / "clip"
    root.mkdir()
    for stem, steps in (("v_Run_g01_c01", 6), ("v_Jump_g02_c03", 4)):
        np.save(root / f"{stem}_clip.npy", np.ones((steps, 512), np.float32))
        np.save(root / f"{stem}_fps.npy", np.array(2.0))
        np.save(root / f"{stem}_timestamps_ms.npy", np.arange(steps) * 500.0)
    found = open_feature_set(root)
    assert found.layout == "video_features" and found.key == "clip"
    sequence = found.open("Run/v_Run_g01_c01.avi")
    np.testing.assert_allclose(sequence.times, np.arange(6) * 0.5)
    assert sequence.duration == pytest.approx(3.0)
    assert found.exists("Jump/v_Jump_g02_c03.avi")
    (root / "v_Jump_g02_c03_fps.npy").unlink()
    assert not found.exists("Jump/v_Jump_g02_c03.avi")
    with pytest.raises(DataError, match="v_Jump_g02_c03_fps.npy: does not exist"):
        found.open("Jump/v_Jump_g02_c03.avi")
    np.save(root / "v_Run_g01_c01_rgb.npy", np.ones((6, 1024), np.float32))  # two kinds now
    with pytest.raises(DataError, match=r"several kinds \(clip, rgb\); set data.features_key"):
        open_feature_set(root)
    assert open_feature_set(root, key="rgb").open("v_Run_g01_c01.mp4").features.shape == (6, 1024)


def test_video_features_files_moved_into_subfolders_are_one_line_naming_the_layout(tmp_path):
    root = tmp_path / "clip"
    (root / "Run").mkdir(parents=True)
    np.save(root / "Run" / "v_Run_g01_c01_clip.npy", np.ones((6, 512), np.float32))
    np.save(root / "Run" / "v_Run_g01_c01_fps.npy", np.array(2.0))
    np.save(root / "Run" / "v_Run_g01_c01_timestamps_ms.npy", np.arange(6) * 500.0)
    for layout in ("auto", "video_features"):
        with pytest.raises(DataError, match=r"clip: video_features files lie in subfolders \(e.g. "
                                            r"Run/v_Run_g01_c01_timestamps_ms.npy\)"):
            open_feature_set(root, layout=layout)


def test_a_missing_folder_or_a_bad_record_is_one_line(tmp_path):
    with pytest.raises(DataError, match="features folder not found"):
        open_feature_set(tmp_path / "nowhere")
    (tmp_path / FOLDER_RECORD).write_text("{not json")
    with pytest.raises(DataError, match="unreadable features settings"):
        open_feature_set(tmp_path)
