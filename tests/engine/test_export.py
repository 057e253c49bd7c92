"""Exporting a checkpoint's whole segment network: ONNX and TorchScript match PyTorch at another
batch size, on a real preprocessed video too, and the sidecar documents the input."""

import json
import sys

import numpy as np
import pytest
import torch

from datp.cli import main
from datp.data.synthetic import generate
from datp.engine.build import load_stream
from datp.engine.export import ExportError, compare, export_stream, run_export
from datp.engine.predict import read_segments
from tests.conftest import TINY, make_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    root = generate(TINY, base / "data")
    video = sorted((root / "videos").rglob("*.avi"))[0]
    return {"root": root, "video": video, "rgb": make_checkpoint(base / "rgb.pt", root)}


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_random_input_and_on_a_video(tiny, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model.{fmt}"
    report = export_stream(load_stream(tiny["rgb"]), out, format=fmt, check_batch=3)
    assert report.path == out and out.stat().st_size > 0
    assert report.max_abs_diff <= report.tolerance
    # A real video, preprocessed as prediction does, at batch 1 (exported with batch 2).
    stream = load_stream(tiny["rgb"])
    sample = read_segments(tiny["video"], stream)
    inputs, times = sample["inputs"][:1], sample["times"][None]  # [1, N, 3, 32, 32], [1, N]
    with torch.no_grad():
        expected = stream.model(inputs, times)
    probabilities, scores, weights, segment_scores = run_export(out, fmt, inputs, times)
    torch.testing.assert_close(scores, expected.scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(weights, expected.weights, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(segment_scores, expected.segment_scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(1))
    sidecar = json.loads(report.sidecar.read_text())
    assert sidecar["classes"] == stream.classes and sidecar["num_segments"] == 4
    assert sidecar["inputs"]["inputs"]["shape"] == ["B", 4, 3, 32, 32]
    assert sidecar["inputs"]["inputs"]["normalization"]["mean"] == [0.485, 0.456, 0.406]
    assert sidecar["inputs"]["times"]["shape"] == ["B", 4]
    assert sidecar["check"]["max_abs_diff"] == report.max_abs_diff


def test_a_model_that_reads_no_times_exports_to_onnx_without_that_input(tiny, tmp_path):
    """Average pooling never reads the times: ONNX drops the unused input, so the check feeds
    the graph the inputs it has and the sidecar lists those alone."""
    ort = pytest.importorskip("onnxruntime")
    checkpoint = make_checkpoint(tmp_path / "average.pt", tiny["root"],
                                 ["pooling.kind=average", "pooling.pool=logits"])
    out = tmp_path / "average.onnx"
    report = export_stream(load_stream(checkpoint), out, format="onnx", check_batch=3)
    assert report.max_abs_diff <= report.tolerance
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["inputs"]
    sidecar = json.loads(report.sidecar.read_text())
    assert list(sidecar["inputs"]) == ["inputs"]
    # TorchScript keeps both arguments, as the sidecar says.
    scripted = export_stream(load_stream(checkpoint), tmp_path / "average.ts", format="torchscript")
    assert list(json.loads(scripted.sidecar.read_text())["inputs"]) == ["inputs", "times"]


def test_an_exporter_failure_is_one_line_naming_the_other_format(tiny, tmp_path, monkeypatch,
                                                                   capsys):
    def fails(*args, **kwargs):
        raise RuntimeError("Failed to export a node\nmore lines of the exporter")

    monkeypatch.setattr("datp.engine.export._export", fails)
    out = tmp_path / "model.pt"
    assert main(["export", str(tiny["rgb"]), "--format", "torchscript", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {out}: torch cannot export")
    assert "RuntimeError: Failed to export a node" in err[0] and "--format onnx" in err[0]


def test_the_check_catches_a_mismatch():
    a = [torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, 4, 3)]
    b = [t.clone() for t in a]
    assert compare(a, b, 1e-4) == 0.0
    b[2][0, 1] = 0.01
    with pytest.raises(ExportError, match="output weights differs from PyTorch by up to 0.01"):
        compare(a, b, 1e-4)
    with pytest.raises(ExportError, match="output weights: the export gives"):
        compare(a, [*b[:2], torch.zeros(3, 4), b[3]], 1e-4)


def test_cli_export_prints_the_difference_and_the_tolerance(tiny, tmp_path, capsys):
    out = tmp_path / "model.pt"
    assert main(["export", str(tiny["rgb"]), "--format", "torchscript", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and "tolerance 0.0001" in printed
    assert (tmp_path / "model.pt.json").exists()
    assert main(["export", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt: checkpoint does not exist" in capsys.readouterr().err


def test_a_missing_onnxruntime_names_the_extra(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'datp\[export\]'"):
        export_stream(load_stream(tiny["rgb"]), tmp_path / "model.onnx", format="onnx")
    assert not (tmp_path / "model.onnx").exists()  # refused before the export


def test_a_flow_checkpoint_documents_its_flow_layout(tiny, tmp_path):
    flow = make_checkpoint(
        tmp_path / "flow.pt", tiny["root"], ["data.modality=flow", "data.flow_length=2"]
    )
    report = export_stream(load_stream(flow), format="torchscript")
    assert report.path == tmp_path / "flow.torchscript.pt"
    sidecar = json.loads(report.sidecar.read_text())
    assert sidecar["inputs"]["inputs"]["shape"] == ["B", 4, 4, 32, 32]
    assert "x1, y1, x2, y2" in sidecar["inputs"]["inputs"]["layout"]
    assert np.allclose(sidecar["inputs"]["inputs"]["normalization"]["std"], 128 / 255)
