"""Reading and checking an ActivityNet-sized temporal annotation file: 20,000 videos, one instance
each, 3,000 of them with labels that are none of the 200 classes (a common mistake: spaces for
underscores). Prints the seconds of ``read_activitynet_json`` and of ``annotation_problems``.

    PYTHONPATH=. python benchmarks/annotation_reading.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from datp.data.temporal_annotations import annotation_problems, read_activitynet_json

VIDEOS, UNKNOWN, CLASSES = 20_000, 3_000, 200


def main() -> None:
    classes = [f"Class {i}" for i in range(CLASSES)]
    database = {
        f"vid{v:05d}": {"subset": "validation", "duration": 100.0, "annotations": [
            {"segment": [1.0, 5.0],
             "label": f"class_{v % CLASSES}" if v < UNKNOWN else classes[v % CLASSES]}]}
        for v in range(VIDEOS)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "annotations.json"
        path.write_text(json.dumps({"database": database}))
        start = time.perf_counter()
        annotations = read_activitynet_json(path)
        read = time.perf_counter() - start
        start = time.perf_counter()
        problems = annotation_problems(annotations, classes=classes)
        check = time.perf_counter() - start
    print(f"{VIDEOS} videos, {UNKNOWN} unknown labels: read {read:.2f} s, checked {check:.2f} s, "
          f"{len(problems)} problems")


if __name__ == "__main__":
    main()
