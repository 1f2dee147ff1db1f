# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The trade-off between extraction and image quality
#
# **Question: as more units are edited, how fast does extraction fall, and what does it cost in
# image quality?**
#
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# Editing more units removes more memorization but also more of what the model has learned in
# general. The paper {cite:p}`kasliwal2025localizing` reports the trade-off for RAR-XXL in an
# appendix (top 1%, 5% and 10% of units halved). This page shows the whole sweep of
# {doc}`mitigation` for every model of the run: the extracted count and the image-quality distance
# against k, and both together as a Pareto plot, for the UnitMem edit and its controls.
#
# **On the testbed the quality measure is a "testbed FID"**: the Frechet distance between the
# features of the testbed's own classifier for generated and real images. It is not FID in the
# paper's sense (Inception features, 50,000 ImageNet samples) and its values are not comparable to
# the paper's. The folded cell below holds the parameters; papermill replaces them.
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run: every setting (memlib/config.py, README table)
# -- what this page discusses; None: the parameter file's value
k_percents = None                # every k% the sweep edits (0: the unedited model)
sweep_modes = None               # how units are chosen and scaled ("unitmem-half", "random-half", ...)
sweep_fid = None                 # measure FID (testbed: "testbed FID") for every sweep row
fid_feature = None               # "testbed" (the testbed classifier) or "inception"
fid_samples_per_class = None     # class-conditional samples per class (the paper: 50)

# %% tags=["hide-input"]
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import stages, style, summaries
from memlib.config import page_config
from memlib.results import provenance, write_record

config = page_config(params_file, k_percents=k_percents, sweep_modes=sweep_modes, sweep_fid=sweep_fid,
                     fid_feature=fid_feature, fid_samples_per_class=fid_samples_per_class)
started = time.time()
style.apply()

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.config`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed pair `var-testbed` and `rar-testbed`; a
# full-scale run names one model.

# %% tags=["hide-input"]
runs = stages.make_runs(config, "sweep", usable_prefixes=True)
headline = {family: stages.reported_prefix(run) for family, run in runs.items()}
for family, run in runs.items():
    print(f"{run.config.model.model}: prefix {headline[family]} tokens, sweep {run.config.sweep.sweep_modes} "
          f"at k% {run.config.sweep.k_percents}, FID {'on' if run.config.sweep.sweep_fid else 'off'}")

# %% [markdown]
# ## The sweep
#
# `memlib.stages.stage_sweep` returns the table of {doc}`mitigation`; with the same parameters it reads
# every row back from the files that page wrote. This page asks for the families in the opposite
# order: when `make book` executes it beside {doc}`mitigation`, each page computes one family's sweep
# and then reads the other's from the cache, instead of waiting for both.

# %% tags=["remove-stderr"]
sweeps = {family: stages.stage_sweep(runs[family]) for family in reversed(runs)}
sweeps = {family: sweeps[family] for family in runs}  # in the book's order

# %% tags=["hide-input", "hide-output"]

def by_mode(table: pd.DataFrame, family: str) -> pd.DataFrame:
    """Per (mode, k): the count at the longest prefix and FID, mean and range over seeds."""
    frame = table.assign(extracted=table[f"extracted@{headline[family]}"])
    return (frame.groupby(["mode", "k_percent"], sort=False)
            .agg(extracted=("extracted", "mean"), extracted_min=("extracted", "min"),
                 extracted_max=("extracted", "max"), fid=("fid", "mean"), fid_min=("fid", "min"),
                 fid_max=("fid", "max"), seeds=("seed", "nunique"))
            .reset_index())


curves = {family: by_mode(table, family) for family, table in sweeps.items()}
has_fid = {family: bool(curve["fid"].notna().all()) for family, curve in curves.items()}
metric = {family: (str(sweeps[family]["fid_metric"].dropna().iloc[0]) if has_fid[family] else None) for family in sweeps}
for family, curve in curves.items():
    display(Markdown(f"**{runs[family].config.model.model}** (count at prefix {headline[family]} tokens; "
                     f"{metric[family] or 'no FID measured'}):"))
    shown = curve[["mode", "k_percent", "seeds", "extracted", "extracted_min", "extracted_max", "fid"]]
    display(style.scroll_table(shown.style.format({"extracted": "{:.1f}", "fid": "{:.2f}"}, na_rep="—")
                               .hide(axis="index")))

# %% [markdown]
# ## Extraction and image quality against k
#
# Lines: the mean over seeds (one seed except for the random control); bands: the range over seeds.
# k = 0 is the unedited model.

# %% tags=["hide-input"]
def plot_against_k(ax, curve: pd.DataFrame, column: str) -> None:
    for mode, group in curve.groupby("mode", sort=False):
        ax.plot(group["k_percent"], group[column], marker="o", label=summaries.MODE_LABELS[mode],
                color=style.edit_color(mode))
        if (group["seeds"] > 1).any():
            ax.fill_between(group["k_percent"], group[f"{column}_min"], group[f"{column}_max"], alpha=0.2,
                            color=style.edit_color(mode))


if curves:
    n_rows = 1 + any(has_fid.values())
    fig, axes = plt.subplots(n_rows, len(curves), figsize=(5.5 * len(curves), 3.6 * n_rows), squeeze=False)
    for j, (family, curve) in enumerate(curves.items()):
        plot_against_k(axes[0, j], curve, "extracted")
        axes[0, j].set_ylabel(f"{style.LABELS['extracted']} (prefix {headline[family]})")
        axes[0, j].set_title(runs[family].config.model.model)
        axes[0, j].legend(fontsize=8)
        if n_rows == 2:
            if has_fid[family]:
                plot_against_k(axes[1, j], curve, "fid")
                axes[1, j].set_ylabel(f"{metric[family]} (lower is better)")
            else:
                axes[1, j].axis("off")
        axes[-1, j].set_xlabel(style.LABELS["k_percent"])
    fig.tight_layout()
    fig.savefig(Path(config.run.results_dir) / "tradeoff_vs_k.png", dpi=120)
    glue("fig_vs_k", fig, display=False)
    plt.close(fig)

# %% [markdown]
# ## The Pareto plot
#
# Each point is one edit (mode and k; the random control averaged over seeds), placed by its image
# quality distance and its extracted count; the label is k in percent, and the unedited model is
# one point of its own. Down and to the left is
# better on both. Points on the Pareto front (no other point of the model has both a lower count and
# a lower distance) are circled.

# %% tags=["hide-input"]
def pareto_front(points: pd.DataFrame) -> pd.Series:
    """True for the points no other point beats on both columns (lower is better)."""
    fid, count = points["fid"].to_numpy(), points["extracted"].to_numpy()
    dominated = [bool(((fid <= f) & (count <= c) & ((fid < f) | (count < c))).any()) for f, c in zip(fid, count)]
    return pd.Series(~np.array(dominated, dtype=bool), index=points.index)


fronts = {}
with_fid = {family: curve for family, curve in curves.items() if has_fid[family]}
if with_fid:
    fig, axes = plt.subplots(1, len(with_fid), figsize=(6 * len(with_fid), 4.5), squeeze=False)
    for ax, (family, curve) in zip(axes[0], with_fid.items()):
        unedited = curve[curve["k_percent"] == 0].iloc[[0]].assign(mode="baseline")
        points = pd.concat([unedited, curve[curve["k_percent"] > 0]], ignore_index=True)
        front = pareto_front(points)
        fronts[family] = points[front]
        sns.scatterplot(data=points.assign(edit=points["mode"].map(summaries.MODE_LABELS)), x="fid", y="extracted",
                        hue="edit", style="edit", s=70, palette=style.edit_palette(), ax=ax)
        ax.scatter(points.loc[front, "fid"], points.loc[front, "extracted"], s=240, facecolors="none",
                   edgecolors="black", linewidths=1, label="Pareto front")
        for _, row in points[points["k_percent"] > 0].iterrows():
            ax.annotate(f"{row['k_percent']:g}", (row["fid"], row["extracted"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.set_xlabel(f"{metric[family]} (lower is better)")
        ax.set_ylabel(f"{style.LABELS['extracted']} (prefix {headline[family]})")
        ax.set_title(runs[family].config.model.model)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(config.run.results_dir) / "tradeoff_pareto.png", dpi=120)
    style.show(fig, style.alt_text(
        "Scatter plots, one per model", "each edit of the sweep placed by its image-quality distance and its extracted "
        "count, labelled with k, the Pareto front circled", "; ".join(
            f"{runs[f].config.model.model}: {len(fronts[f])} points on the front" for f in with_fid)))
elif curves:
    display(Markdown("This run measured no FID (`sweep_fid: false`), so there is no Pareto plot."))

# %% [markdown]
# ## Summary
#
# The curves, with the parameters that produced them, are written to `summary-tradeoff.json` in
# each model's results folder (a record for the reader; {doc}`reproduction` gathers its numbers
# from the result files).

# %% tags=["hide-input"]
def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain dicts, a missing value (no FID measured) as None."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


lines = []
for family, curve in curves.items():
    run = runs[family]
    half = curve[curve["mode"] == "unitmem-half"].sort_values("k_percent")
    before = float(curve.loc[curve["k_percent"] == 0, "extracted"].iloc[0])
    halved = half[half["extracted"] <= before / 2]
    record = {"notebook": "tradeoff", "model": run.config.model.model, "prefix": headline[family],
              "fid_metric": metric[family], "curves": records(curve),
              "pareto_front": records(fronts[family]) if family in fronts else None}
    write_record(run.out / "summary-tradeoff.json",
                      {"numbers": record, **provenance(run.config.flat(), run.config.run.seed, started)})
    line = f"- **{run.config.model.model}**: unedited, {before:g} candidates are extracted. "
    if before > 0 and len(halved):
        first = halved.iloc[0]
        glue(f"{family}_k_halving_count", float(first["k_percent"]), display=False)
        line += f"Halving the top {first['k_percent']:g}% UnitMem units is the smallest edit of the sweep that at least halves the count ({first['extracted']:g})"
        if has_fid[family]:
            fid_before = float(curve.loc[curve["k_percent"] == 0, "fid"].iloc[0])
            line += f", at a {metric[family]} of {first['fid']:.2f} (unedited {fid_before:.2f})"
        line += "."
    elif before > 0:
        line += "No UnitMem edit of the sweep halves the count."
    k_max = float(curve["k_percent"].max())
    at_max = curve[curve["k_percent"] == k_max].set_index("mode")
    if k_max > 0 and "unitmem-half" in at_max.index:
        glue(f"{family}_k_max", k_max, display=False)
        glue(f"{family}_extracted_at_k_max", float(at_max.loc["unitmem-half", "extracted"]), display=False)
        parts = [f"{summaries.MODE_LABELS[mode]}: {row['extracted']:.3g}" + (f" ({metric[family]} {row['fid']:.2f})" if has_fid[family] else "")
                 for mode, row in at_max.iterrows()]
        line += f" At the largest k of the sweep, {k_max:g}%, the counts are " + "; ".join(parts) + "."
    lines.append(line)
if not curves:
    lines.append("- No model in this run.")
display(Markdown("\n".join(lines)))
if curves:
    alt = style.alt_text("Line plots, one column per model", "the extracted count" + (" and the image-quality distance"
                         if any(has_fid.values()) else "") + " against k for the UnitMem edit and its controls, "
                         "with bands for the range over random seeds", " ".join(lines).replace("**", "").replace("- ", ""))
    panels = "Extraction (top) and image quality (bottom)" if any(has_fid.values()) else "Extraction"
    glue("lead", Markdown(style.figure_md("fig_vs_k", alt, f"{panels} against k, the share of fc1 units edited; "
                                          "k = 0 is the unedited model.", "fig-tradeoff-vs-k")
                          + "\n" + "\n".join(lines)), display=False)
else:
    glue("lead", Markdown("**This run has no model.**"), display=False)

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("tradeoff", params_file, None)), display=False)

# %% tags=["remove-cell"]
# For the exercises (the exercise runs of notebooks/exercises.yaml glue the same keys): the
# testbed FID of the UnitMem edit at the reported k against the unedited model, paired by sampling
# seed, with its computed verdict as a sentence (none with a single seed: no interval).
for family, table in sweeps.items():
    run, k = runs[family], runs[family].config.sweep.k_percent
    glue(f"ex_{family}_k_percent", k, display=False)
    glue(f"ex_{family}_fid_seeds", len(run.config.fid.fid_seeds), display=False)
    glue(f"ex_{family}_samples_per_class", run.config.fid.fid_samples_per_class, display=False)
    edited = table[(table["mode"] == "unitmem-half") & (table["k_percent"] == k)]
    baseline = table[table["k_percent"] == 0].iloc[0]
    if edited.empty or baseline["fid_by_seed"] is None or edited.iloc[0]["fid_by_seed"] is None:
        glue(f"ex_{family}_fid_sentence", f"{run.config.model.model}: no FID measured at k = {k:g}%", display=False)
        continue
    before_by_seed, after_by_seed = list(baseline["fid_by_seed"]), list(edited.iloc[0]["fid_by_seed"])
    glue(f"ex_{family}_fid_before", float(np.mean(before_by_seed)), display=False)
    glue(f"ex_{family}_fid_after", float(np.mean(after_by_seed)), display=False)
    glue(f"ex_{family}_fid_before_first_seed", float(before_by_seed[0]), display=False)
    glue(f"ex_{family}_fid_after_first_seed", float(after_by_seed[0]), display=False)
    claim = f"{run.config.model.model}: {baseline['fid_metric']} after minus before halving the top {k:g}%, paired by seed"
    if len(before_by_seed) >= 2:
        sentence = summaries.claim_sentence(claim, *summaries.fid_change(before_by_seed, after_by_seed))
    else:
        sentence = (f"{claim}: {after_by_seed[0] - before_by_seed[0]:+.2f} from a single sampling seed, which gives "
                    "no interval, so no verdict")
    glue(f"ex_{family}_fid_sentence", sentence, display=False)

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise changes one setting of this page's run. Write your prediction down first, then run
# the variant from the repository root: it executes this page with the change, under its own results
# folder (`results/testbed/exercises/<id>`), reusing every cached result the change leaves alone (here
# UnitMem and the unedited attack; the sweep is recomputed, cut to the UnitMem edit at k = 0, 5 and
# 10% so that it stays short). Compare with this page's run: the unedited model is the control. The
# solution says what the variant run of this book showed; its numbers are glued from that run
# ({doc}`../book/exercise-runs`).
#
# This page's run measures the testbed FID with {glue:text}`ex_var_fid_seeds:d` sampling seeds of
# {glue:text}`ex_var_samples_per_class:d` samples per class: {glue:text}`ex_var_fid_sentence:s`;
# {glue:text}`ex_rar_fid_sentence:s`.
#
# ````{exercise} One FID seed instead of three
# :label: ex-tradeoff-one-fid-seed
#
# **Predict.** Each sampling seed is a full set of samples; the page reads an FID change only where
# the t interval over seeds excludes zero. With `fid_seeds: [0]` there is one set of samples. Will the
# FID of seed 0 be the same number as in this page's run? What can you still conclude about the
# edit's cost in image quality?
#
# **Run** (`fid_seeds: [0]`, the sweep cut to `k_percents: [0, 5, 10]` and `sweep_modes: [unitmem-half]`):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise tradeoff-one-fid-seed
# ```
#
# **Compare** the seed-0 values with this page's, and the verdicts.
# ````
#
# ```{solution} ex-tradeoff-one-fid-seed
# :class: dropdown
#
# The run `tradeoff-one-fid-seed` took {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::page_seconds:.0f` s
# on this machine. Seed 0 gives `var-testbed`
# {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::ex_var_fid_before_first_seed:.3f` unedited and
# {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::ex_var_fid_after_first_seed:.3f` edited (this page's
# seed 0: {glue:text}`ex_var_fid_before_first_seed:.3f` and {glue:text}`ex_var_fid_after_first_seed:.3f`),
# `rar-testbed` {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::ex_rar_fid_before_first_seed:.3f` and
# {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::ex_rar_fid_after_first_seed:.3f` (this page:
# {glue:text}`ex_rar_fid_before_first_seed:.3f` and {glue:text}`ex_rar_fid_after_first_seed:.3f`):
# sampling is seeded, so one seed reproduces its own numbers exactly. But one seed has no spread:
# {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::ex_var_fid_sentence:s`;
# {glue:text}`exercise-tradeoff-one-fid-seed.ipynb::ex_rar_fid_sentence:s`.
# ```
#
# ````{exercise} Fewer samples per FID
# :label: ex-tradeoff-few-samples
#
# **Predict.** This page's FID uses {glue:text}`ex_var_samples_per_class:d` samples per class. FID
# estimated from fewer samples is biased upwards. With `fid_samples_per_class: 5`, will the unedited
# model's FID rise? Will the verdict on the edit's FID change stay the same?
#
# **Run** (`fid_samples_per_class: 5`, the same cut sweep `k_percents: [0, 5, 10]` and
# `sweep_modes: [unitmem-half]`):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise tradeoff-few-samples
# ```
#
# **Compare** the unedited FID and the verdicts with this page's.
# ````
#
# ```{solution} ex-tradeoff-few-samples
# :class: dropdown
#
# The run `tradeoff-few-samples` took {glue:text}`exercise-tradeoff-few-samples.ipynb::page_seconds:.0f` s
# on this machine. With {glue:text}`exercise-tradeoff-few-samples.ipynb::ex_var_samples_per_class:d`
# samples per class the unedited FID is
# {glue:text}`exercise-tradeoff-few-samples.ipynb::ex_var_fid_before:.2f` (`var-testbed`) and
# {glue:text}`exercise-tradeoff-few-samples.ipynb::ex_rar_fid_before:.2f` (`rar-testbed`), against
# {glue:text}`ex_var_fid_before:.2f` and {glue:text}`ex_rar_fid_before:.2f` on this page. Computed:
# {glue:text}`exercise-tradeoff-few-samples.ipynb::ex_var_fid_sentence:s`;
# {glue:text}`exercise-tradeoff-few-samples.ipynb::ex_rar_fid_sentence:s`.
# ```
