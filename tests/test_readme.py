"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_python_example_in_the_readme_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    for block in blocks:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
        if "out" in namespace:  # the pooling example: pooled vector and weights
            assert tuple(namespace["out"].scores.shape) == (8, 64)
            assert tuple(namespace["out"].weights.shape) == (8, 12)
