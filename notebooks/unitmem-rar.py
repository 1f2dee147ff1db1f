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
# # Where memorization sits in RAR
#
# **Question: which fc1 units of a next-token (RAR) model respond to one training image far more
# than to all others, and in which blocks do they sit?**
#
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# UnitMem {cite:p}`wang2024localizing` scores a unit by how much more its mean activation on its
# most activating training image exceeds its mean activation on the other images: 0 when every
# image drives the unit equally, 1 when exactly one image does ({doc}`../book/method`). RAR
# {cite:p}`yu2024rar` predicts an image token by token in raster order. The paper
# {cite:p}`kasliwal2025localizing` takes the "last-token activation" of the teacher-forced sequence
# and reports that memorization concentrates in the middle and later blocks. "Last token" has two
# readings, shown side by side on this page: **T-2**, the position whose output predicts the last
# image token (**chosen**), and **T-1**, the position of the last input token. The book chooses T-2
# because the model never uses what it computes at T-1: that output predicts nothing, its training
# loss is discarded and generation never computes it; at T-2 the unit's activation takes part in
# producing the image. This page also shows the **option** of averaging over all positions.
#
# On the testbed the planted images are known, so the images that drive the top units can be
# checked against them. The folded cell below holds the parameters; papermill replaces them (see
# the folded cell after it).
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run: every setting (memlib/config.py, README table)
# -- what this page discusses; None: the parameter file's value
activation = None                # "post": |GELU(fc1)|, "pre": |fc1|
selection = None                 # RAR ranking: "predicts-last" (T-2), "last" (T-1) or "all" positions ("default": T-2)
k_percent = None                 # top-k% of units to locate; unset in the file too: the paper's (VAR 10%, RAR 5%)
images_per_class = None          # columns of the grid of top-unit images

# %% tags=["hide-input"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import stages, style, summaries
from memlib.config import page_config
from memlib.intervene import select_units
from memlib.results import provenance, write_record

config = page_config(params_file, activation=activation, selection=selection, k_percent=k_percent,
                     images_per_class=images_per_class)
started = time.time()
style.apply()
POSITION_COLORS = dict(zip(("predicts-last", "last", "all"), style.READING_COLORS))  # the chosen reading first

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.config`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed, whose RAR-style model is `rar-testbed`;
# a full-scale run names one model. This page needs a RAR model; on a run of a VAR model it says so
# and shows nothing else.

# %% tags=["hide-input"]
runs = stages.make_runs(config, "unitmem", family="rar")
k_top = {family: run.config.sweep.k_percent for family, run in runs.items()}
if not runs:
    display(Markdown(f"**This run has no RAR model** (`model: {config.model.model}`), so this page shows nothing. "
                     "Run it with the testbed or a RAR parameter file."))
for family, run in runs.items():
    print(f"{run.config.model.model}: {stages.shown_path(run.config.model.checkpoint)} on {run.device}; results in {stages.shown_path(run.out)}")

# %% [markdown]
# ## UnitMem of every fc1 unit
#
# `memlib.stages.stage_unitmem` runs every training image of D' teacher-forced through the model with a
# hook on every block's fc1 and reduces the activations inside the hook to two position groups:
# `predicts-last` (T-2), `last` (T-1, the last position of the sequence) and `all`, the mean over every position. The result
# file is named by a hash of the parameters and the checkpoints, so a second run of this notebook
# reads it back; the same file is what `python -m memlib unitmem` (or `torchrun ... -m memlib
# unitmem`) writes for a full-scale model.

# %% tags=["remove-stderr"]
unitmem = {family: stages.stage_unitmem(run) for family, run in runs.items()}

# %% tags=["hide-input"]
POSITIONS = {"predicts-last": "T-2, predicts the last token (chosen)", "last": "T-1, last input token (option)",
             "all": "mean over all positions (option)"}
CHOSEN = "predicts-last"
for family, result in unitmem.items():
    scores_GKU = result.scores_GKU
    print(f"{runs[family].config.model.model}: UnitMem of {scores_GKU.shape[1]} blocks x {scores_GKU.shape[2]} units "
          f"over {result.n_images} images ({result.params})")
    glue(f"{family}_model", runs[family].config.model.model, display=False)
    glue(f"{family}_n_images", result.n_images, display=False)
    glue(f"{family}_n_units", int(scores_GKU.shape[1] * scores_GKU.shape[2]), display=False)

# %% [markdown]
# ## Mean UnitMem per block
#
# The mean over all units of a block, for both readings of the last position and for all positions. UnitMem has no
# unit; it lies in [0, 1]. Where along the depth the memorizing units sit is summarised by the
# block with the highest mean UnitMem (the *peak block*) and the UnitMem-weighted mean block index
# (the *centre of mass*, 0 = first block). The curves are the figure at the top of this page.

# %% tags=["hide-input"]
mean_by_group, localization, lead_sentence = {}, {}, {}
for family, result in unitmem.items():
    frame = pd.DataFrame({label: result.group(name).mean(dim=1).numpy() for name, label in POSITIONS.items()})
    frame.index.name = "block"
    mean_by_group[family] = frame
    n_blocks = len(frame)
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=frame.reset_index().melt("block", var_name="positions", value_name="mean UnitMem"),
                 x="block", y="mean UnitMem", hue="positions", marker="o",
                 palette={POSITIONS[name]: color for name, color in POSITION_COLORS.items()}, ax=ax)
    ax.set_xlabel(f"{style.LABELS['block']} (0 = first)")
    ax.set_ylabel(f"{style.LABELS['mean_unitmem']} of the block's fc1 units")
    ax.set_xticks(range(n_blocks))
    ax.set_title(f"{runs[family].config.model.model}: mean UnitMem per block")
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_rar_per_block.png", dpi=120)
    glue(f"fig_{family}_per_block", fig, display=False)
    plt.close(fig)

    last = frame[POSITIONS[CHOSEN]].to_numpy()
    peak, centre = summaries.depth_profile(last)
    second_half = float(last[n_blocks // 2:].sum() / last.sum())
    localization[family] = {"peak_block_last": peak, "centre_of_mass_last": round(centre, 4),
                            "share_of_mean_unitmem_in_second_half_last": round(second_half, 4),
                            "mean_unitmem_by_block": {name: result.group(name).mean(dim=1).round(decimals=6).tolist()
                                                      for name in POSITIONS}}
    glue(f"{family}_peak_block", peak, display=False)
    glue(f"{family}_centre_of_mass", centre, display=False)
    where = "in the second half of the blocks" if centre > (n_blocks - 1) / 2 else "in the first half of the blocks"
    lead_sentence[family] = (
        f"**{runs[family].config.model.model}** ({n_blocks} blocks). At the chosen position (T-2) the peak block is {peak} "
        f"and the centre of mass is block {centre:.2f}, {where}; the blocks of the second half hold "
        f"{100 * second_half:.0f}% of the summed mean UnitMem. The paper reports that memorization in RAR "
        "concentrates in the middle and later blocks.")
    display(Markdown(lead_sentence[family]))

# %% [markdown]
# ## Where the top units sit
#
# The intervention ranks all units by one selection score (**chosen**: UnitMem at T-2; parameter
# `selection`) and takes the global top k%. The bars show which share of each block's units that
# global top k% contains, for both readings of "last token" and for the all-positions ranking. The
# verdict on the paper's claim ("middle and later blocks") reads the share of the chosen top k% in
# the later half of the blocks against one half (`memlib.summaries.later_blocks_share`).

# %%
chosen = {}  # family -> (units, 2): block and unit index of the global top k%
for family, result in unitmem.items():
    how = runs[family].config.sweep.selection
    scores_KU = result.selection_scores(None if how == "default" else how)
    chosen[family] = select_units(scores_KU, k_top[family], "global")
    print(f"top {k_top[family]:g}%: {len(chosen[family])} units")

# %% tags=["hide-input"]
top_units, lead = {}, []
for family, result in unitmem.items():
    k = k_top[family]
    how = None if runs[family].config.sweep.selection == "default" else runs[family].config.sweep.selection
    scores_KU = result.selection_scores(how)
    n_blocks, n_units = scores_KU.shape
    chosen_M2 = chosen[family]
    per_block = np.bincount(chosen_M2[:, 0].numpy(), minlength=n_blocks)
    shares = pd.DataFrame({
        label: 100 * np.bincount(select_units(result.group(name), k, "global")[:, 0].numpy(), minlength=n_blocks) / n_units
        for name, label in POSITIONS.items()
    })
    shares.index.name = "block"
    top_units[family] = {"k_percent": k, "selection": how or CHOSEN, "units": int(len(chosen_M2)),
                         "per_block": per_block.tolist()}
    glue(f"{family}_k_percent", k, display=False)
    glue(f"{family}_top_units", int(len(chosen_M2)), display=False)
    later, later_word = summaries.later_blocks_share(scores_KU.numpy(), k)
    shared = summaries.shared_top_units(result.group("predicts-last").numpy(), result.group("last").numpy(), k)
    glue(f"{family}_later_verdict", later_word, display=False)
    glue(f"{family}_later_share", later.value + 0.5, display=False)
    glue(f"{family}_readings_shared", shared, display=False)
    later_sentence = (
        f"**{runs[family].config.model.model}.** {100 * (later.value + 0.5):.0f}% of the top {k:g}% units (T-2) sit in "
        f"the later half of the blocks (95% interval {100 * (later.lo + 0.5):.0f}-{100 * (later.hi + 0.5):.0f}%): the "
        f"paper's claim that memorization concentrates in the middle and later blocks **{later_word}**. The two "
        f"readings of \"last token\" share {100 * shared:.0f}% of their top {k:g}% units.")
    display(Markdown(later_sentence))
    peak = localization[family]["peak_block_last"]
    alt = style.alt_text("Line plot", f"the mean UnitMem of the fc1 units of each block of {runs[family].config.model.model}, "
                         "at T-2, at T-1 and over all positions", f"at T-2 it peaks in block {peak}")
    caption = (f"Mean UnitMem per block of {runs[family].config.model.model}, at the chosen reading of the last token "
               "(T-2), at T-1 and averaged over all positions.")
    lead.append(style.figure_md(f"fig_{family}_per_block", alt, caption, f"fig-unitmem-rar-{family}")
                + "\n" + lead_sentence[family] + "\n\n" + later_sentence)

    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=shares.reset_index().melt("block", var_name="ranking by", value_name="share"),
                x="block", y="share", hue="ranking by",
                palette={POSITIONS[name]: color for name, color in POSITION_COLORS.items()}, ax=ax)
    ax.axhline(k, color=style.OKABE_ITO["grey"], linestyle="--", label=f"uniform ({k:g}%)")
    ax.set_xlabel(style.LABELS["block"])
    ax.set_ylabel("share of the block's fc1 units in the top k% (%)")
    ax.set_title(f"{runs[family].config.model.model}: where the global top {k:g}% units sit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_rar_top_units.png", dpi=120)
    style.show(fig, style.alt_text(
        "Grouped bar chart", f"the share of each block's fc1 units in the global top {k:g}% of "
        f"{runs[family].config.model.model}, ranked at T-2, at T-1 and over all positions",
        f"ranked at T-2, block {int(np.argmax(per_block))} holds the most, {100 * per_block.max() / n_units:.1f}% of its units"))
glue("lead", Markdown("\n\n".join(lead) or f"**This run has no RAR model** (`model: {config.model.model}`)."),
     display=False)

# %% [markdown]
# ## The distribution of UnitMem
#
# Most units respond to many images alike (UnitMem near 0); memorizing units form the right tail.
# The counts are on a logarithmic axis.

# %% tags=["hide-input"]
for family, result in unitmem.items():
    long = pd.concat([pd.DataFrame({"UnitMem": result.group(name).reshape(-1).numpy(), "positions": label})
                      for name, label in POSITIONS.items()])
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.histplot(data=long, x="UnitMem", hue="positions", element="step", fill=False, bins=50,
                 palette={POSITIONS[name]: color for name, color in POSITION_COLORS.items()}, ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("UnitMem (0: every image alike, 1: one image only)")
    ax.set_ylabel("number of fc1 units")
    ax.set_title(f"{runs[family].config.model.model}: UnitMem of all fc1 units")
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_rar_distribution.png", dpi=120)
    style.show(fig, style.alt_text("Step histograms, log count axis", f"the UnitMem of all fc1 units of "
                                   f"{runs[family].config.model.model}, at T-2, at T-1 and over all positions",
                                   f"the median unit scores {long['UnitMem'].median():.3f} and the highest "
                                   f"{long['UnitMem'].max():.3f}"))
    quantiles = long.groupby("positions")["UnitMem"].quantile([0.5, 0.9, 0.99, 1.0]).unstack()
    quantiles.columns = ["median", "90th percentile", "99th percentile", "max"]
    display(quantiles.style.format("{:.3f}"))

# %% [markdown]
# ## The images behind the top units
#
# Each unit's most activating image (its argmax) is kept by the accumulator. For the top k% units
# of each position group, the table gives the share whose argmax is a planted image, beside the
# share of planted images among all images of D' (what a unit with a random argmax would give). The
# grid shows the images that are the argmax of the most top units at T-2.

# %% tags=["hide-input"]
argmax_summary = {}
for family, result in unitmem.items():
    run = runs[family]
    k = k_top[family]
    images = stages.training_images(run, run.config.unitmem.unitmem_fraction)
    dataset, ground_truth = images.dataset, images.ground_truth
    planted = images.testbed.is_planted() if images.testbed is not None else None
    rows, top_ids = [], {}
    for name, label in POSITIONS.items():
        argmax_KU = result.argmax_GKU[result.group_names.index(name)]
        top_ids[name] = summaries.top_unit_argmax_ids(result.group(name), argmax_KU, k)
        row = {"positions": label, "top units": len(top_ids[name]), "distinct argmax images": len(np.unique(top_ids[name]))}
        if planted is not None:
            row["argmax planted (%)"] = 100 * float(planted[top_ids[name]].mean())
        rows.append(row)
    display(pd.DataFrame(rows).style.format({"argmax planted (%)": "{:.1f}"}).hide(axis="index"))
    ids, counts = np.unique(top_ids[CHOSEN], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    summary = {"top_unit_argmax_distinct": int(len(ids))}
    if planted is not None:
        enrichment = summaries.planted_enrichment(top_ids[CHOSEN], planted, np.array(result.params["images"]))
        share, base_share, ratio = enrichment.share, enrichment.base_share, enrichment.ratio
        summary.update(top_unit_argmax_planted_share=share, planted_share_of_images=base_share)
        glue(f"{family}_top_argmax_planted_share", share, display=False)
        glue(f"{family}_planted_share_of_images", base_share, display=False)
        display(Markdown(
            f"**{run.config.model.model}.** At T-2, {100 * share:.1f}% of the top {k:g}% units have a "
            f"planted image as their argmax, against {100 * base_share:.1f}% planted images among the "
            f"{result.n_images} images of D' ({ratio:.1f} times the share a random argmax would give)."))
    argmax_summary[family] = summary

    shown = order[: 2 * config.book.images_per_class]
    fig, axes = plt.subplots(2, config.book.images_per_class, figsize=(1.3 * config.book.images_per_class, 3.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, j in zip(axes.ravel(), shown):
        image, label = dataset[int(ids[j])]
        ax.imshow(ground_truth(image).permute(1, 2, 0).numpy().clip(0, 1))
        is_planted = planted is not None and planted[ids[j]]
        ax.set_title(f"#{ids[j]}: {counts[j]} units" + ("\nplanted" if is_planted else ""), fontsize=8,
                     color=style.HIGHLIGHT_COLOR if is_planted else "black")
    fig.suptitle(f"{run.config.model.model}: argmax images of the most top-{k:g}% units (T-2)")
    fig.tight_layout()
    fig.savefig(run.out / "unitmem_rar_argmax_images.png", dpi=120)
    n_planted_shown = int(sum(planted[ids[j]] for j in shown)) if planted is not None else None
    style.show(fig, style.alt_text(
        f"Grid of {len(shown)} images", f"the training images that are the argmax of the most top-{k:g}% units of "
        f"{run.config.model.model} at T-2, each titled with its index and its number of units",
        f"{n_planted_shown} of them are planted (red titles)" if n_planted_shown is not None else None))

# %% [markdown]
# ## Localization against the planted ground truth, at both readings
#
# For the top k% units at each reading of "last token", the left panel gives the share whose argmax
# is in each group (control, then the duplication levels), beside that group's share of D' (black
# marks); the right panel the AUC of each group's images against the ordinary images of D', each
# image scored by its highest UnitMem over the units it is the argmax of (95% intervals). The third
# bar of each group is the chosen reading with one view per image (`n_views: 1`) instead of the
# run's ten augmented views, so the difference the views make is visible.

# %% tags=["hide-input", "remove-stderr"]
localization_by_level = {}
for family, result in unitmem.items():
    run = runs[family]
    testbed = stages.training_images(run, run.config.unitmem.unitmem_fraction).testbed
    if testbed is None:
        continue
    k = k_top[family]
    frames = {}
    for name in ("predicts-last", "last"):
        g = result.group_names.index(name)
        shares, aucs = summaries.localization_by_group(result.scores_GKU[[g]].numpy(), result.argmax_GKU[[g]].numpy(), k,
                                                   testbed.groups(), np.array(result.params["images"]), seed=config.run.seed)
        frames[POSITIONS[name]] = (pd.DataFrame(shares), pd.DataFrame(aucs))
    if run.config.unitmem.n_views > 1:  # the same reading with one view per image: what the views add
        one_view = stages.stage_unitmem(stages.make_run(run.config.replace(n_views=1)))
        g = one_view.group_names.index(CHOSEN)
        shares, aucs = summaries.localization_by_group(one_view.scores_GKU[[g]].numpy(), one_view.argmax_GKU[[g]].numpy(), k,
                                                   testbed.groups(), np.array(one_view.params["images"]), seed=config.run.seed)
        frames["T-2, 1 view (n_views: 1)"] = (pd.DataFrame(shares), pd.DataFrame(aucs))
    shares, aucs = frames[POSITIONS[CHOSEN]]
    fig = style.localization_figure(frames, k, f"{run.config.model.model}: do the top units point at the memorized images?")
    style.show(fig, style.localization_alt(frames, k))
    localization_by_level[family] = {label: {"shares": sh.to_dict(orient="records"), "auc": au.to_dict(orient="records")}
                                     for label, (sh, au) in frames.items()}
    display(style.scroll_table(pd.concat({label: sh.set_index("group")[["share", "base_rate", "enrichment", "verdict"]]
                                          for label, (sh, _) in frames.items()}, axis=1).style.format(precision=3)))
    display(Markdown(summaries.localization_sentence(run.config.model.model, "at T-2", k, shares, aucs)))

# %% [markdown]
# ## Summary
#
# The numbers of this page, with the parameters that produced them, are written to
# `summary-unitmem-rar.json` in the results folder (a record for the reader; {doc}`reproduction` gathers its numbers from the result files).

# %% tags=["hide-input"]
for family, run in runs.items():
    result = unitmem[family]
    record = {"notebook": "unitmem-rar", "model": run.config.model.model, "n_images": result.n_images,
              **localization[family], **top_units[family], **argmax_summary[family],
              "localization_by_level": localization_by_level.get(family)}
    write_record(run.out / "summary-unitmem-rar.json",
                      {"numbers": record, **provenance(run.config.flat(), run.config.run.seed, started)})
    display(Markdown(
        f"- **{run.config.model.model}**: UnitMem of {int(result.group('last').numel())} fc1 units over "
        f"{result.n_images} training images, at T-2, T-1 and over all positions.\n"
        f"- At T-2 (the chosen reading), mean UnitMem peaks in block {localization[family]['peak_block_last']} and its "
        f"centre of mass is block {localization[family]['centre_of_mass_last']:.2f} "
        f"(of {len(mean_by_group[family])} blocks, 0 = first)."))

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("unitmem-rar", params_file, None)), display=False)

# %% tags=["remove-cell"]
# For the exercises (the exercise runs of notebooks/exercises.yaml glue the same keys): the
# verdicts of this run at the reading position its `selection` ranks by, as plain sentences.
READINGS = {"predicts-last": "T-2", "last": "T-1", "all": "all positions"}
for family, run in runs.items():
    result, k = unitmem[family], k_top[family]
    reading = top_units[family]["selection"]
    later, later_word = summaries.later_blocks_share(result.selection_scores(None if reading == CHOSEN else reading).numpy(), k)
    glue(f"ex_{family}_reading", READINGS[reading], display=False)
    glue(f"ex_{family}_n_views", run.config.unitmem.n_views, display=False)
    glue(f"ex_{family}_k_percent", k, display=False)
    glue(f"ex_{family}_later_sentence", summaries.claim_sentence(
        f"share of the top {k:g}% units ({READINGS[reading]}) in the later half of the blocks, minus one half",
        later, later_word), display=False)
    testbed = stages.training_images(run, run.config.unitmem.unitmem_fraction).testbed
    if testbed is None or POSITIONS[reading] not in localization_by_level.get(family, {}):
        continue
    g = result.group_names.index(reading)
    top_ids = summaries.top_unit_argmax_ids(result.group(reading), result.argmax_GKU[g], k)
    enrichment = summaries.planted_enrichment(top_ids, testbed.is_planted(), np.array(result.params["images"]))
    glue(f"ex_{family}_planted_share", enrichment.share, display=False)
    glue(f"ex_{family}_planted_base_share", enrichment.base_share, display=False)
    by_level = localization_by_level[family][POSITIONS[reading]]
    glue(f"ex_{family}_localization", summaries.localization_sentence(
        run.config.model.model, f"at {READINGS[reading]}", k, pd.DataFrame(by_level["shares"]),
        pd.DataFrame(by_level["auc"])).replace("**", ""), display=False)

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise changes one setting of this page's run. Write your prediction down first, then run
# the variant from the repository root: it executes this page with the change, under its own results
# folder (`results/testbed/exercises/<id>`), reusing every cached result the change leaves alone.
# Compare with the answer key (the planted images and their control group) and with this page's run.
# The solution says what the variant run of this book showed; its numbers are glued from that run
# ({doc}`../book/exercise-runs`).
#
# This page's run ranks units at {glue:text}`ex_rar_reading:s` with {glue:text}`ex_rar_n_views:d`
# views per image: {glue:text}`ex_rar_localization:s` {glue:text}`ex_rar_later_sentence:s`.
#
# ````{exercise} Read the last input token instead
# :label: ex-unitmem-rar-last
#
# **Predict.** The paper's "last-token activation" has two readings; this page ranks units at T-2,
# the position whose output predicts the last token. With `selection: last` the ranking uses T-1,
# the last input position, whose output the model never uses. Will the top units sit in other
# blocks? Will more or fewer of them point at planted images
# (this run: {glue:text}`ex_rar_planted_share:.1%`, against {glue:text}`ex_rar_planted_base_share:.1%`
# planted images in D')?
#
# **Run** (`selection: last`; UnitMem is read from the cache, both positions were collected):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise unitmem-rar-last
# ```
#
# **Compare** the share of planted argmax images and the verdict on the later blocks with this page's.
# ````
#
# ```{solution} ex-unitmem-rar-last
# :class: dropdown
#
# The run `unitmem-rar-last` took {glue:text}`exercise-unitmem-rar-last.ipynb::page_seconds:.0f` s on
# this machine. Ranked at {glue:text}`exercise-unitmem-rar-last.ipynb::ex_rar_reading:s`,
# {glue:text}`exercise-unitmem-rar-last.ipynb::ex_rar_planted_share:.1%` of the top
# {glue:text}`exercise-unitmem-rar-last.ipynb::ex_rar_k_percent:g`% units have a planted argmax image
# (at {glue:text}`ex_rar_reading:s`: {glue:text}`ex_rar_planted_share:.1%`). Its computed verdicts:
# {glue:text}`exercise-unitmem-rar-last.ipynb::ex_rar_localization:s`
# {glue:text}`exercise-unitmem-rar-last.ipynb::ex_rar_later_sentence:s`. Where the verdicts of the
# two readings differ, the choice the paper leaves open decides the answer.
# ```
#
# ````{exercise} One view instead of ten
# :label: ex-unitmem-rar-one-view
#
# **Predict.** UnitMem averages a unit's activation over {glue:text}`ex_rar_n_views:d` augmented views
# of each image (random crops and flips). With `n_views: 1` every image is seen through one random
# view. Will UnitMem still single out the planted images, and will the verdict on the control group
# change?
#
# **Run** (`n_views: 1`; UnitMem is recomputed with one view per image):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise unitmem-rar-one-view
# ```
#
# **Compare** the per-level shares and AUCs with this page's, against the base rates of D'.
# ````
#
# ```{solution} ex-unitmem-rar-one-view
# :class: dropdown
#
# The run `unitmem-rar-one-view` took {glue:text}`exercise-unitmem-rar-one-view.ipynb::page_seconds:.0f` s
# on this machine, with {glue:text}`exercise-unitmem-rar-one-view.ipynb::ex_rar_n_views:d` view per
# image. {glue:text}`exercise-unitmem-rar-one-view.ipynb::ex_rar_planted_share:.1%` of its top units
# have a planted argmax image (this page: {glue:text}`ex_rar_planted_share:.1%`). Its computed
# verdicts: {glue:text}`exercise-unitmem-rar-one-view.ipynb::ex_rar_localization:s` With one view,
# an image's UnitMem rests on one crop: the verdicts above say whether that noise changes the answer.
# ```
