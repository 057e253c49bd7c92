"""datp check on miniature datasets in the official layouts, broken one way at a time."""

import re
import shutil

import numpy as np
import pytest

from datp.cli import main
from datp.data.check import Problem, check_dataset, check_source
from datp.data.sources import SourceOpener
from datp.data.splits import VideoItem
from datp.data.video import write_video
from tests.data.conftest import moving_frames


def run_check(root, **options) -> tuple[list[Problem], int]:
    problems: list[Problem] = []
    checked = check_dataset(root=root, report=problems.append, **options)
    return problems, checked


def lines(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


@pytest.fixture
def broken(tiny_synth, tmp_path):
    """A writable copy of the tiny synthetic UCF101-layout dataset (3 classes, 12 videos)."""
    root = tmp_path / "broken"
    shutil.copytree(tiny_synth, root)
    return root


def append(path, text: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(text)


def test_check_reports_every_problem_at_once(broken, capsys):
    root = broken
    videos = sorted((root / "videos").rglob("*.avi"))
    videos[0].unlink()                                        # missing file
    videos[1].write_bytes(b"not a video at all" * 50)         # unreadable
    videos[2].write_bytes(b"")                                # empty
    data = videos[3].read_bytes()
    videos[3].write_bytes(data[: len(data) // 3])             # truncated
    append(root / "ucfTrainTestlist" / "trainlist01.txt",
           b"Juggling/v_Juggling_g01_c01.avi 1\r\n"            # unknown class
           b"just-one-field-and-then 1 2\r\n")                 # malformed
    problems, checked = run_check(root, splits=[1])
    text = "\n".join(lines(problems))
    assert checked == 12
    assert f"{videos[0]}: error: file does not exist" in text
    assert videos[1].name in text and videos[2].name in text
    assert "trainlist01.txt:7: error: unknown class 'Juggling'" in text
    assert "trainlist01.txt:8: error: expected" in text
    assert f"{videos[3]}: error: " in text  # cut inside its header here: cannot open
    assert len(problems) == 6 and all(p.severity == "error" for p in problems)

    assert main(["check", str(root), "--splits", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any("unknown class 'Juggling'" in line for line in out[:-1])  # printed before ...
    assert out[-1] == f"6 error(s), 0 warning(s); 12 video(s) checked in {root}"  # ... the summary


def test_check_of_a_clean_dataset_passes(tiny_synth, capsys):
    assert main(["check", str(tiny_synth)]) == 0
    assert capsys.readouterr().out == f"0 error(s), 0 warning(s); 12 video(s) checked in " \
                                      f"{tiny_synth}\n"


def test_warnings_alone_pass_and_are_counted(tiny_synth, capsys):
    assert main(["check", str(tiny_synth), "--segments", "20"]) == 0  # the videos have 16 frames
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 13 and out[-1].startswith("0 error(s), 12 warning(s); 12 video(s)")
    assert out[0].endswith(".avi: warning: 16 frame(s), fewer than the 20 segments: frames repeat "
                           "(--segments)")


def test_a_video_in_both_lists_and_duplicate_lines(broken):
    lists = broken / "ucfTrainTestlist"
    append(lists / "testlist01.txt", b"RedDiscRight/v_RedDiscRight_g02_c01.avi\r\n")  # train's
    append(lists / "trainlist01.txt", b"RedDiscRight/v_RedDiscRight_g02_c02.avi 1\r\n"  # again
                                      b"RedDiscRight/v_RedDiscRight_g02_c01.avi 2\r\n")  # elsewhere
    problems, _ = run_check(broken, splits=[1])
    # The second line names class 1's folder with label 2: the reader's error, nothing more.
    assert [(p.severity, p.where.rsplit("/", 1)[-1], p.what.split(" (")[0]) for p in problems] == [
        ("error", "trainlist01.txt:8", "label 2 is 'OrangeSquareLeft' but the video is in folder "
                                       "'RedDiscRight'"),
        ("warning", "trainlist01.txt:7", "RedDiscRight/v_RedDiscRight_g02_c02.avi listed again"),
        ("error", "testlist01.txt:7", "RedDiscRight/v_RedDiscRight_g02_c01.avi is also in the "
                                      "training list"),
    ]
    assert problems[1].what.endswith("trainlist01.txt:2)")
    assert problems[2].what.endswith("trainlist01.txt:1)")


def test_a_line_listed_again_with_another_label_is_an_error(tmp_path):
    videos = tmp_path / "videos"
    for name in ("a.avi", "b.avi"):
        write_video(videos / name, moving_frames(12))
    (tmp_path / "train.txt").write_text("a.avi 0\nb.avi 1\na.avi 1\n")
    (tmp_path / "test.txt").write_text("b.avi 1\n")
    problems, checked = run_check(tmp_path, format="list", train_list="train.txt",
                                  test_list="test.txt", segments=4)
    assert checked == 2
    assert lines(problems) == [
        f"{tmp_path}/train.txt:3: error: a.avi listed again, with another label "
        f"(first at {tmp_path}/train.txt:1)",
        f"{tmp_path}/test.txt:1: error: b.avi is also in the training list "
        f"({tmp_path}/train.txt:2)",
    ]


def test_videos_no_list_names_are_one_warning(broken, capsys):
    source = broken / "videos" / "RedDiscRight" / "v_RedDiscRight_g01_c01.avi"
    for i in range(7):
        shutil.copy(source, source.with_name(f"v_Extra_g{i:02d}_c01.avi"))
    problems, _ = run_check(broken, splits=[1, 2, 3])
    assert lines(problems) == [
        f"{broken / 'videos'}: warning: 7 video(s) that no list names: "
        "RedDiscRight/v_Extra_g00_c01.avi, RedDiscRight/v_Extra_g01_c01.avi, "
        "RedDiscRight/v_Extra_g02_c01.avi, RedDiscRight/v_Extra_g03_c01.avi, "
        "RedDiscRight/v_Extra_g04_c01.avi, ..."
    ]
    assert main(["check", str(broken)]) == 0


def test_short_videos_and_flow_are_warned_about(tmp_path):
    from datp.data.frames import write_flow

    write_video(tmp_path / "one.avi", moving_frames(1))
    write_flow(tmp_path / "flow" / "one", np.full((3, 2, 16, 16), 128, np.uint8))
    item = VideoItem(path="one.avi", label=0, origin="list.txt:1")
    video = check_source(SourceOpener(kind="video", base=tmp_path), item, segments=10)
    assert lines(video) == [f"{tmp_path}/one.avi: warning: 1 frame(s), fewer than the 10 segments: "
                            "frames repeat (--segments)"]
    flow = SourceOpener(kind="flow", base=tmp_path / "flow")
    assert check_source(flow, item, segments=2, flow_length=2) == []
    assert lines(check_source(flow, item, segments=3, flow_length=2)) == [
        f"{tmp_path}/flow/one: warning: 3 flow field(s), fewer than the 4 that 3 segments of 2 "
        "fields need: fields repeat (--segments, --flow-length)"]


def _hmdb51(root, *, bad_line: bool):
    """HMDB51's layout: hmdb51_org/<class>/<video>.avi, split files with codes 1 / 2 / 0."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in ("brush_hair", "cartwheel"):
        lines_ = []
        for i, code in enumerate((1, 1, 2, 0)):
            name = f"{cls}_video_{i}.avi"
            write_video(root / "hmdb51_org" / cls / name, moving_frames(12))
            lines_.append(f"{name} {code} \n")
        if bad_line and cls == "cartwheel":
            lines_.insert(1, "cartwheel_video_9.avi 3 \n")
        (splits / f"{cls}_test_split1.txt").write_text("".join(lines_))


def test_an_hmdb51_split_file_error_is_the_only_problem(tmp_path):
    _hmdb51(tmp_path, bad_line=True)
    problems, checked = run_check(tmp_path, format="hmdb51", splits=[1], segments=4)
    # Before, the broken file left the video folder unknown, and every video "did not exist" in
    # the guessed root/videos.
    assert lines(problems) == [
        f"{tmp_path}/testTrainMulti_7030_splits/cartwheel_test_split1.txt:2: error: expected "
        "'<video name> <0|1|2>', got 'cartwheel_video_9.avi 3'"]
    assert checked == 6


def test_a_clean_hmdb51_counts_code_0_videos_as_listed(tmp_path):
    _hmdb51(tmp_path, bad_line=False)
    problems, checked = run_check(tmp_path, format="hmdb51", splits=[1], segments=4)
    assert problems == [] and checked == 6


def test_a_folder_where_nothing_is_is_one_error(broken):
    problems, _ = run_check(broken, splits=[1], flow_root="flow")  # never extracted
    assert lines(problems) == [
        f"{broken / 'flow'}: error: none of the 12 flow folders or .flow files the lists name "
        f"exist here (the first: {broken}/flow/OrangeSquareLeft/v_OrangeSquareLeft_g01_c01, named "
        f"at {broken}/ucfTrainTestlist/testlist01.txt:3)"]


def _ucf101_handstand(root):
    """UCF101's own spelling: class and folder HandstandPushups, files v_HandStandPushups_..."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    names = {"ApplyEyeMakeup": "ApplyEyeMakeup", "HandstandPushups": "HandStandPushups"}
    train, test = [], []
    for label, (cls, file_cls) in enumerate(names.items(), start=1):
        for group in (1, 2):
            path = f"{cls}/v_{file_cls}_g{group:02d}_c01.avi"
            write_video(root / "videos" / path, moving_frames(12))
            (train if group == 2 else test).append(path)
        train[-1] += f" {label}"
    (lists / "trainlist01.txt").write_text("".join(f"{t}\r\n" for t in train), newline="")
    (lists / "testlist01.txt").write_text("".join(f"{t}\r\n" for t in test), newline="")


def test_the_real_ucf101_spelling_passes_and_a_case_slip_gets_a_suggestion(tmp_path):
    from datp.data.frames import write_frames

    _ucf101_handstand(tmp_path)
    assert run_check(tmp_path, splits=[1], segments=4) == ([], 4)
    # Frames extracted by a tool that named the class folder after the file names.
    for path in sorted((tmp_path / "videos").rglob("*.avi")):
        folder = path.relative_to(tmp_path / "videos").with_suffix("")
        folder = folder.parent.parent / folder.name.split("_")[1] / folder.name
        write_frames(tmp_path / "rawframes" / folder, moving_frames(4))
    problems, _ = run_check(tmp_path, splits=[1], source="frames", segments=4)
    frames = tmp_path / "rawframes"
    assert [(p.where, p.what.split(" (")[0], p.what.split("; ")[-1]) for p in problems] == [
        (f"{frames}/HandstandPushups/v_HandStandPushups_g01_c01", "folder does not exist",
         f"did you mean {frames}/HandStandPushups/v_HandStandPushups_g01_c01?"),
        (f"{frames}/HandstandPushups/v_HandStandPushups_g02_c01", "folder does not exist",
         f"did you mean {frames}/HandStandPushups/v_HandStandPushups_g02_c01?"),
    ]
    # And a list line that spells the class with the file names' case.
    append(tmp_path / "ucfTrainTestlist" / "testlist01.txt",
           b"HandStandPushups/v_HandStandPushups_g03_c01.avi\r\n")
    problems, _ = run_check(tmp_path, splits=[1], segments=4)
    assert lines(problems) == [
        f"{tmp_path}/ucfTrainTestlist/testlist01.txt:3: error: unknown class 'HandStandPushups' "
        "(not in classInd.txt); did you mean 'HandstandPushups'?"]


def test_a_non_utf8_line_is_named_and_the_rest_is_read(broken):
    trainlist = broken / "ucfTrainTestlist" / "trainlist01.txt"
    kept = trainlist.read_bytes().split(b"\r\n")
    trainlist.write_bytes(b"\r\n".join([kept[0], b"RedDiscRight/v_R\xe9dDisc_g09_c01.avi 1",
                                        *kept[1:]]))
    problems, checked = run_check(broken, splits=[1])
    assert lines(problems) == [f"{trainlist}:2: error: not valid UTF-8 (byte 0xe9 at column 17)"]
    assert checked == 12  # every other line was read and its video checked


def test_folders_without_train_and_test_are_a_warning(tmp_path):
    for cls in ("a", "b"):
        write_video(tmp_path / "videos" / cls / "clip.avi", moving_frames(12))
    problems, checked = run_check(tmp_path, format="folders", segments=4)
    assert checked == 2
    assert lines(problems) == [f"{tmp_path}/videos: warning: no train/ and test/ folders: every "
                               "video is used for training and for testing"]


def test_missing_frames_and_flow(tiny_synth, tmp_path):
    from datp.data.frames import write_flow, write_frames
    from datp.data.splits import read_ucf101
    from datp.data.video import VideoReader

    split = read_ucf101(tiny_synth / "ucfTrainTestlist", split=1, subset="test")
    (tmp_path / "ucfTrainTestlist").symlink_to(tiny_synth / "ucfTrainTestlist")
    for item in split.items:
        with VideoReader(tiny_synth / "videos" / item.path) as reader:
            write_frames(tmp_path / "rawframes" / item.path[:-4], reader.read([0, 1, 2]))
    no_motion = np.full((2, 2, 32, 32), 128, np.uint8)
    write_flow(tmp_path / "flow" / split.items[0].path[:-4], no_motion)
    (tmp_path / "rawframes" / split.items[1].path[:-4] / "img_00002.jpg").unlink()
    problems, _ = run_check(tmp_path, splits=[1], source="frames", flow_root="flow", segments=2,
                            flow_length=1)
    text = "\n".join(lines(problems))
    assert "missing frames img_00002.jpg" in text
    # Train videos have neither frame nor flow folders; test videos but the first have no flow.
    assert sum("folder does not exist" in p.what for p in problems) == 6 * 2 + len(split.items) - 1


def test_check_source_flags_a_truncated_avi(tmp_path):
    write_video(tmp_path / "cut.avi", moving_frames(40))
    data = (tmp_path / "cut.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    problems = check_source(SourceOpener(kind="video", base=tmp_path),
                            VideoItem(path="cut.avi", label=0, origin="list.txt:1"))
    assert len(problems) == 1
    assert "cut.avi: error: truncated: the container declares 40 frames, only" in str(problems[0])


@pytest.mark.parametrize(("options", "message"), [
    (["--format", "ucf"], r"^--format ucf: must be one of ucf101, hmdb51, kinetics, list, "
                          r"folders; did you mean 'ucf101'\?$"),
    (["--splits", "1,x"], r"^--splits 1,x: must be split numbers separated by commas"),
    (["--splits", ""], r"^--splits : must be split numbers"),
    (["--format", "list", "--train-list", "train.txt"], r"^--format list needs --train-list and "
                                                        r"--test-list"),
])
def test_bad_options_name_the_option(tiny_synth, options, message, capsys):
    assert main(["check", str(tiny_synth), *options]) == 2
    err = capsys.readouterr().err
    assert re.match(message, err.removeprefix("error: ").strip()) and "Traceback" not in err
    assert main(["check", "/nowhere"]) == 2
    assert re.search(r"/nowhere: no such folder", capsys.readouterr().err)


@pytest.mark.parametrize("options", [["--segments", "0"], ["--flow-length", "-1"]])
def test_counts_below_one_are_refused_by_the_option_itself(tiny_synth, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(tiny_synth), *options])
    assert exit_info.value.code == 2
    assert f"argument {options[0]}: must be >= 1" in capsys.readouterr().err


def test_help_explains_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "warnings alone pass" in " ".join(capsys.readouterr().out.split())


def test_a_ucf101_folder_with_split_1_only_passes_with_a_warning(broken, capsys):
    lists = broken / "ucfTrainTestlist"
    for name in ("trainlist02.txt", "testlist02.txt", "trainlist03.txt", "testlist03.txt"):
        (lists / name).unlink()
    problems, checked = run_check(broken, splits=None)
    assert checked == 12
    assert lines(problems) == [f"{lists}: warning: no lists of split(s) 2, 3: only split(s) 1 "
                               "checked (name a split with --splits to require its lists)"]
    assert main(["check", str(broken)]) == 0  # all a user training on split 1 needs
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 error(s), 1 warning(s)")
    assert main(["check", str(broken), "--splits", "1,2"]) == 1  # named: its lists must be there
    assert "trainlist02.txt: error: annotation file not found" in capsys.readouterr().out


def test_with_no_split_lists_at_all_split_1_is_what_is_missing(broken):
    shutil.rmtree(broken / "ucfTrainTestlist")
    problems, _ = run_check(broken, splits=None)
    assert problems and all(p.severity == "error" for p in problems)
    assert any("classInd.txt" in str(p) for p in problems)
    assert not any("split(s) 2" in str(p) for p in problems)
