"""memlib.summaries.mitigation_verdicts and memlib.findings: the claims of the reproduction table,
computed from a sweep table and UnitMem scores whose answer is known."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from memlib import findings, summaries
from memlib.summaries import CANNOT_TELL, DOES_NOT_HOLD, HOLDS

CANDIDATES = list(range(100))
BEFORE = list(range(40))  # the unedited model extracts candidates 0-39


def row(mode, k, ids, seed=0, fid_by_seed=None):
    return {"mode": mode, "k_percent": k, "seed": seed, f"extracted@8": len(ids), "extracted_ids": {"8": list(ids)},
            "fid_by_seed": fid_by_seed, "fid": None if fid_by_seed is None else float(np.mean(fid_by_seed))}


def table(edit_ids, random_ids, magnitude_ids, zero_ids, fid_after=None):
    fid_before = None if fid_after is None else [1.0, 1.1, 0.9]
    rows = [row("unitmem-half", 0, BEFORE, fid_by_seed=fid_before), row("unitmem-half", 10, edit_ids, fid_by_seed=fid_after)]
    rows += [row("random-half", 10, ids, seed=s) for s, ids in enumerate(random_ids)]
    rows += [row("magnitude-half", 10, magnitude_ids), row("unitmem-zero", 10, zero_ids)]
    return pd.DataFrame(rows)


def test_an_edit_that_removes_everything_beats_every_control_but_zeroing_adds_nothing():
    t = table(edit_ids=[], random_ids=[BEFORE[:38], BEFORE[:39], BEFORE], magnitude_ids=BEFORE, zero_ids=[],
              fid_after=[2.0, 2.2, 1.9])
    found = summaries.mitigation_verdicts(t, CANDIDATES, 10, 8, seed=0)
    assert list(found) == ["reduces", "beats_random", "beats_magnitude", "zero_beats_half", "fid_rises"]
    words = {key: word for key, (effect, word) in found.items()}
    assert words == {"reduces": HOLDS, "beats_random": HOLDS, "beats_magnitude": HOLDS,
                     "zero_beats_half": DOES_NOT_HOLD, "fid_rises": HOLDS}
    assert found["reduces"][0].value == 40 and found["beats_random"][0].value == pytest.approx(39 - 0)


def test_an_edit_that_changes_nothing_does_not_hold_and_a_one_image_change_cannot_be_told():
    nothing = summaries.mitigation_verdicts(table(BEFORE, [BEFORE] * 3, BEFORE, BEFORE), CANDIDATES, 10, 8)
    assert nothing["reduces"][1] == DOES_NOT_HOLD and nothing["beats_random"][1] == DOES_NOT_HOLD
    assert "fid_rises" not in nothing  # no FID measured: no claim
    one = summaries.mitigation_verdicts(table(BEFORE[1:], [BEFORE] * 3, BEFORE, BEFORE), CANDIDATES, 10, 8)
    assert one["reduces"][1] == CANNOT_TELL


def test_only_the_claims_of_the_modes_the_sweep_ran_are_returned_and_bad_inputs_are_named():
    t = table([], [BEFORE] * 3, BEFORE, [])
    only_unitmem = t[t["mode"] == "unitmem-half"]
    assert list(summaries.mitigation_verdicts(only_unitmem, CANDIDATES, 10, 8)) == ["reduces"]
    with pytest.raises(ValueError, match="k_percent: 5%"):
        summaries.mitigation_verdicts(t, CANDIDATES, 5, 8)
    with pytest.raises(ValueError, match="unitmem-half"):
        summaries.mitigation_verdicts(t[t["mode"] != "unitmem-half"], CANDIDATES, 10, 8)


class FakeUnitMem:
    """What localization_findings reads of a UnitMemResult: family, group names and scores."""

    def __init__(self, family, group_names, scores_GKU):
        import torch

        self.family, self.group_names, self.scores_GKU = family, group_names, torch.as_tensor(scores_GKU)

    def selection_scores(self, how=None):
        name = how or "predicts-last"
        return self.scores_GKU[self.group_names.index(name)]


def fake_run(selection="default", k_percent=10.0):
    config = SimpleNamespace(run=SimpleNamespace(seed=0), sweep=SimpleNamespace(selection=selection, k_percent=k_percent))
    return SimpleNamespace(config=config)


def test_var_localization_holds_when_memorization_moves_deeper_with_the_scale_and_ignores_scale_0():
    rng = np.random.default_rng(0)
    S, K, U = 5, 8, 64
    scores_SKU = rng.uniform(0.0, 0.1, size=(S, K, U))
    for s in range(S):
        scores_SKU[s, s + 1] += 0.8  # scale s's memorizing units sit in block s + 1
    scale0_KU = np.zeros((1, K, U))
    scale0_KU[0, K - 1] = 1.0  # scale 0 everywhere in the last block: it must not enter the slope
    result = FakeUnitMem("var", [f"scale{s}" for s in range(S + 1)], np.concatenate([scale0_KU, scores_SKU]))
    early, found = findings.localization_findings(fake_run(), result)
    assert early.verdict == HOLDS and early.effect.value < -1  # scale 1's units sit in block 1 of 0-7
    assert found.verdict == HOLDS and found.effect.value > 0.5
    image_scales = summaries.depth_shift_over_scales(scores_SKU)[0].value
    with_scale0 = summaries.depth_shift_over_scales(np.concatenate([scale0_KU, scores_SKU]))[0].value
    assert found.effect.value == pytest.approx(image_scales) and with_scale0 < image_scales - 0.1
    flat = FakeUnitMem("var", [f"scale{s}" for s in range(S + 1)], rng.uniform(0, 1, size=(S + 1, K, U)))
    assert [f.verdict for f in findings.localization_findings(fake_run(), flat)] != [HOLDS, HOLDS]
    late = scores_SKU.copy()
    late[0] = np.flip(late[0], axis=0)  # scale 1's memorizing units in block 6: not early
    assert findings.localization_findings(fake_run(), FakeUnitMem("var", result.group_names, np.concatenate([scale0_KU, late])))[0].verdict == DOES_NOT_HOLD


def test_rar_localization_reads_the_configured_position():
    K, U = 8, 50
    later_KU, earlier_KU = np.zeros((K, U)), np.zeros((K, U))
    later_KU[K // 2:] = np.linspace(0.5, 1.0, U)  # the top units all sit in the later half
    earlier_KU[: K // 2] = np.linspace(0.5, 1.0, U)
    result = FakeUnitMem("rar", ["predicts-last", "last"], np.stack([later_KU, earlier_KU]))
    assert [f.verdict for f in findings.localization_findings(fake_run(), result)] == [HOLDS]
    (at_t1,) = findings.localization_findings(fake_run(selection="last"), result)
    assert at_t1.verdict == DOES_NOT_HOLD and "T-1" in at_t1.this_run


def test_ground_truth_findings_read_the_planted_answer_key():
    """On the testbed: top units whose argmax is a 32x planted image give 'holds' for the planted
    claim and not for the control group; the same units pointing at control images the reverse."""
    import torch

    from memlib import data, stages
    from memlib.config import load_config

    run = stages.make_runs(load_config("notebooks/params/smoke.yaml"), "unitmem", family="rar")["rar"]
    config = run.config  # the family's: k = the paper's 5%
    testbed = data.load_testbed(config.data.testbed_file)
    dprime = data.testbed_dprime(testbed, config.unitmem.unitmem_images, config.run.seed)
    groups = testbed.groups()
    K, U = 8, 100
    scores_KU = torch.linspace(0, 1, K * U, dtype=torch.float64).reshape(K, U)  # the top units: the last ones
    top = scores_KU >= torch.quantile(scores_KU, 1 - config.sweep.k_percent / 100)

    def result_pointing_at(ids):
        argmax_KU = torch.full((K, U), int(np.setdiff1d(dprime, np.concatenate(list(groups.values())))[0]))
        argmax_KU[top] = torch.as_tensor(np.resize(ids, int(top.sum())))
        fake = FakeUnitMem("rar", ["predicts-last", "last"], torch.stack([scores_KU, scores_KU]))
        fake.argmax_GKU, fake.params = torch.stack([argmax_KU, argmax_KU]), {"images": dprime.tolist()}
        return fake

    planted, control = findings.ground_truth_findings(run, result_pointing_at(groups["32x"]))
    assert (planted.key, planted.verdict) == ("points_at_planted", HOLDS) and control.verdict != HOLDS
    planted, control = findings.ground_truth_findings(run, result_pointing_at(groups["control"]))
    assert planted.verdict != HOLDS and (control.key, control.verdict) == ("control_over_represented", HOLDS)
