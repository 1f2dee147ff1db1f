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
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# The paper {cite:p}`kasliwal2025localizing` ranks all fc1 units of a model by UnitMem, takes the
# global top k% (VAR-d30: 10%, RAR-XXL: 5%) and multiplies their rows of `fc1.weight` by 0.5
# (bias and fc2 unchanged). It then reruns the attack on the same candidates
# ({doc}`extraction`). This page shows that edit beside two controls the paper's claim needs:
#
# - **random units**: the same number of units chosen uniformly at random, halved, for several
#   seeds (if the random edit removed as much, UnitMem would not be what matters);
# - **zeroing**: the top units multiplied by 0 instead of 0.5 (the paper: "no significant benefit").
#
# Every edit is undone bit-exactly after its row of the sweep (`memlib.intervene`). The folded cell
# below holds the parameters; papermill replaces them.
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run: every setting (memlib/config.py, README table)
# -- what this page discusses; None: the parameter file's value
k_percent = None                 # the k% this page reports; unset in the file too: the paper's (VAR 10%, RAR 5%)
k_percents = None                # every k% the sweep edits (0: the unedited model)
sweep_modes = None               # how units are chosen and scaled ("unitmem-half", "random-half", ...)
random_seeds = None              # seeds of the random-unit control (at least 3)
sweep_fid = None                 # measure FID (testbed: "testbed FID") for every sweep row

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

config = page_config(params_file, k_percent=k_percent, k_percents=k_percents, sweep_modes=sweep_modes,
                     random_seeds=random_seeds, sweep_fid=sweep_fid)
started = time.time()
style.apply()

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
# `sweep_fid`, measures FID. The unedited model and the rows at the reported k attack at every prefix
# length; the rows at other k at the reported prefix only, the one count this page reads there
# (`sweep_prefixes: all` attacks every row at every prefix; "—" in the table: not attacked). Each
# row is written to its own file as it finishes, named by a hash of everything the row depends on,
# so a second run of this notebook and {doc}`tradeoff` read the rows
# back; `python -m memlib sweep` (or `torchrun ... -m memlib sweep`) writes the same rows for a
# full-scale model. On the testbed the FID column is a **testbed FID**: the Frechet distance of the
# testbed classifier's features, not FID in the paper's sense.

# %% tags=["remove-stderr"]
sweeps = {family: stages.stage_sweep(run) for family, run in runs.items()}

# %% tags=["hide-input", "hide-output"]
for family, table in sweeps.items():
    columns = ["mode", "k_percent", "seed", "units_edited"] + [c for c in table if c.startswith("extracted@")] + ["fid"]
    display(Markdown(f"**{runs[family].config.model.model}**: {len(table)} rows (all columns: `sweep.csv` in "
                     f"`{stages.shown_path(runs[family].out)}`); FID column: {table['fid_metric'].dropna().iloc[0] if table['fid'].notna().any() else 'not measured'}"))
    counts = {c: "{:.0f}" for c in columns if c.startswith("extracted@")}  # "—": a prefix the row did not attack
    display(style.scroll_table(table[columns].style.format({"fid": "{:.2f}", **counts}, na_rep="—").hide(axis="index")))

# %% [markdown]
# ## Extraction after the edit, at the reported k
#
# The count is the number of candidates extracted at each model's reported prefix (`reported_prefix`). The random
# control is shown as the mean over its seeds, with each seed as a dot.

# %% tags=["hide-input"]
results, page_numbers, lead_text = {}, {}, {}
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
    lead_text[family] = text + "; the verdicts below say which of these differences lie outside the noise."
    display(Markdown(lead_text[family]))

if results:
    frame = pd.concat(results.values(), ignore_index=True).assign(edit=lambda f: f["mode"].map(summaries.MODE_LABELS))
    grid = sns.catplot(data=frame, x="edit", y="extracted", col="model", kind="bar", errorbar=("pi", 100),
                       hue="edit", palette=style.edit_palette(), legend=False, sharey=False, height=4, aspect=1.2)
    grid.map_dataframe(sns.stripplot, x="edit", y="extracted", color="black", size=5)
    grid.set_axis_labels("", style.LABELS["extracted"])
    for ax, (family, rows) in zip(grid.axes.flat, results.items()):
        ax.set_title(f"{runs[family].config.model.model}: top/random {k_report[family]:g}%, prefix {headline[family]}")
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():  # long edit names: anchored at their tick, not overlapping
            label.set_horizontalalignment("right")
    grid.figure.suptitle("Extraction after editing fc1 units (bar: mean; line: range over seeds)", y=1.03)
    grid.figure.savefig(Path(config.run.results_dir) / "mitigation_at_k.png", dpi=120, bbox_inches="tight")
    glue("fig_at_k", grid.figure, display=False)
    plt.close(grid.figure)

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

# %% tags=["hide-input", "remove-stderr"]
verdicts, found_by_family = {}, {}
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
        ax_k.plot(by_k.mean().index, by_k.mean().values, marker="o", label=summaries.MODE_LABELS.get(mode, mode),
                  color=style.edit_color(mode))
        if mode == "random-half":
            ax_k.fill_between(by_k.min().index, by_k.min().values, by_k.max().values, alpha=0.2,
                              color=style.edit_color(mode))
    ax_k.set_xlabel(style.LABELS["k_percent"])
    ax_k.set_ylabel(style.LABELS["extracted"])
    ax_k.legend(fontsize=8)
    at_k = long[(long["k_percent"] == k) & (long["group"] != "all")]
    sns.barplot(data=at_k, x="group", y="extracted", hue=at_k["mode"].map(lambda m: summaries.MODE_LABELS.get(m, m)),
                errorbar=("pi", 100), palette=style.edit_palette(), ax=ax_group)
    ax_group.set_xlabel(style.LABELS["group"])
    ax_group.set_ylabel(f"extracted after the edit, k = {k:g}%")
    ax_group.legend(fontsize=7)
    fig.suptitle(f"{run.config.model.model}: extraction after each edit (prefix {prefix} tokens)")
    fig.tight_layout()
    at_k_all = everything[everything["k_percent"] == k].groupby("mode", sort=False)["extracted"].mean()
    style.show(fig, style.alt_text(
        "Line plot and grouped bar chart", f"the candidates of {run.config.model.model} extracted after each edit, "
        f"against k (left) and per image group at k = {k:g}% (right)",
        f"at k = {k:g}%, " + ", ".join(f"{summaries.MODE_LABELS.get(m, m)} leaves {n:.1f}" for m, n in at_k_all.items())))

    candidates = attack.result.candidate_ids.tolist()  # every attacked candidate (the stored attack)
    found = {summaries.MITIGATION_CLAIMS[key]: verdict for key, verdict in
             summaries.mitigation_verdicts(table, candidates, k, headline[family], seed=config.run.seed).items()}
    found_by_family[family] = found
    verdicts[family] = {claim: {"effect": e.value, "lo": e.lo, "hi": e.hi, "interval": e.method, "verdict": w}
                        for claim, (e, w) in found.items()}
    for i, (claim, (e, w)) in enumerate(found.items()):
        glue(f"{family}_verdict_{i}", w, display=False)
    display(style.scroll_table(pd.DataFrame([
        {"claim (k = %g%%)" % k: claim, "effect": e.value, "95% interval": f"[{e.lo:.2f}, {e.hi:.2f}]", "how": e.method,
         "verdict": w} for claim, (e, w) in found.items()]).style.format({"effect": "{:.2f}"}).hide(axis="index")))
    per_group = at_k.groupby(["mode", "group"], sort=False)["extracted"].mean().unstack()[list(groups)]
    per_group.index = [summaries.MODE_LABELS.get(m, m) for m in per_group.index]
    display(style.scroll_table(per_group.style.format("{:.1f}")))

lead = []
if results:
    alt = style.alt_text("Bar charts, one per model", "the candidates extracted after each edit at the reported k, "
                         "bars for the mean and dots for each random seed", "; ".join(
                             f"{runs[f].config.model.model}: unedited {page_numbers[f]['extracted_before']}, top UnitMem "
                             f"halved {page_numbers[f]['unitmem_half_extracted_mean']:.0f}" for f in results))
    lead.append(style.figure_md("fig_at_k", alt, "Extraction after editing fc1 units at the reported k (bar: mean over "
                                "seeds; dots: each seed). The verdicts below the figure are computed.", "fig-mitigation-at-k"))
for family in results:
    lead.append(lead_text[family])
    if found_by_family.get(family):
        lead.append("Verdicts at the reported k: " + "; ".join(f"{claim}: **{w}**" for claim, (_, w)
                                                                in found_by_family[family].items()) + ".")
glue("lead", Markdown("\n\n".join(lead) or "**This run has no model.**"), display=False)

# %% [markdown]
# ### RAR's reading position and the edit
#
# {doc}`unitmem-rar` ranks RAR's units at T-2, the position that predicts the last token
# (chosen), and shows that T-1, the last input token, puts the top units elsewhere. Here the
# same edit (halve the top k% units) is made with the units ranked at T-1 (`selection: last`),
# on the same candidates: a reduced sweep, the unedited model and the reported k only, without FID.
# The verdict compares the two edits paired on the candidates (`memlib.summaries.reduction`).

# %% tags=["hide-input", "remove-stderr"]
readings = {}
for family, table in sweeps.items():
    run, k, prefix = runs[family], k_report[family], str(headline[family])
    if family != "rar" or run.config.sweep.selection not in ("default", "predicts-last"):
        continue
    at_t1 = stages.stage_sweep(stages.make_run(run.config.replace(  # own folder, the run's cache: nothing overwritten
        selection="last", sweep_modes=["unitmem-half"], k_percents=[0, k], sweep_fid=False,
        results_dir=str(run.out / "reading-t1"), cache_dir=str(run.cache))))
    ids_t2 = table[(table["mode"] == "unitmem-half") & (table["k_percent"] == k)].iloc[0]["extracted_ids"][prefix]
    ids_t1 = at_t1[at_t1["k_percent"] == k].iloc[0]["extracted_ids"][prefix]
    candidates = stages.stage_attack(run).result.candidate_ids.tolist()
    difference, word = summaries.reduction(ids_t1, ids_t2, candidates, seed=config.run.seed)
    readings[family] = {"t2": len(ids_t2), "t1": len(ids_t1), "effect": difference.value, "lo": difference.lo,
                        "hi": difference.hi, "verdict": word}
    glue(f"{family}_t1_extracted", len(ids_t1), display=False)
    glue(f"{family}_t1_vs_t2_verdict", word, display=False)
    display(Markdown(
        f"**{run.config.model.model}, top {k:g}% halved, prefix {prefix} tokens.** Ranked at T-2 (chosen): {len(ids_t2)} "
        f"extracted; ranked at T-1: {len(ids_t1)} (unedited: {int(table[table['k_percent'] == 0].iloc[0][f'extracted@{prefix}'])}). "
        f"T-1 minus T-2 {difference.text()} ({difference.method}): that the chosen reading's edit removes more than "
        f"T-1's **{word}**."))
if not readings:
    display(Markdown("This run has no RAR model ranked at T-2, so there is no comparison of readings."))

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
        family = next(f for f, r in runs.items() if r.config.model.model == model)
        ax.errorbar(x, rows["change"], yerr=np.clip([rows["change"] - rows["lo"], rows["hi"] - rows["change"]], 0, None),
                    fmt="o-", capsize=3, label=model, color=style.FAMILY_COLORS[family])
    ax.axhline(0, color=style.OKABE_ITO["grey"], linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("k (% of fc1 units halved, log scale)")
    ax.set_ylabel("FID after minus before (paired by seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    style.show(fig, style.alt_text(
        "Line plot with error bars", "the FID of the UnitMem edit minus the FID of the unedited model, paired by seed, "
        "against k on a log axis, one line per model", "; ".join(
            f"{r.model} at k = {r.k_percent:g}%: {r.change:+.2f} ({r.verdict})" for r in fid_frame.itertuples())))
    display(style.scroll_table(fid_frame.style.format({"change": "{:+.2f}", "lo": "{:+.2f}", "hi": "{:+.2f}"})
                               .hide(axis="index")))

# %% [markdown]
# ## The count against the prefix length, before and after the edit
#
# The same edits at every prefix length of the run (the random control: mean over seeds).

# %% tags=["hide-input"]
if results:
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, (family, rows) in zip(axes[0], results.items()):
        prefixes = runs[family].config.attack.prefix_lengths
        for mode, group in rows.groupby("mode", sort=False):
            ax.plot(prefixes, [group[f"extracted@{n}"].mean() for n in prefixes], marker="o", label=summaries.MODE_LABELS[mode],
                    color=style.edit_color(mode))
        ax.set_xlabel(style.LABELS["prefix"])
        ax.set_ylabel(style.LABELS["extracted"])
        ax.set_title(f"{runs[family].config.model.model}, k = {k_report[family]:g}%")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(config.run.results_dir) / "mitigation_vs_prefix.png", dpi=120)
    style.show(fig, style.alt_text(
        "Line plots, one per model", "the extracted candidates against the prefix length, one line for the unedited "
        "model and one for each edit at the reported k (" + ", ".join(f"{runs[f].config.model.model}: {k_report[f]:g}%"
                                                                      for f in results) + ")"))

# %% [markdown]
# ## Summary
#
# The numbers of this page, with the parameters that produced them, are written to
# `summary-mitigation.json` in each model's results folder (a record for the reader; {doc}`reproduction` gathers its numbers from the result files).

# %% tags=["hide-input"]
lines = []
for family, run in runs.items():
    summary = page_numbers[family]
    write_record(run.out / "summary-mitigation.json",
                      {"numbers": {"notebook": "mitigation", "model": run.config.model.model, **summary,
                                   "verdicts": verdicts.get(family), "rar_reading_t1": readings.get(family)},
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

# %% tags=["remove-cell"]
# For the exercises (the exercise runs of notebooks/exercises.yaml glue the same keys): the
# counts at the reported k and the computed verdicts of the edit against its controls, as sentences.
for family, run in runs.items():
    summary = page_numbers[family]
    glue(f"ex_{family}_k_percent", k_report[family], display=False)
    glue(f"ex_{family}_units_edited", summary["units_edited"], display=False)
    glue(f"ex_{family}_before", summary["extracted_before"], display=False)
    glue(f"ex_{family}_half", int(summary["unitmem_half_extracted_mean"]), display=False)
    if "random_half_extracted_mean" in summary:
        glue(f"ex_{family}_random_mean", summary["random_half_extracted_mean"], display=False)
        glue(f"ex_{family}_random_range", f"{summary['random_half_extracted_min']}-{summary['random_half_extracted_max']}", display=False)
    if "unitmem_zero_extracted_mean" in summary:
        glue(f"ex_{family}_zero", int(summary["unitmem_zero_extracted_mean"]), display=False)
    found = verdicts.get(family) or {}
    glue(f"ex_{family}_verdicts", "; ".join(
        summaries.claim_sentence(f"{run.config.model.model}, k = {k_report[family]:g}%: {claim}",
                                 summaries.Estimate(v["effect"], v["lo"], v["hi"], v["interval"]), v["verdict"])
        for claim, v in found.items()) or "no verdicts (not a testbed run)", display=False)

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise changes one setting of this page's run. Write your prediction down first, then run
# the variant from the repository root: it executes this page with the change, under its own results
# folder (`results/testbed/exercises/<id>`), reusing every cached result the change leaves alone (here
# UnitMem and the unedited attack; the sweep is recomputed, with fewer rows and no FID so that it
# stays short). Compare with the controls (random units of the same number, the unedited model) and
# with this page's run. The solution says what the variant run of this book showed; its numbers are
# glued from that run ({doc}`../book/exercise-runs`).
#
# This page's run: {glue:text}`ex_var_verdicts:s`. {glue:text}`ex_rar_verdicts:s`.
#
# ````{exercise} A larger edit
# :label: ex-mitigation-k20
#
# **Predict.** This page halves the top {glue:text}`ex_var_k_percent:g`% (VAR) and
# {glue:text}`ex_rar_k_percent:g`% (RAR) UnitMem units. At `k_percent: 20`, will the edit remove more
# extractions, and will it now beat halving as many *random* units? Will zeroing remove more than
# halving?
#
# **Run** (`k_percent: 20` with the sweep cut to `k_percents: [0, 20]` and
# `sweep_modes: [unitmem-half, random-half, unitmem-zero]` (the UnitMem edit, the random control and
# zeroing), `sweep_fid: false`):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise mitigation-k20
# ```
#
# **Compare** each edit's count with the random control's range and with the unedited model.
# ````
#
# ```{solution} ex-mitigation-k20
# :class: dropdown
#
# The run `mitigation-k20` took {glue:text}`exercise-mitigation-k20.ipynb::page_seconds:.0f` s on this
# machine. `var-testbed`: {glue:text}`exercise-mitigation-k20.ipynb::ex_var_before:d` extracted
# unedited, {glue:text}`exercise-mitigation-k20.ipynb::ex_var_half:d` after halving the top
# {glue:text}`exercise-mitigation-k20.ipynb::ex_var_k_percent:g`%
# ({glue:text}`exercise-mitigation-k20.ipynb::ex_var_units_edited:d` units),
# {glue:text}`exercise-mitigation-k20.ipynb::ex_var_zero:d` after zeroing them, and
# {glue:text}`exercise-mitigation-k20.ipynb::ex_var_random_range:s` after halving random units;
# `rar-testbed`: {glue:text}`exercise-mitigation-k20.ipynb::ex_rar_before:d`,
# {glue:text}`exercise-mitigation-k20.ipynb::ex_rar_half:d`,
# {glue:text}`exercise-mitigation-k20.ipynb::ex_rar_zero:d` and
# {glue:text}`exercise-mitigation-k20.ipynb::ex_rar_random_range:s`. The computed verdicts:
# {glue:text}`exercise-mitigation-k20.ipynb::ex_var_verdicts:s`.
# {glue:text}`exercise-mitigation-k20.ipynb::ex_rar_verdicts:s`.
# ```
#
# ````{exercise} A smaller edit, halved or zeroed
# :label: ex-mitigation-k1
#
# **Predict.** At `k_percent: 1` only the very top UnitMem units are edited. If memorization sits in
# a few units, a small edit should already act, and zeroing (scale 0) should act more than halving
# (scale 0.5). What do you expect against the random control at this k?
#
# **Run** (`k_percent: 1` with `k_percents: [0, 1]`, the same three edits
# `sweep_modes: [unitmem-half, random-half, unitmem-zero]`, `sweep_fid: false`):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise mitigation-k1
# ```
#
# **Compare** halving with zeroing and both with the random control.
# ````
#
# ```{solution} ex-mitigation-k1
# :class: dropdown
#
# The run `mitigation-k1` took {glue:text}`exercise-mitigation-k1.ipynb::page_seconds:.0f` s on this
# machine. `var-testbed`: {glue:text}`exercise-mitigation-k1.ipynb::ex_var_before:d` unedited,
# {glue:text}`exercise-mitigation-k1.ipynb::ex_var_half:d` halved,
# {glue:text}`exercise-mitigation-k1.ipynb::ex_var_zero:d` zeroed
# ({glue:text}`exercise-mitigation-k1.ipynb::ex_var_units_edited:d` units), random units
# {glue:text}`exercise-mitigation-k1.ipynb::ex_var_random_range:s`; `rar-testbed`:
# {glue:text}`exercise-mitigation-k1.ipynb::ex_rar_before:d`,
# {glue:text}`exercise-mitigation-k1.ipynb::ex_rar_half:d`,
# {glue:text}`exercise-mitigation-k1.ipynb::ex_rar_zero:d`, random
# {glue:text}`exercise-mitigation-k1.ipynb::ex_rar_random_range:s`. The computed verdicts:
# {glue:text}`exercise-mitigation-k1.ipynb::ex_var_verdicts:s`.
# {glue:text}`exercise-mitigation-k1.ipynb::ex_rar_verdicts:s`.
# ```
