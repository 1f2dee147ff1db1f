import json

import pandas as pd
import pytest
import torch
from toy_pipeline import ToyVAR, toy_dataset

from memlib.extract import run_attack
from memlib.results import to_jsonable
from memlib.similarity import PixelSimilarity
from memlib.sweep import MODES, run_sweep, sweep_identity, sweep_plan, sweep_table

PREFIXES = [0, 1, 5]


@pytest.fixture(scope="module")
def setup():
    gen = ToyVAR(seed=1)
    data = toy_dataset(n=16, seed=2)
    images, labels = data.tensors
    tokens = gen.images_to_tokens(images)
    kwargs = dict(similarity=PixelSimilarity(), threshold=0.55, prefix_lengths=PREFIXES, per_class=3)
    baseline = run_attack(gen, tokens, labels, **kwargs)
    scores_KU = torch.rand(3, 6, generator=torch.Generator().manual_seed(0))
    magnitude_KU = torch.rand(3, 6, generator=torch.Generator().manual_seed(1))
    return gen, tokens, labels, kwargs, baseline, {"unitmem": scores_KU, "magnitude": magnitude_KU}


def _attack(setup, calls):
    gen, tokens, labels, kwargs, baseline, _ = setup

    def attack(edited, prefix_lengths):
        calls.append(torch.cat([p.detach().flatten() for p in edited.transformer.parameters()]).clone())
        return run_attack(edited, tokens, labels, candidates=baseline.candidate_ids, **{**kwargs, "prefix_lengths": prefix_lengths})

    return attack


def test_rows_away_from_the_reported_k_attack_at_the_reported_prefix_only_and_count_as_at_every_prefix(setup, tmp_path):
    gen, _, _, _, _, scores = setup
    kwargs = dict(k_percents=[0, 10, 50], modes=["unitmem-half", "random-half"], seeds=[0, 1, 2], prefix_lengths=PREFIXES)
    every = run_sweep(gen, scores, _attack(setup, []), tmp_path / "all", "id-all", **kwargs)
    reduced = run_sweep(gen, scores, _attack(setup, []), tmp_path / "reported", "id-rep", reported=(10, 5), **kwargs)
    assert len(reduced) == len(every)
    for (_, full), (_, row) in zip(every.iterrows(), reduced.iterrows()):
        assert (row["mode"], row.k_percent, row.seed) == (full["mode"], full.k_percent, full.seed)
        attacked = PREFIXES if row.k_percent in (0, 10) else [5]
        assert row.prefix_lengths == attacked and sorted(row.extracted_ids) == sorted(str(n) for n in attacked)
        for n in PREFIXES:  # the same greedy decoding at n whichever other prefixes run beside it
            if n in attacked:
                assert row[f"extracted@{n}"] == full[f"extracted@{n}"]
                assert row.extracted_ids[str(n)] == full.extracted_ids[str(n)]
            else:
                assert pd.isna(row[f"extracted@{n}"])
    stored = json.loads(json.dumps(to_jsonable(reduced.to_dict(orient="records"))))  # as the sweep's result holds it
    again = sweep_table(stored, kwargs["modes"])
    assert all(pd.api.types.is_numeric_dtype(again[f"extracted@{n}"]) for n in PREFIXES)
    assert again.drop(columns="seconds").equals(reduced.drop(columns="seconds"))
    with pytest.raises(ValueError, match=r"reported_prefix: got 3; expected one of the prefix_lengths \[0, 1, 5\]"):
        run_sweep(gen, scores, _attack(setup, []), tmp_path / "bad", "id-bad", reported=(10, 3), **kwargs)
    assert not (tmp_path / "bad").exists()  # refused before any row is computed


def test_k0_row_equals_baseline_and_edits_are_applied_then_restored(setup, tmp_path):
    gen, _, _, _, baseline, scores = setup
    before = [p.detach().clone() for p in gen.transformer.parameters()]
    calls = []
    table = run_sweep(gen, scores, _attack(setup, calls), tmp_path, "id-1", k_percents=[0, 10, 50], modes=list(MODES), seeds=[0, 1, 2], prefix_lengths=PREFIXES)
    assert all(torch.equal(a, b) for a, b in zip(before, gen.transformer.parameters()))  # restored bit-exactly
    # one baseline, then 4 modes x 2 k + random 3 seeds x 2 k
    assert len(calls) == 1 + 4 * 2 + 3 * 2
    assert torch.equal(calls[0], torch.cat([p.flatten() for p in before]))  # k = 0 edits nothing
    assert all(not torch.equal(c, calls[0]) for c in calls[1:])  # every k > 0 row ran on an edited model

    assert 0 < baseline.counts[5] < len(baseline.candidate_ids)  # the comparison below is not vacuous
    k0 = table[table.k_percent == 0]
    assert len(k0) == 1 + 3 + 1 + 1 + 1  # one per mode and random seed
    for _, row in k0.iterrows():
        assert row.units_edited == 0
        for n in PREFIXES:
            assert row[f"extracted@{n}"] == baseline.counts[n]
            assert row.extracted_ids[str(n)] == baseline.candidate_ids[baseline.extracted[PREFIXES.index(n)]].tolist()
    row = table[(table["mode"] == "unitmem-half") & (table.k_percent == 10)].iloc[0]
    assert row.units_edited == 2 and row.factor == 0.5  # 10% of 18 units, rounded half up
    assert set(table[table["mode"] == "random-half"].seed) == {0, 1, 2}
    assert table.fid.isna().all()
    # what the sweep stage stores (JSON, keys sorted) reads back as the same table
    stored = json.loads(json.dumps(to_jsonable(table.to_dict(orient="records")), sort_keys=True))
    again = sweep_table(stored, list(MODES))
    assert list(again.columns[:5]) == ["mode", "k_percent", "seed", "factor", "units_edited"]
    pd.testing.assert_frame_equal(again[list(table.columns)], table)


def test_rerun_skips_finished_rows_and_other_identity_recomputes(setup, tmp_path):
    gen, *_, scores = setup
    scores_KU = {"unitmem": scores["unitmem"]}
    first = []
    table = run_sweep(gen, scores_KU, _attack(setup, first), tmp_path, "id-A", k_percents=[0, 20], modes=["unitmem-half"], seeds=[0, 1, 2], prefix_lengths=PREFIXES)
    (tmp_path / "rows" / "unitmem-half_k20_s0.json").unlink()  # as if killed before this row finished
    second = []
    again = run_sweep(gen, scores_KU, _attack(setup, second), tmp_path, "id-A", k_percents=[0, 20], modes=["unitmem-half"], seeds=[0, 1, 2], prefix_lengths=PREFIXES)
    assert len(first) == 2 and len(second) == 1
    assert table.drop(columns="seconds").equals(again.drop(columns="seconds"))
    third = []
    run_sweep(gen, scores_KU, _attack(setup, third), tmp_path, "id-B", k_percents=[0, 20], modes=["unitmem-half"], seeds=[0, 1, 2], prefix_lengths=PREFIXES)
    assert len(third) == 2


def test_identity_depends_on_scores_candidates_and_settings():
    unitmem = torch.rand(3, 6, generator=torch.Generator().manual_seed(3))
    scores = {"unitmem": unitmem, "magnitude": unitmem.flip(1)}
    a = sweep_identity(scores, torch.arange(4), {"threshold": 0.75})
    assert a == sweep_identity({k: v.clone() for k, v in scores.items()}, torch.arange(4), {"threshold": 0.75})
    assert a != sweep_identity(scores, torch.arange(4), {"threshold": 0.8})
    assert a != sweep_identity(scores, torch.arange(5), {"threshold": 0.75})
    assert a != sweep_identity({**scores, "unitmem": unitmem * 2}, torch.arange(4), {"threshold": 0.75})
    assert a != sweep_identity({**scores, "magnitude": unitmem}, torch.arange(4), {"threshold": 0.75})


def test_magnitude_mode_ranks_by_the_magnitude_scores(setup, tmp_path):
    gen, *_, scores = setup

    def edited_rows(scores_for_sweep, mode, folder):
        calls = []
        run_sweep(gen, scores_for_sweep, _attack(setup, calls), tmp_path / folder, folder, k_percents=[50], modes=[mode], seeds=[0, 1, 2], prefix_lengths=PREFIXES)
        return calls[-1]

    by_unitmem = edited_rows(scores, "unitmem-half", "u")
    by_magnitude = edited_rows(scores, "magnitude-half", "m")
    assert not torch.equal(by_unitmem, by_magnitude)  # the two statistics rank differently here
    same = edited_rows({"unitmem": scores["unitmem"], "magnitude": scores["unitmem"]}, "magnitude-half", "s")
    assert torch.equal(same, by_unitmem)  # with equal scores the two modes make the same edit
    with pytest.raises(ValueError, match="ranks by 'magnitude'"):
        run_sweep(gen, {"unitmem": scores["unitmem"]}, _attack(setup, []), tmp_path / "x", "x", k_percents=[5], modes=["magnitude-half"], seeds=[0, 1, 2], prefix_lengths=PREFIXES)


def test_plan_checks_modes_and_seeds():
    plan = sweep_plan([0, 5], ["unitmem-zero", "random-half"], [4, 5, 6])
    assert plan == [("baseline", 0, 0), ("unitmem-zero", 5, 0), ("random-half", 5, 4), ("random-half", 5, 5), ("random-half", 5, 6)]
    with pytest.raises(ValueError, match="random_seeds"):
        sweep_plan([5], ["random-half"], [0, 1])
    with pytest.raises(ValueError, match="unknown"):
        sweep_plan([5], ["halve"], [0, 1, 2])


def test_fid_function_fills_fid_columns(setup, tmp_path):
    gen, *_, scores_KU = setup
    def fid(g):  # two "sampling seeds": the fc1 weight mass and 1 more
        mass = float(g.transformer.blocks[0].ffn.fc1.weight.detach().abs().sum())
        return [mass, mass + 1.0], "toy-metric"

    table = run_sweep(gen, scores_KU, _attack(setup, []), tmp_path, "id-F", k_percents=[0, 50],
                      modes=["unitmem-zero", "random-half"], seeds=[0, 1, 2], prefix_lengths=PREFIXES, fid=fid,
                      fid_modes=["unitmem-zero"])
    zero = table[table["mode"] == "unitmem-zero"]
    assert list(zero.fid_metric) == ["toy-metric"] * 2
    assert zero.fid.iloc[1] < zero.fid.iloc[0]  # zeroing rows lowers the toy metric
    assert zero.fid.iloc[0] == pytest.approx(sum(zero.fid_by_seed.iloc[0]) / 2)  # the mean over seeds
    random_rows = table[(table["mode"] == "random-half") & (table.k_percent > 0)]
    assert random_rows.fid.isna().all()  # not among fid_modes: no FID computed
