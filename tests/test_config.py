import pytest

from datp.config import Config, ConfigError, dump_toml, from_dict, load_config, to_dict


def test_defaults_follow_the_paper():
    config = Config()
    assert config.data.num_segments == 10 and config.model.backbone == "resnet34"
    assert (config.pooling.kind, config.pooling.generator, config.pooling.num_gaussians) == (
        "datp",
        "mog",
        2,
    )
    assert config.pooling.aux_input == "conv"


def test_toml_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nlr = 0.01\nlr_steps = [3, 6]\n[data]\nroot = "/videos"\n')
    config = load_config(
        path, ["train.epochs=7", "pooling.kind=average", "train.lr=1", "data.root=/other/place"]
    )
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.epochs == 7 and config.train.lr_steps == [3, 6]
    assert config.pooling.kind == "average" and config.data.root == "/other/place"


def test_unknown_names_are_errors_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key train.epoch; did you mean 'epochs'\?"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"unknown section \[pooling_\]; did you mean 'pooling'"):
        from_dict({"pooling_": {}})
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nbackbon = 'resnet18'\n")
    with pytest.raises(ConfigError, match=rf"{path}: unknown key model.backbon; did you mean"):
        load_config(path)


def test_wrong_types_name_the_key():
    with pytest.raises(ConfigError, match="train.epochs: expected int, got 2.5"):
        load_config(None, ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="model.partial_bn: expected true or false"):
        load_config(None, ["model.partial_bn=1"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config(None, ["train.epochs"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    path = tmp_path / "broken.toml"
    path.write_text("[train\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_dumped_config_reads_back_identical(tmp_path):
    config = load_config(None, ['data.root=a "quoted" path', "train.lr_steps=[1, 2]"])
    path = tmp_path / "resolved.toml"
    path.write_text(dump_toml(config))
    assert to_dict(load_config(path)) == to_dict(config)
