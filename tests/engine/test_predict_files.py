"""The files of datp predict without a model: the videos a folder or list file names, and the
rows of an earlier batch run that a rerun keeps."""

import csv
import json
from pathlib import Path

import pytest

from datp.engine.predict_files import (
    CSV_NAME,
    SETTINGS_NAME,
    csv_header,
    is_batch,
    listed_videos,
    plan_batch,
)
from datp.errors import DataError, InputError


def test_many_videos_are_a_folder_or_a_list_file(tmp_path):
    assert is_batch(tmp_path)
    assert is_batch(tmp_path / "videos.LST") and is_batch(tmp_path / "videos.txt")
    assert not is_batch(tmp_path / "video.mp4")


def test_a_list_file_names_each_video_once_relative_to_itself(tmp_path):
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "videos.txt"
    listing.write_text("# a comment\nx.mp4\n./x.mp4\n\n/elsewhere/y.mp4\nsub/../x.mp4\nz.mp4\n")
    videos, repeats = listed_videos(listing)
    assert videos == [tmp_path / "lists" / "x.mp4", Path("/elsewhere/y.mp4"),
                      tmp_path / "lists" / "z.mp4"]
    assert repeats == 2


def test_an_empty_or_undecodable_list_is_a_data_error_naming_it(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(DataError, match="empty.txt: no videos to predict"):
        listed_videos(empty)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("vid\xe9o.mp4\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.txt: the list file is not valid UTF-8"):
        listed_videos(latin)


def test_a_rerun_keeps_the_rows_of_videos_predicted_and_does_the_rest(tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_text("a.mp4\nb.mp4\nc.mp4\n")
    out = tmp_path / "out"
    out.mkdir()
    a, b, c = (str(tmp_path / name) for name in ("a.mp4", "b.mp4", "c.mp4"))
    ok = [a, "ok", "walk", "0.9", "walk:0.9", "", "0-3", "", ""]
    with open(out / CSV_NAME, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(5))
        writer.writerows([ok, [b, "error", "", "", "", "", "", "", "unreadable"], [c, "ok"]])
    settings = {"streams": [{"checkpoint": "rgb.pt", "segments": 25, "crops": 1}]}
    with pytest.raises(InputError, match="records no settings"):  # a CSV of unknown settings
        plan_batch(listing, out, settings)
    (out / SETTINGS_NAME).write_text(json.dumps(settings))
    batch = plan_batch(listing, out, settings)
    assert batch.kept == [ok] and batch.finished == {a}
    assert batch.todo == [Path(b), Path(c)]
    assert plan_batch(listing, tmp_path / "new", settings).todo == [Path(a), Path(b), Path(c)]
    with pytest.raises(InputError, match="other checkpoints or settings"):
        plan_batch(listing, out, {**settings, "top_k": 3})
    with pytest.raises(InputError, match="other checkpoints or settings"):  # --segments auto
        plan_batch(listing, out, {**settings, "seconds_per_segment": 1.0})
