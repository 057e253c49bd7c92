"""Every shipped recipe loads under the strict schema."""

from pathlib import Path

import pytest

from datp.config import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.toml"))


def test_there_are_recipes():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_loads(path):
    config = load_config(path)
    assert config.data.num_segments >= 1
