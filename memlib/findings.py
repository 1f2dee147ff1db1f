"""The paper's claims checked on one run, gathered from the run's result files.

The reproduction page sets this run's numbers beside the paper's. It gathers them here, through
the stages (which read each stage's cached, integrity-checked result record, or compute it when
no page has yet), never from another page's output: the page is right whatever order the book's
pages ran in, and alone. Every claim comes with the verdict :mod:`memlib.summaries` computes on
the page that discusses it (holds / does not hold / cannot tell at this noise), so the
reproduction table and the pages cannot disagree.

- :func:`localization_findings`: VAR's early blocks at the coarsest image scale and shift to deeper
  blocks at finer scales (:func:`memlib.summaries.early_at_coarsest_scale`,
  :func:`memlib.summaries.depth_shift_over_scales`), RAR's concentration in the later blocks
  (:func:`memlib.summaries.later_blocks_share` at the run's reading position);
- :func:`ground_truth_findings`: on the testbed, whether the top units point at the planted
  images, and at the control images;
- :func:`gather`: the numbers of one model (extraction before and after the edit at the reported
  k and prefix, the random control, FID, the k sweep) and every finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import stages, summaries
from .collect import DEFAULT_SELECTION, UnitMemResult
from .summaries import Estimate

ORDER = ("early", "deeper", "later", "points_at_planted", "control_over_represented", *summaries.MITIGATION_CLAIMS)
"""The order of the findings' keys in a table: where memorization sits, the answer key, the edit."""

READINGS = {"predicts-last": "T-2, the position that predicts the last token", "last": "T-1, the last input token",
            "all": "every position"}
"""RAR's reading positions in words (``selection``)."""


@dataclass(frozen=True)
class Finding:
    """One claim, what this run measured for it, and the computed verdict. ``effect`` is None
    where the paper gives no number and this run has no test (the verdict then says so)."""

    key: str  # short name, stable across runs (glue keys): "early", "deeper", "later" or a MITIGATION_CLAIMS key
    claim: str
    this_run: str
    effect: Estimate | None
    verdict: str


@dataclass
class RunNumbers:
    """What the reproduction page shows of one model: counts at the reported prefix and k."""

    model: str
    k_percent: float
    prefix: int
    units_edited: int
    candidates: int
    similarity: str
    threshold: float
    extracted_before: int
    extracted_after: int
    random_extracted: list[int]
    fid_metric: str | None
    fid_before: float | None
    fid_after: float | None
    sweep: pd.DataFrame  # the UnitMem edit at every k: k_percent, extracted, fid
    findings: list[Finding] = field(default_factory=list)


def image_scales(result: UnitMemResult) -> list[int]:
    """VAR's position groups of the image scales: every scale but scale 0 (one token, the class
    embedding's position: it measures class selectivity, not an image)."""
    return [i for i, name in enumerate(result.group_names) if name.startswith("scale")][1:]


def image_scale_scores(result: UnitMemResult) -> np.ndarray:
    """VAR's UnitMem per (image scale, block, unit) (:func:`image_scales`)."""
    return result.scores_GKU[image_scales(result)].numpy()


def reading(config) -> str | None:
    """The ``selection`` a run ranks units by; None: the family's default."""
    return None if config.sweep.selection == "default" else config.sweep.selection


def localization_findings(run: stages.Run, result: UnitMemResult) -> list[Finding]:
    """The paper's claims of where memorization sits, for the run's family, with their verdicts.
    VAR's claim has two parts, tested apart: at the coarsest image scale the memorizing units sit
    in the early blocks, and they move deeper as the scale gets finer (a slope can be positive
    and tiny, so its size in blocks is stated). RAR's: the top units sit in the later blocks."""
    cfg = run.config
    if result.family == "var":
        scores_SKU = image_scale_scores(result)
        slope, word, centres_S = summaries.depth_shift_over_scales(scores_SKU, seed=cfg.run.seed)
        early, early_word = summaries.early_at_coarsest_scale(scores_SKU, seed=cfg.run.seed)
        n_blocks = scores_SKU.shape[1]
        centres = ", ".join(f"{c:.2f}" for c in centres_S)
        return [
            Finding("early", "at the coarsest image scale memorization sits in the early blocks",
                    f"centre of mass of mean UnitMem at scale 1: block {centres_S[0]:.2f} of 0-{n_blocks - 1} "
                    f"(middle {(n_blocks - 1) / 2:g}; {early.method})", early, early_word),
            Finding("deeper", "memorization moves to deeper blocks as the scale gets finer",
                    f"centre of mass by image scale (scale 1 first): {centres}; slope {slope.text()} blocks per scale, "
                    f"{slope.value * (len(centres_S) - 1):.2f} blocks from the first image scale to the last "
                    f"({slope.method})", slope, word),
        ]
    position = reading(cfg) or DEFAULT_SELECTION["rar"]
    k = cfg.sweep.k_percent
    later, word = summaries.later_blocks_share(result.selection_scores(reading(cfg)).numpy(), k)
    this_run = (f"{100 * (later.value + 0.5):.0f}% of the top {k:g}% units in the later half of the "
                f"{result.scores_GKU.shape[1]} blocks (95% interval {100 * (later.lo + 0.5):.0f}-"
                f"{100 * (later.hi + 0.5):.0f}%; read at {READINGS.get(position, position)})")
    return [Finding("later", "memorization concentrates in the middle and later blocks", this_run, later, word)]


def ground_truth_findings(run: stages.Run, result: UnitMemResult) -> list[Finding]:
    """On the testbed, where the memorized images are known: do the top-k% units (ranked where
    the pages rank them: VAR's image scales, RAR's reading position) have the most duplicated
    planted images as their argmax more often than those images' share of D'; and, a control the
    paper did not have, are the control images (atypical, seen once) over-represented too
    (:func:`memlib.summaries.localization_by_group`)? None at full scale."""
    testbed = stages.training_images(run, run.config.unitmem.unitmem_fraction).testbed
    if testbed is None:
        return []
    cfg, k = run.config, run.config.sweep.k_percent
    if result.family == "var":
        scores_SKU, argmax_SKU = image_scale_scores(result), result.argmax_GKU[image_scales(result)].numpy()
    else:
        g = result.group_names.index(reading(cfg) or DEFAULT_SELECTION["rar"])
        scores_SKU, argmax_SKU = result.scores_GKU[[g]].numpy(), result.argmax_GKU[[g]].numpy()
    shares, _ = summaries.localization_by_group(scores_SKU, argmax_SKU, k, testbed.groups(),
                                                np.array(result.params["images"]), seed=cfg.run.seed)
    out = []
    for key, row, claim in (("points_at_planted", shares[-1], f"the top units' argmax images are the {shares[-1]['group']} "
                             "planted images more often than their share of D'"),
                            ("control_over_represented", shares[0], "... and so are the control images (atypical, seen "
                             "once; a control the paper did not have)")):
        base = row["base_rate"]
        effect = Estimate(row["share"] - base, row["share_lo"] - base, row["share_hi"] - base, "Wilson 95%, minus the base rate")
        out.append(Finding(key, claim, f"{100 * row['share']:.1f}% of the top {k:g}% units' argmax against "
                                       f"{100 * base:.1f}% of D' ({row['units']} units)", effect, row["verdict"]))
    return out


def gather(run: stages.Run) -> RunNumbers:
    """This run's numbers and findings for one model, from the stages' results (``run`` from
    :func:`memlib.stages.make_runs` with ``usable_prefixes=True``)."""
    cfg = run.config
    k, prefix = cfg.sweep.k_percent, stages.reported_prefix(run)
    unitmem = stages.stage_unitmem(run)
    attack = stages.stage_attack(run)
    table = stages.stage_sweep(run)
    rows = summaries.rows_at_k(table, k, prefix)
    numbers = summaries.mitigation_summary(rows, k, prefix)
    random_counts = rows.loc[rows["mode"] == "random-half", "extracted"].astype(int).tolist()
    edited = table[(table["mode"] == "unitmem-half") & (table["k_percent"] > 0)]
    baseline = table[table["k_percent"] == 0].iloc[[0]]
    sweep = pd.concat([baseline, edited])[["k_percent", f"extracted@{prefix}", "fid"]]
    result = RunNumbers(
        model=cfg.model.model, k_percent=k, prefix=prefix,
        units_edited=numbers["units_edited"], candidates=numbers["candidates"],
        similarity=attack.result.similarity_name, threshold=float(attack.result.threshold),
        extracted_before=numbers["extracted_before"], extracted_after=int(numbers["unitmem_half_extracted_mean"]),
        random_extracted=random_counts, fid_metric=numbers.get("fid_metric"), fid_before=numbers.get("fid_before"),
        fid_after=numbers.get("fid_after"),
        sweep=sweep.rename(columns={f"extracted@{prefix}": "extracted"}).reset_index(drop=True),
    )
    result.findings.extend(localization_findings(run, unitmem) + ground_truth_findings(run, unitmem))
    verdicts = summaries.mitigation_verdicts(table, attack.result.candidate_ids.tolist(), k, prefix, seed=cfg.run.seed)
    described = {
        "reduces": f"{result.extracted_before} → {result.extracted_after} extracted at k = {k:g}%",
        "beats_random": (f"UnitMem {result.extracted_after} vs random units {np.mean(random_counts or [np.nan]):.1f} "
                         f"(range {min(random_counts, default=0)}–{max(random_counts, default=0)}, "
                         f"{len(random_counts)} seeds)"),
        "beats_magnitude": (f"UnitMem {result.extracted_after} vs magnitude "
                            f"{numbers.get('magnitude_half_extracted_mean', float('nan')):g}"),
        "zero_beats_half": f"zeroing {numbers.get('unitmem_zero_extracted_mean', float('nan')):g} vs halving {result.extracted_after}",
        "fid_rises": (f"{result.fid_metric} {result.fid_before:.2f} → {result.fid_after:.2f}"
                      if result.fid_before is not None else ""),
    }
    for key, (effect, word) in verdicts.items():
        result.findings.append(Finding(key, summaries.MITIGATION_CLAIMS[key], described[key], effect, word))
    return result
