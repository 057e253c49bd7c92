import logging

import pytest

from datp.config import (
    Config,
    ConfigError,
    dump_toml,
    from_dict,
    load_config,
    to_dict,
    validate,
)


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


def test_wrong_types_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set train.epochs=2.5: expected int, got 2.5$"):
        load_config(None, ["train.epochs=2.5"])
    with pytest.raises(ConfigError, match="model.partial_bn=1: expected true or false"):
        load_config(None, ["model.partial_bn=1"])
    with pytest.raises(ConfigError, match="^--set train.epochs: must look like section.key=value"):
        load_config(None, ["train.epochs"])
    path = tmp_path / "typed.toml"
    path.write_text("[train]\nepochs = 2.5\n")
    with pytest.raises(ConfigError, match=rf"^{path}: train.epochs: expected int, got 2.5$"):
        load_config(path)


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


# --- values checked at load time (issue 12) -------------------------------------------------------

# (override, what the message says after "--set <override>: "). One row per kind of bad value.
BAD_VALUES = [
    ("train.lr=-0.1", "must be > 0"),
    ("train.lr=0", "must be > 0"),
    ("train.lr=nan", "must be a finite number > 0"),
    ("train.lr=inf", "must be a finite number > 0"),
    ("data.num_segments=0", "must be >= 1"),
    ("data.num_segments=-96", "must be >= 1"),
    ("data.test_segments=0", "must be >= 1"),
    ("data.flow_length=0", "must be >= 1"),
    ("data.split=0", "must be >= 1"),
    ("data.image_size=0", "must be >= 1"),
    ("data.resize_short=-1", "must be >= 0"),
    ("data.test_crops=5", "must be one of 1, 3, 10"),
    ("data.workers=-1", "must be >= 0"),
    ("train.epochs=0", "must be >= 1"),
    ("train.batch_size=0", "must be >= 1"),
    ("train.momentum=1.5", "must be >= 0 and <= 1"),
    ("train.weight_decay=-0.0001", "must be >= 0"),
    ("train.pooling_lr_factor=-1", "must be >= 0"),
    ("train.clip_grad=-1", "must be >= 0"),
    ("train.warmup_epochs=-1", "must be >= 0"),
    ("train.eval_every=-1", "must be >= 0"),
    ("train.max_steps_per_epoch=-1", "must be >= 0"),
    ("train.seed=-1", "must be >= 0"),
    ("train.lr_steps=[10, -5]", "item 1 is -5: must be >= 0"),
    ("model.dropout=1.2", "must be >= 0 and <= 1"),
    # Sizes: bounded, so that a typo cannot ask for terabytes.
    ("data.num_segments=10000000", "must be >= 1 and <= 1000"),
    ("data.test_segments=1001", "must be >= 1 and <= 1000"),
    ("data.resize_short=100000", "must be >= 0 and <= 4096"),
    ("data.image_size=4097", "must be >= 1 and <= 2048"),
    ("data.flow_length=65", "must be >= 1 and <= 64"),
    ("train.batch_size=1000000", "must be >= 1 and <= 4096"),
    ("data.test_crops=100", "must be one of 1, 3, 10"),
    ("model.pretrained_classifier=1", "expected true or false"),
    ("data.normalize_on_device=1", "expected true or false or str, got 1"),
    ("pooling.num_gaussians=0", "must be >= 1"),
    ("pooling.init_sigma=0", "must be > 0"),
    ("pooling.sigma_floor=-0.1", "must be > 0"),
    ("pooling.reduce_channels=0", "must be >= 1"),
    ("pooling.conv_channels=[32, 0]", "item 1 is 0: must be >= 1"),
    ("pooling.fc_channels=[-128]", "item 0 is -128: must be >= 1"),
    ("data.format=ucf", "must be one of ucf101, hmdb51, kinetics, list, folders; did you mean "
                        "'ucf101'?"),
    ("data.source=frame", "did you mean 'frames'?"),
    ("data.decoder=torchcodc", "did you mean 'torchcodec'?"),
    ("data.modality=RGB", "must be one of rgb, flow"),
    ("model.backbone=resnet_34", "did you mean 'resnet34'?"),
    ("pooling.kind=averge", "did you mean 'average'?"),
    ("pooling.pool=logit", "did you mean 'logits'?"),
    ("pooling.aux_input=sequences", "did you mean 'sequence'?"),
    ("pooling.generator=mixture", "must be one of mog, discrete"),
    ("pooling.discrete_activation=softpls", "did you mean 'softplus'?"),
    ("train.optimizer=adam", "did you mean 'adamw'?"),
    ("train.schedule=cosin", "did you mean 'cosine'?"),
    ("train.amp=bfloat16", "must be one of none, bf16, fp16"),
    ("train.device=cuda0", "must be auto, cpu, cuda, cuda:N or mps; did you mean 'cuda'?"),
    ("train.device=gpu", "must be auto, cpu, cuda, cuda:N or mps"),
]


@pytest.mark.parametrize(("override", "problem"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_bad_value_is_blamed_on_its_set_argument(override, problem):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert str(error.value).startswith(f"--set {override}: ")
    assert problem in str(error.value)


# (overrides, what the message says). Rules that tie two fields together.
BAD_COMBINATIONS = [
    (["data.image_size=300"],
     "data.image_size = 300 is larger than data.resize_short = 256"),
    (["pooling.generator=discrete", "data.test_segments=25"],
     "data.test_segments = 25 must equal data.num_segments = 10"),
    (["pooling.sigma_floor=0.3"], "pooling.sigma_floor = 0.3 must be below pooling.init_sigma"),
    (["train.device=cpu", "train.amp=fp16"], 'train.amp = "fp16" needs CUDA'),
    (["data.format=list"], 'data.format = "list" needs data.train_list and data.test_list'),
    (["model.pretrained_classifier=true"], "model.pretrained_classifier = true needs "
                                           "model.pretrained"),
    (["model.pretrained=imagenet", "model.pretrained_classifier=true"],
     "names torchvision's ImageNet parameters, whose classifier datp does not take"),
    (["model.backbone=small_cnn", "model.pretrained=ResNet18_Weights.IMAGENET1K_V1"],
     'model.backbone = "small_cnn" has no torchvision parameters'),
]


@pytest.mark.parametrize(("overrides", "problem"), BAD_COMBINATIONS,
                         ids=[o[-1] for o, _ in BAD_COMBINATIONS])
def test_rules_between_fields_blame_the_last_override(overrides, problem):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert str(error.value).startswith(f"--set {overrides[-1]}: ")
    assert problem in str(error.value)


def test_values_at_the_edges_of_the_rules_load():
    load_config(None, ["data.image_size=256", "data.resize_short=256"])
    load_config(None, ["data.image_size=512", "data.resize_short=0"])  # 0: no resizing
    load_config(None, ["pooling.generator=discrete", "pooling.kind=average",
                       "data.test_segments=25"])  # the discrete generator is not built
    load_config(None, ["pooling.sigma_floor=0.5", "pooling.kind=max"])
    load_config(None, ["train.lr_steps=[]", "train.clip_grad=0", "model.dropout=0",
                       "train.device=cuda:1", "train.amp=fp16", "data.test_crops=10",
                       "data.format=list", "data.test_list=val.txt", "train.seed=4294967295"])
    load_config(None, ["data.num_segments=1000", "data.test_segments=1000",
                       "data.resize_short=4096", "data.image_size=2048", "data.flow_length=64",
                       "train.batch_size=4096"])
    load_config(None, ["model.pretrained=runs/tsn.pth", "model.pretrained_classifier=true"])
    load_config(None, ["model.pretrained=ResNet34_Weights.IMAGENET1K_V1"])


def test_a_bad_value_in_the_file_names_the_file_key_and_value(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('[train]\nlr = -0.1\n[pooling]\nkind = "dtap"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).splitlines() == [  # every problem at once, in the schema's order
        f"{path}: pooling.kind = \"dtap\": must be one of datp, average, max, attention, "
        "random_gaussians; did you mean 'datp'?",
        f"{path}: train.lr = -0.1: must be > 0",
    ]
    # An override that repairs the file's value wins; one that breaks it is blamed, not the file.
    assert load_config(path, ["train.lr=0.1", "pooling.kind=datp"]).train.lr == 0.1
    path.write_text("[train]\nlr = 0.1\n")
    with pytest.raises(ConfigError, match=r"^--set train.lr=-0.1: must be > 0$"):
        load_config(path, ["train.lr=-0.1"])
    path.write_text("[data]\nimage_size = 300\n")
    with pytest.raises(ConfigError, match=rf"^{path}: data.image_size = 300 is larger"):
        load_config(path)


def test_from_dict_validates_a_saved_config():
    saved = to_dict(Config())
    saved["data"]["num_segments"] = 0
    with pytest.raises(ConfigError,
                       match=r"^run/best.pt: data.num_segments = 0: must be >= 1 and <= 1000$"):
        from_dict(saved, origin="run/best.pt")
    with pytest.raises(ConfigError,
                       match=r"^--set data.num_segments=0: must be >= 1 and <= 1000$"):
        from_dict(to_dict(Config()), origin="run/best.pt", overrides=["data.num_segments=0"])


def test_validate_checks_a_config_changed_after_loading():
    config = Config()
    validate(config)
    config.data.test_crops = 5
    with pytest.raises(ConfigError, match=r"^evaluate: data.test_crops = 5: must be one of"):
        validate(config, origin="evaluate")


def test_lr_steps_past_the_last_epoch_are_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="datp.config"):
        config = load_config(None, ["train.epochs=10", "train.lr_steps=[5, 12]"])
    assert config.train.lr_steps == [5, 12]
    assert "--set train.lr_steps=[5, 12]: train.lr_steps [12] are not before train.epochs = 10" \
        in caplog.text


def test_the_optimizers_schedules_and_devices_the_config_offers_are_built():
    """Every name the config lets through builds (the tables are held against the choices in
    tests/test_choices.py); every device word names a torch device."""
    import torch

    from datp.choices import OptimizerKind, ScheduleKind, names
    from datp.config import DEVICE
    from datp.engine.build import build_optimizer, learning_rate_schedule

    model = torch.nn.Linear(2, 2)
    for optimizer in names(OptimizerKind):
        build_optimizer(model, load_config(None, [f"train.optimizer={optimizer}"]))
    for schedule in names(ScheduleKind):
        learning_rate_schedule(load_config(None, [f"train.schedule={schedule}"])).factor(0, 10)
    for device in (*DEVICE.words, "cuda:1"):
        if device != "auto":
            torch.device(device)


def test_a_weights_name_and_a_file_named_like_one_are_told_apart():
    from datp.choices import is_weights_name

    assert is_weights_name("imagenet") and is_weights_name("ResNet34_Weights.IMAGENET1K_V1")
    for path in ("ResNet34_Weights.pth", "ResNet34_Weights.pt", "weights/resnet34.pth", ""):
        assert not is_weights_name(path), path


def test_a_choice_is_matched_by_type_too():
    from datp.config import OneOf

    assert OneOf(("auto", True, False)).problem(1) == "must be one of auto, true, false"
    assert OneOf((1, 3, 10)).problem(True) is not None
    assert OneOf(("auto", True, False)).problem(False) is None
