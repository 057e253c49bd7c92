import numpy as np
import pytest


def moving_frames(
    num_frames: int, *, height: int = 48, width: int = 64, seed: int = 0
) -> np.ndarray:
    """uint8 [T, H, W, 3]: a textured background and a bright square that moves, so every frame
    differs and the encoder emits real P (and B) frames."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    for t in range(num_frames):
        x = (3 * t) % (width - 12)
        y = (2 * t) % (height - 12)
        frames[t, y : y + 12, x : x + 12] = (255, 200 - (5 * t) % 200, (40 * t) % 256)
    return frames


@pytest.fixture
def frames_30():
    return moving_frames(30)


TINY = dict(classes=3, videos_per_class=4, clips_per_group=2, frames=16, height=32, width=32)


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    """A tiny synthetic UCF101-layout dataset, written once per test module."""
    from datp.data.synthetic import SynthConfig, generate

    return generate(SynthConfig(**TINY), tmp_path_factory.mktemp("synth"))


def write_timed_video(
    path, frames: np.ndarray, pts: list[int], *, time_base=None, rotation: float | None = None
) -> None:
    """Encode uint8 RGB ``[T, H, W, 3]`` with each frame's pts set by hand (time base 1/30 s by
    default: a variable frame rate is a list of uneven steps) and, when ``rotation`` is given,
    a display matrix rotating by that many degrees counter-clockwise, as phones write them."""
    import fractions

    import av

    time_base = time_base or fractions.Fraction(1, 30)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        stream.gop_size = 4
        stream.bit_rate = 4_000_000
        stream.thread_count = 1
        if rotation is not None:
            if not hasattr(stream, "set_display_rotation"):
                pytest.skip("this PyAV cannot write a display matrix (Stream.set_display_rotation)")
            stream.set_display_rotation(rotation)
        for image, stamp in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = stamp, time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


VFR_PTS = [3 * i for i in range(20)] + [60 + i for i in range(40)]
"""Time stamps in 1/30 s: 20 frames at 10 fps (2 s), then 40 at 30 fps (1.33 s)."""
