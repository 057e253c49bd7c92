"""DistributedDataParallel training with 2 CPU processes on the gloo backend."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from datp.checkpoint import load_checkpoint
from datp.distributed import EpochShardSampler
from tests.test_train import _setup


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


def _worker(rank: int, world_size: int, port: int, run_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from datp.train import train

    config, data, model = _setup(["train.epochs=2", "train.batch_size=4"])
    train(config, run_dir=run_dir, data=data, model=model)
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
