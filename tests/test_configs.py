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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipes_name_torchvision_weights_by_name(path):
    """A recipe never names a torchvision file a user must fetch by hand: "imagenet" (or a
    weights name) is downloaded into torch hub's cache; a file is a pretrained TSN to fine-tune."""
    pretrained = load_config(path).model.pretrained
    if pretrained.endswith((".pth", ".pt")):
        assert "tsn" in Path(pretrained).name, pretrained
        assert "mmaction" in path.read_text()  # says where the file comes from
    else:
        assert pretrained in ("", "imagenet"), pretrained
