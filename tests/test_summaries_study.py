"""The testbed study's read-outs (memlib/summaries.py, second part) against closed-form oracles and built cases."""

import numpy as np
import pytest

from memlib import summaries
from memlib.summaries import CANNOT_TELL, DOES_NOT_HOLD, HOLDS, Estimate


def test_verdict_reads_the_interval_against_the_claimed_direction():
    assert summaries.verdict(Estimate(2, 0.5, 3, "")) == HOLDS
    assert summaries.verdict(Estimate(1, -0.5, 3, "")) == CANNOT_TELL
    assert summaries.verdict(Estimate(0, 0, 0, "")) == DOES_NOT_HOLD  # no effect at all
    assert summaries.verdict(Estimate(-2, -3, -1, "")) == DOES_NOT_HOLD
    assert summaries.verdict(Estimate(-2, -3, -1, ""), "negative") == HOLDS
    assert summaries.verdict(Estimate(2, 1, 3, ""), "negative") == DOES_NOT_HOLD
    with pytest.raises(ValueError, match="claimed"):
        summaries.verdict(Estimate(0, 0, 0, ""), "up")


def test_wilson_and_t_intervals_match_known_values():
    half = summaries.wilson(5, 10)
    assert (half.value, round(half.lo, 4), round(half.hi, 4)) == (0.5, 0.2366, 0.7634)
    none = summaries.wilson(0, 10)
    assert none.lo == 0 and round(none.hi, 4) == 0.2775
    t = summaries.mean_t_interval([1.0, 2.0, 3.0])
    assert t.value == 2 and t.hi - t.value == pytest.approx(4.302652729911275 / np.sqrt(3))
    with pytest.raises(ValueError, match="at least 2"):
        summaries.mean_t_interval([1.0])


def test_paired_bootstrap_is_exact_for_constant_differences_and_seeded():
    assert summaries.paired_bootstrap_sum(np.ones(7)).text() == "7.00 [7.00, 7.00]"
    diff = np.array([1, 0, 0, 1, -1, 1, 0, 0])
    assert summaries.paired_bootstrap_sum(diff, seed=3) == summaries.paired_bootstrap_sum(diff, seed=3)
    est = summaries.paired_bootstrap_sum(diff, seed=3)
    assert est.value == 2 and est.lo < 2 < est.hi


GROUPS = {"control": np.array([0, 1, 2, 3]), "2x": np.array([10, 11]), "32x": np.array([20, 21, 22, 23])}


def test_extraction_by_group_and_dose_response():
    rows = summaries.extraction_by_group([20, 21, 22, 23, 10, 99], GROUPS)
    assert [(r["group"], r["images"], r["extracted"]) for r in rows] == [("control", 4, 0), ("2x", 2, 1), ("32x", 4, 4)]
    effect, word = summaries.dose_response([20, 21, 22, 23], GROUPS)
    assert effect.value == 1 and word == HOLDS
    effect, word = summaries.dose_response([0, 20], GROUPS)
    assert effect.value == 0 and word == CANNOT_TELL  # 1 of 4 against 1 of 4: inside the noise


def test_top_units_and_argmax_share_against_base_rate():
    scores_KU = np.array([[0.9, 0.1, 0.8], [0.7, 0.2, 0.3]])
    assert summaries.top_units_mask(scores_KU, 50).tolist() == [[True, False, True], [True, False, False]]
    argmax_KU = np.array([[20, 5, 21], [0, 6, 7]])
    images = np.arange(40)  # the 4 images of 32x are 10% of the images UnitMem ran on
    rows = {r["group"]: r for r in summaries.argmax_share_by_group(scores_KU, argmax_KU, 50, GROUPS, images)}
    assert rows["32x"]["share"] == pytest.approx(2 / 3) and rows["32x"]["base_rate"] == pytest.approx(0.1)
    assert rows["32x"]["enrichment"] == pytest.approx(20 / 3)
    assert rows["control"]["share"] == pytest.approx(1 / 3) and rows["2x"]["share"] == 0


def test_image_scores_and_auc():
    scores_KU = np.array([[0.9, 0.1], [0.5, 0.4]])
    argmax_KU = np.array([[3, 3], [1, 7]])
    assert summaries.image_scores(scores_KU, argmax_KU, np.array([1, 3, 5])).tolist() == [0.5, 0.9, 0.0]
    assert summaries.auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert summaries.auc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    images = np.arange(30)
    score = np.where(np.isin(images, GROUPS["32x"]), 1.0, 0.0) + 0.01 * images  # 32x separated, control not
    ordinary = np.setdiff1d(images, np.concatenate(list(GROUPS.values())))
    rows = {r["group"]: r for r in summaries.auc_by_group(score, images, GROUPS, ordinary, n_boot=200)}
    assert rows["32x"]["auc"] == 1.0 and rows["32x"]["verdict"] == HOLDS
    assert rows["control"]["auc"] < 0.5 and rows["control"]["verdict"] == DOES_NOT_HOLD


def test_mitigation_comparisons():
    assert summaries.extracted_by_group([20, 21, 0, 99], GROUPS) == {"control": 1, "2x": 0, "32x": 2, "all": 4}
    assert summaries.edit_vs_control(2, [5, 6, 7])[1] == HOLDS
    assert summaries.edit_vs_control(6, [5, 6, 7])[1] == CANNOT_TELL
    assert summaries.edit_vs_control(8, [5, 6, 7])[1] == DOES_NOT_HOLD
    effect, word = summaries.reduction([1, 2, 3, 4, 5, 6], [], range(10))
    assert effect.value == 6 and word == HOLDS
    assert summaries.reduction([1, 2], [1, 2], range(10))[1] == DOES_NOT_HOLD  # the same images: no change
    rose, word = summaries.fid_change([10.0, 11.0, 12.0], [11.0, 12.1, 12.9])
    assert rose.value == pytest.approx(1.0) and word == HOLDS
    assert summaries.fid_change([10.0, 11.0, 12.0], [11.0, 10.0, 12.0])[1] == CANNOT_TELL
    with pytest.raises(ValueError, match="same seeds"):
        summaries.fid_change([1.0, 2.0], [1.0])


def test_depth_shift_and_later_blocks():
    S, K, U = 4, 6, 50
    rng = np.random.default_rng(0)
    shifting_SKU = rng.uniform(0, 0.1, (S, K, U))
    for s in range(S):
        shifting_SKU[s, s + 1] += 1.0  # the peak moves one block deeper per scale
    slope, word, com = summaries.depth_shift_over_scales(shifting_SKU, n_boot=200)
    assert slope.value > 0.5 and word == HOLDS and np.all(np.diff(com) > 0)
    flat_SKU = rng.uniform(0, 1, (S, K, U))
    assert summaries.depth_shift_over_scales(flat_SKU, n_boot=200)[1] in (CANNOT_TELL, DOES_NOT_HOLD)
    later_KU = np.zeros((K, U))
    later_KU[4:] = rng.uniform(0.5, 1, (2, U))
    assert summaries.later_blocks_share(later_KU, 10)[1] == HOLDS
    assert summaries.later_blocks_share(later_KU[::-1], 10)[1] == DOES_NOT_HOLD
    assert summaries.centre_of_mass(np.array([0, 0, 1.0])) == 2.0


def test_shared_top_units_and_per_block_share():
    a = np.array([[0.9, 0.1], [0.8, 0.2]])
    b = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert summaries.shared_top_units(a, a, 50) == 1.0
    assert summaries.shared_top_units(a, b, 50) == 0.5
    assert summaries.top_units_per_block(b, 50).tolist() == [0.5, 0.5]
    assert summaries.top_units_per_block(np.array([[0.9, 0.8], [0.1, 0.2]]), 50).tolist() == [1.0, 0.0]


def test_localization_by_group_finds_planted_argmax_and_separates_them():
    rng = np.random.default_rng(1)
    images = np.arange(40)
    S, K, U = 2, 3, 20
    scores_SKU = rng.uniform(0, 0.5, (S, K, U))
    argmax_SKU = rng.integers(0, 40, (S, K, U))
    argmax_SKU[:, 0, :4] = [20, 21, 22, 23]  # the strongest units point at the 32x images
    scores_SKU[:, 0, :4] = 0.95
    shares, aucs = summaries.localization_by_group(scores_SKU, argmax_SKU, 10, GROUPS, images)
    top = {r["group"]: r for r in shares}["32x"]
    assert top["base_rate"] == pytest.approx(0.1) and top["share"] > 0.6 and top["verdict"] == HOLDS
    assert {r["group"]: r for r in aucs}["32x"]["auc"] == 1.0


@pytest.mark.parametrize("successes, trials", [(0, 10), (10, 10), (0, 7), (7, 7), (3, 9)])
def test_wilson_interval_contains_its_point(successes, trials):
    est = summaries.wilson(successes, trials)
    assert est.lo <= est.value <= est.hi and 0 <= est.lo and est.hi <= 1


def test_localization_sentence_reads_the_verdicts_of_the_tables():
    import pandas as pd

    rng = np.random.default_rng(1)
    images = np.arange(40)
    scores_SKU, argmax_SKU = rng.uniform(0, 0.5, (1, 3, 20)), rng.integers(0, 40, (1, 3, 20))
    argmax_SKU[:, 0, :4], scores_SKU[:, 0, :4] = [20, 21, 22, 23], 0.95
    shares, aucs = summaries.localization_by_group(scores_SKU, argmax_SKU, 10, GROUPS, images)
    text = summaries.localization_sentence("toy", "at T-2", 10, pd.DataFrame(shares), pd.DataFrame(aucs))
    top = shares[-1]
    assert text.startswith("**toy, 32x images.**") and f"{100 * top['share']:.1f}% of the top 10% units at T-2" in text
    assert f"memorized images **{top['verdict']}**" in text and f"over-represented: **{shares[0]['verdict']}**" in text
    assert text.endswith("duplicated ones.") == (shares[0]["verdict"] == HOLDS)


def test_over_base_rate_moves_the_wilson_interval_by_the_base_rate():
    effect, word = summaries.over_base_rate(10, 20, 0.1)
    share = summaries.wilson(10, 20)
    assert (effect.value, effect.lo, effect.hi) == pytest.approx((0.4, share.lo - 0.1, share.hi - 0.1))
    assert word == HOLDS
    assert summaries.over_base_rate(1, 80, 1 / 120)[1] == CANNOT_TELL  # one hit of 80 is no evidence
    assert summaries.over_base_rate(0, 80, 0.5)[1] == DOES_NOT_HOLD
    with pytest.raises(ValueError, match="base_rate"):
        summaries.over_base_rate(1, 2, 1.5)


def test_claim_sentence_states_the_interval_and_only_a_verdict_word():
    effect = Estimate(0.25, 0.1, 0.4, "Wilson 95%")
    assert summaries.claim_sentence("planted share minus base rate", effect, HOLDS) == (
        "planted share minus base rate: 0.25 [0.10, 0.40] (Wilson 95%); verdict: holds")
    with pytest.raises(ValueError, match="word"):
        summaries.claim_sentence("x", effect, "rises")
