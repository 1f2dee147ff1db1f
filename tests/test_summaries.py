"""memlib.summaries: the numbers and verdicts the pages report, on hand-made inputs."""

import numpy as np
import pandas as pd
import pytest
import torch

from memlib import summaries


def test_depth_profile_peak_and_centre_of_mass():
    assert summaries.depth_profile(np.array([0.0, 0.0, 1.0, 0.0])) == (2, 2.0)
    peak, centre = summaries.depth_profile(np.array([1.0, 3.0]))
    assert peak == 1 and centre == pytest.approx(0.75)  # (0 * 1 + 1 * 3) / 4
    # uniform: the middle of the depth
    assert summaries.depth_profile(np.ones(5))[1] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="sum to 0"):
        summaries.depth_profile(np.zeros(3))
    with pytest.raises(ValueError, match=r"\(K,\)"):
        summaries.depth_profile(np.ones((2, 3)))


def test_centre_moves_deeper_only_when_it_rises_at_every_scale():
    assert summaries.centre_moves_deeper([0.5, 1.0, 2.0])
    assert not summaries.centre_moves_deeper([0.5, 1.0, 1.0])  # a tie is not a rise
    assert not summaries.centre_moves_deeper([2.0, 1.0, 3.0])
    assert not summaries.centre_moves_deeper([1.0])


def test_top_unit_argmax_ids_follow_the_global_top_k():
    scores_KU = torch.tensor([[0.1, 0.9, 0.2, 0.3, 0.0], [0.8, 0.4, 0.5, 0.6, 0.7]], dtype=torch.float64)
    argmax_KU = torch.arange(10).reshape(2, 5) + 100
    ids = summaries.top_unit_argmax_ids(scores_KU, argmax_KU, 20)  # 2 of 10 units: (0, 1) and (1, 0)
    assert sorted(ids.tolist()) == [101, 105]


def test_planted_enrichment_against_the_images_unitmem_saw():
    planted = np.array([True, False, False, False, True, False])
    enrichment = summaries.planted_enrichment(np.array([0, 0, 1, 4]), planted, images=np.array([0, 1, 2, 3]))
    assert enrichment.share == pytest.approx(0.75) and enrichment.base_share == pytest.approx(0.25)  # 1 of the 4 images
    assert enrichment.ratio == pytest.approx(3.0)
    # D' need not be the first images: the base rate is over the images UnitMem saw
    assert summaries.planted_enrichment(np.array([0]), planted, images=np.array([0, 4])).base_share == 1.0
    assert summaries.planted_enrichment(np.array([1]), np.zeros(3, dtype=bool), np.arange(3)).ratio == float("inf")
    with pytest.raises(ValueError, match="no top units"):
        summaries.planted_enrichment(np.array([], dtype=int), planted, np.arange(4))


def _sweep_table() -> pd.DataFrame:
    rows = [("unitmem-half", 0, 0, 6, 0, 10.0), ("unitmem-half", 10, 0, 2, 5, 11.0),
            ("random-half", 0, 0, 6, 0, 10.0), ("random-half", 10, 0, 5, 5, 10.5),
            ("random-half", 10, 1, 6, 5, 10.2), ("random-half", 10, 2, 4, 5, 10.9),
            ("unitmem-zero", 10, 0, 1, 5, 14.0), ("unitmem-half", 20, 0, 0, 9, 15.0)]
    return pd.DataFrame([{"mode": m, "k_percent": k, "seed": s, "extracted@5": e, "extracted@0": 0, "units_edited": u,
                          "fid": f, "fid_metric": "testbed FID", "candidates": 10} for m, k, s, e, u, f in rows])


def test_mitigation_summary_at_k():
    rows = summaries.rows_at_k(_sweep_table(), 10, 5)
    assert rows["mode"].tolist() == ["baseline", "unitmem-half", "random-half", "random-half", "random-half", "unitmem-zero"]
    assert rows["extracted"].tolist() == [6, 2, 5, 6, 4, 1]
    summary = summaries.mitigation_summary(rows, 10, 5)
    assert summary["extracted_before"] == 6 and summary["unitmem_half_extracted_mean"] == 2.0
    assert summary["units_edited"] == 5 and summary["candidates"] == 10
    assert summary["random_half_extracted_mean"] == 5.0 and summary["random_half_extracted_sd"] == pytest.approx(1.0)
    assert (summary["random_half_extracted_min"], summary["random_half_extracted_max"], summary["random_half_seeds"]) == (4, 6, 3)
    assert summary["unitmem_zero_extracted_mean"] == 1.0
    assert summary["extracted_change"] == pytest.approx(-4 / 6)
    assert (summary["fid_before"], summary["fid_after"]) == (10.0, 11.0)
    assert (summary["random_half_fid_min"], summary["random_half_fid_max"]) == (10.2, 10.9)
    with pytest.raises(ValueError, match="k = 5%.*add it there"):
        summaries.rows_at_k(_sweep_table(), 5, 5)


def test_random_control_verdict():
    assert summaries.random_control_verdict(2, 4, 6) == "fewer images extractable than any random seed"
    assert summaries.random_control_verdict(7, 4, 6) == "more images extractable than any random seed"
    assert summaries.random_control_verdict(4, 4, 6) == "a count within the range of the random seeds"
