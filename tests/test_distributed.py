import pytest
import torch

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
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1
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
