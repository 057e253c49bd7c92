"""DATP compiles with torch.compile and exports to ONNX; the export matches PyTorch."""

import pytest
import torch

from datp.pooling import build_pooling

N, C, D, HW = 10, 7, 16, 4


def _datp(generator="mog"):
    return build_pooling(
        kind="datp",
        num_classes=C,
        num_segments=N,
        pool="probabilities",
        aux_input="conv",
        feature_channels=D,
        feature_size=HW,
        generator=generator,
    ).eval()


def test_torch_compile_gives_the_eager_result():
    pooling = _datp()
    scores, features = torch.randn(3, N, C), torch.randn(3, N, D, HW, HW)
    eager = pooling(scores, features)
    compiled = torch.compile(pooling, backend="eager", fullgraph=True)(scores, features)
    torch.testing.assert_close(compiled.scores, eager.scores)
    torch.testing.assert_close(compiled.weights, eager.weights)


@pytest.mark.parametrize("generator", ["mog", "discrete"])
def test_onnx_export_matches_pytorch_under_onnxruntime(tmp_path, generator):
    ort = pytest.importorskip("onnxruntime")
    pooling = _datp(generator)
    path = tmp_path / "datp.onnx"
    torch.onnx.export(
        pooling,
        (torch.randn(2, N, C), torch.randn(2, N, D, HW, HW)),
        str(path),
        dynamo=False,
        input_names=["scores", "features"],
        output_names=["pooled", "weights", "log_probs", "mixture"][:3 + (generator == "mog")],
        dynamic_axes={"scores": {0: "B"}, "features": {0: "B"}},
    )
    session = ort.InferenceSession(str(path))
    scores, features = torch.randn(5, N, C), torch.randn(5, N, D, HW, HW)  # another batch size
    outputs = session.run(None, {"scores": scores.numpy(), "features": features.numpy()})
    pooled, weights, log_probs = outputs[:3]
    expected = pooling(scores, features)
    if generator == "mog":  # the mixture's rho, mu, sigma [B, 3, K], for weak localization
        torch.testing.assert_close(torch.from_numpy(outputs[3]), expected.mixture, rtol=1e-4,
                                   atol=1e-5)
    assert len(outputs) == 3 + (generator == "mog")
    torch.testing.assert_close(torch.from_numpy(pooled), expected.scores, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(weights), expected.weights, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(log_probs), expected.log_probs, rtol=1e-4,
                               atol=1e-5)
