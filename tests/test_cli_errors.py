"""Every user mistake, in every subcommand, ends as one line: ``error: <what>: <problem>``, exit
status 2, no traceback. Each case names what must appear in that line (the file, key, option or
value at fault)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from datp.cli import main
from datp.data.video import write_video
from tests.data.conftest import moving_frames


@pytest.fixture(scope="module")
def bad(tiny, tmp_path_factory):
    """Broken copies of the tiny dataset and broken files next to the good ones."""
    base = tmp_path_factory.mktemp("bad")
    root = tiny["root"]
    files = {"root": root, "rgb": tiny["rgb"], "flow": tiny["flow"], "base": base}
    # A config file of each kind.
    (base / "broken.toml").write_text("[train\nlr = 1\n")
    (base / "unknown_key.toml").write_text("[train]\nlearning_rate = 0.1\n")
    (base / "zero_segments.toml").write_text("[data]\nnum_segments = 0\n")
    (base / "good.toml").write_text(
        f'[data]\nroot = "{root}"\nimage_size = 32\nresize_short = 36\nnum_segments = 4\n'
        'test_segments = 4\nworkers = 0\n[model]\nbackbone = "small_cnn"\npartial_bn = false\n'
        '[train]\nepochs = 1\nbatch_size = 2\noptimizer = "adamw"\nlr = 0.001\n'
        'lr_steps = [1]\neval_every = 1\ndevice = "cpu"\n'
    )
    # A dataset whose split file names a class that classInd.txt does not list.
    split_error = base / "split_error"
    shutil.copytree(root, split_error)
    trainlist = split_error / "ucfTrainTestlist" / "trainlist01.txt"
    trainlist.write_text(trainlist.read_text() + "NoSuchClass/v_NoSuchClass_g01_c01.avi 99\n")
    # A dataset with one unreadable training video.
    corrupt = base / "corrupt"
    shutil.copytree(root, corrupt)
    first = trainlist.read_text().split()[0]
    (corrupt / "videos" / first).write_bytes(b"not a video at all")
    files.update(split_error=split_error, corrupt=corrupt, corrupt_video=first)
    # Checkpoints and score files that cannot be used.
    (base / "junk.pt").write_bytes(b"junk")
    torch.save({"model": {}, "payload": object()}, base / "pickled.pt")
    torch.save({"weight": torch.ones(2)}, base / "foreign.pt")
    (base / "empty.mp4").write_bytes(b"")
    (base / "nothing.txt").write_text("# no video here\n")
    (base / "classes.txt").write_text("a\nb\n")
    write_video(base / "clip.avi", moving_frames(12, height=32, width=32))
    return files


def _scores(bad, tmp: Path) -> tuple[Path, Path]:
    """Two evaluated streams of the tiny RGB checkpoint (scores.pt), one with other videos."""
    out = tmp / "eval"
    assert main(["evaluate", str(bad["rgb"]), "--out", str(out), "--no-figures",
                 "--no-progress"]) == 0
    scores = torch.load(out / "scores.pt", weights_only=True)
    torch.save({**scores, "videos": [f"x{i}" for i in range(len(scores["videos"]))]},
               tmp / "other.pt")
    return out / "scores.pt", tmp / "other.pt"


def _streams(bad, tmp: Path) -> list[str]:
    """The score files of the tiny RGB and flow checkpoints evaluated (once per test)."""
    files = [tmp / "eval_rgb" / "scores.pt", tmp / "eval_flow" / "scores.pt"]
    for stream, path in zip(("rgb", "flow"), files, strict=True):
        if not path.exists():
            _done(tmp, "evaluate", str(bad[stream]), "--out", str(path.parent), "--no-figures")
    return [str(path) for path in files]


def _other_data(tmp: Path) -> Path:
    (tmp / "mine" / "videos").mkdir(parents=True)
    return tmp / "mine"


def _trained_run(bad, tmp: Path) -> Path:
    run = tmp / "run"
    assert main(["train", str(bad["base"] / "good.toml"), "--out", str(run), "--no-progress"]) == 0
    return run


def _done(tmp: Path, *argv: str) -> Path:
    """Run a command that must succeed (it leaves the output the next one must not replace);
    returns ``tmp``."""
    assert main([*argv, "--no-progress"] if argv[0] in ("evaluate", "train") else list(argv)) == 0
    return tmp


def _without_last(run: Path) -> Path:
    (run / "checkpoints" / "last.pt").unlink()
    return run


# (id, argv builder (bad files, tmp_path) -> argv, what the error line must contain)
CASES = [
    # train
    ("train: config file missing", lambda b, t: ["train", "nope.toml", "--out", str(t / "r")],
     "nope.toml"),
    ("train: TOML syntax", lambda b, t: ["train", str(b["base"] / "broken.toml"), "--out",
                                         str(t / "r")], "broken.toml: not valid TOML"),
    ("train: unknown key", lambda b, t: ["train", str(b["base"] / "unknown_key.toml"), "--out",
                                         str(t / "r")], "train.learning_rate"),
    ("train: N = 0 in the file", lambda b, t: ["train", str(b["base"] / "zero_segments.toml"),
                                               "--out", str(t / "r")], "data.num_segments"),
    ("train: bad --set value", lambda b, t: ["train", str(b["base"] / "good.toml"), "--set",
                                             "train.lr=-0.1", "--out", str(t / "r")],
     "--set train.lr=-0.1"),
    ("train: --set not key=value", lambda b, t: ["train", "--set", "train.lr", "--out",
                                                 str(t / "r")], "train.lr"),
    ("train: dataset folder missing", lambda b, t: ["train", str(b["base"] / "good.toml"),
                                                    "--set", "data.root=/nowhere/ucf", "--out",
                                                    str(t / "r")],
     "/nowhere/ucf: the dataset's root folder (data.root) does not exist"),
    ("train: split file names an unknown class", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", f"data.root={b['split_error']}",
        "--out", str(t / "r")], "trainlist01.txt:"),
    ("train: pretrained file missing", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "model.backbone=resnet18", "--set",
        "model.pretrained=/nowhere/resnet18.pth", "--out", str(t / "r")], "resnet18.pth"),
    ("train: pretrained file is junk", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "model.backbone=resnet18", "--set",
        f"model.pretrained={b['base'] / 'junk.pt'}", "--out", str(t / "r")], "junk.pt"),
    ("train: unreadable training video", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", f"data.root={b['corrupt']}", "--set",
        "data.workers=1", "--out", str(t / "r"), "--no-progress"], "cannot open video"),
    ("train: 10^7 segments", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "data.num_segments=10000000", "--out",
        str(t / "r")], "--set data.num_segments=10000000: must be >= 1 and <= 1000"),
    ("train: frames resized to 10^5", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "data.resize_short=100000", "--out",
        str(t / "r")], "--set data.resize_short=100000: must be >= 0 and <= 4096"),
    ("train: a batch beyond any memory", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "train.batch_size=4096", "--set",
        "data.num_segments=1000", "--set", "data.image_size=2048", "--set",
        "data.resize_short=2048", "--out", str(t / "r")],
     "train.batch_size = 4096, data.num_segments = 1000"),
    ("train: --resume without a run", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--resume", "--out", str(t / "empty")],
     "nothing to resume"),
    ("train: a run already there", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--out", str(_trained_run(b, t))],
     "pass --resume"),
    ("train: fp16 without CUDA", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "train.amp=fp16", "--set",
        "train.device=auto", "--out", str(t / "r")], "fp16"),
    ("train: resume auto on a run without last.pt", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--resume", "auto", "--out",
        str(_without_last(_trained_run(b, t)))], "nothing to resume from"),
    ("train: resume with another lr", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "train.lr=0.01", "--resume",
        "--out", str(_trained_run(b, t))], "train.lr: 0.001 -> 0.01"),
    # evaluate
    ("evaluate: checkpoint missing", lambda b, t: ["evaluate", str(t / "none.pt")], "none.pt"),
    ("evaluate: checkpoint is junk", lambda b, t: ["evaluate", str(b["base"] / "junk.pt")],
     "junk.pt: checkpoint cannot be loaded: it is not a file written by torch.save"),
    ("evaluate: pickled objects", lambda b, t: ["evaluate", str(b["base"] / "pickled.pt")],
     "pickled.pt: checkpoint cannot be loaded: it holds pickled Python objects"),
    ("evaluate: not a datp checkpoint", lambda b, t: ["evaluate", str(b["base"] / "foreign.pt")],
     "foreign.pt: not a datp checkpoint"),
    ("evaluate: --segments 0", lambda b, t: ["evaluate", str(b["rgb"]), "--segments", "0"],
     "--segments"),
    ("evaluate: --segments 10^7", lambda b, t: ["evaluate", str(b["rgb"]), "--segments",
                                                "10000000"], "--segments"),
    ("evaluate: unknown scheme", lambda b, t: ["evaluate", str(b["rgb"]), "--scheme", "p4"],
     "--scheme"),
    ("evaluate: scheme for another pooling", lambda b, t: ["evaluate", str(b["rgb"]),
                                                          "--scheme", "p3"], "scheme p3"),
    ("evaluate: data moved away", lambda b, t: ["evaluate", str(b["rgb"]), "--set",
                                                "data.root=/nowhere/data"], "/nowhere/data"),
    ("evaluate: bad --set key", lambda b, t: ["evaluate", str(b["rgb"]), "--set",
                                              "data.rooot=x"], "data.rooot"),
    ("evaluate: --out holds another evaluation", lambda b, t: [
        "evaluate", str(b["rgb"]), "--segments", "3", "--out",
        str(_done(t / "e", "evaluate", str(b["rgb"]), "--out", str(t / "e")))],
     "holds the report of another evaluation (segments 4 / 3)"),
    # fuse
    ("fuse: --out holds another fusion", lambda b, t: [
        "fuse", *_streams(b, t), "--weights", "1", "1", "--out",
        str(_done(t / "f", "fuse", *_streams(b, t), "--out", str(t / "f")))],
     "holds the report of another fusion"),
    ("fuse: the same file twice", lambda b, t: ["fuse", *[str(_scores(b, t)[0])] * 2],
     "given twice"),
    ("fuse: missing file", lambda b, t: ["fuse", str(t / "a.pt"), str(t / "b.pt")], "a.pt"),
    ("fuse: not a score file", lambda b, t: ["fuse", str(b["base"] / "junk.pt"),
                                             str(b["base"] / "foreign.pt")], "junk.pt"),
    ("fuse: other videos", lambda b, t: ["fuse", *map(str, _scores(b, t))], "other.pt"),
    ("fuse: a negative weight", lambda b, t: ["fuse", "a.pt", "b.pt", "--weights", "1", "-1"],
     "--weights"),
    ("fuse: weights for other streams", lambda b, t: ["fuse", "a.pt", "b.pt", "--weights", "1"],
     "--weights 1: 1 weight(s) for 2 stream(s)"),
    ("fuse: one stream only", lambda b, t: ["fuse", str(_scores(b, t)[0])], "at least two"),
    # synth
    ("synth: no split possible", lambda b, t: ["synth", str(t / "s"), "--videos-per-class", "4",
                                               "--clips-per-group", "4"], "--clips-per-group"),
    ("synth: OUT holds another benchmark", lambda b, t: [
        "synth", str(b["root"]), "--classes", "2", "--videos-per-class", "2",
        "--clips-per-group", "1", "--frames", "4", "--size", "16"],
     "holds a synthetic benchmark made with other settings (classes, frames"),
    ("synth: OUT holds other data", lambda b, t: [
        "synth", str(_other_data(t)), "--classes", "2", "--videos-per-class", "2",
        "--clips-per-group", "1", "--frames", "4", "--size", "16"],
     "datp synth did not write (videos)"),
    ("synth: bad --size", lambda b, t: ["synth", str(t / "s"), "--size", "64x"], "--size 64x"),
    ("synth: out is a file", lambda b, t: ["synth", str(b["base"] / "classes.txt"),
                                           "--classes", "2", "--videos-per-class", "2",
                                           "--clips-per-group", "1", "--frames", "4",
                                           "--size", "16"], "classes.txt: OUT is a file"),
    # flow
    ("flow: dataset folder missing", lambda b, t: ["flow", str(t / "none"), str(t / "out")],
     "none"),
    ("flow: bad --shard", lambda b, t: ["flow", str(b["root"] / "videos"), str(t / "out"),
                                        "--shard", "3/2"], "--shard"),
    ("flow: settings clash with the folder", lambda b, t: [
        "flow", str(b["root"] / "videos"), str(b["root"] / "flow"), "--backend", "dis",
        "--format", "compact", "--short-side", "32"], "other settings"),
    ("flow: --short-side too small", lambda b, t: ["flow", str(b["root"] / "videos"),
                                                   str(t / "out"), "--short-side", "8"],
     "short side"),
    ("flow: --short-side 10^5", lambda b, t: ["flow", str(b["root"] / "videos"),
                                              str(t / "out"), "--short-side", "100000"],
     "short side must lie in [16, 4096]"),
    # check
    ("check: dataset folder missing", lambda b, t: ["check", str(t / "none")], "none"),
    ("check: unknown format", lambda b, t: ["check", str(b["root"]), "--format", "ucf"],
     "--format ucf"),
    # predict
    ("predict: video missing", lambda b, t: ["predict", str(t / "no.mp4"), "--checkpoint",
                                             str(b["rgb"]), "--out", str(t)], "no.mp4"),
    ("predict: empty video file", lambda b, t: ["predict", str(b["base"] / "empty.mp4"),
                                                "--checkpoint", str(b["rgb"]), "--out", str(t)],
     "empty.mp4"),
    ("predict: checkpoint missing", lambda b, t: ["predict", str(b["base"] / "clip.avi"),
                                                  "--checkpoint", str(t / "c.pt")], "c.pt"),
    ("predict: a list without videos", lambda b, t: [
        "predict", str(b["base"] / "nothing.txt"), "--checkpoint", str(b["rgb"]), "--out",
        str(t)], "nothing.txt: no videos"),
    ("predict: other classes", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]), "--classes",
        str(b["base"] / "classes.txt")], "class list"),
    ("predict: two RGB streams", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]),
        "--flow-checkpoint", str(b["rgb"])], "flow checkpoint"),
    ("predict: zero fusion weights", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]),
        "--flow-checkpoint", str(b["flow"]), "--fusion-weights", "0", "0"], "--fusion-weights"),
    ("predict: --segments 10^7", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]), "--segments",
        "10000000"], "--segments"),
    ("predict: --flow-short-side 10^5", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]),
        "--flow-short-side", "100000"], "--flow-short-side"),
    ("predict: --peak-fraction 2", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]),
        "--peak-fraction", "2"], "--peak-fraction"),
    ("predict: --out holds another prediction", lambda b, t: [
        "predict", str(b["base"] / "clip.avi"), "--checkpoint", str(b["rgb"]), "--segments", "3",
        "--out", str(_done(t / "p", "predict", str(b["base"] / "clip.avi"), "--checkpoint",
                           str(b["rgb"]), "--out", str(t / "p")))],
     "clip.json holds another prediction"),
    ("predict: a batch of other settings", lambda b, t: [
        "predict", str(b["root"] / "videos"), "--checkpoint", str(b["rgb"]), "--top-k", "2",
        "--out", str(_done(t / "b", "predict", str(b["root"] / "videos"), "--checkpoint",
                           str(b["rgb"]), "--out", str(t / "b")))],
     "predictions.csv was predicted with other checkpoints or settings"),
    # features
    ("features: --weights of no such name", lambda b, t: [
        "features", str(b["root"] / "videos"), str(t / "f"), "--backbone", "resnet18",
        "--weights", "ResNet18_Weights.NOPE"], "--weights ResNet18_Weights.NOPE: torchvision"),
    ("features: --weights file missing", lambda b, t: [
        "features", str(b["root"] / "videos"), str(t / "f"), "--backbone", "resnet18",
        "--weights", str(t / "none.pth")], "or leave --weights empty for random parameters"),
    ("train: features with a conv aux net", lambda b, t: [
        "train", str(b["base"] / "good.toml"), "--set", "data.source=features", "--out",
        str(t / "r")], 'pooling.aux_input = "conv" reads a backbone'),
    # export
    ("export: the file of another checkpoint", lambda b, t: [
        "export", str(b["flow"]), "--format", "torchscript", "--out",
        str(_done(t / "x", "export", str(b["rgb"]), "--format", "torchscript", "--out",
                  str(t / "x" / "m.pt")) / "m.pt")], "m.pt exists, an export from"),
    ("export: checkpoint missing", lambda b, t: ["export", str(t / "c.pt")], "c.pt"),
    ("export: checkpoint is junk", lambda b, t: ["export", str(b["base"] / "junk.pt"),
                                                 "--format", "torchscript"], "junk.pt"),
    ("export: --segments 0", lambda b, t: ["export", str(b["rgb"]), "--segments", "0"],
     "--segments"),
    # demo
    ("demo: bad --set", lambda b, t: ["demo", "--tiny", "--out", str(t / "d"), "--set",
                                      "train.epochs=0"], "--set train.epochs=0"),
    ("demo: key fraction above 1", lambda b, t: ["demo", "--tiny", "--out", str(t / "d"),
                                                 "--key-fraction", "2"], "--key-fraction"),
    ("demo: key fraction 0", lambda b, t: ["demo", "--tiny", "--out", str(t / "d"),
                                           "--key-fraction", "0"], "--key-fraction"),
    ("demo: 0 epochs", lambda b, t: ["demo", "--tiny", "--out", str(t / "d"), "--epochs", "0"],
     "--epochs"),
]


@pytest.mark.parametrize(("name", "argv", "expected"), CASES, ids=[case[0] for case in CASES])
def test_a_user_mistake_is_one_line_with_exit_status_2(bad, tmp_path, capsys, name, argv,
                                                       expected):
    arguments = argv(bad, tmp_path)
    capsys.readouterr()
    if name in ARGPARSE:
        with pytest.raises(SystemExit) as exit_info:
            main(arguments)
        assert exit_info.value.code == 2
    else:
        assert main(arguments) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert expected in errors[0], errors[0]


ARGPARSE = {"evaluate: --segments 0", "evaluate: --segments 10^7", "predict: --segments 10^7",
            "predict: --flow-short-side 10^5",
            "evaluate: unknown scheme", "fuse: a negative weight",
            "predict: --peak-fraction 2", "export: --segments 0", "demo: key fraction above 1",
            "demo: key fraction 0", "demo: 0 epochs"}
"""Values refused by the option's own type or choices: argparse exits with status 2 itself."""


def test_argparse_refusals_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "x.pt", "--segments", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == ("error: datp evaluate: argument --segments: must be >= 1, got 0 (see datp "
                   "evaluate --help)\n")  # one line, like every other mistake: no usage first
    with pytest.raises(SystemExit):
        main(["features", "videos", "out", "--fps", "inf"])
    assert "argument --fps: must be a finite number > 0, got inf" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", "x.mp4", "--checkpoint", "x.pt", "--segments", "10000000"])
    # predict reads a video a chunk at a time: up to four hours at one segment per second
    assert "argument --segments: must be <= 14400, got 10000000" in capsys.readouterr().err


def test_verbose_shows_the_traceback_and_a_bug_keeps_it(tmp_path, capsys, monkeypatch):
    assert main(["-v", "evaluate", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" in err and last.startswith("error: ")
    assert "none.pt: checkpoint does not exist" in last

    def broken(args):
        raise ZeroDivisionError("a bug")

    from datp.commands import fuse

    monkeypatch.setattr(fuse, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["fuse", "a.pt", "b.pt"])


def test_a_disk_error_names_the_path(tmp_path, capsys):
    """An OSError (here: the report folder is a file) names the path and the reason."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    status = main(["synth", str(blocker / "sub"), "--classes", "2", "--videos-per-class", "2",
                   "--clips-per-group", "1", "--frames", "4", "--size", "16"])
    assert status == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "blocker" in line


def test_weights_by_name_offline_and_not_cached_is_one_line(bad, tmp_path, capsys, monkeypatch):
    import urllib.error

    def offline(url, destination, **kwargs):  # never the network, in tests
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert main(["train", str(bad["base"] / "good.toml"), "--set", "model.backbone=resnet18",
                 "--set", "model.pretrained=imagenet", "--out", str(tmp_path / "r")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert ("put the file from https://download.pytorch.org/models/resnet18-f37072fd.pth at "
            f"{cached}") in errors[0]
