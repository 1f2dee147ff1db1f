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
# # Mitigating extraction by editing the top units
#
# **Question: does halving the incoming weights of the units with the highest UnitMem cut the
# number of training images the attack extracts, and by more than halving as many random units?**
#
# The paper {cite:p}`kasliwal2025localizing` ranks all fc1 units of a model by UnitMem, takes the
# global top k% (VAR-d30: 10%, RAR-XXL: 5%) and multiplies their rows of `fc1.weight` by 0.5
# (bias and fc2 unchanged). It then reruns the attack on the same candidates
# ({doc}`extraction`). This page shows that edit beside two controls the paper's claim needs:
#
# - **random units**: the same number of units chosen uniformly at random, halved, for several
#   seeds (if the random edit removed as much, UnitMem would not be what matters);
# - **zeroing**: the top units multiplied by 0 instead of 0.5 (the paper: "no significant benefit").
#
# Every edit is undone bit-exactly after its row of the sweep (`memlib.intervene`). The cell below
# holds the parameters; papermill replaces them.

# %% tags=["parameters"]
params_file = "notebooks/params/testbed.yaml"  # the run: every setting (memlib/config.py, README table)
# -- what this page discusses; None: the parameter file's value
k_percent = None                 # the k% this page reports; unset in the file too: the paper's (VAR 10%, RAR 5%)
k_percents = None                # every k% the sweep edits (0: the unedited model)
sweep_modes = None               # how units are chosen and scaled ("unitmem-half", "random-half", ...)
random_seeds = None              # seeds of the random-unit control (at least 3)
sweep_fid = None                 # measure FID (testbed: "testbed FID") for every sweep row

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import stages, summaries
from memlib.config import page_config
from memlib.results import atomic_write_json, provenance

config = page_config(params_file, k_percent=k_percent, k_percents=k_percents, sweep_modes=sweep_modes,
                     random_seeds=random_seeds, sweep_fid=sweep_fid)
started = time.time()
sns.set_theme(style="whitegrid", context="notebook")

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.config`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed pair `var-testbed` and `rar-testbed`; a
# full-scale run names one model. The k% this page reports must be one of the sweep's `k_percents`.

# %% tags=["hide-input"]
runs = stages.make_runs(config, "sweep", usable_prefixes=True)
headline = {family: max(run.config.attack.prefix_lengths) for family, run in runs.items()}
k_report = {family: run.config.sweep.k_percent for family, run in runs.items()}
for family, run in runs.items():
    if k_report[family] not in run.config.sweep.k_percents:
        raise ValueError(f"k_percent: the page reports k = {k_report[family]:g}% for {run.config.model.model}, which "
                         f"k_percents {run.config.sweep.k_percents} does not contain; add it there")
    if "unitmem-half" not in run.config.sweep.sweep_modes:
        raise ValueError(f"sweep_modes: got {run.config.sweep.sweep_modes}; this page needs 'unitmem-half'")
    print(f"{run.config.model.model}: k = {k_report[family]:g}%, prefix {headline[family]} tokens, "
          f"sweep {run.config.sweep.sweep_modes} at k% {run.config.sweep.k_percents}")

# %% [markdown]
# ## The sweep
#
# `memlib.stages.stage_sweep` reads (or computes) UnitMem and the unedited attack, then edits the model
# for every (mode, k%, seed), reruns stages C and D of the attack on the same candidates and, with
# `sweep_fid`, measures FID. Each row is written to its own file as it finishes, named by a hash of
# everything the row depends on, so a second run of this notebook and {doc}`tradeoff` read the rows
# back; `python -m memlib sweep` (or `torchrun ... -m memlib sweep`) writes the same rows for a
# full-scale model. On the testbed the FID column is a **testbed FID**: the Frechet distance of the
# testbed classifier's features, not FID in the paper's sense.

# %% tags=["remove-stderr"]
sweeps = {family: stages.stage_sweep(run) for family, run in runs.items()}
for family, table in sweeps.items():
    columns = ["mode", "k_percent", "seed", "units_edited"] + [c for c in table if c.startswith("extracted@")] + ["fid"]
    display(Markdown(f"**{runs[family].config.model.model}**: {len(table)} rows (all columns: `sweep.csv` in "
                     f"`{runs[family].out}`); FID column: {table['fid_metric'].dropna().iloc[0] if table['fid'].notna().any() else 'not measured'}"))
    display(table[columns].style.format({"fid": "{:.2f}"}, na_rep="—").hide(axis="index"))

# %% [markdown]
# ## Extraction after the edit, at the reported k
#
# The count is the number of candidates extracted at each model's longest prefix. The random
# control is shown as the mean over its seeds, with each seed as a dot.

# %%
results, page_numbers = {}, {}
for family, table in sweeps.items():
    rows = summaries.rows_at_k(table, k_report[family], headline[family]).assign(model=runs[family].config.model.model)
    results[family] = rows
    summary = page_numbers[family] = summaries.mitigation_summary(rows, k_report[family], headline[family])
    before, after = summary["extracted_before"], summary["unitmem_half_extracted_mean"]
    glue(f"{family}_k_percent", k_report[family], display=False)
    glue(f"{family}_extracted_before", before, display=False)
    glue(f"{family}_extracted_after", int(after), display=False)
    text = (f"**{runs[family].config.model.model}, top {k_report[family]:g}% ({summary['units_edited']} units).** "
            f"Halving the top UnitMem units changes the count from {before} to {int(after)}")
    if "extracted_change" in summary:
        glue(f"{family}_extracted_change", summary["extracted_change"], display=False)
        text += f" ({100 * summary['extracted_change']:+.0f}%)"
    if "random_half_extracted_mean" in summary:
        glue(f"{family}_random_extracted_mean", summary["random_half_extracted_mean"], display=False)
        text += (f"; halving as many random units gives {summary['random_half_extracted_mean']:.1f} on average "
                 f"(from {summary['random_half_extracted_min']} to {summary['random_half_extracted_max']} over "
                 f"{summary['random_half_seeds']} seeds)")
        verdict = summaries.random_control_verdict(after, summary["random_half_extracted_min"],
                                                   summary["random_half_extracted_max"])
        text += f", so the UnitMem edit leaves {verdict}"
    if "unitmem_zero_extracted_mean" in summary:
        glue(f"{family}_zero_extracted", int(summary["unitmem_zero_extracted_mean"]), display=False)
        text += f"; zeroing the same units gives {int(summary['unitmem_zero_extracted_mean'])}"
    if "fid_before" in summary:
        glue(f"{family}_fid_before", summary["fid_before"], display=False)
        glue(f"{family}_fid_after", summary["fid_after"], display=False)
        text += (f". The {summary['fid_metric']} goes from {summary['fid_before']:.2f} to {summary['fid_after']:.2f} "
                 "with the UnitMem edit")
        if "random_half_fid_min" in summary:
            text += (f" (random units: {summary['random_half_fid_min']:.2f} to {summary['random_half_fid_max']:.2f}, "
                     "which shows how much the distance varies between edits of the same size)")
    display(Markdown(text + "."))

if results:
    frame = pd.concat(results.values(), ignore_index=True).assign(edit=lambda f: f["mode"].map(summaries.MODE_LABELS))
    grid = sns.catplot(data=frame, x="edit", y="extracted", col="model", kind="bar", errorbar=("pi", 100),
                       color="#9bb7d4", sharey=False, height=4, aspect=1.2)
    grid.map_dataframe(sns.stripplot, x="edit", y="extracted", color="black", size=5)
    grid.set_axis_labels("", "extracted candidates")
    for ax, (family, rows) in zip(grid.axes.flat, results.items()):
        ax.set_title(f"{runs[family].config.model.model}: top/random {k_report[family]:g}%, prefix {headline[family]}")
        ax.tick_params(axis="x", labelrotation=20)
    grid.figure.suptitle("Extraction after editing fc1 units (bar: mean; line: range over seeds)", y=1.03)
    grid.figure.savefig(Path(config.run.results_dir) / "mitigation_at_k.png", dpi=120, bbox_inches="tight")
    plt.show()

# %% [markdown]
# ## Which images stay extractable
#
# On the testbed, the extracted candidates split into planted images and others. An edit that
# targets memorization should remove planted images first.

# %%
for family, rows in results.items():
    if runs[family].config.data.dataset != "testbed":
        continue
    planted = stages.training_images(runs[family], 1.0).planted
    split = []
    for _, row in rows.iterrows():
        ids = np.asarray(row["extracted_ids"][str(headline[family])], dtype=int)
        split.append({"edit": summaries.MODE_LABELS[row["mode"]], "seed": row["seed"], "extracted": len(ids),
                      "planted": int(planted[ids].sum()), "not planted": int((~planted[ids]).sum())})
    display(Markdown(f"**{runs[family].config.model.model}**, top {k_report[family]:g}%:"))
    display(pd.DataFrame(split).style.hide(axis="index"))

# %% [markdown]
# ## The count against the prefix length, before and after the edit
#
# The same edits at every prefix length of the run (the random control: mean over seeds).

# %%
if results:
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, (family, rows) in zip(axes[0], results.items()):
        prefixes = runs[family].config.attack.prefix_lengths
        for mode, group in rows.groupby("mode", sort=False):
            ax.plot(prefixes, [group[f"extracted@{n}"].mean() for n in prefixes], marker="o", label=summaries.MODE_LABELS[mode])
        ax.set_xlabel("prefix length (tokens)")
        ax.set_ylabel("extracted candidates")
        ax.set_title(f"{runs[family].config.model.model}, k = {k_report[family]:g}%")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(config.run.results_dir) / "mitigation_vs_prefix.png", dpi=120)
    plt.show()

# %% [markdown]
# ## Summary
#
# The numbers of this page, with the parameters that produced them, are written to
# `summary-mitigation.json` in each model's results folder; {doc}`reproduction` reads them there.

# %%
lines = []
for family, run in runs.items():
    summary = page_numbers[family]
    atomic_write_json(run.out / "summary-mitigation.json",
                      {"numbers": {"notebook": "mitigation", "model": run.config.model.model, **summary},
                       **provenance(run.config.flat(), run.config.run.seed, started)})
    line = (f"- **{run.config.model.model}**, top {summary['k_percent']:g}% halved: {summary['extracted_before']} → "
            f"{int(summary['unitmem_half_extracted_mean'])} extracted")
    if "random_half_extracted_mean" in summary:
        line += f" (random units: {summary['random_half_extracted_mean']:.1f} on average)"
    if "fid_before" in summary:
        line += f"; {summary['fid_metric']} {summary['fid_before']:.2f} → {summary['fid_after']:.2f}"
    lines.append(line + ".")
if not runs:
    lines.append("- No model in this run.")
display(Markdown("\n".join(lines)))
