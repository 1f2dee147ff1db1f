"""The analysis the book's pages report, as functions of the stages' results.

Pages plot, glue and narrate; the numbers and the rules that turn them into a verdict live here
so they are tested once and read the same on every page:

- where memorization sits along the depth: :func:`depth_profile` (peak block, centre of mass)
  and :func:`centre_moves_deeper` (the paper's VAR pattern);
- whether the top units' most activating images are the planted ones:
  :func:`top_unit_argmax_ids`, :func:`planted_enrichment`;
- the mitigation at the reported k: :func:`rows_at_k`, :func:`mitigation_summary` and the
  verdict against the random-unit control, :func:`random_control_verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .intervene import select_units

# ---------------------------------------------------------------------------------------------
# Where along the depth
# ---------------------------------------------------------------------------------------------


def depth_profile(mean_K: np.ndarray) -> tuple[int, float]:
    """(peak block, centre of mass) of a per-block mean UnitMem (K,): the block with the
    highest mean, and the mean-weighted mean block index (0 = the first block)."""
    mean_K = np.asarray(mean_K, dtype=np.float64)
    if mean_K.ndim != 1 or not len(mean_K):
        raise ValueError(f"mean_K: expected a non-empty (K,) array, got shape {mean_K.shape}")
    if mean_K.sum() <= 0:
        raise ValueError("mean_K: the block means sum to 0; the centre of mass is undefined")
    blocks = np.arange(len(mean_K))
    return int(mean_K.argmax()), float((mean_K * blocks).sum() / mean_K.sum())


def centre_moves_deeper(centres: np.ndarray) -> bool:
    """True when the centre of mass rises with every finer scale (the paper's VAR finding);
    False for fewer than two scales."""
    centres = np.asarray(centres, dtype=np.float64)
    return bool(len(centres) > 1 and np.all(np.diff(centres) > 0))


# ---------------------------------------------------------------------------------------------
# The images behind the top units
# ---------------------------------------------------------------------------------------------


def top_unit_argmax_ids(scores_KU: torch.Tensor, argmax_KU: torch.Tensor, k_percent: float) -> np.ndarray:
    """Dataset index of the most activating image of each unit in the global top ``k_percent``
    by ``scores_KU`` (in selection order)."""
    chosen_M2 = select_units(scores_KU, k_percent, "global")
    return argmax_KU[chosen_M2[:, 0], chosen_M2[:, 1]].numpy()


@dataclass(frozen=True)
class PlantedEnrichment:
    share: float        # planted share among the argmax images of the top units
    base_share: float   # planted share among the n_images images UnitMem saw
    ratio: float        # share / base_share (inf when no image is planted)


def planted_enrichment(argmax_ids: np.ndarray, planted: np.ndarray, n_images: int) -> PlantedEnrichment:
    """How much more often the top units' argmax image is planted than a random image of the
    first ``n_images`` (the images UnitMem saw) would be."""
    argmax_ids = np.asarray(argmax_ids, dtype=int)
    if not len(argmax_ids):
        raise ValueError("argmax_ids: no top units (k% too small for the model)")
    share = float(planted[argmax_ids].mean())
    base_share = float(planted[: min(len(planted), n_images)].mean())
    return PlantedEnrichment(share, base_share, share / base_share if base_share > 0 else float("inf"))


# ---------------------------------------------------------------------------------------------
# Mitigation at the reported k
# ---------------------------------------------------------------------------------------------

MODE_LABELS = {"baseline": "unedited", "unitmem-half": "top UnitMem, halved", "random-half": "random units, halved",
               "unitmem-zero": "top UnitMem, zeroed", "per-block-half": "top UnitMem per block, halved",
               "magnitude-half": "largest mean activation, halved"}
"""How the pages name the unedited model and the sweep's modes (memlib.sweep.MODES)."""


def rows_at_k(table: pd.DataFrame, k_percent: float, prefix: int) -> pd.DataFrame:
    """The sweep rows of the unedited model (mode ``baseline``) and of every mode at
    ``k_percent``, with the count at ``prefix`` tokens as ``extracted``."""
    if k_percent not in set(table["k_percent"]):
        raise ValueError(f"k_percent: the page reports k = {k_percent:g}%, which the sweep's k_percents "
                         f"{sorted(set(table['k_percent']))} do not contain; add it there")
    base = table[table["k_percent"] == 0].iloc[[0]].assign(mode="baseline")
    rows = pd.concat([base, table[table["k_percent"] == k_percent]], ignore_index=True)
    return rows.assign(extracted=rows[f"extracted@{prefix}"])


def mitigation_summary(rows: pd.DataFrame, k_percent: float, prefix: int) -> dict:
    """The numbers of the mitigation at k (``rows`` from :func:`rows_at_k`): the count before,
    the mean count of every mode, the random control's spread, the change, and FID before and
    after when measured."""
    before = int(rows.loc[rows["mode"] == "baseline", "extracted"].iloc[0])
    summary = {"k_percent": k_percent, "prefix": prefix, "extracted_before": before,
               "units_edited": int(rows.loc[rows["mode"] == "unitmem-half", "units_edited"].iloc[0]),
               "candidates": int(rows["candidates"].iloc[0])}
    for mode, values in rows.groupby("mode", sort=False)["extracted"]:
        if mode == "baseline":
            continue
        summary[f"{mode.replace('-', '_')}_extracted_mean"] = float(values.mean())
        if mode == "random-half":
            summary.update(random_half_extracted_sd=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           random_half_extracted_min=int(values.min()), random_half_extracted_max=int(values.max()),
                           random_half_seeds=int(len(values)))
    if rows["fid"].notna().any():
        fid_by_mode = rows.groupby("mode", sort=False)["fid"].mean()
        summary.update(fid_metric=str(rows["fid_metric"].dropna().iloc[0]), fid_before=float(fid_by_mode["baseline"]),
                       fid_after=float(fid_by_mode["unitmem-half"]))
        random_fid = rows.loc[rows["mode"] == "random-half", "fid"].dropna()
        if len(random_fid):
            summary.update(random_half_fid_min=float(random_fid.min()), random_half_fid_max=float(random_fid.max()))
    if before:
        summary["extracted_change"] = (summary["unitmem_half_extracted_mean"] - before) / before
    return summary


def random_control_verdict(after: float, random_min: float, random_max: float) -> str:
    """What the UnitMem edit's count says against the random control's range over seeds."""
    if after < random_min:
        return "fewer images extractable than any random seed"
    if after > random_max:
        return "more images extractable than any random seed"
    return "a count within the range of the random seeds"
