import pytest
import torch

from memlib.unitmem import UnitMemAccumulator, unitmem_dense


def _accumulate(mu_NS, ids=None, batch_size=None):
    n = mu_NS.shape[0]
    ids = torch.arange(n) if ids is None else ids
    acc = UnitMemAccumulator(mu_NS.shape[1:])
    batch_size = batch_size or n
    for start in range(0, n, batch_size):
        acc.add(mu_NS[start : start + batch_size], ids[start : start + batch_size])
    return acc


def test_hand_computed_three_images_two_units():
    # unit 0: images give 4, 1, 1 -> max 4, rest mean 1 -> (4-1)/(4+1) = 0.6
    # unit 1: images give 1, 3, 2 -> max 3, rest mean 1.5 -> 1.5/4.5 = 1/3 ; median of {1, 2} = 1.5 too
    mu = torch.tensor([[4.0, 1.0], [1.0, 3.0], [1.0, 2.0]])
    acc = _accumulate(mu)
    torch.testing.assert_close(acc.scores(), torch.tensor([0.6, 1 / 3], dtype=torch.float64))
    assert acc.argmax.tolist() == [0, 1]
    torch.testing.assert_close(unitmem_dense(mu, rest="median"), torch.tensor([0.6, 1 / 3], dtype=torch.float64))


def test_median_differs_from_mean_when_rest_is_skewed():
    mu = torch.tensor([[10.0], [1.0], [1.0], [7.0]])  # rest {1, 1, 7}: mean 3, median 1
    torch.testing.assert_close(unitmem_dense(mu, rest="mean"), torch.tensor([7 / 13], dtype=torch.float64))
    torch.testing.assert_close(unitmem_dense(mu, rest="median"), torch.tensor([9 / 11], dtype=torch.float64))


def test_scores_in_unit_interval_for_nonnegative_input():
    g = torch.Generator().manual_seed(0)
    mu = torch.rand(50, 3, 7, generator=g) ** 3
    scores = _accumulate(mu, batch_size=8).scores()
    assert scores.shape == (3, 7)
    assert (scores >= 0).all() and (scores <= 1).all()


def test_one_image_alone_drives_unit_gives_one_and_equal_gives_zero():
    mu = torch.zeros(6, 2)
    mu[4, 0] = 2.5  # unit 0 fires only for image 4
    mu[:, 1] = 0.7  # unit 1 fires equally for all images
    acc = _accumulate(mu)
    scores = acc.scores()
    assert scores[0] == pytest.approx(1.0)
    assert scores[1] == 0.0
    assert acc.argmax[0] == 4


def test_invariant_to_image_order_and_batch_size():
    g = torch.Generator().manual_seed(1)
    mu = torch.rand(37, 5, generator=g)
    mu[3, :] = mu[20, :]  # a tie for the max somewhere: smallest id must win either way
    mu[3, 2] = mu[20, 2] = 5.0
    ref = _accumulate(mu, batch_size=37)
    perm = torch.randperm(37, generator=g)
    for batch_size in (1, 4, 10):
        acc = _accumulate(mu[perm], ids=perm, batch_size=batch_size)
        torch.testing.assert_close(acc.scores(), ref.scores(), rtol=0, atol=1e-12)
        assert torch.equal(acc.argmax, ref.argmax)
    assert ref.argmax[2] == 3


def test_merge_of_shards_equals_one_pass_and_streaming_equals_dense():
    g = torch.Generator().manual_seed(2)
    mu = torch.rand(40, 2, 6, generator=g)
    one = _accumulate(mu, batch_size=7)
    ids = torch.arange(40)
    shard_a, shard_b = UnitMemAccumulator((2, 6)), UnitMemAccumulator((2, 6))
    shard_a.add(mu[ids % 2 == 0], ids[ids % 2 == 0])
    shard_b.add(mu[ids % 2 == 1], ids[ids % 2 == 1])
    merged = shard_b.merge(shard_a)
    assert merged.n == 40
    torch.testing.assert_close(merged.scores(), one.scores(), rtol=0, atol=1e-12)
    assert torch.equal(merged.argmax, one.argmax) and torch.equal(merged.max, one.max)
    torch.testing.assert_close(one.scores(), unitmem_dense(mu), rtol=0, atol=1e-12)


def test_state_dict_roundtrip_and_resume():
    g = torch.Generator().manual_seed(3)
    mu = torch.rand(10, 4, generator=g)
    acc = _accumulate(mu[:6])
    resumed = UnitMemAccumulator.from_state_dict(acc.state_dict())
    resumed.add(mu[6:], torch.arange(6, 10))
    torch.testing.assert_close(resumed.scores(), _accumulate(mu).scores(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        UnitMemAccumulator((5,)).load_state_dict(acc.state_dict())


def test_fewer_than_two_images_is_a_clear_error():
    acc = _accumulate(torch.ones(1, 3))
    with pytest.raises(ValueError, match="at least 2 images"):
        acc.scores()
    with pytest.raises(ValueError, match="at least 2 images"):
        unitmem_dense(torch.ones(1, 3))


def test_bad_input_is_rejected():
    acc = UnitMemAccumulator((3,))
    with pytest.raises(ValueError, match="unit shape"):
        acc.add(torch.ones(2, 4), torch.arange(2))
    acc.add(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([7]))
    inf = float("inf")
    for bad in ([[1.0, float("nan"), 0.0]], [[inf, 0.0, 0.0]], [[0.0, -inf, 0.0]], [[inf, 0.0, 0.0], [-inf, 0.0, 0.0]]):
        with pytest.raises(ValueError, match="NaN or inf"):
            acc.add(torch.tensor(bad), torch.arange(len(bad)))
    # a rejected batch leaves what was accumulated before untouched
    assert acc.n == 1 and acc.sum.tolist() == [1.0, 2.0, 3.0] and acc.argmax.tolist() == [7, 7, 7]
    with pytest.raises(ValueError, match="rest"):
        unitmem_dense(torch.ones(3, 2), rest="max")
