"""How a result was made: the protocol record that every evaluation writes beside its scores.

:func:`evaluation_protocol` is the one place that builds the record ``metrics.json`` and
``scores.pt`` carry (``datp evaluate``, the demo and the experiments all evaluate through
:func:`datp.engine.evaluate.evaluate`, which calls it); what it says of the data is the data
part's (``datp.data.build.protocol_record``). :func:`compare_protocols` says how two records
differ, telling the differences that make two score files incomparable (another test split,
another list of videos) from those worth a word beside a fused result (another scheme, other
crops, another epoch).

A record is plain JSON data::

    checkpoint   path, sha256 (the first 16 hex digits of the file's), epoch
    data         format, split, annotations, test_list, source, decoder, videos
                 (the test split's fingerprint: ``count:sha256`` of its ``path<TAB>label`` lines)
    test         scheme, segments, crops, image_size, resize_short
    modality     rgb | flow
    flow         None for RGB; flow_length, flow_root and how the flow was computed
    classes      the class names, in label order (fusing refuses other classes or orders)
    skipped      the videos of the split left out ("video: reason")
    datp_version, git_revision, date (UTC, ISO 8601)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import datp
from datp.checkpoint import file_sha256, git_revision
from datp.engine.resume import describe_split
from datp.run_state import saved_epoch

INCOMPARABLE = ("data.format", "data.split", "data.videos")
"""Differences that refuse a fusion: the scores are not of the same videos."""

UNREMARKABLE = ("checkpoint.path", "checkpoint.sha256", "date")
"""Differences that every two streams have: never worth a word."""

def evaluation_protocol(
    *,
    checkpoint: Path,
    scheme: str,
    record: dict[str, Any],
    classes: list[str],
    skipped: list[str],
    flow_extraction: dict | None = None,
) -> dict[str, Any]:
    """The record of how an evaluation of ``checkpoint`` under ``scheme`` was made; ``record``
    says how its data were read (``datp.data.build.protocol_record``: the checkpoint's settings
    with overrides, segments and crops applied)."""
    checkpoint = Path(checkpoint)
    flow = record["flow"]
    if flow is not None:
        flow = {**flow, "extraction": flow_extraction}
    return {
        "checkpoint": {
            "path": str(checkpoint.resolve()),
            "sha256": file_sha256(checkpoint)[:16],
            "epoch": saved_epoch(checkpoint),
        },
        "data": record["data"],
        "test": {"scheme": scheme, **record["test"]},
        "modality": record["modality"],
        "flow": flow,
        "classes": list(classes),
        "skipped": list(skipped),
        "datp_version": datp.__version__,
        "git_revision": git_revision(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def compare_protocols(
    first: dict[str, Any], second: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """(incomparable, other) differences between two records, each a "key: a / b" phrase.

    ``incomparable`` lists another format, split or video list: scores that cannot be fused.
    ``other`` lists every other setting that differs, less those every two streams differ in
    (the checkpoint's path and hash, the date) and, between an RGB and a flow stream, the flow
    settings (the modality says it).
    """
    a, b = _flatten(first), _flatten(second)
    incomparable: list[str] = []
    other: list[str] = []
    modalities_differ = a.get("modality") != b.get("modality")
    for key in sorted(set(a) | set(b)):
        before, after = a.get(key), b.get(key)
        if before == after or key in UNREMARKABLE:
            continue
        if modalities_differ and key.partition(".")[0] == "flow":
            continue
        if key in INCOMPARABLE:
            if key == "data.videos":
                before, after = _describe_videos(before), _describe_videos(after)
            incomparable.append(f"{key} {_show(before)} / {_show(after)}")
        elif key == "skipped":
            other.append(f"skipped videos {len(before or [])} / {len(after or [])}")
        else:
            other.append(f"{key} {_show(before)} / {_show(after)}")
    return incomparable, other


def _show(value: Any) -> str:
    return '""' if value == "" else str(value)


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and key != "extraction":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _describe_videos(fingerprint: str | None) -> str:
    return "unknown" if fingerprint is None else describe_split(fingerprint)
