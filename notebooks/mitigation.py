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
#
# ```{glue:md} rerun_box
# :format: myst
# ```

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
headline = {family: stages.reported_prefix(run) for family, run in runs.items()}
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

# %% tags=["remove-stderr", "hide-output"]
sweeps = {family: stages.stage_sweep(run) for family, run in runs.items()}
for family, table in sweeps.items():
    columns = ["mode", "k_percent", "seed", "units_edited"] + [c for c in table if c.startswith("extracted@")] + ["fid"]
    display(Markdown(f"**{runs[family].config.model.model}**: {len(table)} rows (all columns: `sweep.csv` in "
                     f"`{stages.shown_path(runs[family].out)}`); FID column: {table['fid_metric'].dropna().iloc[0] if table['fid'].notna().any() else 'not measured'}"))
    display(table[columns].style.format({"fid": "{:.2f}"}, na_rep="—").hide(axis="index"))

# %% [markdown]
# ## Extraction after the edit, at the reported k
#
# The count is the number of candidates extracted at each model's reported prefix (`reported_prefix`). The random
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
            f"Halving the top UnitMem units gives {int(after)} extracted against {before} unedited")
    if "extracted_change" in summary:  # glued for the prose; the sentence leaves the reading to the verdicts below
        glue(f"{family}_extracted_change", summary["extracted_change"], display=False)
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
    display(Markdown(text + "; the verdicts below say which of these differences lie outside the noise."))

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
# ## Edits against their controls, by duplication level
#
# Every mode of the sweep at every k, on the testbed's answer key. Left: the extracted count against
# k for the UnitMem edit, its zeroing and per-block variants, the **magnitude baseline** (the top-k%
# units by mean activation, halved: does UnitMem add anything over "large units"?) and the random
# units (mean and range over the seeds). Right: at the reported k, what each edit leaves extracted
# in each group; an edit that targets memorization should act first on the barely memorized images.
# The verdicts below are computed (`memlib.summaries`): a paired bootstrap over the candidates for two
# deterministic edits, the range over seeds for the random control, a t interval over sampling seeds
# for FID.

# %% tags=["hide-input"]
verdicts = {}
for family, table in sweeps.items():
    run = runs[family]
    if run.config.data.dataset != "testbed":
        continue
    testbed = stages.training_images(run, 1.0).testbed
    attack = stages.stage_attack(run)  # the stored attack: its scored images and candidates
    attacked = attack.image_ids_N.numpy()  # every image stage A scored (max_images: a class-spread sample)
    groups = {name: np.intersect1d(ids, attacked) for name, ids in testbed.groups().items()}
    prefix, k = str(headline[family]), k_report[family]
    long = pd.DataFrame([{"mode": row["mode"], "k_percent": row["k_percent"], "seed": row["seed"], "group": group, "extracted": n}
                         for _, row in table.iterrows()
                         for group, n in summaries.extracted_by_group(row["extracted_ids"][prefix], groups).items()])
    fig, (ax_k, ax_group) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.25]})
    everything = long[long["group"] == "all"]
    for mode, rows in everything.groupby("mode", sort=False):
        by_k = rows.groupby("k_percent")["extracted"]
        ax_k.plot(by_k.mean().index, by_k.mean().values, marker="o", label=summaries.MODE_LABELS.get(mode, mode))
        if mode == "random-half":
            ax_k.fill_between(by_k.min().index, by_k.min().values, by_k.max().values, alpha=0.2)
    ax_k.set_xlabel("k (% of fc1 units edited)")
    ax_k.set_ylabel("extracted candidates")
    ax_k.legend(fontsize=8)
    at_k = long[(long["k_percent"] == k) & (long["group"] != "all")]
    sns.barplot(data=at_k, x="group", y="extracted", hue=at_k["mode"].map(lambda m: summaries.MODE_LABELS.get(m, m)),
                errorbar=("pi", 100), ax=ax_group)
    ax_group.set_xlabel("group (copies per epoch)")
    ax_group.set_ylabel(f"extracted after the edit, k = {k:g}%")
    ax_group.legend(fontsize=7)
    fig.suptitle(f"{run.config.model.model}: extraction after each edit (prefix {prefix} tokens)")
    fig.tight_layout()
    plt.show()

    rows_k = table[table["k_percent"] == k]
    baseline = table[table["k_percent"] == 0].iloc[0]
    candidates = attack.result.candidate_ids.tolist()  # every attacked candidate
    ids_of = lambda mode: rows_k[rows_k["mode"] == mode].iloc[0]["extracted_ids"][prefix]  # noqa: E731
    found = {}
    if "unitmem-half" in set(rows_k["mode"]):
        effect, word = summaries.reduction(baseline["extracted_ids"][prefix], ids_of("unitmem-half"), candidates, seed=config.run.seed)
        found["the UnitMem edit reduces extraction"] = (effect, word)
        if "random-half" in set(rows_k["mode"]):
            random_counts = rows_k[rows_k["mode"] == "random-half"][f"extracted@{prefix}"].tolist()
            found["it beats random units of the same number"] = summaries.edit_vs_control(len(ids_of("unitmem-half")), random_counts)
        if "magnitude-half" in set(rows_k["mode"]):
            found["it beats the largest units (magnitude baseline)"] = summaries.reduction(
                ids_of("magnitude-half"), ids_of("unitmem-half"), candidates, seed=config.run.seed)
        if "unitmem-zero" in set(rows_k["mode"]):
            found["zeroing removes more than halving"] = summaries.reduction(
                ids_of("unitmem-half"), ids_of("unitmem-zero"), candidates, seed=config.run.seed)
        edited = rows_k[rows_k["mode"] == "unitmem-half"].iloc[0]
        if baseline["fid_by_seed"] is not None and edited["fid_by_seed"] is not None and len(baseline["fid_by_seed"]) >= 2:
            found[f"the edit raises the {baseline['fid_metric']}"] = summaries.fid_change(baseline["fid_by_seed"], edited["fid_by_seed"])
    verdicts[family] = {claim: {"effect": e.value, "lo": e.lo, "hi": e.hi, "interval": e.method, "verdict": w}
                        for claim, (e, w) in found.items()}
    for i, (claim, (e, w)) in enumerate(found.items()):
        glue(f"{family}_verdict_{i}", w, display=False)
    display(pd.DataFrame([{"claim (k = %g%%)" % k: claim, "effect": e.value, "95% interval": f"[{e.lo:.2f}, {e.hi:.2f}]",
                           "how": e.method, "verdict": w} for claim, (e, w) in found.items()])
            .style.format({"effect": "{:.2f}"}).hide(axis="index"))
    per_group = at_k.groupby(["mode", "group"], sort=False)["extracted"].mean().unstack()[list(groups)]
    per_group.index = [summaries.MODE_LABELS.get(m, m) for m in per_group.index]
    display(per_group.style.format("{:.1f}"))

# %% [markdown]
# ### The FID cost, with its interval
#
# FID of the UnitMem edit minus FID of the unedited model, paired by sampling seed (the same
# seeds before and after), with the 95% t interval over the seeds, at every k of the sweep. A rise
# is read only where the interval excludes zero.

# %% tags=["hide-input"]
fid_rows = []
for family, table in sweeps.items():
    baseline = table[table["k_percent"] == 0].iloc[0]
    if baseline["fid_by_seed"] is None or len(baseline["fid_by_seed"]) < 2:
        continue
    for _, row in table[(table["mode"] == "unitmem-half") & (table["k_percent"] > 0)].iterrows():
        if row["fid_by_seed"] is None:
            continue
        change, word = summaries.fid_change(baseline["fid_by_seed"], row["fid_by_seed"])
        fid_rows.append({"model": runs[family].config.model.model, "k_percent": row["k_percent"], "change": change.value,
                         "lo": change.lo, "hi": change.hi, "verdict": word, "seeds": len(row["fid_by_seed"])})
if fid_rows:
    fid_frame = pd.DataFrame(fid_rows)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for offset, (model, rows) in zip((-0.15, 0.15), fid_frame.groupby("model", sort=False)):
        x = rows["k_percent"].to_numpy() * (1 + offset / 5)
        ax.errorbar(x, rows["change"], yerr=np.clip([rows["change"] - rows["lo"], rows["hi"] - rows["change"]], 0, None),
                    fmt="o-", capsize=3, label=model)
    ax.axhline(0, color="gray", linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("k (% of fc1 units halved, log scale)")
    ax.set_ylabel("FID after minus before (paired by seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()
    display(fid_frame.style.format({"change": "{:+.2f}", "lo": "{:+.2f}", "hi": "{:+.2f}"}).hide(axis="index"))

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
                      {"numbers": {"notebook": "mitigation", "model": run.config.model.model, **summary,
                                   "verdicts": verdicts.get(family)},
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

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("mitigation", params_file, None)), display=False)
