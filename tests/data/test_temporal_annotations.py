"""Temporal annotations: ActivityNet JSON and THUMOS14's lists into one structure, every bad
input named by file and place, and what datp check reports of a well-formed file."""

import json

import pytest

from datp.data.temporal_annotations import (
    Instance,
    annotation_problems,
    read_activitynet_json,
    read_temporal_annotations,
    read_thumos14,
)
from datp.errors import DataError

ACTIVITYNET = {
    "version": "VERSION 1.3",
    "taxonomy": [{"nodeName": "Root", "nodeId": 0, "parentName": None, "parentId": None}],
    "database": {
        "v_a": {"subset": "validation", "duration": 60.5, "fps": 30, "url": "https://x",
                "resolution": "640x360",
                "annotations": [{"segment": [1.5, 10.0], "label": "Dunk", "label_id": 3},
                                {"segment": [20, 30.25], "label": "Shot"},
                                {"segment": [40.0, 44.0], "label": "Ambiguous"}]},
        "v_b": {"subset": "testing", "duration": 12.0, "annotations": []},
        "v_c": {"subset": "validation", "duration": 5.0,
                "annotations": [{"segment": [6.0, 5.5], "label": "Dnuk"}]},
    },
}


def write(path, data):
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_activitynet_json_is_read_exactly(tmp_path):
    annotations = read_activitynet_json(write(tmp_path / "a.json", ACTIVITYNET))
    assert list(annotations.videos) == ["v_a", "v_b", "v_c"]
    a = annotations.videos["v_a"]
    assert (a.subset, a.duration, a.fps) == ("validation", 60.5, 30.0)
    assert a.instances == (Instance("Dunk", 1.5, 10.0), Instance("Shot", 20.0, 30.25))
    assert a.ambiguous == ((40.0, 44.0),)
    assert a.instances[0].where == f"{tmp_path / 'a.json'}: database['v_a'].annotations[0]"
    assert annotations.videos["v_b"].fps is None and annotations.videos["v_b"].instances == ()
    assert annotations.labels() == ["Dunk", "Shot", "Dnuk"]
    validation = annotations.in_subset("validation")
    assert list(validation.videos) == ["v_a", "v_c"]
    assert validation.ground_truth()["v_a"] == a.instances
    assert validation.ambiguous_spans() == {"v_a": ((40.0, 44.0),)}
    with pytest.raises(DataError, match=r"no video in subset 'test'; its subsets: 'validation', "
                                        r"'testing'"):
        annotations.in_subset("test")
    assert read_temporal_annotations(tmp_path / "a.json", subset="testing").labels() == []


def test_every_problem_of_a_json_file_is_named_at_once(tmp_path):
    bad = {"database": {
        "v1": {"subset": "training", "duration": -3, "fps": "thirty", "annotations": [
            {"segment": [1, "2"], "label": "X"}, {"segment": [1, 2]}, "oops",
            {"segment": [1, 2, 3], "label": ""}]},
        "v2": ["not", "an", "object"],
        "v3": {"duration": 10, "annotations": {}},
    }}
    path = write(tmp_path / "bad.json", bad)
    with pytest.raises(DataError) as error:
        read_activitynet_json(path)
    at = f"{path}: database"
    assert error.value.problems == [
        f"{at}['v1'].duration: expected seconds > 0, got -3",
        f"{at}['v1'].fps: expected frames per second > 0, got 'thirty'",
        f"{at}['v1'].annotations[0].segment: expected [start, end] in seconds, got [1, '2']",
        f"{at}['v1'].annotations[1].label: expected a class name, got None",
        f"{at}['v1'].annotations[2]: expected an object with 'segment' and 'label', got str",
        f"{at}['v1'].annotations[3].segment: expected [start, end] in seconds, got [1, 2, 3]",
        f"{at}['v1'].annotations[3].label: expected a class name, got ''",
        f"{at}['v2']: expected an object, got list",
        f"{at}['v3']: no 'subset'",
        f"{at}['v3'].annotations: expected a list, got dict",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ('{"database": {"v": 1}', r"bad.json:1:22: not valid JSON \(Expecting ',' delimiter\)"),
    ('[1, 2]', r"bad.json: expected a JSON object with a 'database' key"),
    ('{"results": {}}', r"bad.json: expected a JSON object with a 'database' key"),
    ('{"database": []}', r"bad.json: 'database' must map video ids to objects, got list"),
    ('{"database": {"v": {"subset": "a", "duration": 1, "annotations": []}, '
     '"v": {"subset": "b", "duration": 1, "annotations": []}}}',
     r"bad.json: key 'v' appears 2 times in one object \(JSON keeps only the last\)"),
])
def test_a_malformed_file_is_one_clear_error(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_activitynet_json(write(tmp_path / "bad.json", text))
    with pytest.raises(DataError, match="missing.json: annotation file not found"):
        read_temporal_annotations(tmp_path / "missing.json")


def thumos_folder(tmp_path):
    folder = tmp_path / "TH14_temporal_annotations_test"
    folder.mkdir()
    (folder / "BaseballPitch_test.txt").write_text(
        "video_test_0000004  0.2 1.1\nvideo_test_0000004  19.9 20.4\r\n\nvideo_test_0000007 3 4\n")
    (folder / "Billiards_test.txt").write_text("video_test_0000007 10.5 12\n")
    (folder / "Ambiguous_test.txt").write_text("video_test_0000004 5.0 7.5\n"
                                               "video_test_0001292 1 2\n")
    (folder / "Billiards_val.txt").write_text("video_validation_0000051 1 2\n")
    (folder / "readme.txt").write_text("not a list\n")
    return folder


def test_thumos14_lists_are_read_into_the_same_structure(tmp_path):
    folder = thumos_folder(tmp_path)
    annotations = read_thumos14(folder)
    # Lists in sorted order (Ambiguous, BaseballPitch, Billiards_test, Billiards_val).
    assert list(annotations.videos) == ["video_test_0000004", "video_test_0001292",
                                        "video_test_0000007", "video_validation_0000051"]
    four = annotations.videos["video_test_0000004"]
    assert four.subset == "test" and four.duration is None
    assert four.instances == (Instance("BaseballPitch", 0.2, 1.1),
                              Instance("BaseballPitch", 19.9, 20.4))
    assert four.instances[1].where == f"{folder / 'BaseballPitch_test.txt'}:2"
    assert four.ambiguous == ((5.0, 7.5),)
    assert annotations.videos["video_test_0000007"].instances == (
        Instance("BaseballPitch", 3.0, 4.0), Instance("Billiards", 10.5, 12.0))
    test = read_temporal_annotations(folder, subset="test")
    assert test.labels() == ["BaseballPitch", "Billiards"] and len(test.videos) == 3
    assert read_temporal_annotations(folder, subset="validation").labels() == ["Billiards"]


def test_bad_thumos14_lines_are_named(tmp_path):
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "Diving_test.txt").write_text("video_test_1 1.0\nvideo_test_1 a b\n"
                                            "video_test_1 1 inf\nvideo_test_1 4 5\n")
    (folder / "Diving_val.txt").write_text("video_test_1 1 2\n")
    with pytest.raises(DataError) as error:
        read_thumos14(folder)
    lists = folder / "Diving_test.txt"
    assert error.value.problems == [
        f"{lists}:1: expected '<video> <start> <end>', got 'video_test_1 1.0'",
        f"{lists}:2: start and end must be seconds, got 'video_test_1 a b'",
        f"{lists}:3: start and end must be finite, got 'video_test_1 1 inf'",
        f"{folder / 'Diving_val.txt'}:1: video video_test_1 is also in the test lists "
        f"({lists}:4)",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "Ambiguous_test.txt").write_text("v 1 2\n")
    with pytest.raises(DataError, match=r"empty: no THUMOS14 list"):
        read_thumos14(empty)


def test_annotation_problems_lists_what_check_reports(tmp_path):
    annotations = read_activitynet_json(write(tmp_path / "a.json", ACTIVITYNET))
    problems = annotation_problems(annotations, classes=["Dunk", "Shot", "Jump"])
    where = f"{tmp_path / 'a.json'}: database"
    assert [str(p) for p in problems] == [
        f"{where}['v_b']: warning: video v_b has no annotated instance",
        f"{where}['v_c'].annotations[0]: error: instance Dnuk 6-5.5 s: start >= end",
        f"{where}['v_c'].annotations[0]: error: instance Dnuk 6-5.5 s ends after the video's 5 s",
        f"{where}['v_c'].annotations[0]: error: label 'Dnuk' is not one of the 3 classes "
        "(did you mean 'Dunk'?)",
    ]
    assert [p.severity for p in annotation_problems(annotations)] == ["warning", "error", "error"]
    thumos = read_thumos14(thumos_folder(tmp_path))
    # Durations unknown: nothing past the end; the video with only an ambiguous span warns.
    assert [p.what for p in annotation_problems(thumos)] == [
        "video video_test_0001292 has no annotated instance"]


def test_check_refuses_a_file_no_evaluation_can_score_and_names_classes_without_instances(
        tmp_path):
    """What ``datp evaluate --localization`` refuses, ``datp check`` calls an error: a file
    that annotates no video, or none of the test list's; the classes without an instance in
    the test videos it annotates (THUMOS14's lists with a class's file missing) are one
    warning."""
    from datp.data.temporal_annotations import check_annotation_file

    classes = ["BaseballPitch", "Billiards", "Diving"]
    folder = thumos_folder(tmp_path)
    tests = ["x/video_test_0000004.mp4", "x/video_test_0000007.mp4", "x/video_test_0000009.mp4"]
    problems = check_annotation_file(folder, classes=classes, videos=None, test_videos=tests)
    assert [(p.severity, p.where, p.what) for p in problems if "classes" in p.what] == [
        ("warning", str(folder), "1 of the 3 classes have no instance in the 2 videos of the "
         "test list it annotates (an evaluation's mAP leaves them out): Diving")]
    others = check_annotation_file(folder, classes=classes, videos=None,
                                   test_videos=["x/v_other.mp4"], test_list="split 2's test list")
    assert [str(p) for p in others if p.severity == "error"] == [
        f"{folder}: error: names none of the 1 videos of split 2's test list (e.g. "
        "'x/v_other.mp4'); it annotates 4 others (e.g. 'video_test_0000004', in subset(s) "
        "'test', 'validation')"]
    empty = write(tmp_path / "empty.json", {"database": {}})
    for test_videos in (None, tests):
        assert [str(p) for p in check_annotation_file(empty, classes=classes, videos=None,
                                                      test_videos=test_videos)] == [
            f"{empty}: error: annotates no video (its database is empty)"]
