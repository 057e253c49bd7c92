"""Atomic writes and durability (datp.io)."""

import json

import pytest

from datp.io import (
    atomic_file,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_file,
    fsync_folder,
    make_durable,
    syncfs,
)


def test_atomic_writes_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    path = tmp_path / "deep" / "folder" / "out.json"
    atomic_write_bytes(path, b"old")
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=2)
    atomic_write_json(path, {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}'
    atomic_write_text(path, "é\n")
    assert path.read_bytes() == "é\n".encode()
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"whole")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_file(path) as handle:
        handle.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_named_temporary_is_written_first_then_renamed(tmp_path):
    path, temporary = tmp_path / "out.bin", tmp_path / ".out.bin.tmp-mine"
    with atomic_file(path, temporary=temporary) as handle:
        handle.write(b"data")
        assert temporary.exists() and not path.exists()
    assert path.read_bytes() == b"data" and not temporary.exists()


def test_files_and_folders_are_made_durable(tmp_path):
    files = [tmp_path / f"{i}.txt" for i in range(3)]
    for path in files:
        path.write_text("x")
    fsync_file(files[0])
    fsync_folder(tmp_path)
    assert isinstance(syncfs(tmp_path), bool)
    make_durable(tmp_path, files)  # with syncfs or one fsync per file: either way no error
