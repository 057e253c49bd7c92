"""Miniature copies of each official annotation format, written the way the originals are."""

import pytest

from datp.data.splits import (
    Split,
    missing_files,
    read_class_folders,
    read_hmdb51,
    read_kinetics,
    read_list_file,
    read_ucf101,
)
from datp.errors import DataError


def _ucf101(tmp_path, trainlist=None, testlist=None):
    folder = tmp_path / "ucfTrainTestlist"
    folder.mkdir()
    # The official files use CRLF line ends.
    (folder / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")
    (folder / "trainlist01.txt").write_text(trainlist or (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        "ApplyLipstick/v_ApplyLipstick_g08_c02.avi 2\r\n"
        "Archery/v_Archery_g09_c01.avi 3\r\n"
    ), newline="")
    (folder / "testlist01.txt").write_text(testlist or (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n"
        "Archery/v_Archery_g02_c03.avi\r\n"
    ), newline="")
    return folder


def test_ucf101_train_and_test(tmp_path):
    folder = _ucf101(tmp_path)
    train = read_ucf101(folder, split=1, subset="train")
    assert train.classes == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    assert [(i.path, i.label) for i in train.items] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("ApplyLipstick/v_ApplyLipstick_g08_c02.avi", 1),
        ("Archery/v_Archery_g09_c01.avi", 2),
    ]
    test = read_ucf101(folder, split=1, subset="test")
    assert [(i.path, i.label) for i in test.items] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0),
        ("Archery/v_Archery_g02_c03.avi", 2),
    ]
    assert test.items[1].origin.endswith("testlist01.txt:2")


def test_ucf101_reports_every_bad_line_with_its_number(tmp_path):
    folder = _ucf101(tmp_path, trainlist=(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n"
        "Juggling/v_Juggling_g01_c01.avi 2\n"            # unknown class
        "ApplyLipstick/v_ApplyLipstick_g08_c02.avi\n"    # no label
        "Archery/v_Archery_g09_c01.avi 1\n"              # label of another class
        "Archery/v_Archery_g09_c02.avi 9\n"              # label out of range
    ))
    with pytest.raises(DataError) as error:
        read_ucf101(folder, split=1, subset="train")
    problems = error.value.problems
    assert len(problems) == 4
    for line, words in [(2, "unknown class 'Juggling'"), (3, "expected"),
                        (4, "folder 'Archery'"), (5, "not in 1..3")]:
        prefix = f"trainlist01.txt:{line}: "
        assert any(prefix in p and words in p for p in problems), (line, problems)


def test_ucf101_missing_list_is_named(tmp_path):
    folder = _ucf101(tmp_path)
    with pytest.raises(DataError, match="trainlist02.txt"):
        read_ucf101(folder, split=2)


def test_hmdb51_codes(tmp_path):
    folder = tmp_path / "testTrainMulti_7030_splits"
    folder.mkdir()
    # Official lines end with a space; 1 train, 2 test, 0 unused.
    (folder / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
        "American_brush_hair_f_nm_np1_fr_goo_0.avi 2 \n"
        "Blonde_brush_hair_f_nm_np1_ba_med_0.avi 0 \n"
    )
    (folder / "cartwheel_test_split1.txt").write_text("Cart_wheel_f_cm_np1_le_med_0.avi 1 \n")
    (folder / "cartwheel_test_split2.txt").write_text("Cart_wheel_f_cm_np1_le_med_0.avi 2 \n")
    train = read_hmdb51(folder, split=1, subset="train")
    assert train.classes == ["brush_hair", "cartwheel"]
    assert [(i.path, i.label) for i in train.items] == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0),
        ("cartwheel/Cart_wheel_f_cm_np1_le_med_0.avi", 1),
    ]
    test = read_hmdb51(folder, split=1, subset="test")
    assert [i.path for i in test.items] == ["brush_hair/American_brush_hair_f_nm_np1_fr_goo_0.avi"]
    (folder / "cartwheel_test_split1.txt").write_text("Cart_wheel_f_cm_np1_le_med_0.avi 3 \n")
    with pytest.raises(DataError, match=r"cartwheel_test_split1.txt:1: expected"):
        read_hmdb51(folder, split=1)
    with pytest.raises(DataError, match="test_split3"):
        read_hmdb51(folder, split=3)


def _kinetics_csv(path, rows):
    path.write_text("label,youtube_id,time_start,time_end,split\n" + "".join(rows))


def test_kinetics_class_folders_flat_and_underscores(tmp_path):
    videos = tmp_path / "videos"
    (videos / "abseiling").mkdir(parents=True)
    (videos / "abseiling" / "0347ZoDXyP0_000095_000105.mp4").touch()
    (videos / "playing_guitar").mkdir()
    (videos / "playing_guitar" / "-3B32lodo2M_000059_000069.mp4").touch()
    (videos / "zzz_flat_000001_000011.mp4").touch()
    csv_file = tmp_path / "train.csv"
    _kinetics_csv(csv_file, [
        "abseiling,0347ZoDXyP0,95,105,train\n",
        '"playing guitar",-3B32lodo2M,59,69,train\n',
        "yoga,zzz_flat,1,11,train\n",
    ])
    split = read_kinetics(csv_file, video_root=videos)
    assert split.classes == ["abseiling", "playing guitar", "yoga"]
    assert [(i.path, i.label) for i in split.items] == [
        ("abseiling/0347ZoDXyP0_000095_000105.mp4", 0),
        ("playing_guitar/-3B32lodo2M_000059_000069.mp4", 1),
        ("zzz_flat_000001_000011.mp4", 2),
    ]


def test_kinetics_missing_clip_unknown_class_and_bad_row(tmp_path):
    csv_file = tmp_path / "val.csv"
    _kinetics_csv(csv_file, [
        "abseiling,gone,1,11,val\n",
        "knitting,abc,1,11,val\n",
        "abseiling,xyz,one,11,val\n",
    ])
    with pytest.raises(DataError) as error:
        read_kinetics(csv_file, video_root=tmp_path, classes=["abseiling"])
    text = str(error.value)
    assert "val.csv:2: clip gone_000001_000011.mp4 not found" in text
    assert "val.csv:3: unknown class 'knitting'" in text
    assert "val.csv:4: time_start" in text
    (tmp_path / "bad.csv").write_text("youtube_id,time_start\n")
    with pytest.raises(DataError, match="missing columns"):
        read_kinetics(tmp_path / "bad.csv", video_root=tmp_path)


def test_tsn_list_files(tmp_path):
    frames = tmp_path / "train_rawframes.txt"
    frames.write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 120 0\nArchery/v_x 95 2\n")
    split = read_list_file(frames)
    assert [(i.path, i.num_frames, i.label) for i in split.items] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 120, 0), ("Archery/v_x", 95, 2)]
    assert split.classes == ["0", "1", "2"]
    videos = tmp_path / "train_videos.txt"
    videos.write_text("some dir/a video.mp4 1\nb.mp4 0\n")
    split = read_list_file(videos, classes=["x", "y"])
    assert [(i.path, i.num_frames, i.label) for i in split.items] == [
        ("some dir/a video.mp4", None, 1), ("b.mp4", None, 0)]
    videos.write_text("a.mp4 1\nb.mp4\nc.mp4 x\nd.mp4 5\n")
    with pytest.raises(DataError) as error:
        read_list_file(videos, classes=["x", "y"])
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in error.value.problems] == ["2", "3", "4"]


def test_class_folders_and_missing_files(tmp_path):
    for name in ("b_class/v1.avi", "b_class/notes.txt", "a_class/v2.mp4", "a_class/v3.MKV"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    split = read_class_folders(tmp_path)
    assert split.classes == ["a_class", "b_class"]
    assert [(i.path, i.label) for i in split.items] == [
        ("a_class/v2.mp4", 0), ("a_class/v3.MKV", 0), ("b_class/v1.avi", 1)]
    assert missing_files(split, tmp_path) == []
    (tmp_path / "a_class/v2.mp4").unlink()
    assert len(missing_files(split, tmp_path)) == 1
    assert isinstance(split, Split)


def test_a_line_that_is_not_utf8_is_named_and_the_rest_is_read(tmp_path):
    folder = _ucf101(tmp_path)
    (folder / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        + "ApplyLipstick/v_Caf\xe9_g08_c02.avi 2\r\n".encode("latin-1")  # saved as Latin-1
        + "Archery/v_Caf\xe9_\xe9_g09_c01.avi 3\r\n".encode()  # UTF-8 is fine
        + b"Archery/v_\xc3\xa9\xff_g09_c02.avi 3\r\n"  # an \xe9 in UTF-8, then a stray byte
    )
    with pytest.raises(DataError) as error:
        read_ucf101(folder, split=1, subset="train")
    assert error.value.problems == [
        f"{folder / 'trainlist01.txt'}:2: not valid UTF-8 (byte 0xe9 at column 20)",
        f"{folder / 'trainlist01.txt'}:4: not valid UTF-8 (byte 0xff at column 12)",
    ]
    assert [item.path for item in error.value.partial.items] == [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Caf\xe9_\xe9_g09_c01.avi"]
    (folder / "testlist01.txt").write_text("Archery/v.avi\r\n", encoding="utf-16")
    with pytest.raises(DataError, match=r"testlist01.txt: UTF-16 text .*; save it as UTF-8$"):
        read_ucf101(folder, split=1, subset="test")


def test_class_numbering_is_one_problem_not_one_per_line(tmp_path):
    folder = _ucf101(tmp_path)
    (folder / "classInd.txt").write_text("1 ApplyEyeMakeup\n3 ApplyLipstick\n4 Archery\n")
    with pytest.raises(DataError) as error:
        read_ucf101(folder, split=1, subset="train")
    assert error.value.problems == [f"{folder / 'classInd.txt'}:2: class index 3, expected 2"]
    # An unreadable line is the one problem: the indices after it are not blamed too.
    (folder / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\n2 Apply\xe9Lipstick\n3 Archery\n")
    with pytest.raises(DataError) as error:
        read_ucf101(folder, split=1, subset="train")
    assert error.value.problems == [
        f"{folder / 'classInd.txt'}:2: not valid UTF-8 (byte 0xe9 at column 8)"]


def test_an_unknown_class_suggests_the_one_that_differs_in_case(tmp_path):
    folder = _ucf101(tmp_path, testlist="Applyeyemakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n")
    with pytest.raises(DataError, match=r"unknown class 'Applyeyemakeup' \(not in classInd.txt\); "
                                        r"did you mean 'ApplyEyeMakeup'\?"):
        read_ucf101(folder, split=1, subset="test")


def test_kinetics_csv_that_is_not_utf8(tmp_path):
    (tmp_path / "abseiling").mkdir()
    (tmp_path / "abseiling" / "abc_000001_000011.mp4").touch()
    csv_file = tmp_path / "val.csv"
    csv_file.write_bytes(b"label,youtube_id,time_start,time_end,split\n"
                         b"abseiling,abc,1,11,val\n"
                         b"caf\xe9,xyz,1,11,val\n")
    with pytest.raises(DataError) as error:
        read_kinetics(csv_file, video_root=tmp_path, classes=["abseiling"])
    assert error.value.problems == [f"{csv_file}:3: not valid UTF-8 (byte 0xe9 at column 4)"]
    assert [item.path for item in error.value.partial.items] == [
        "abseiling/abc_000001_000011.mp4"]


def test_hmdb51_keeps_the_names_of_unused_videos(tmp_path):
    folder = tmp_path / "splits"
    folder.mkdir()
    (folder / "run_test_split1.txt").write_text("a.avi 1 \nb.avi 0 \nc.avi 2 \n")
    assert read_hmdb51(folder, split=1, subset="train").unused == ["run/b.avi"]
