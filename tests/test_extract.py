"""The extraction attack (memlib/extract.py) on the toy bigram generator (tests/toy_generator.py)."""

import pytest
import torch
from toy_generator import ToyGenerator, chain_table

from memlib.extract import (
    AttackResult,
    TopPerClass,
    generate_from_prefix,
    merge_attack_results,
    run_attack,
    score_images,
    select_candidates,
)
from memlib.similarity import PixelSimilarity

V, L, NUM_CLASSES = 4, 16, 2  # toy: 8x8 images, 4x4 patch grid, 4 gray levels


def _memorized():
    """One sequence per class that the toy's bigram table can follow exactly: the orbit of a
    random start token under a random successor map, so every token has one successor."""
    g = torch.Generator().manual_seed(1)
    sequences = {}
    for c in range(NUM_CLASSES):
        successor = torch.randint(0, V, (V,), generator=g)
        seq = [int(torch.randint(0, V, (1,), generator=g))]
        while len(seq) < L:
            seq.append(int(successor[seq[-1]]))
        sequences[c] = torch.tensor(seq)
    return sequences


def _toy_and_data(n_random=10):
    memorized = _memorized()
    gen = ToyGenerator(chain_table({c: [s.tolist()] for c, s in memorized.items()}, NUM_CLASSES, V), image_size=8, grid=4)
    g = torch.Generator().manual_seed(2)
    tokens = [memorized[0], memorized[1]] + [torch.randint(0, V, (L,), generator=g) for _ in range(n_random)]
    labels = torch.tensor([0, 1] + [i % NUM_CLASSES for i in range(n_random)])
    return gen, torch.stack(tokens), labels


def _hand_scores(gen, tokens, labels, start, stop):
    """Loop-by-loop reference of stage A on the bigram table."""
    table = gen.transformer.logit_table.detach()
    scores = []
    for seq, label in zip(tokens.tolist(), labels.tolist()):
        hits = 0
        for l in range(start, stop):
            previous = V if l == 0 else seq[l - 1]
            hits += int(int(torch.argmax(table[label, previous])) == seq[l])
        scores.append(hits / (stop - start))
    return torch.tensor(scores, dtype=torch.float64)


def test_score_small_example_by_hand():
    gen = ToyGenerator(chain_table({0: [[0, 1, 2, 3]]}, 1, V), image_size=4, grid=2)  # L = 4
    tokens = torch.tensor([[0, 1, 2, 3], [0, 1, 3, 3]])
    labels = torch.zeros(2, dtype=torch.long)
    # second image: start->0 ok, 0->1 ok, after 1 the model says 2 (truth 3), after 3 it says 0 (truth 3)
    assert score_images(gen, tokens, labels).tolist() == [1.0, 0.5]
    assert score_images(gen, tokens, labels, span=(2, 4)).tolist() == [1.0, 0.0]
    assert score_images(gen, tokens, labels, span=(0, 2)).tolist() == [1.0, 1.0]


def test_score_matches_hand_computation_on_random_tokens():
    gen, tokens, labels = _toy_and_data()
    for span, (start, stop) in [(None, (0, L)), ((5, 16), (5, 16)), ((0, 1), (0, 1))]:
        expected = _hand_scores(gen, tokens, labels, start, stop)
        assert torch.equal(score_images(gen, tokens, labels, span=span, batch_size=5), expected)
    assert score_images(gen, tokens, labels)[:2].tolist() == [1.0, 1.0]  # the memorised ones


def test_score_rejects_bad_span_and_shapes():
    gen, tokens, labels = _toy_and_data()
    with pytest.raises(ValueError, match="span"):
        score_images(gen, tokens, labels, span=(4, 4))
    with pytest.raises(ValueError, match="tokens"):
        score_images(gen, tokens[:, :-1], labels)


def test_select_candidates_top_per_class_with_ties():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.5, 0.1, 0.9, 0.5])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2])
    # class 0: 1 (0.9), then the tie 0/2 at 0.5 -> lower index 0; class 1: 5, 3; class 2 has one image
    assert select_candidates(scores, labels, per_class=2).tolist() == [1, 0, 5, 3, 6]
    assert select_candidates(scores, labels, per_class=1).tolist() == [1, 5, 6]
    with pytest.raises(ValueError, match="per_class"):
        select_candidates(scores, labels, per_class=0)


@pytest.mark.parametrize("seed", range(6))
def test_streamed_top_per_class_equals_select_candidates_in_any_chunking_ties_included(seed):
    rng = torch.Generator().manual_seed(seed)
    n, per_class = 200, 3
    scores = torch.randint(0, 5, (n,), generator=rng).double() / 4  # five values: ties everywhere
    labels = torch.randint(0, 7, (n,), generator=rng)
    rows = torch.arange(n)[:, None].repeat(1, 3) * 10  # a payload that names its image
    chosen = select_candidates(scores, labels, per_class=per_class)
    cuts = sorted(torch.randperm(n - 1, generator=rng)[:9].add(1).tolist())
    top = TopPerClass(per_class)
    for start, stop in zip([0, *cuts], [*cuts, n]):
        top.add(torch.arange(start, stop), scores[start:stop], labels[start:stop], rows[start:stop])
        assert len(top.ids_C) <= per_class * 7  # never more than the candidates
    ids, got_labels, got_scores, got_rows = top.result()
    assert torch.equal(ids, chosen) and torch.equal(got_labels, labels[chosen]) and torch.equal(got_scores, scores[chosen])
    assert torch.equal(got_rows, rows[chosen])
    # sparse ids increasing with the position select the same images
    sparse = TopPerClass(per_class)
    sparse.add(torch.arange(n) * 5 + 3, scores, labels, rows)
    assert torch.equal(sparse.result()[0], chosen * 5 + 3)


def test_streamed_top_per_class_never_selects_an_unscored_image_and_checks_its_input():
    top = TopPerClass(2)
    top.add(torch.arange(4), torch.tensor([float("nan"), 0.2, float("nan"), 0.1], dtype=torch.float64),
            torch.tensor([0, 0, 1, 1]), torch.zeros(4, 2))
    assert top.result()[0].tolist() == [1, 3]
    with pytest.raises(ValueError, match="expected equal length"):
        top.add(torch.arange(3), torch.zeros(2, dtype=torch.float64), torch.zeros(3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="per_class"):
        TopPerClass(0)


def test_generate_with_full_prefix_reproduces_and_zero_prefix_follows_the_chain():
    gen, tokens, labels = _toy_and_data()
    assert torch.equal(generate_from_prefix(gen, tokens, labels, n_prefix=L, batch_size=4), tokens)
    from_label_only = generate_from_prefix(gen, tokens[:2], labels[:2], n_prefix=0)
    assert torch.equal(from_label_only, tokens[:2])  # the memorised sequences come back from nothing


def _attack(gen, tokens, labels, **kw):
    kw.setdefault("prefix_lengths", [0, 4, L])
    return run_attack(gen, tokens, labels, similarity=PixelSimilarity(), threshold=0.99, per_class=3,
                      batch_size=4, **kw)


def test_run_attack_extracts_memorised_and_full_prefix_copies():
    gen, tokens, labels = _toy_and_data()
    result = _attack(gen, tokens, labels)
    assert len(result.candidate_ids) == 6 and set(result.candidate_ids.tolist()) >= {0, 1}
    assert torch.equal(result.candidate_ids, select_candidates(score_images(gen, tokens, labels), labels, 3))
    full = result.prefix_lengths.index(L)
    assert torch.equal(result.similarity[full], torch.ones(6))  # a full prefix is the candidate itself
    assert result.extracted[full].all()
    zero = result.prefix_lengths.index(0)
    memorised = torch.isin(result.candidate_ids, torch.tensor([0, 1]))
    assert torch.equal(result.extracted[zero], memorised)  # only the memorised ones come back from nothing
    assert result.counts == {0: 2, 4: 2, L: 6}
    assert result.generated_tokens.shape == (3, 6, L)


def test_shards_of_candidates_merge_to_the_whole_attack():
    """As memlib.stages.stage_attack shards stages C-D: contiguous blocks of candidates, each
    attacked on its own and labelled with its positions; merged in any order they give the
    unsharded result."""
    gen, tokens, labels = _toy_and_data()
    whole = _attack(gen, tokens, labels)
    shards = []
    for block in torch.arange(len(whole.candidate_ids)).split(2):
        ids = whole.candidate_ids[block]
        part = _attack(gen, tokens[ids], labels[ids], candidates=torch.arange(len(ids)))
        part.candidate_ids, part.positions = ids, block
        part.candidate_scores, part.num_candidates_total = whole.candidate_scores[block], len(whole.candidate_ids)
        shards.append(part)
    assert len(shards) == 3
    merged = merge_attack_results([shards[2], shards[0], shards[1]])
    for key, value in whole.to_dict().items():
        other = merged.to_dict()[key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key
    with pytest.raises(ValueError, match="exactly once"):
        merge_attack_results(shards[:2])


def test_candidates_path_regenerates_the_same_candidates():
    gen, tokens, labels = _toy_and_data()
    first = _attack(gen, tokens, labels)
    again = _attack(gen, tokens, labels, candidates=first.candidate_ids)
    assert torch.equal(again.candidate_ids, first.candidate_ids)
    assert torch.equal(again.similarity, first.similarity)
    assert torch.equal(again.generated_tokens, first.generated_tokens)
    assert torch.equal(again.candidate_scores, first.candidate_scores)
    # an edit that breaks the memorised chain shows up on the same candidates
    with torch.no_grad():
        gen.transformer.logit_table.zero_()
    edited = _attack(gen, tokens, labels, candidates=first.candidate_ids)
    assert torch.equal(edited.candidate_ids, first.candidate_ids)
    assert edited.counts[0] < first.counts[0]


def test_attack_result_round_trip_through_torch_save(tmp_path):
    gen, tokens, labels = _toy_and_data()
    result = _attack(gen, tokens, labels, meta={"model": "toy"})
    torch.save(result.to_dict(), tmp_path / "attack.pt")
    back = AttackResult.from_dict(torch.load(tmp_path / "attack.pt", weights_only=True))
    assert back.counts == result.counts and back.meta == {"model": "toy"}
    assert torch.equal(back.extracted, result.extracted) and back.span == result.span


def test_invalid_prefix_fails_early_and_training_mode_is_restored():
    gen, tokens, labels = _toy_and_data()
    with pytest.raises(ValueError, match="prefix_lengths"):
        _attack(gen, tokens, labels, prefix_lengths=[L + 1])
    gen.transformer.train()
    gen.tokenizer.eval()
    _attack(gen, tokens, labels, prefix_lengths=[0])
    assert gen.transformer.training and not gen.tokenizer.training
