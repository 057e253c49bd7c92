import numpy as np
import pytest
import torch

from datp.data import functional as F
from datp.data.frames import dequantize_flow, quantize_flow
from datp.data.transforms import EvalTransform, TrainTransform


def _flow_video(T=4, L=2, H=32, W=40, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(-20, 20, size=(T, 2 * L, H, W)).astype(np.float32)
    return pixels, torch.from_numpy(quantize_flow(pixels))


def test_flip_negates_x_flow_quantized_and_float():
    pixels, quantized = _flow_video()
    flipped_q = F.hflip(quantized, flow=True)
    flipped_f = F.hflip(torch.from_numpy(pixels), flow=True)
    np.testing.assert_allclose(flipped_f[:, 0::2].numpy(), -pixels[:, 0::2, :, ::-1])
    np.testing.assert_allclose(flipped_f[:, 1::2].numpy(), pixels[:, 1::2, :, ::-1])
    # 255 - q dequantizes to exactly -v of q's value.
    before = dequantize_flow(quantized.numpy())[..., ::-1]
    after = dequantize_flow(flipped_q.numpy())
    np.testing.assert_allclose(after[:, 0::2], -before[:, 0::2], atol=1e-5)
    np.testing.assert_array_equal(after[:, 1::2], before[:, 1::2])
    assert (F.hflip(F.hflip(quantized, flow=True), flow=True) == quantized).all()
    rgb = torch.arange(2 * 3 * 2 * 3, dtype=torch.uint8).reshape(2, 3, 2, 3)
    assert (F.hflip(rgb) == rgb.flip(-1)).all()


def test_crops_shapes_and_positions():
    video = torch.arange(2 * 3 * 6 * 8, dtype=torch.uint8).reshape(2, 3, 6, 8)
    assert F.center_crop(video, 4).shape == (2, 3, 4, 4)
    three = F.three_crop(video, 4)
    assert three.shape == (3, 2, 3, 4, 4)
    assert (three[0] == video[..., 1:5, 0:4]).all() and (three[2] == video[..., 1:5, 4:8]).all()
    _, flow = _flow_video(T=2, L=5, H=12, W=14)
    ten = F.ten_crop(flow, 8, flow=True)
    assert ten.shape == (10, 2, 10, 8, 8)
    assert (ten[5:] == F.hflip(ten[:5], flow=True)).all()
    with pytest.raises(ValueError, match="outside"):
        F.crop(video, 4, 0, 4, 4)


def test_normalize():
    rgb = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = F.normalize(rgb, modality="rgb")
    np.testing.assert_allclose(out[0, :, 0, 0].numpy(),
                               (1 - np.array(F.IMAGENET_MEAN)) / np.array(F.IMAGENET_STD),
                               rtol=1e-5)
    flow = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).repeat(1, 2, 1, 1)
    np.testing.assert_allclose(F.normalize(flow, modality="flow").flatten()[:3].numpy(),
                               [-1, 0, 127 / 128])
    with pytest.raises(ValueError, match="modality"):
        F.normalize(rgb, modality="depth")


def test_multi_scale_boxes_lie_inside_and_use_tsn_scales():
    rng = np.random.default_rng(0)
    sides = set()
    for _ in range(300):
        top, left, h, w = F.multi_scale_crop_box(256, 340, output_size=224, rng=rng)
        assert top >= 0 and top + h <= 256 and left >= 0 and left + w <= 340
        sides.update((h, w))
    assert sides == {256, 224, 192, 168}  # int(256 * s) for TSN's scales


def test_one_draw_per_video_applies_to_every_segment():
    frame = torch.randint(0, 255, (1, 3, 60, 80), dtype=torch.uint8)
    video = frame.repeat(6, 1, 1, 1)  # six identical segments
    transform = TrainTransform(size=32, resize_short=48)
    for seed in range(10):
        out = transform(video, np.random.default_rng(seed))
        assert out.shape == (6, 3, 32, 32) and out.dtype == torch.float32
        assert (out == out[:1]).all()
    outs = {TrainTransform(size=32)(video, np.random.default_rng(s))[0].sum().item()
            for s in range(10)}
    assert len(outs) > 3  # the draw does vary between videos


def test_train_flip_on_flow_negates_x():
    _, flow = _flow_video(T=3, L=2, H=40, W=40)
    transform = TrainTransform(size=40, modality="flow", scales=(1.0,))
    flipped = [transform(flow, np.random.default_rng(s)) for s in range(12)]
    plain = F.normalize(flow, modality="flow")
    mirrored = F.normalize(F.hflip(flow, flow=True), modality="flow")
    kinds = {("plain" if torch.equal(o, plain) else "mirrored" if torch.equal(o, mirrored)
              else "other") for o in flipped}
    assert kinds == {"plain", "mirrored"}


@pytest.mark.parametrize("crops", [1, 3, 10])
def test_eval_transform_views(crops):
    video = torch.randint(0, 255, (5, 3, 240, 320), dtype=torch.uint8)
    out = EvalTransform(size=224, resize_short=256, crops=crops)(video)
    assert out.shape == (crops, 5, 3, 224, 224) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="crops"):
        EvalTransform(size=224, crops=5)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="uint8"):
        TrainTransform(size=8)(torch.zeros(2, 3, 8, 8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="even"):
        F.hflip(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), flow=True)
