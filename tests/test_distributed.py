"""DistributedDataParallel training with 2 CPU processes on the gloo backend."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from datp.distributed import DistributedContext, EpochShardSampler, process_device
from datp.run_state import load_checkpoint
from tests.engine.test_train import _setup


def test_shards_cover_the_epoch_once_and_resume_from_a_position():
    samplers = [EpochShardSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for sampler in samplers:
        sampler.set_epoch(2)
    shards = [list(s) for s in samplers]
    assert all(len(shard) == 4 for shard in shards)  # 10 padded to 12
    assert set(sum(shards, [])) == set(range(10))
    samplers[0].set_epoch(2, start=1)
    assert list(samplers[0]) == shards[0][1:] and len(samplers[0]) == 3
    other_epoch = EpochShardSampler(10, seed=3)
    other_epoch.set_epoch(3)
    this_epoch = EpochShardSampler(10, seed=3)
    this_epoch.set_epoch(2)
    assert list(other_epoch) != list(this_epoch)


def test_a_process_keeps_its_device_unless_torchrun_shares_cuda_among_processes():
    alone = DistributedContext()
    shared = DistributedContext(rank=1, world_size=2, local_rank=1)
    assert process_device(torch.device("cuda"), alone) == torch.device("cuda")
    assert process_device(torch.device("cpu"), shared) == torch.device("cpu")


def _worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from datp.engine.build import training_run
    from datp.engine.train import train

    config, data, model = _setup(["train.epochs=2", "train.batch_size=4"])
    train(training_run(config, run_dir, data=data, model=model))
    torch.save(model.state_dict(), os.path.join(run_dir, f"rank{rank}.pt"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_train_one_model(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    for key in rank0:
        torch.testing.assert_close(rank1[key], rank0[key])
        torch.testing.assert_close(saved["model"][key], rank0[key])
    untrained = _setup()[2].state_dict()
    assert any(not torch.equal(untrained[k], rank0[k]) for k in rank0)


class Holes(torch.utils.data.Dataset):
    """Test videos v0..v12 of which v1 and v9 cannot be read, and one named but not on disk."""

    def __init__(self, base) -> None:
        self.base = base
        self.missing = ["testlist01.txt:14: file test/v13.avi does not exist"]

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        from datp.data.dataset import SkippedVideo

        if i in (1, 9):
            return SkippedVideo(video=f"test/v{i}.avi", reason="cannot decode frame 3")
        return {**self.base[i], "video": f"test/v{i}.avi"}


def _evaluation(context, out_dir):
    """Evaluate 13 test videos (2 unreadable, 1 missing) in batches of 4, this process's shard."""
    from datp.data.dataset import collate_videos
    from datp.engine.evaluate import write_report
    from datp.engine.inference import collect_sharded, shard
    from tests.engine.test_train import ColourVideos

    torch.set_num_threads(1)
    _, _, model = _setup()
    dataset = Holes(ColourVideos(13, 1))
    loader = torch.utils.data.DataLoader(shard(dataset, context), batch_size=4,
                                         collate_fn=collate_videos)
    collected = collect_sharded(model, loader, torch.device("cpu"), "none", context)
    if context.is_main:
        write_report(collected, ["a", "b", "c"], out_dir, pool="probabilities")
    return collected


def _eval_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    from datp.distributed import init_distributed, shutdown

    context = init_distributed("cpu")
    collected = _evaluation(context, Path(out_dir) / "two")
    torch.save(collected.videos, Path(out_dir) / f"videos{rank}.pt")
    shutdown(context)


@pytest.mark.slow
def test_evaluation_sharded_over_two_processes_equals_one_process(tmp_path):
    from datp.distributed import DistributedContext

    mp.spawn(_eval_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    one = _evaluation(DistributedContext(), tmp_path / "one")
    for name in ("metrics.json", "per_class.csv", "confusion.csv", "skipped.txt"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    assert (tmp_path / "one" / "skipped.txt").read_text().splitlines() == [
        "testlist01.txt:14: file test/v13.avi does not exist",
        "test/v1.avi: cannot decode frame 3", "test/v9.avi: cannot decode frame 3"]
    two = torch.load(tmp_path / "two" / "scores.pt", weights_only=True)
    ones = torch.load(tmp_path / "one" / "scores.pt", weights_only=True)
    read = [f"test/v{i}.avi" for i in range(13) if i not in (1, 9)]
    assert two["videos"] == ones["videos"] == read
    for key, value in ones.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(two[key], value), key
        elif key in ("weights", "segment_scores", "times", "mixtures"):
            assert len(two[key]) == len(value) and all(map(torch.equal, two[key], value)), key
        else:
            assert two[key] == value, key
    # every process holds the gathered result
    assert torch.load(tmp_path / "videos1.pt") == one.videos


class OneUnreadable(torch.utils.data.Dataset):
    """Training videos of which the fourth cannot be read (skip_bad_videos)."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        from datp.data.dataset import SkippedVideo

        if i == 3:
            return SkippedVideo(video="train/v3.avi", reason="cannot decode frame 0")
        return self.base[i]


def _skip_worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from datp.data.build import DataBundle
    from datp.data.dataset import collate_videos
    from datp.engine.build import training_run
    from datp.engine.train import train

    config, data, model = _setup(["train.epochs=2", "train.batch_size=1",
                                  "data.skip_bad_videos=true"])
    data = DataBundle(train=OneUnreadable(torch.utils.data.Subset(data.train, range(8))),
                      test=torch.utils.data.Subset(data.test, range(7)), classes=data.classes,
                      collate=collate_videos)
    metrics = train(training_run(config, run_dir, data=data, model=model))
    torch.save({"model": model.state_dict(), "metrics": metrics},
               os.path.join(run_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_a_process_whose_batch_is_unreadable_steps_with_the_others(tmp_path):
    """Batches of one video: in each epoch one process meets the unreadable video while the
    other steps; it takes a blank step, no process waits for another, the models agree."""
    mp.spawn(_skip_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0["model"]:
        torch.testing.assert_close(rank1["model"][key], rank0["model"][key])
    assert rank0["metrics"] == rank1["metrics"] and rank0["metrics"]["videos"] == 7


def _checkpoint_worker(rank: int, world_size: int, port: int, checkpoint: str, out: str,
                       overrides: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import datp.engine.inference
    from datp.engine.build import evaluate_checkpoint

    forward_batch, seen = datp.engine.inference.forward_batch, []

    def counting(model, batch, *args, **kwargs):
        seen.extend(batch["video"])
        return forward_batch(model, batch, *args, **kwargs)

    datp.engine.inference.forward_batch = counting
    evaluate_checkpoint(Path(checkpoint), out_dir=Path(out), overrides=overrides)
    Path(out).mkdir(exist_ok=True, parents=True)  # rank 0 makes it when writing: maybe later
    torch.save(seen, Path(out) / f"seen{rank}.pt")


@pytest.mark.slow
def test_evaluate_checkpoint_on_two_processes_writes_the_one_process_report(tmp_path):
    """``datp evaluate`` under torchrun: 5 test videos (a sixth deleted, skipped) over 2 ranks."""
    from datp.config import load_config
    from datp.data.splits import read_ucf101
    from datp.data.synthetic import SynthConfig, generate
    from datp.engine.build import build_data_bundle, build_model, evaluate_checkpoint, training_run
    from datp.engine.train import train

    root = generate(SynthConfig(classes=3, videos_per_class=6, clips_per_group=2, frames=12,
                                height=32, width=32), tmp_path / "data")
    config = load_config(None, [f"data.root={root}", "model.backbone=small_cnn",
                                "model.partial_bn=false", "data.image_size=32",
                                "data.resize_short=32", "data.num_segments=3",
                                "data.test_segments=3", "data.workers=0", "train.epochs=1",
                                "train.batch_size=4", "train.device=cpu"])
    data = build_data_bundle(config)
    model = build_model(config, num_classes=3)
    train(training_run(config, tmp_path / "run", data=data, model=model))
    test = read_ucf101(root / "ucfTrainTestlist", split=1, subset="test").items
    (root / "videos" / test[4].path).unlink()
    assert len(test) - 1 == 5  # not a multiple of 2
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    overrides = ["data.skip_bad_videos=true"]
    torch.set_num_threads(1)
    one = evaluate_checkpoint(checkpoint, out_dir=tmp_path / "one", overrides=overrides)
    mp.spawn(_checkpoint_worker, args=(2, _free_port(), str(checkpoint), str(tmp_path / "two"),
                                       overrides), nprocs=2, join=True)
    assert one.metrics["videos"] == 5 and one.metrics["skipped_videos"] == 1
    shares = [torch.load(tmp_path / "two" / f"seen{r}.pt") for r in (0, 1)]
    assert shares[0] + shares[1] == one.collected.videos  # each video read once, by one rank
    _same_report(tmp_path / "one", tmp_path / "two")
    ones = torch.load(tmp_path / "one" / "scores.pt", weights_only=True)
    twos = torch.load(tmp_path / "two" / "scores.pt", weights_only=True)
    assert twos["videos"] == ones["videos"]
    for key in ("labels", "pooled", "log_probs"):
        assert torch.equal(twos[key], ones[key]), key


def _same_report(one: Path, two: Path) -> None:
    """The report files are identical, but for the date their protocol records."""
    for name in ("per_class.csv", "confusion.csv", "skipped.txt"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (one, two)]
    for record in metrics:
        record["protocol"].pop("date")
    assert metrics[1] == metrics[0]
