"""The analysis the book's pages report, as functions of the stages' results.

Pages plot, glue and narrate; the numbers and the rules that turn them into a verdict live here
so they are tested once and read the same on every page:

- where memorization sits along the depth: :func:`depth_profile` (peak block, centre of mass)
  and :func:`centre_moves_deeper` (the paper's VAR pattern);
- whether the top units' most activating images are the planted ones:
  :func:`top_unit_argmax_ids`, :func:`planted_enrichment`;
- the mitigation at the reported k: :func:`rows_at_k`, :func:`mitigation_summary` and the
  verdict against the random-unit control, :func:`random_control_verdict`.

The testbed study (below the page read-outs): where memorization is known, does UnitMem find
it, and does the edit remove it? Every comparison comes with its interval and a computed
verdict. Groups are train-split positions by name in dose order
(``memlib.data.TestbedData.groups``): ``control`` (chosen like the planted images, seen once),
then ``2x``, ``4x``, ... (planted at that many copies per epoch); "ordinary" images are all
others. :func:`verdict` reads an interval against the claimed direction: the claim **holds**
when the whole interval lies on its side of zero, **does not hold** when the interval rules the
claimed direction out, and otherwise we **cannot tell at this noise**. No sentence reads a rise
or a fall from an interval that contains zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .intervene import select_units
from .style import EDIT_NAMES

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
    base_share: float   # planted share among the images UnitMem saw (D')
    ratio: float        # share / base_share (inf when no image is planted)


def planted_enrichment(argmax_ids: np.ndarray, planted: np.ndarray, images: np.ndarray) -> PlantedEnrichment:
    """How much more often the top units' argmax image is planted than a random image of
    ``images`` (the dataset indices UnitMem saw, D') would be."""
    argmax_ids = np.asarray(argmax_ids, dtype=int)
    if not len(argmax_ids):
        raise ValueError("argmax_ids: no top units (k% too small for the model)")
    share = float(planted[argmax_ids].mean())
    base_share = float(planted[np.asarray(images, dtype=int)].mean())
    return PlantedEnrichment(share, base_share, share / base_share if base_share > 0 else float("inf"))


# ---------------------------------------------------------------------------------------------
# Mitigation at the reported k
# ---------------------------------------------------------------------------------------------

MODE_LABELS = {("baseline" if mode == "unedited" else mode): name for mode, name in EDIT_NAMES.items()}
"""How the pages name the unedited model (the sweep's mode "baseline") and the sweep's modes
(memlib.sweep.MODES): memlib.style.EDIT_NAMES, so every figure and table says the same."""


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


# =============================================================================================
# The testbed study: intervals and verdicts
# =============================================================================================

HOLDS, DOES_NOT_HOLD, CANNOT_TELL = "holds", "does not hold", "cannot tell at this noise"
Z95 = 1.959963984540054  # two-sided 95% normal quantile


# ---------------------------------------------------------------------------------------------
# Intervals and verdicts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a 95% interval ``[lo, hi]`` and how the interval was made."""

    value: float
    lo: float
    hi: float
    method: str

    def text(self, fmt: str = ".2f") -> str:
        return f"{self.value:{fmt}} [{self.lo:{fmt}}, {self.hi:{fmt}}]"


def verdict(effect: Estimate, claimed: str = "positive") -> str:
    """The claim is that ``effect`` is ``"positive"`` (> 0) or ``"negative"`` (< 0).

    holds: the interval lies strictly on the claimed side of 0; does not hold: the interval
    allows no effect in the claimed direction (e.g. ``[0, 0]``, or entirely on the other side);
    otherwise: cannot tell at this noise.
    """
    if claimed not in ("positive", "negative"):
        raise ValueError(f"claimed: expected 'positive' or 'negative', got {claimed!r}")
    lo, hi = (effect.lo, effect.hi) if claimed == "positive" else (-effect.hi, -effect.lo)
    if lo > 0:
        return HOLDS
    if hi <= 0:
        return DOES_NOT_HOLD
    return CANNOT_TELL


def claim_sentence(claim: str, effect: Estimate, word: str, fmt: str = ".2f") -> str:
    """One plain-text sentence of a computed verdict: the claim, the effect with its 95%
    interval and how it was made, and the verdict word of :func:`verdict` (the words the
    exercises' solutions paste: never a rise or fall read from a difference inside the noise)."""
    if word not in (HOLDS, DOES_NOT_HOLD, CANNOT_TELL):
        raise ValueError(f"word: expected one of {HOLDS!r}, {DOES_NOT_HOLD!r}, {CANNOT_TELL!r}, got {word!r}")
    return f"{claim}: {effect.text(fmt)} ({effect.method}); verdict: {word}"


def wilson(successes: int, trials: int) -> Estimate:
    """A binomial proportion with its Wilson score interval (95%)."""
    if trials <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"), "wilson, no trials")
    p = successes / trials
    denom = 1 + Z95**2 / trials
    centre = (p + Z95**2 / (2 * trials)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2)) / denom
    # min/max: rounding must not put the interval on one side of the point (p = 0 gives lo = 1e-17)
    return Estimate(p, min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)), "Wilson 95%")


def over_base_rate(hits: int, trials: int, base_rate: float) -> tuple[Estimate, str]:
    """Is a share above what chance gives? Effect = ``hits / trials`` minus ``base_rate`` (e.g.
    the planted images' share of the training set), with the Wilson interval of the share moved
    by the same amount; the claim is that it is positive."""
    if not 0 <= base_rate <= 1:
        raise ValueError(f"base_rate: expected a share in [0, 1], got {base_rate!r}")
    share = wilson(hits, trials)
    effect = Estimate(share.value - base_rate, share.lo - base_rate, share.hi - base_rate,
                      f"Wilson 95% of {hits}/{trials}, minus the base rate {base_rate:.3f}")
    return effect, verdict(effect, "positive")


def mean_t_interval(values: Sequence[float]) -> Estimate:
    """Mean of ``values`` with the Student-t 95% interval (n >= 2)."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {x.size}")
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return Estimate(float(x.mean()), float(x.mean() - half), float(x.mean() + half), f"t 95%, n = {x.size}")


def paired_bootstrap_sum(diff_N: np.ndarray, seed: int = 0, n_boot: int = 2000) -> Estimate:
    """Sum of per-item paired differences (e.g. extracted before minus after, per candidate)
    with a seeded percentile bootstrap 95% interval over items."""
    diff_N = np.asarray(diff_N, dtype=np.float64)
    if diff_N.size == 0:
        return Estimate(0.0, 0.0, 0.0, "no items")
    rng = np.random.default_rng(seed)
    sums = diff_N[rng.integers(0, diff_N.size, size=(n_boot, diff_N.size))].sum(axis=1)
    lo, hi = np.percentile(sums, [2.5, 97.5])
    return Estimate(float(diff_N.sum()), float(lo), float(hi), f"paired bootstrap 95%, {n_boot} resamples, seed {seed}")


# ---------------------------------------------------------------------------------------------
# Extraction against duplication level
# ---------------------------------------------------------------------------------------------


def extraction_by_group(extracted_ids: Sequence[int], groups: Mapping[str, np.ndarray]) -> list[dict]:
    """Per group: images, extracted, and the extracted share with its Wilson interval."""
    extracted = set(int(i) for i in extracted_ids)
    rows = []
    for name, ids in groups.items():
        hits = sum(int(i) in extracted for i in ids)
        share = wilson(hits, len(ids))
        rows.append({"group": name, "images": len(ids), "extracted": hits, "share": share.value,
                     "share_lo": share.lo, "share_hi": share.hi})
    return rows


def dose_response(extracted_ids: Sequence[int], groups: Mapping[str, np.ndarray]) -> tuple[Estimate, str]:
    """Does extraction rise with duplication? The effect is the extracted share of the most
    duplicated group minus that of the control group, with a Newcombe (Wilson-based) interval;
    the claim is that it is positive."""
    rows = extraction_by_group(extracted_ids, groups)
    low, high = rows[0], rows[-1]
    diff = high["share"] - low["share"]
    lo = diff - math.sqrt((high["share"] - high["share_lo"]) ** 2 + (low["share_hi"] - low["share"]) ** 2)
    hi = diff + math.sqrt((high["share_hi"] - high["share"]) ** 2 + (low["share"] - low["share_lo"]) ** 2)
    effect = Estimate(diff, lo, hi, f"Newcombe 95%, {high['group']} minus {low['group']}")
    return effect, verdict(effect, "positive")


# ---------------------------------------------------------------------------------------------
# Localization against ground truth
# ---------------------------------------------------------------------------------------------


def top_units_mask(scores_KU: np.ndarray, k_percent: float) -> np.ndarray:
    """Boolean (K, U): the global top-k% units by score (ties: lower flat index first)."""
    flat = np.asarray(scores_KU, dtype=np.float64).reshape(-1)
    m = int(k_percent * flat.size / 100 + 0.5)
    order = np.argsort(-flat, kind="stable")[:m]
    mask = np.zeros(flat.size, dtype=bool)
    mask[order] = True
    return mask.reshape(np.shape(scores_KU))


def argmax_share_by_group(
    scores_KU: np.ndarray, argmax_KU: np.ndarray, k_percent: float, groups: Mapping[str, np.ndarray], images: np.ndarray
) -> list[dict]:
    """Of the top-k% units, the share whose argmax image is in each group, beside the base rate
    (the group's share of the ``images`` UnitMem ran on), and their ratio (enrichment)."""
    top = top_units_mask(scores_KU, k_percent)
    argmax_M = np.asarray(argmax_KU)[top]
    images = np.asarray(images)
    rows = []
    for name, ids in groups.items():
        in_dprime = np.intersect1d(ids, images)
        share = wilson(int(np.isin(argmax_M, in_dprime).sum()), int(argmax_M.size))
        base = in_dprime.size / max(1, images.size)
        rows.append({"group": name, "units": int(argmax_M.size), "share": share.value, "share_lo": share.lo,
                     "share_hi": share.hi, "base_rate": base, "enrichment": share.value / base if base else float("nan")})
    return rows


def shared_top_units(scores_a_KU: np.ndarray, scores_b_KU: np.ndarray, k_percent: float) -> float:
    """The fraction of the top-k% units under ranking ``a`` that are also top-k% under ``b``."""
    a, b = top_units_mask(scores_a_KU, k_percent), top_units_mask(scores_b_KU, k_percent)
    return float((a & b).sum() / max(1, a.sum()))


def top_units_per_block(scores_KU: np.ndarray, k_percent: float) -> np.ndarray:
    """Share of the global top-k% units that sit in each block -> float (K,), summing to 1."""
    top = top_units_mask(scores_KU, k_percent)
    return top.sum(axis=1) / max(1, top.sum())


def image_scores(scores_KU: np.ndarray, argmax_KU: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Per image of ``images``: the highest UnitMem among the units whose argmax it is (0 when it
    is the argmax of none) -> float64 (len(images),)."""
    images = np.asarray(images)
    best = np.zeros(images.size)
    position = {int(i): j for j, i in enumerate(images)}
    for score, image in zip(np.asarray(scores_KU).reshape(-1), np.asarray(argmax_KU).reshape(-1)):
        j = position.get(int(image))
        if j is not None and score > best[j]:
            best[j] = score
    return best


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half (the Mann-Whitney AUC)."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * ties)


def auc_by_group(
    per_image_score: np.ndarray, images: np.ndarray, groups: Mapping[str, np.ndarray], ordinary: np.ndarray,
    seed: int = 0, n_boot: int = 1000,
) -> list[dict]:
    """Per group: the AUC of its images' scores against the ordinary images' (both restricted
    to ``images``), with a seeded stratified bootstrap 95% interval and the verdict that the
    group is separated from ordinary images (AUC > 0.5)."""
    images = np.asarray(images)
    score = dict(zip(images.tolist(), np.asarray(per_image_score, float).tolist()))
    negative = np.array([score[i] for i in np.intersect1d(ordinary, images)])
    rng = np.random.default_rng(seed)
    rows = []
    for name, ids in groups.items():
        positive = np.array([score[i] for i in np.intersect1d(ids, images)])
        value = auc(positive, negative)
        boots = [auc(rng.choice(positive, positive.size), rng.choice(negative, negative.size)) for _ in range(n_boot)]
        lo, hi = np.percentile(boots, [2.5, 97.5]) if positive.size and negative.size else (float("nan"),) * 2
        est = Estimate(value, float(lo), float(hi), f"stratified bootstrap 95%, {n_boot} resamples, seed {seed}")
        rows.append({"group": name, "images": int(positive.size), "auc": value, "auc_lo": est.lo, "auc_hi": est.hi,
                     "verdict": verdict(Estimate(value - 0.5, est.lo - 0.5, est.hi - 0.5, est.method), "positive")})
    return rows


# ---------------------------------------------------------------------------------------------
# Mitigation
# ---------------------------------------------------------------------------------------------


def extracted_by_group(extracted_ids: Sequence[int], groups: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Extracted images per group (and ``all``) of one sweep row."""
    extracted = set(int(i) for i in extracted_ids)
    out = {name: sum(int(i) in extracted for i in ids) for name, ids in groups.items()}
    out["all"] = len(extracted)
    return out


def edit_vs_control(edit_count: int, control_counts: Sequence[int]) -> tuple[Estimate, str]:
    """Does an edit extract fewer images than the random-unit control at the same k? Effect =
    mean control count minus the edit's count; interval = the control's range over seeds minus
    the edit's count (the edit is deterministic; the control's spread is the noise). The claim
    (fewer than every seed of the control) is that the effect is positive."""
    control = np.asarray(control_counts, dtype=float)
    if control.size == 0:
        raise ValueError("edit_vs_control needs at least one control count")
    effect = Estimate(float(control.mean() - edit_count), float(control.min() - edit_count),
                      float(control.max() - edit_count), f"range over {control.size} random seeds")
    return effect, verdict(effect, "positive")


def reduction(before_ids: Sequence[int], after_ids: Sequence[int], candidates: Sequence[int], seed: int = 0) -> tuple[Estimate, str]:
    """Does the edit reduce extraction? Effect = extracted before minus after on the same
    candidates, with a paired bootstrap interval over candidates; the claim is that it is positive."""
    before, after = set(map(int, before_ids)), set(map(int, after_ids))
    diff = np.array([(int(c) in before) - (int(c) in after) for c in candidates], dtype=float)
    effect = paired_bootstrap_sum(diff, seed=seed)
    return effect, verdict(effect, "positive")


def fid_change(before_by_seed: Sequence[float], after_by_seed: Sequence[float]) -> tuple[Estimate, str]:
    """The paired FID difference (after minus before, per sampling seed) with its t interval,
    and the verdict on "the edit raised FID"."""
    before, after = np.asarray(before_by_seed, float), np.asarray(after_by_seed, float)
    if before.shape != after.shape:
        raise ValueError(f"FID before and after must come from the same seeds, got {before.size} and {after.size} values")
    effect = mean_t_interval(after - before)
    return effect, verdict(effect, "positive")


# ---------------------------------------------------------------------------------------------
# Where in depth: the paper's architecture claims
# ---------------------------------------------------------------------------------------------


def centre_of_mass(values_K: np.ndarray) -> float:
    """Block centre of mass ``sum_k k v_k / sum_k v_k`` (block indices from 0)."""
    values_K = np.asarray(values_K, dtype=np.float64)
    return float((np.arange(values_K.size) * values_K).sum() / values_K.sum())


def _slope(y_S: np.ndarray) -> float:
    x = np.arange(len(y_S), dtype=np.float64)
    return float(np.polyfit(x, np.asarray(y_S, dtype=np.float64), 1)[0])


def depth_shift_over_scales(scores_SKU: np.ndarray, seed: int = 0, n_boot: int = 1000) -> tuple[Estimate, str, np.ndarray]:
    """VAR's claim: memorization sits in early blocks at coarse scales and moves deeper as the
    scale gets finer. Per scale, the block centre of mass of the mean UnitMem per block; the
    effect is the least-squares slope of that centre of mass over the scale index (blocks per
    scale step), with a seeded bootstrap over units (each resample draws U units per block with
    replacement, the same units for every scale). The claim is a positive slope. Returns
    (slope, verdict, centre of mass per scale)."""
    scores_SKU = np.asarray(scores_SKU, dtype=np.float64)
    S, K, U = scores_SKU.shape
    if S < 2:
        raise ValueError(f"a shift over scales needs at least 2 scales, got {S}")
    com_S = np.array([centre_of_mass(scores_SKU[s].mean(axis=1)) for s in range(S)])
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_boot):
        pick_KU = rng.integers(0, U, size=(K, U))
        resampled_SKU = np.take_along_axis(scores_SKU, pick_KU[None].repeat(S, axis=0), axis=2)
        slopes.append(_slope([centre_of_mass(resampled_SKU[s].mean(axis=1)) for s in range(S)]))
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    effect = Estimate(_slope(com_S), float(lo), float(hi), f"bootstrap over units 95%, {n_boot} resamples, seed {seed}")
    return effect, verdict(effect, "positive"), com_S


def early_at_coarsest_scale(scores_SKU: np.ndarray, seed: int = 0, n_boot: int = 1000) -> tuple[Estimate, str]:
    """The other half of VAR's claim: at the coarsest scale memorization sits in the early blocks.
    Effect = the block centre of mass of the first scale's mean UnitMem per block minus the middle
    block ``(K - 1) / 2``, with a seeded bootstrap over units as in :func:`depth_shift_over_scales`;
    the claim is that it is negative (the centre of mass lies before the middle)."""
    scores_KU = np.asarray(scores_SKU, dtype=np.float64)[0]
    K, U = scores_KU.shape
    middle = (K - 1) / 2
    rng = np.random.default_rng(seed)
    boots = [centre_of_mass(np.take_along_axis(scores_KU, rng.integers(0, U, size=(K, U)), axis=1).mean(axis=1)) - middle
             for _ in range(n_boot)]
    lo, hi = np.percentile(boots, [2.5, 97.5])
    effect = Estimate(centre_of_mass(scores_KU.mean(axis=1)) - middle, float(lo), float(hi),
                      f"bootstrap over units 95%, {n_boot} resamples, seed {seed}")
    return effect, verdict(effect, "negative")


def later_blocks_share(scores_KU: np.ndarray, k_percent: float) -> tuple[Estimate, str]:
    """RAR's claim: memorization concentrates in the middle and later blocks. The share of the
    global top-k% units that sit in the later half of the blocks, minus one half, with a Wilson
    interval; the claim is that it is positive (more than half of the top units sit in the
    later half)."""
    top = top_units_mask(scores_KU, k_percent)
    K = top.shape[0]
    later = int(top[K // 2 :].sum())
    share = wilson(later, int(top.sum()))
    effect = Estimate(share.value - 0.5, share.lo - 0.5, share.hi - 0.5, share.method)
    return effect, verdict(effect, "positive")


def localization_by_group(
    scores_SKU: np.ndarray, argmax_SKU: np.ndarray, k_percent: float, groups: Mapping[str, np.ndarray],
    images: np.ndarray, seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """Does UnitMem point at the memorized images? Over the position groups ``S`` (VAR's image
    scales, or RAR's reading position), for every image group:

    - the share of the top-k% units (of each position group, pooled) whose argmax is in the
      group, beside the group's share of D' (``images``), with the verdict that the share exceeds
      that base rate (its Wilson interval lies above it);
    - the AUC of the group's per-image score (its highest UnitMem over the units it is the argmax
      of, across position groups) against the ordinary images of D', with its verdict (> 0.5).
    """
    scores_SKU, argmax_SKU = np.asarray(scores_SKU), np.asarray(argmax_SKU)
    images = np.asarray(images)
    argmax_M = np.concatenate([np.asarray(argmax_SKU[s])[top_units_mask(scores_SKU[s], k_percent)]
                               for s in range(len(scores_SKU))])
    shares = []
    for name, ids in groups.items():
        in_dprime = np.intersect1d(ids, images)
        share = wilson(int(np.isin(argmax_M, in_dprime).sum()), int(argmax_M.size))
        base = in_dprime.size / max(1, images.size)
        effect = Estimate(share.value - base, share.lo - base, share.hi - base, share.method)
        shares.append({"group": name, "units": int(argmax_M.size), "share": share.value, "share_lo": share.lo,
                       "share_hi": share.hi, "base_rate": base, "enrichment": share.value / base if base else float("nan"),
                       "verdict": verdict(effect, "positive")})
    per_image = np.max([image_scores(scores_SKU[s], argmax_SKU[s], images) for s in range(len(scores_SKU))], axis=0)
    special = np.concatenate([np.asarray(ids) for ids in groups.values()]) if groups else np.array([], int)
    ordinary = np.setdiff1d(images, special)
    return shares, auc_by_group(per_image, images, groups, ordinary, seed=seed)


def localization_sentence(model: str, where: str, k_percent: float, shares: "pd.DataFrame", aucs: "pd.DataFrame") -> str:
    """The verdict sentences of a UnitMem page's localization section, from the tables of
    :func:`localization_by_group` (rows in dose order: control first, the most duplicated level
    last): the most duplicated level's share of the top units against its base rate and its AUC,
    then the control group's share, each with its interval and verdict. ``where``: which
    positions the units were ranked at (e.g. "of the image scales", "at T-2")."""
    top, auc_top, control = shares.iloc[-1], aucs.iloc[-1], shares.iloc[0]
    text = (
        f"**{model}, {top['group']} images.** {100 * top['share']:.1f}% of the top {k_percent:g}% units {where} have one "
        f"of them as their argmax, against {100 * top['base_rate']:.1f}% of D' (interval {100 * top['share_lo']:.1f}-"
        f"{100 * top['share_hi']:.1f}%): the claim that the top units point at memorized images **{top['verdict']}**. "
        f"Their AUC against ordinary images is {auc_top['auc']:.2f} [{auc_top['auc_lo']:.2f}, {auc_top['auc_hi']:.2f}]: "
        f"**{auc_top['verdict']}**. The control images (seen once, chosen like the planted ones) are the argmax of "
        f"{100 * control['share']:.1f}% of the top units, against {100 * control['base_rate']:.1f}% of D' (that they are "
        f"over-represented: **{control['verdict']}**)"
    )
    return text + ("; so what the top units point at includes atypical images, not only duplicated ones."
                   if control["verdict"] == HOLDS else ".")


# ---------------------------------------------------------------------------------------------
# The edit at the reported k: every claim with its control
# ---------------------------------------------------------------------------------------------

MITIGATION_CLAIMS = {
    "reduces": "the UnitMem edit reduces extraction",
    "beats_random": "it beats random units of the same number",
    "beats_magnitude": "it beats the largest units (magnitude baseline)",
    "zero_beats_half": "zeroing removes more than halving",
    "fid_rises": "the edit raises the image-quality distance",
}
"""The mitigation claims, by key, in the words the pages and the reproduction table use."""


def mitigation_verdicts(table: pd.DataFrame, candidates: Sequence[int], k_percent: float, prefix: int,
                        seed: int = 0) -> dict[str, tuple[Estimate, str]]:
    """The verdicts on the edit at ``k_percent`` from a sweep table (:func:`memlib.sweep.sweep_table`)
    and every attacked candidate (the stored attack's ``candidate_ids``), counted at ``prefix``
    tokens, keyed as :data:`MITIGATION_CLAIMS`. Only claims whose modes the sweep ran are present:

    - ``reduces``: the unedited model minus the UnitMem-halved one, paired bootstrap over candidates;
    - ``beats_random``: against the random-unit control's range over seeds (:func:`edit_vs_control`);
    - ``beats_magnitude``: the magnitude baseline minus the UnitMem edit, paired bootstrap;
    - ``zero_beats_half``: halving minus zeroing the same units, paired bootstrap;
    - ``fid_rises``: FID after minus before, paired by sampling seed, t interval (needs 2+ seeds).
    """
    if "unitmem-half" not in set(table["mode"]):
        raise ValueError("sweep_modes: the mitigation verdicts need the 'unitmem-half' rows")
    rows_k = table[table["k_percent"] == k_percent]
    if rows_k.empty:
        raise ValueError(f"k_percent: {k_percent:g}% is not among the sweep's k_percents {sorted(set(table['k_percent']))}")
    key = str(prefix)
    baseline = table[table["k_percent"] == 0].iloc[0]
    modes = set(rows_k["mode"])

    def ids_of(mode: str) -> list[int]:
        return rows_k[rows_k["mode"] == mode].iloc[0]["extracted_ids"][key]

    edited = ids_of("unitmem-half")
    found = {"reduces": reduction(baseline["extracted_ids"][key], edited, candidates, seed=seed)}
    if "random-half" in modes:
        found["beats_random"] = edit_vs_control(len(edited), rows_k[rows_k["mode"] == "random-half"][f"extracted@{prefix}"].tolist())
    if "magnitude-half" in modes:
        found["beats_magnitude"] = reduction(ids_of("magnitude-half"), edited, candidates, seed=seed)
    if "unitmem-zero" in modes:
        found["zero_beats_half"] = reduction(edited, ids_of("unitmem-zero"), candidates, seed=seed)
    after = rows_k[rows_k["mode"] == "unitmem-half"].iloc[0]
    before_fid, after_fid = baseline["fid_by_seed"], after["fid_by_seed"]
    if before_fid is not None and after_fid is not None and len(before_fid) >= 2:
        found["fid_rises"] = fid_change(before_fid, after_fid)
    return found
