import av
import numpy as np
import pytest

from datp.data.video import FrameSource, VideoReader, upright, write_video
from datp.errors import DataError
from tests.data.conftest import VFR_PTS, moving_frames, write_timed_video


def _sequential_decode(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize(
    "name,codec,gop", [("a.avi", "mpeg4", 12), ("b.mp4", "libx264", 10), ("c.mkv", "libx264", 50)]
)
def test_random_access_is_frame_exact(tmp_path, name, codec, gop):
    path = tmp_path / name
    write_video(path, moving_frames(60), codec=codec, gop=gop)
    reference = _sequential_decode(path)
    rng = np.random.default_rng(1)
    with VideoReader(path) as reader:
        assert isinstance(reader, FrameSource)
        assert reader.num_frames == len(reference) == 60
        assert reader.fps == pytest.approx(25)
        for _ in range(6):
            indices = rng.integers(0, 60, size=7)  # unsorted, with repeats
            np.testing.assert_array_equal(reader.read(indices), reference[indices])
        np.testing.assert_array_equal(reader.read([59, 0, 59]), reference[[59, 0, 59]])
        np.testing.assert_array_equal(reader.read_all(), reference)


def test_frame_count_does_not_trust_the_container(tmp_path):
    path = tmp_path / "v.mkv"  # Matroska stores no frame count: the stream reports 0
    write_video(path, moving_frames(23))
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    with VideoReader(path) as reader:
        assert reader.num_frames == 23


def test_out_of_range_index_names_the_file(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, moving_frames(10))
    with VideoReader(path) as reader, pytest.raises(IndexError, match="v.avi"):
        reader.read([3, 10])


def test_garbage_and_empty_files_raise_data_error(tmp_path):
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"this is not a video" * 100)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.mp4"
    for path in (garbage, empty, missing):
        with pytest.raises(DataError, match=path.name):
            VideoReader(path)


def test_truncated_mp4_raises_data_error(tmp_path):
    path = tmp_path / "cut.mp4"
    write_video(path, moving_frames(40), codec="libx264")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: gone
    with pytest.raises(DataError, match="cut.mp4"):
        VideoReader(path).read([0, 39])


def test_zero_frame_video_raises_data_error(tmp_path):
    path = tmp_path / "zero.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 32, 32
    with pytest.raises(DataError, match="zero.mkv"):
        VideoReader(path)


def test_write_video_is_deterministic(tmp_path):
    frames = moving_frames(20)
    write_video(tmp_path / "a.avi", frames)
    write_video(tmp_path / "b.avi", frames)
    assert (tmp_path / "a.avi").read_bytes() == (tmp_path / "b.avi").read_bytes()


def test_truncated_avi_is_flagged_against_the_declared_count(tmp_path):
    path = tmp_path / "cut.avi"
    write_video(path, moving_frames(40))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # AVI keeps its frame count in the header
    with VideoReader(path) as reader:
        assert reader.declared_frames == 40
        assert 0 < reader.num_frames < 40
        assert reader.read_all().shape[0] == reader.num_frames  # what is there decodes


def test_closed_reader_says_so(tmp_path):
    path = tmp_path / "v.avi"
    write_video(path, moving_frames(5))
    reader = VideoReader(path)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read([0])


def _torchcodec_or_skip():
    from datp.data.video import decoder_problem

    problem = decoder_problem("torchcodec")
    if problem is not None:  # absent, or FFmpeg's shared libraries are missing
        pytest.skip(f"torchcodec cannot decode here: {problem}")


@pytest.mark.parametrize("name,codec,gop", [("a.avi", "mpeg4", 12), ("b.mp4", "libx264", 10)])
def test_torchcodec_reads_the_same_frames_as_pyav(tmp_path, name, codec, gop):
    _torchcodec_or_skip()
    from datp.data.video import open_video

    path = tmp_path / name
    write_video(path, moving_frames(40), codec=codec, gop=gop)
    indices = [39, 0, 17, 17, 5]
    with open_video(path) as pyav, open_video(path, decoder="torchcodec") as codec_reader:
        assert codec_reader.num_frames == pyav.num_frames == 40
        assert codec_reader.fps == pytest.approx(pyav.fps)
        np.testing.assert_array_equal(codec_reader.read(indices), pyav.read(indices))
        with pytest.raises(IndexError, match="must lie in"):
            codec_reader.read([40])


def test_torchcodec_names_the_file_it_cannot_read(tmp_path):
    _torchcodec_or_skip()
    from datp.data.video import open_video

    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(DataError, match="notes.mp4"):
        open_video(bad, decoder="torchcodec")
    with pytest.raises(ValueError, match="decoder must be one of pyav, torchcodec"):
        open_video(bad, decoder="decord")


def test_a_torchcodec_that_cannot_decode_is_a_clear_error_naming_ffmpeg(tmp_path, monkeypatch):
    """As on a machine without FFmpeg's shared libraries, where torchcodec imports but cannot
    build a decoder."""
    from datp.data import video
    from datp.errors import MissingDependency

    video.decoder_problem.cache_clear()
    monkeypatch.setattr(
        "datp.data.video_torchcodec.TorchCodecReader.__init__",
        lambda self, path, threads=1: (_ for _ in ()).throw(
            RuntimeError("Could not load libtorchcodec. Likely causes: FFmpeg is not installed")
        ),
    )
    try:
        assert video.decoder_problem("torchcodec").startswith("Could not load libtorchcodec")
        path = tmp_path / "a.avi"
        write_video(path, moving_frames(4))
        with pytest.raises(MissingDependency, match=r"apt-get install ffmpeg.*decoder = \"pyav\""):
            video.open_video(path, decoder="torchcodec")
    finally:
        video.decoder_problem.cache_clear()


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv"])
def test_frame_times_are_the_presentation_times_of_a_variable_rate_video(tmp_path, name):
    path = tmp_path / name
    frames = moving_frames(len(VFR_PTS), height=32, width=32)
    write_timed_video(path, frames, VFR_PTS)
    with VideoReader(path) as reader:
        assert reader.num_frames == 60
        np.testing.assert_allclose(reader.frame_times, np.array(VFR_PTS) / 30, atol=1e-3)
        # index / fps, what seconds were before, is far off in the second half:
        assert abs(40 / reader.fps - VFR_PTS[40] / 30) > 0.3
        expected = _sequential_decode(path)[[0, 25, 59]]
        np.testing.assert_array_equal(reader.read([0, 25, 59]), expected)


def test_a_display_rotation_is_applied_to_the_decoded_frames(tmp_path):
    frames = np.zeros((6, 32, 64, 3), np.uint8)
    frames[:, :, :16] = 255  # a white band on the stored frame's left
    write_timed_video(tmp_path / "phone.mp4", frames, list(range(6)), rotation=-90)
    write_timed_video(tmp_path / "plain.mp4", frames, list(range(6)))
    with VideoReader(tmp_path / "plain.mp4") as reader:
        plain = reader.read([0, 5])
    assert plain.shape == (2, 32, 64, 3) and plain[:, :, :12].mean() > 240
    with VideoReader(tmp_path / "phone.mp4") as reader:
        phone = reader.read([0, 5])
    # -90 degrees: a quarter turn clockwise, as players and FFmpeg's autorotate show it; the
    # left band comes to the top.
    assert phone.shape == (2, 64, 32, 3)
    assert phone[:, :12].mean() > 240 and phone[:, 20:].mean() < 15
    np.testing.assert_array_equal(phone, np.rot90(plain, k=-1, axes=(1, 2)))


def test_the_rotation_turns_the_way_ffmpeg_autorotate_does(tmp_path):
    cv2 = pytest.importorskip("cv2")  # its FFmpeg backend applies the display matrix itself
    frames = np.zeros((2, 32, 64, 3), np.uint8)
    frames[:, :, :16] = 255
    frames[:, :4] = (255, 0, 0)  # and a red strip along the top, so no symmetry hides a flip
    for rotation in (-90, 90, 180):
        path = tmp_path / f"r{rotation}.mp4"
        write_timed_video(path, frames, [0, 1], rotation=rotation)
        capture = cv2.VideoCapture(str(path))
        ok, bgr = capture.read()
        capture.release()
        assert ok
        with VideoReader(path) as reader:
            ours = reader.read([0])[0].astype(np.int16)
        theirs = bgr[..., ::-1].astype(np.int16)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).mean() < 8, rotation  # the same picture, but for decoding


def test_upright_turns_by_the_display_matrix_counter_clockwise():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, -1)  # [[0 1 2], [3 4 5]]
    assert upright(image, 0) is image
    assert upright(image, -90)[..., 0].tolist() == [[3, 0], [4, 1], [5, 2]]  # clockwise
    assert upright(image, 90)[..., 0].tolist() == [[2, 5], [1, 4], [0, 3]]  # counter-clockwise
    assert upright(image, 180)[..., 0].tolist() == [[5, 4, 3], [2, 1, 0]]
    assert upright(image, 270.4)[..., 0].tolist() == upright(image, -90)[..., 0].tolist()


def test_open_readers_keep_the_last_used_open_and_close_the_rest(tmp_path, monkeypatch):
    import pickle

    from datp.data import video

    paths = [tmp_path / f"v{i}.avi" for i in range(3)]
    for i, path in enumerate(paths):
        write_video(path, moving_frames(20, seed=i))
    opened = []
    real_open = video.open_video

    def counting_open(path, **options):
        opened.append(path)
        return real_open(path, **options)

    monkeypatch.setattr(video, "open_video", counting_open)
    readers = video.OpenReaders(capacity=2)
    first = readers.open(paths[0])
    assert readers.open(paths[0]) is first and len(opened) == 1  # no second open, no re-index
    np.testing.assert_array_equal(first.read([3, 1]), _sequential_decode(paths[0])[[3, 1]])
    second = readers.open(paths[1])
    readers.open(paths[0])  # used last: v1 is now the oldest
    readers.open(paths[2])
    assert len(readers) == 2 and readers.holds(first) and not readers.holds(second)
    assert len(opened) == 3
    with pytest.raises(ValueError, match="closed"):  # v1 was evicted and closed
        second.read([0])
    copy = pickle.loads(pickle.dumps(readers))  # a spawned worker starts with none open
    assert len(copy) == 0 and copy.capacity == 2
    readers.close()
    assert len(readers) == 0
    with pytest.raises(ValueError, match="closed"):
        first.read([0])


def test_the_dataset_reads_a_video_again_without_reopening_it(tiny_synth, monkeypatch):
    from datp.data import video
    from tests.conftest import make_dataset

    opened = []
    real_open = video.open_video
    monkeypatch.setattr(video, "open_video",
                        lambda path, **options: opened.append(path) or real_open(path, **options))
    dataset = make_dataset(root=tiny_synth, subset="test", num_segments=3, image_size=16,
                            resize_short=16)
    first = dataset[0]["inputs"]
    again = dataset[0]["inputs"]
    assert len(opened) == 1 and len(dataset.open_source.readers) == 1
    assert (first == again).all()


def test_open_readers_are_closed_when_a_worker_process_exits(tmp_path):
    """A forked worker (as a DataLoader's) closes the readers it kept open when it exits."""
    import subprocess
    import sys

    path = tmp_path / "v.avi"
    write_video(path, moving_frames(8))
    script = f"""
import multiprocessing
from datp.data.video import OpenReaders

readers = OpenReaders()

def work():
    reader = readers.open({str(path)!r})
    close = reader.close
    reader.close = lambda: (print("closed in the worker", flush=True), close())
    reader.read([2])

process = multiprocessing.get_context("fork").Process(target=work)
process.start()
process.join()
print("parent holds", len(readers))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["closed in the worker", "parent holds 0"]
