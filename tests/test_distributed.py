import os

import pytest
import torch
import torch.multiprocessing as mp

from memlib import distributed
from memlib.unitmem import UnitMemAccumulator


@pytest.mark.parametrize("n, world", [(10, 3), (3, 5), (0, 2), (7, 1), (100, 8)])
def test_shards_are_contiguous_disjoint_and_cover(n, world):
    shards = [distributed.shard_indices(n, r, world) for r in range(world)]
    assert [i for s in shards for i in s] == list(range(n))
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1


def test_shard_arguments_are_checked():
    with pytest.raises(ValueError, match="rank 2 / world_size 2"):
        distributed.shard_indices(10, 2, 2)
    with pytest.raises(ValueError, match="n"):
        distributed.shard_indices(-1, 0, 1)


def test_without_process_group_world_is_one():
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1 and distributed.is_main()
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    distributed.barrier()  # a no-op


def _accumulators(mu_NU, world):
    accs = []
    for r in range(world):
        ids = torch.tensor(list(distributed.shard_indices(len(mu_NU), r, world)))
        acc = UnitMemAccumulator(mu_NU.shape[1:])
        acc.add(mu_NU[ids], ids)
        accs.append(acc)
    return accs


def test_merge_of_states_equals_one_accumulator_with_ties():
    g = torch.Generator().manual_seed(0)
    mu = torch.randint(0, 4, (20, 5), generator=g).double()  # many ties for the max
    whole = _accumulators(mu, 1)[0]
    merged = distributed.merge_unitmem_states(a.state_dict() for a in reversed(_accumulators(mu, 4)))
    assert torch.equal(merged.argmax, whole.argmax) and torch.equal(merged.max, whole.max)
    torch.testing.assert_close(merged.scores(), whole.scores())
    with pytest.raises(ValueError, match="no UnitMem states"):
        distributed.merge_unitmem_states([])


def _worker(rank, world, init_file, mu, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        acc = _accumulators(mu, world)[rank]
        merged = distributed.all_reduce_unitmem(acc)
        names = distributed.all_gather_object(f"rank{distributed.get_rank()}")
        torch.save({"state": merged.state_dict(), "names": names}, f"{out_dir}/rank{rank}.pt")
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_two_gloo_processes_merge_exactly(tmp_path):
    g = torch.Generator().manual_seed(1)
    mu = torch.rand(11, 3, 4, generator=g).double()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), mu, str(tmp_path)), nprocs=2, join=True)
    whole = _accumulators(mu, 1)[0]
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["names"] == ["rank0", "rank1"]
        merged = UnitMemAccumulator.from_state_dict(got["state"])
        assert torch.equal(merged.argmax, whole.argmax) and merged.n == 11
        torch.testing.assert_close(merged.scores(), whole.scores(), rtol=1e-12, atol=1e-12)
