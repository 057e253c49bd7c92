import shutil

import numpy as np

from datp.cli import main
from datp.data.check import check_dataset, check_source


def test_check_reports_every_problem_at_once(tiny_synth, tmp_path, capsys):
    root = tmp_path / "broken"
    shutil.copytree(tiny_synth, root)
    videos = sorted((root / "videos").rglob("*.avi"))
    videos[0].unlink()                                        # missing file
    videos[1].write_bytes(b"not a video at all" * 50)         # unreadable
    videos[2].write_bytes(b"")                                # empty
    data = videos[3].read_bytes()
    videos[3].write_bytes(data[: len(data) // 3])             # truncated
    with open(root / "ucfTrainTestlist" / "trainlist01.txt", "a", newline="") as handle:
        handle.write("Juggling/v_Juggling_g01_c01.avi 1\r\n")  # unknown class
        handle.write("just-one-field-and-then 1 2\r\n")        # malformed
    problems, checked = check_dataset(root=root, splits=[1])
    text = "\n".join(problems)
    assert checked == 12
    assert f"{videos[0]}: file does not exist" in text
    assert videos[1].name in text and videos[2].name in text
    assert "trainlist01.txt:7: unknown class 'Juggling'" in text
    assert "trainlist01.txt:8: expected" in text
    assert f"{videos[3]}: " in text  # cut inside its header here: cannot open
    assert len(problems) == 6  # and nothing about the eight clean videos

    assert main(["check", str(root), "--splits", "1"]) == 1
    out = capsys.readouterr().out
    assert "unknown class 'Juggling'" in out and "problem(s)" in out


def test_check_of_a_clean_dataset_passes(tiny_synth, capsys):
    assert main(["check", str(tiny_synth)]) == 0
    assert "0 problem(s); 12 video(s) checked" in capsys.readouterr().out


def test_check_finds_missing_frames_and_flow(tiny_synth, tmp_path):
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
    problems, _ = check_dataset(root=tmp_path, splits=[1], source="frames", flow_root="flow")
    text = "\n".join(problems)
    assert "missing frames img_00002.jpg" in text
    # Train videos have neither frame nor flow folders; test videos but the first have no flow.
    assert sum("folder does not exist" in p for p in problems) == 6 * 2 + (len(split.items) - 1)


def test_check_source_flags_a_truncated_avi(tmp_path):
    from datp.data.dataset import SourceOpener
    from datp.data.splits import VideoItem
    from datp.data.video import write_video
    from tests.data.conftest import moving_frames

    write_video(tmp_path / "cut.avi", moving_frames(40))
    data = (tmp_path / "cut.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    problems = check_source(SourceOpener(kind="video", base=tmp_path),
                            VideoItem(path="cut.avi", label=0, origin="list.txt:1"))
    assert len(problems) == 1
    assert "cut.avi: truncated: the container declares 40 frames, only" in problems[0]
