"""The experiment scripts under experiments/ at a tiny size: they train, report, cache every run,
and refuse a cache made with other settings."""

import json
import re
import subprocess
import sys
from pathlib import Path

from datp.engine.fusion import fuse
from datp.score_file import ScoreFile
from datp.scoring import summarize

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--seeds", "1", "--epochs", "1", "--flow-epochs", "1", "--classes", "3",
        "--videos-per-class", "8", "--frames", "16", "--size", "32"]


def _run(script: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{script}.py"), "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def test_streams_table_trains_both_streams_caches_them_and_refuses_other_settings(tmp_path):
    first = _run("table5_streams", tmp_path, *TINY)
    assert first.returncode == 0, first.stderr[-2000:]
    report = (tmp_path / "table5_streams.md").read_text()
    # The fused column is the fusion of the two saved streams at the paper's 1 : 1.5.
    for label, rgb, flow in (("average pooling", "average", "flow_average"),
                             ("DATP (K = 2, conv)", "datp_conv_k2", "flow_datp_conv_k2")):
        saved = [tmp_path / "kf0.25" / name / "seed0" / "eval_datp" / "scores.pt"
                 for name in (rgb, flow)]
        scores, labels, _, _ = fuse(saved, [1.0, 1.5])
        fused = 100 * summarize(scores, labels)["top1"]
        row = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        assert row.split(" | ")[3].startswith(f"{fused:.1f} +- 0.0"), row
        share = re.search(rf"- {re.escape(label)}: RGB ([\d.]+) \+- [\d.]+ %, flow ([\d.]+)",
                          report)
        assert share and all(0 <= float(v) <= 100 for v in share.groups()), report
    runs = sorted((tmp_path / "kf0.25").glob("*/seed0/result.json"))
    assert {p.parent.parent.name for p in runs} == {
        "average", "datp_conv_k2", "flow_average", "flow_datp_conv_k2"}
    flow_run = json.loads((tmp_path / "kf0.25" / "flow_average" / "seed0" / "result.json")
                          .read_text())
    assert "train.epochs=1" in flow_run["overrides"]
    assert (tmp_path / "kf0.25" / "data" / "flow" / "datp_flow.json").is_file()

    # A rerun only aggregates: no network is trained again.
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "kf0.25").glob("*/seed0/checkpoints/*")}
    again = _run("table5_streams", tmp_path, *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (tmp_path / "table5_streams.md").read_text() == report

    # Other settings into the same folder are refused, naming what differs.
    other = _run("table1_inputs", tmp_path, *TINY[:-2], "--size", "48")
    assert other.returncode != 0
    assert "holds a synthetic benchmark made with other settings (height, width)" in other.stderr


def test_localization_table_localizes_each_evaluation_three_ways_from_its_cache(tmp_path):
    tiny = ["--seeds", "1", "--epochs", "1", "--classes", "3", "--videos-per-class", "8",
            "--frames", "32", "--size", "32", "--instances", "2", "--key-fraction", "0.3",
            "--train-segments", "4", "--test-segments", "8"]
    first = _run("localization", tmp_path, *tiny)
    assert first.returncode == 0, first.stderr[-2000:]
    report = (tmp_path / "localization.md").read_text()
    run = json.loads((tmp_path / "untrimmed" / "datp_conv_k2" / "seed0" / "result.json")
                     .read_text())
    for scheme in ("datp", "p1"):  # its own mixture, and a random one (the P1 scheme)
        found = run[scheme]["localization"]
        assert set(found) == {"pooling", "components", "none"}
        assert all(0 <= v["mAP@0.5"] <= 1 for v in found.values())
    row = next(line for line in report.splitlines() if line.startswith("| DATP, MoG K = 2 |"))
    pooling = 100 * run["datp"]["localization"]["pooling"]["mAP@0.5"]
    assert row.split(" | ")[1].startswith(f"{pooling:.1f} +- 0.0"), row
    scores = ScoreFile.load(tmp_path / "untrimmed" / "datp_conv_k2" / "seed0" / "eval_p1"
                            / "scores.pt")
    assert len(scores.mixtures) == len(scores.videos) and len(scores.times[0]) == 8
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "untrimmed").glob("*/seed0/*/*.pt")}
    again = _run("localization", tmp_path, *tiny)  # a rerun trains and evaluates nothing
    assert again.returncode == 0, again.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (tmp_path / "localization.md").read_text() == report
