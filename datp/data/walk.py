"""Walking a dataset folder as training reads it: through symlinked folders and files.

Datasets on shared storage are often assembled from symlinks (a class folder linked from
another volume). ``datp train`` opens the paths its lists name, through any link; the commands
that list a folder themselves (``datp flow``, ``datp check``) walk it with :func:`walk`, which
follows linked folders too and visits each real folder once, so a link back to a folder above
it (a loop) ends instead of recursing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def walk(root: str | Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    """``os.walk(root, followlinks=True)`` in sorted order, each real folder once (the first
    path met to it): yields ``(folder, subfolders, files)``."""
    visited: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a loop, or a second link to a folder already walked
            dirs[:] = []
            continue
        visited.add(real)
        dirs.sort()
        yield Path(folder), dirs, sorted(files)
