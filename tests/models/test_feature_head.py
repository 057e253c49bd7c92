"""The head on features: TSN's model contract on [B, N, D], DATP reading the feature sequence, and
heads that learn from foreign feature sets (ActionFormer windows, video_features output)."""

import json

import numpy as np
import pytest
import torch

from datp.data.dataset import collate_videos
from datp.data.feature_dataset import feature_dataset
from datp.data.features import open_feature_set
from datp.data.splits import Split, VideoItem
from datp.models.feature_head import FeatureHead
from datp.pooling import build_pooling

D, C, N = 8, 3, 5


def head(kind="datp", aux_input="sequence", **kwargs):
    pooling = build_pooling(kind=kind, num_classes=C, num_segments=N, pool="probabilities",
                            aux_input=aux_input, feature_channels=D)
    return FeatureHead(feature_channels=D, num_classes=C, pooling=pooling,
                       aux_input=aux_input, **kwargs)


@pytest.mark.parametrize("aux_input", ["sequence", "scores"])
def test_the_model_contract_on_feature_sequences(aux_input):
    torch.manual_seed(0)
    model = head(aux_input=aux_input)
    inputs = torch.randn(4, N, D, requires_grad=True)
    out = model(inputs, torch.rand(4, N).sort(dim=1).values)
    assert out.scores.shape == (4, C) and out.weights.shape == (4, N)
    assert out.segment_scores.shape == (4, N, C) and out.log_probs.shape == (4, C)
    torch.testing.assert_close(out.log_probs.exp().sum(1), torch.ones(4))
    out.log_probs.sum().backward()
    assert model.pooling.aux_net.regression.weight.grad.abs().sum() > 0
    # Any N: a mixture of Gaussians reads 12 segments with the net trained at N = 5.
    assert model(torch.randn(2, 12, D)).weights.shape == (2, 12)
    with pytest.raises(ValueError, match=r"expected inputs \[B, N, 8\]"):
        model(torch.randn(2, N, D + 1))
    with pytest.raises(ValueError, match="aux_input"):
        FeatureHead(feature_channels=D, num_classes=C, pooling=model.pooling, aux_input="conv")


def test_the_sequence_reaches_the_auxiliary_net():
    torch.manual_seed(0)
    model = head().eval()
    torch.nn.init.normal_(model.pooling.aux_net.regression.weight)  # zero at first: theta fixed
    x = torch.randn(1, N, D)
    y = x.clone()
    y[:, 0] += 5.0  # another sequence, the same first-segment classifier inputs elsewhere
    assert not torch.allclose(model(x).weights, model(y).weights)


def _features(rng, label, steps):
    """[T, D]: noise, and the class's prototype in a window of half the steps."""
    prototypes = np.eye(C, D, dtype=np.float32) * 3.0
    x = rng.normal(0, 1, (steps, D)).astype(np.float32)
    start = rng.integers(0, steps - steps // 2)
    x[start:start + steps // 2] += prototypes[label]
    return x


def _foreign_sets(tmp_path):
    """The same 18 videos as an ActionFormer folder (with an ActivityNet JSON) and as
    video_features output."""
    rng = np.random.default_rng(0)
    windows, vf = tmp_path / "actionformer", tmp_path / "video_features"
    windows.mkdir()
    vf.mkdir()
    database, items = {}, []
    for i in range(18):
        label, name, steps = i % C, f"video_{i:04d}", int(rng.integers(15, 30))
        x = _features(rng, label, steps)
        np.save(windows / f"{name}.npy", x)
        database[name] = {"subset": "train", "fps": 30.0, "duration": (steps * 4 + 12) / 30}
        np.save(vf / f"{name}_clip.npy", x)
        np.save(vf / f"{name}_fps.npy", np.array(2.0))
        np.save(vf / f"{name}_timestamps_ms.npy", np.arange(steps) * 500.0)
        items.append(VideoItem(path=f"c{label}/{name}.mp4", label=label, origin=f"list:{i}"))
    (tmp_path / "anet.json").write_text(json.dumps({"database": database}))
    split = Split(items=items, classes=[f"c{c}" for c in range(C)], annotation="list")
    return split, {
        "actionformer": open_feature_set(windows, stride=4, window=16,
                                         info=tmp_path / "anet.json"),
        "video_features": open_feature_set(vf),
    }


def test_heads_train_and_evaluate_on_foreign_feature_sets(tmp_path):
    split, sets = _foreign_sets(tmp_path)
    for name, features in sets.items():
        torch.manual_seed(0)
        train = feature_dataset(split, features=features, num_segments=N, train=True)
        test = feature_dataset(split, features=features, num_segments=N, train=False)
        model = head(kind="average", dropout=0.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        loader = torch.utils.data.DataLoader(train, batch_size=6, shuffle=True,
                                             collate_fn=collate_videos)
        for _ in range(15):
            for batch in loader:
                out = model(batch["inputs"], batch["times"])
                loss = torch.nn.functional.nll_loss(out.log_probs, batch["label"])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        batch = collate_videos([test[i] for i in range(len(test))])
        with torch.no_grad():
            predicted = model.eval()(batch["inputs"], batch["times"]).scores.argmax(1)
        accuracy = (predicted == batch["label"]).float().mean().item()
        assert accuracy >= 0.8, (name, accuracy)  # chance is 1/3
        assert batch["times"].min() >= 0 and batch["times"].max() <= 1


def test_the_dropout_is_tsns_whichever_way_its_mask_is_drawn():
    torch.manual_seed(0)
    dropout = head(dropout=0.3).dropout
    x = torch.ones(400, 500, requires_grad=True)
    y = dropout.train()(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.005
    torch.testing.assert_close(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # the same mask and scale backwards
    assert torch.equal(dropout.eval()(x), x)
