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
