"""Decoding JPEG folders on the model's device (here the CPU stands in for it): the same crops as
the workers' decode for the same seed, the same training run, and errors that name the folder."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from datp.data import functional as F
from datp.data.dataset import collate_videos
from datp.data.device_decode import (
    EncodedBatch,
    decode_batch,
    decode_jpegs,
    decodes_on_device,
    jpeg_size,
)
from datp.data.frames import write_flow, write_frames
from datp.data.seeded import SeededItems
from datp.errors import DataError
from tests.conftest import make_dataset
from tests.data.conftest import moving_frames

CPU = torch.device("cpu")
# cv2 and Pillow decode with libjpeg(-turbo) as torchvision does, but their upsampling of the
# chroma planes may differ by a step or two; a wrong crop differs by far more (textured frames).
TOLERANCE = 8


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Class folders of 5 JPEG frame folders and flow folders, 48x64, of unequal lengths."""
    root = tmp_path_factory.mktemp("folders")
    for c in range(2):
        for v in range(3 if c == 0 else 2):
            frames = moving_frames(14 + 3 * v, height=48, width=64, seed=10 * c + v)
            write_frames(root / "rawframes" / f"c{c}" / f"v{v}", frames, quality=90)
            rng = np.random.default_rng(10 * c + v)
            coarse = torch.from_numpy(rng.uniform(60, 200, (len(frames) - 1, 2, 6, 8)))
            flow = torch.nn.functional.interpolate(coarse, size=(48, 64), mode="bilinear")
            write_flow(root / "flow" / f"c{c}" / f"v{v}", flow.round().byte().numpy(),
                       quality=90)
    return root


def _batches(root, *, decode, seed=3, **options):
    dataset = SeededItems(make_dataset(root=root, format="folders", source="frames",
                                        decode=decode, normalize_on_device=True, **options),
                          seed=seed)
    return collate_videos([dataset[i] for i in range(len(dataset))])


@pytest.mark.parametrize("modality, subset, crops", [
    ("rgb", "train", 1), ("flow", "train", 1), ("rgb", "test", 3), ("flow", "test", 10),
])
def test_device_decode_gives_the_workers_crops_for_the_same_seed(folders, modality, subset,
                                                                 crops):
    options = dict(modality=modality, subset=subset, num_segments=4, flow_length=2,
                   image_size=32, resize_short=40, test_crops=crops)
    workers = _batches(folders, decode="workers", **options)
    device = _batches(folders, decode="device", **options)
    assert isinstance(device["inputs"], EncodedBatch)
    decoded = decode_batch(device["inputs"], CPU)
    expected = workers["inputs"]
    assert decoded.dtype == torch.uint8 and decoded.shape == expected.shape
    assert (decoded.int() - expected.int()).abs().max() <= TOLERANCE
    assert torch.equal(device["frame_indices"], workers["frame_indices"])
    assert torch.equal(device["label"], workers["label"])
    if subset == "train":  # another seed draws other crops: the comparison can fail
        other = decode_batch(_batches(folders, decode="device", seed=4, **options)["inputs"], CPU)
        assert (other.int() - expected.int()).abs().max() > 4 * TOLERANCE


def test_a_batch_leaves_a_worker_as_one_buffer_and_decodes_the_same(folders):
    options = dict(modality="flow", subset="train", num_segments=3, flow_length=2,
                   image_size=24, resize_short=32)
    dataset = SeededItems(make_dataset(root=folders, format="folders", source="frames",
                                        decode="device", **options), seed=1)
    in_process = decode_batch(collate_videos([dataset[i] for i in range(4)])["inputs"], CPU)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=1,
                                         collate_fn=collate_videos)
    batch = next(iter(loader))["inputs"]
    assert isinstance(batch, EncodedBatch) and batch.data.dim() == 1
    assert all(clip.data is None for clip in batch.clips)  # their bytes are in batch.data
    assert len(batch.files(0)) == len(set(batch.clips[0].order)) <= 3 * 2 * 2
    assert torch.equal(decode_batch(batch, CPU), in_process)


def test_the_same_crops_without_cv2(folders):
    """Where OpenCV is missing (the GPU image), the workers decode with Pillow: still the same."""
    script = f"""
import sys
sys.modules["cv2"] = None
import torch
from tests.data.test_device_decode import _batches, CPU, TOLERANCE
from datp.data.device_decode import decode_batch
options = dict(modality="rgb", subset="train", num_segments=4, image_size=32, resize_short=40)
workers = _batches({str(folders)!r}, decode="workers", **options)["inputs"]
device = decode_batch(_batches({str(folders)!r}, decode="device", **options)["inputs"], CPU)
assert (device.int() - workers.int()).abs().max() <= TOLERANCE
print("same")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same"


def test_batched_crop_resize_flip_is_the_per_video_kernels():
    generator = torch.Generator().manual_seed(0)
    videos = [torch.randint(0, 256, (3, 4, h, w), dtype=torch.uint8, generator=generator)
              for h, w in ((30, 40), (30, 40), (24, 36))]
    boxes = [(2, 5, 20, 24), (0, 0, 20, 24), (4, 6, 18, 18)]
    flips = [True, False, True]
    out = F.batch_crop_resize_flip(videos, boxes, flips, size=16, flow=True)
    assert out.shape == (3, 3, 4, 16, 16)
    for video, box, flip, got in zip(videos, boxes, flips, out, strict=True):
        want = F.resize(F.crop(video, *box), (16, 16))
        want = F.hflip(want, flow=True) if flip else want
        assert torch.equal(got, want)
    with pytest.raises(ValueError, match="as many boxes"):
        F.batch_crop_resize_flip(videos, boxes[:2], flips, size=16)


def test_jpeg_size_reads_the_header_of_colour_grey_and_progressive_files(tmp_path):
    from PIL import Image

    for mode, options in (("RGB", {}), ("L", {}), ("RGB", {"progressive": True})):
        path = tmp_path / f"{mode}{len(options)}.jpg"
        Image.new(mode, (37, 21)).save(path, **options)
        assert jpeg_size(path.read_bytes(), path=path) == (21, 37)
    Image.new("RGB", (8, 8)).save(tmp_path / "frame.png")
    with pytest.raises(DataError, match="frame.png: not a JPEG"):
        jpeg_size((tmp_path / "frame.png").read_bytes(), path=tmp_path / "frame.png")
    with pytest.raises(DataError, match="cut.jpg: missing or unreadable"):
        jpeg_size((tmp_path / "RGB0.jpg").read_bytes()[:20], path="cut.jpg")


def test_a_broken_frame_names_its_folder_or_is_skipped(folders, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(folders, root)
    (root / "rawframes" / "c0" / "v1" / "img_00001.jpg").write_bytes(b"not a jpeg")
    options = dict(modality="rgb", subset="test", num_segments=14, image_size=32,
                   resize_short=40)
    with pytest.raises(DataError, match="v1/img_00001.jpg: not a JPEG"):
        _batches(root, decode="device", **options)
    batch = _batches(root, decode="device", skip_bad_videos=True, **options)
    assert [s.video for s in batch["skipped"]] == ["c0/v1"]
    assert decode_batch(batch["inputs"], CPU).shape[0] == 4
    # A header that parses but a body that does not: found when the batch is decoded.
    frame = root / "rawframes" / "c1" / "v0" / "img_00001.jpg"
    data = frame.read_bytes()
    frame.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="c1/v0: missing or unreadable image"):
        decode_batch(_batches(root, decode="device", skip_bad_videos=True, **options)["inputs"],
                     CPU)


def test_decode_jpegs_decodes_a_list_in_one_call_without_deprecation_noise(recwarn):
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 20, 3), np.uint8))
    data = __import__("io").BytesIO()
    image.save(data, format="JPEG", quality=95)
    files = [torch.frombuffer(bytearray(data.getvalue()), dtype=torch.uint8)] * 2
    out = decode_jpegs(files, gray=True, device=CPU)
    assert [tuple(o.shape) for o in out] == [(1, 12, 20)] * 2
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def test_auto_decodes_on_the_device_only_for_jpeg_folders_on_a_gpu():
    assert not decodes_on_device("auto", device="cpu", jpeg=True)
    assert decodes_on_device("auto", device="cuda:1", jpeg=True)
    assert not decodes_on_device("auto", device="cuda", jpeg=False)  # video, .flow / .zflow
    assert decodes_on_device("device", device="cpu", jpeg=False)
    assert not decodes_on_device("workers", device="cuda", jpeg=True)
    with pytest.raises(ValueError, match="decode must be one of"):
        decodes_on_device("gpu", device="cpu", jpeg=True)


def test_the_config_offers_the_places_the_code_accepts():
    from datp import config
    from datp.choices import DecodePlace, names

    for place in names(DecodePlace):  # each one the config lets through, the code takes
        decodes_on_device(place, device="cpu", jpeg=True)
    assert config.load_config(None, []).data.decode == "auto"
    with pytest.raises(config.ConfigError, match=r"--set data.decode=gpu: must be one of "
                                                 r"workers, device, auto"):
        config.load_config(None, ["data.decode=gpu"])


@pytest.mark.slow
def test_a_tiny_training_run_learns_the_same_either_way(tiny_synth, tmp_path):
    """The demo's RGB recipe on frame folders: decoding in the workers or on the device (the CPU)
    gives the same test accuracy."""
    import shutil

    from datp.config import load_config
    from datp.data.video import VideoReader
    from datp.engine.build import build_data_bundle, build_model, training_run
    from datp.engine.synthetic_runs import CONFIGS
    from datp.engine.train import train

    root = tmp_path / "data"
    shutil.copytree(tiny_synth, root)
    for video in sorted((root / "videos").rglob("*.avi")):
        with VideoReader(video) as reader:
            stem = video.relative_to(root / "videos").with_suffix("")
            write_frames(root / "rawframes" / stem, reader.read_all(), quality=95)
    metrics = {}
    for decode in ("workers", "device"):
        config = load_config(CONFIGS["rgb"], [
            f"data.root={root}", "data.source=frames", f"data.decode={decode}",
            "data.image_size=32", "data.resize_short=32", "data.num_segments=4",
            "data.test_segments=4", "data.workers=0", "train.epochs=3", "train.batch_size=4",
            "train.device=cpu",
        ])
        data = build_data_bundle(config)
        model = build_model(config, num_classes=len(data.classes))
        metrics[decode] = train(training_run(config, tmp_path / decode, data=data, model=model))
    assert metrics["device"] == pytest.approx(metrics["workers"], abs=1e-6)


@pytest.mark.parametrize("subset", ["train", "test"])
def test_video_files_are_decoded_in_the_workers_and_cropped_on_the_device(tiny_synth, subset):
    options = dict(subset=subset, num_segments=3, image_size=16, resize_short=20, test_crops=3)
    dataset = SeededItems(make_dataset(root=tiny_synth, decode="device", **options), seed=5)
    batch = collate_videos([dataset[i] for i in range(3)])
    assert all(clip.pixels is not None for clip in batch["inputs"].clips)
    assert len(batch["inputs"].data) == 0
    workers = SeededItems(make_dataset(root=tiny_synth, normalize_on_device=True, **options),
                          seed=5)
    expected = collate_videos([workers[i] for i in range(3)])["inputs"]
    assert torch.equal(decode_batch(batch["inputs"], CPU), expected)  # the same decode


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("modality", ["rgb", "flow"])
def test_nvjpeg_gives_the_cpu_crops(folders, modality):
    options = dict(modality=modality, subset="train", num_segments=4, flow_length=2,
                   image_size=32, resize_short=40)
    batch = _batches(folders, decode="device", **options)["inputs"]
    assert batch.pin_memory().data.is_pinned()  # what a DataLoader with pin_memory does
    on_gpu = decode_batch(batch.pin_memory(), torch.device("cuda"))
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu().int() - decode_batch(batch, CPU).int()).abs().max() <= TOLERANCE


@pytest.mark.parametrize("modality, subset", [("rgb", "train"), ("flow", "test")])
def test_decode_batch_makes_the_host_wait_only_at_its_barrier(folders, modality, subset):
    """No index tensor (on a GPU each is copied there first, and that copy waits for the work
    queued before it) and no read of a device value, counted with the profiler on the CPU: the
    one wait on a GPU is decode_jpegs' barrier, which decode_ahead's thread takes."""
    from torch.profiler import ProfilerActivity, profile

    options = dict(modality=modality, subset=subset, num_segments=4, flow_length=2,
                   image_size=32, resize_short=40, test_crops=10)
    batch = _batches(folders, decode="device", **options)["inputs"]
    with profile(activities=[ProfilerActivity.CPU]) as run:
        decode_batch(batch, CPU)
    names = {event.name for event in run.events()}
    waits = {"aten::index", "aten::index_put_", "aten::item", "aten::_local_scalar_dense",
             "aten::is_nonzero", "aten::nonzero"}
    assert not names & waits
    assert "aten::upsample_bilinear2d" in " ".join(names) or "aten::_upsample" in " ".join(names)


def _encoded_batches(folders, count=3):
    """Training batches of 2 clips each, encoded (the loader's), and one that is not."""
    options = dict(modality="rgb", subset="train", num_segments=3, image_size=16, resize_short=20)
    dataset = SeededItems(make_dataset(root=folders, format="folders", source="frames",
                                       decode="device", normalize_on_device=True, **options),
                          seed=1)
    batches = [collate_videos([dataset[2 * b], dataset[2 * b + 1]]) for b in range(count - 1)]
    return [*batches, {"inputs": torch.zeros(2, 3, 3, 16, 16, dtype=torch.uint8),
                       "label": torch.tensor([0, 1])}]


def _decode_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("datp-decode")]


def test_decode_ahead_gives_the_batches_in_order_decoded_as_forward_batch_would(folders):
    from datp.data.device_decode import decode_ahead

    batches = _encoded_batches(folders)
    out = list(decode_ahead(iter(batches), CPU, thread=True))
    assert len(out) == len(batches)
    for given, got in zip(batches, out, strict=True):
        expected = given["inputs"]
        if isinstance(expected, EncodedBatch):
            expected = decode_batch(expected, CPU)
        assert torch.equal(got["inputs"], expected)
        assert torch.equal(got["label"], given["label"])
    assert not _decode_threads()  # the thread ended with the batches


def test_without_a_thread_the_batches_pass_unchanged(folders):
    """On a CPU (the default there) forward_batch decodes, bit for bit as before."""
    from datp.data.device_decode import decode_ahead

    batches = _encoded_batches(folders)
    assert all(a is b for a, b in zip(decode_ahead(batches, CPU), batches, strict=True))


def test_a_decoding_error_is_raised_at_its_batch_and_stopping_early_ends_the_thread(folders):
    from datp.data.device_decode import decode_ahead

    batches = _encoded_batches(folders, count=3)
    broken = batches[1]["inputs"]
    batches[1] = {**batches[1], "inputs": EncodedBatch(
        clips=broken.clips, data=torch.zeros_like(broken.data), starts=broken.starts)}
    ahead = decode_ahead(batches, CPU, thread=True)
    assert isinstance(next(ahead)["inputs"], torch.Tensor)  # the good one before it
    with pytest.raises(DataError, match="missing or unreadable image"):
        next(ahead)
    assert not _decode_threads()
    ahead = decode_ahead(_encoded_batches(folders, count=3), CPU, thread=True)
    next(ahead)
    assert _decode_threads()  # the thread runs: its ending below is the thing checked
    ahead.close()  # as a training loop's break does
    assert not _decode_threads()


def test_auto_decodes_flow_files_in_the_workers_even_on_a_gpu(folders, tmp_path):
    """data.decode = "auto" for a model on CUDA: JPEG frame and flow folders are decoded there;
    flow stored as .flow files is decoded and cropped by the workers (a quarter of the bytes
    to copy). Deciding needs no GPU: nothing is allocated."""
    from datp.flow.storage import write_compact_flow

    for c in range(2):
        for v in range(3 if c == 0 else 2):
            fields = np.zeros((8, 2, 48, 64), np.float32)
            write_compact_flow(tmp_path / "flow" / f"c{c}" / f"v{v}.flow", fields)
    (tmp_path / "rawframes").symlink_to(folders / "rawframes")
    options = dict(format="folders", source="frames", decode="auto", modality="flow",
                   num_segments=2, flow_length=2)
    jpeg = make_dataset(root=folders, device="cuda", **options)
    files = make_dataset(root=tmp_path, device="cuda", **options)
    frames = make_dataset(root=folders, device="cuda", format="folders", source="frames",
                          decode="auto")
    assert jpeg.decode_on_device and frames.decode_on_device and not files.decode_on_device
    assert not make_dataset(root=folders, device="cpu", **options).decode_on_device
