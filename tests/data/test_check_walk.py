"""``datp check`` walks the dataset folder as training reads it: through symlinked folders."""

import shutil

from datp.data.check import Problem, check_dataset


def test_a_symlinked_class_folder_is_walked_and_a_loop_ends(tiny_synth, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_synth, root)
    videos = root / "videos"
    elsewhere = tmp_path / "shared" / "RedDiscRight"  # the class lives on another volume
    shutil.move(videos / "RedDiscRight", elsewhere)
    (videos / "RedDiscRight").symlink_to(elsewhere, target_is_directory=True)
    shutil.copy(elsewhere / "v_RedDiscRight_g01_c01.avi", elsewhere / "v_Extra_g01_c01.avi")
    (elsewhere / "loop").symlink_to(videos, target_is_directory=True)
    problems: list[Problem] = []
    check_dataset(root=root, report=problems.append, splits=[1, 2, 3])
    assert [str(p) for p in problems] == [
        f"{videos}: warning: 1 video(s) that no list names: RedDiscRight/v_Extra_g01_c01.avi"
    ]
