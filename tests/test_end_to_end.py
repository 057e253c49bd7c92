"""The whole path on a tiny synthetic dataset: synth -> train -> evaluate (every scheme) -> fuse."""

import json

import pytest
import torch

from datp.cli import main
from datp.engine.demo import TINY, run_demo
from datp.engine.fusion import fuse
from datp.scoring import summarize


@pytest.mark.slow
def test_demo_then_every_test_scheme_and_fusion(tmp_path, capsys):
    results = run_demo(tmp_path, size=TINY, streams=("rgb", "flow"))
    for name in ("average", "datp", "flow_average", "flow_datp"):
        assert 0.0 <= results[name]["top1"] <= 1.0
        assert (tmp_path / name / "eval_datp" / "scores.pt").exists()
    assert len(list((tmp_path / "data" / "flow").rglob("*.flow"))) == 12  # every video
    # The flow stream's checkpoint remembers how its flow was computed (datp predict reads it).
    flow_state = torch.load(tmp_path / "flow_datp" / "checkpoints" / "last.pt", weights_only=True)
    assert flow_state["flow_extraction"]["backend"] == "torch"
    assert flow_state["flow_extraction"]["short_side"] == TINY.size
    for variant in ("average", "datp"):  # fusion = the saved streams at RGB 1 : flow 1.5
        saved = [tmp_path / name / "eval_datp" / "scores.pt"
                 for name in (variant, f"flow_{variant}")]
        scores, labels, _, _ = fuse(saved, [1.0, 1.5])
        assert results[f"fused_{variant}"] == pytest.approx(summarize(scores, labels))
    for figure in ("fig3_average.png", "fig3_datp.png", "fig4_class_changes.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 0
    assert json.loads((tmp_path / "comparison.json").read_text())["datp"]["videos"] == 6

    datp_checkpoint = tmp_path / "datp" / "checkpoints" / "last.pt"
    average_checkpoint = tmp_path / "average" / "checkpoints" / "last.pt"
    for checkpoint, scheme in [
        (datp_checkpoint, "p1"),
        (datp_checkpoint, "p2"),
        (average_checkpoint, "p3"),
    ]:
        assert (
            main(["evaluate", str(checkpoint), "--scheme", scheme, "--out", str(tmp_path / scheme)])
            == 0
        )
        metrics = json.loads((tmp_path / scheme / "metrics.json").read_text())
        assert metrics["videos"] == 6
    p2 = torch.load(tmp_path / "p2" / "scores.pt", weights_only=True)
    assert all(w.shape == (25,) for w in p2["weights"])  # 25 test segments
    # A MoG model evaluated with another N than it was trained with.
    assert (
        main(["evaluate", str(datp_checkpoint), "--segments", "5", "--out", str(tmp_path / "n5")])
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(datp_checkpoint), "--scheme", "p3", "--out",
                 str(tmp_path / "x")]) == 2
    assert "error: scheme p3 tests a network trained with average" in capsys.readouterr().err
    assert (
        main(
            [
                "fuse",
                str(tmp_path / "average" / "eval_datp" / "scores.pt"),
                str(tmp_path / "datp" / "eval_datp" / "scores.pt"),
                "--softmax",
            ]
        )
        == 0
    )
    assert "top1" in capsys.readouterr().out
