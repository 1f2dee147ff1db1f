import pytest
import torch
from toy_pipeline import SPECIAL_CLASS, WIRED, ToyVAR, collect_unitmem, dense_means, same_views, shifting_views, toy_dataset

from memlib import collect
from memlib.collect import UnitMemResult, accumulate_unitmem
from memlib.distributed import merge_unitmem_states
from memlib.unitmem import unitmem_dense

SPECIAL = 5


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return ToyVAR()


@pytest.fixture(scope="module")
def dataset():
    return toy_dataset(n=12, special=SPECIAL)


def test_wired_unit_ranks_first_with_score_near_one(gen, dataset):
    result = collect_unitmem(gen, dataset, n_views=2, views=same_views, pooled=True, batch_size=8)
    assert result.n_images == 12 and result.group_names == ["scale0", "scale1", "scale2", "all"]
    assert result.scores_GKU.shape == (4, 3, 6) and result.scores_GKU.dtype == torch.float64
    block, unit = WIRED
    for how in ("mean", "max", "pooled"):
        scores_KU = result.selection_scores(how)
        assert scores_KU.shape == (3, 6)
        assert divmod(int(scores_KU.argmax()), 6) == WIRED, how
        assert float(scores_KU[block, unit]) > 0.999
        others = scores_KU.flatten()[torch.arange(18) != block * 6 + unit]
        assert float(others.max()) < 0.99
    assert (result.argmax_GKU[:, block, unit] == SPECIAL).all()
    assert int(dataset[SPECIAL][1]) == SPECIAL_CLASS


@pytest.mark.parametrize("chunk_bytes", [4 << 20, 3 * 16 * 6 * 4, 1])
def test_hooked_collection_equals_dense_computation(gen, dataset, chunk_bytes, monkeypatch):
    """Also with the CPU hook's rows split into chunks: one chunk per batch of 5 rows (the
    default), 3 + 2 rows (a remainder chunk), one row at a time."""
    monkeypatch.setattr(collect, "CPU_CHUNK_BYTES", chunk_bytes)
    seed = 3
    result = collect_unitmem(gen, dataset, n_views=4, views=shifting_views, seed=seed, batch_size=5)
    mu_NGKU = dense_means(gen, dataset, 4, shifting_views, seed)
    torch.testing.assert_close(result.scores_GKU, unitmem_dense(mu_NGKU), rtol=1e-6, atol=1e-9)
    assert torch.equal(result.argmax_GKU, mu_NGKU.max(dim=0).indices)
    # the views matter: with the identity view the means differ
    plain = dense_means(gen, dataset, 4, same_views, seed)
    assert not torch.allclose(plain, mu_NGKU)


def test_pre_activation_option(gen, dataset):
    post = collect_unitmem(gen, dataset, n_views=1, activation="post")
    pre = collect_unitmem(gen, dataset, n_views=1, activation="pre")
    dense_pre = unitmem_dense(dense_means(gen, dataset, 1, same_views, 0, activation="pre"))
    torch.testing.assert_close(pre.scores_GKU, dense_pre, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(pre.scores_GKU, post.scores_GKU)
    assert pre.params["activation"] == "pre"
    with pytest.raises(ValueError, match="activation"):
        collect_unitmem(gen, dataset, n_views=1, activation="relu")


def test_selection_scores_are_mean_max_and_pooled_group(gen, dataset):
    result = collect_unitmem(gen, dataset, n_views=1, pooled=True)
    per_scale = result.scores_GKU[:3]
    torch.testing.assert_close(result.selection_scores(), per_scale.mean(0))
    torch.testing.assert_close(result.selection_scores("max"), per_scale.max(0).values)
    torch.testing.assert_close(result.selection_scores("pooled"), result.scores_GKU[3])
    with pytest.raises(ValueError, match="expected one of"):
        result.selection_scores("last")
    unpooled = collect_unitmem(gen, dataset, n_views=1)
    with pytest.raises(ValueError, match="pooled=True"):
        unpooled.selection_scores("pooled")
    torch.testing.assert_close(unpooled.selection_scores("mean-from-s1"), unpooled.scores_GKU[1:].mean(0))
    mean_activation_GKU = unpooled.state["sum"] / unpooled.n_images
    torch.testing.assert_close(unpooled.selection_scores(statistic="magnitude"), mean_activation_GKU.mean(0))
    torch.testing.assert_close(unpooled.selection_scores("max", statistic="magnitude"), mean_activation_GKU.max(0).values)
    with pytest.raises(ValueError, match="statistic"):
        unpooled.selection_scores(statistic="size")
    rar = UnitMemResult(unpooled.state, ["all", "last", "predicts-last"], unpooled.fc1_names, "rar")
    torch.testing.assert_close(rar.selection_scores(), rar.scores_GKU[2])  # the default reading: T-2
    torch.testing.assert_close(rar.selection_scores("last"), rar.scores_GKU[1])
    torch.testing.assert_close(rar.selection_scores("all"), rar.scores_GKU[0])
    torch.testing.assert_close(rar.selection_scores("last", statistic="magnitude"), mean_activation_GKU[1])


def test_shards_merge_exactly_and_do_not_depend_on_batching(gen, dataset):
    whole = collect_unitmem(gen, dataset, n_views=3, views=shifting_views, batch_size=9)
    shards = [collect_unitmem(gen, dataset, n_views=3, views=shifting_views, batch_size=4, shard=(r, 3)) for r in range(3)]
    assert sum(s.n_images for s in shards) == 12
    merged = merge_unitmem_states(s.state for s in shards)
    torch.testing.assert_close(merged.scores(), whole.scores_GKU, rtol=1e-12, atol=1e-12)
    assert torch.equal(merged.max, whole.state["max"]) and torch.equal(merged.argmax, whole.argmax_GKU)
    # the record round trip keeps everything
    tensors, meta = whole.to_record()
    again = UnitMemResult.from_record(tensors, meta)
    assert torch.equal(again.scores_GKU, whole.scores_GKU) and again.group_names == whole.group_names


def test_non_finite_activation_names_the_block(dataset):
    broken = ToyVAR()
    with torch.no_grad():
        broken.transformer.blocks[1].ffn.fc1.weight[2, 0] = float("nan")
    with pytest.raises(ValueError, match=r"blocks\.1\.ffn\.act"):
        accumulate_unitmem(broken, dataset, range(4), n_views=1, views=same_views)
    # hooks are gone after the error, and the mode was restored
    assert all(not m._forward_hooks for m in broken.transformer.modules())
    assert broken.transformer.training
