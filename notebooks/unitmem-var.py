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
# # Where memorization sits in VAR
#
# **Question: which fc1 units of a next-scale (VAR) model respond to one training image far more
# than to all others, and in which blocks and at which scales do they sit?**
#
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# UnitMem {cite:p}`wang2024localizing` scores a unit by how much more its mean activation on its
# most activating training image exceeds its mean activation on the other images:
# 0 when every image drives the unit equally, 1 when exactly one image does ({doc}`../book/method`).
# VAR {cite:p}`tian2024var` predicts an image scale by scale, coarse to fine, and the same
# transformer handles every scale, so UnitMem is measured separately for the token positions of
# each scale. The paper {cite:p}`kasliwal2025localizing` reports that at coarse scales the most
# memorizing units sit in the early blocks and move to deeper blocks as the scale gets finer.
#
# **Scale 0 is special.** Its single position is the start token, which depends only on the class
# label: every image of a class produces the same activations there. Its UnitMem therefore
# measures how selective a unit is for one *class*, not for one image. It is shown beside the
# other scales, and left out where the question is about single images.
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
selection = None                 # VAR ranking: "mean" / "max" over scales, or "pooled" ("default")
k_percent = None                 # top-k% of units to locate; unset in the file too: the paper's (VAR 10%, RAR 5%)
images_per_class = None          # columns of the grid of top-unit images

# %% tags=["hide-input"]
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import findings, stages, style, summaries
from memlib.config import page_config
from memlib.intervene import select_units
from memlib.results import provenance, write_record

config = page_config(params_file, activation=activation, selection=selection, k_percent=k_percent,
                     images_per_class=images_per_class)
started = time.time()
style.apply()

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.config`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed, whose VAR-style model is `var-testbed`;
# a full-scale run names one model. This page needs a VAR model; on a run of a RAR model it says so
# and shows nothing else.

# %% tags=["hide-input"]
runs = stages.make_runs(config, "unitmem", family="var")
k_top = {family: run.config.sweep.k_percent for family, run in runs.items()}
if not runs:
    display(Markdown(f"**This run has no VAR model** (`model: {config.model.model}`), so this page shows nothing. "
                     "Run it with the testbed or a VAR parameter file."))
for family, run in runs.items():
    print(f"{run.config.model.model}: {stages.shown_path(run.config.model.checkpoint)} on {run.device}; results in {stages.shown_path(run.out)}")

# %% [markdown]
# ## UnitMem of every fc1 unit
#
# `memlib.stages.stage_unitmem` runs every training image of D' teacher-forced through the model with a
# hook on every block's fc1, reduces the activations to per-scale means inside the hook and streams
# them into a UnitMem accumulator. The result file is named by a hash of the parameters and the
# checkpoints, so a second run of this notebook reads it back instead of recomputing it; the same
# file is what `python -m memlib unitmem` (or `torchrun ... -m memlib unitmem`) writes for a
# full-scale model.

# %% tags=["remove-stderr"]
unitmem = {family: stages.stage_unitmem(run) for family, run in runs.items()}

# %% tags=["hide-input"]
scales = {}
for family, result in unitmem.items():
    gen = runs[family].generator()
    groups = [g for g in gen.position_groups()]
    scales[family] = [f"{i} ({int(round(g.size ** 0.5))}x{int(round(g.size ** 0.5))})" for i, g in enumerate(groups)]
    scores_GKU = result.scores_GKU
    print(f"{runs[family].config.model.model}: UnitMem of {scores_GKU.shape[1]} blocks x {scores_GKU.shape[2]} units "
          f"at {len(groups)} scales over {result.n_images} images ({result.params})")
    glue(f"{family}_model", runs[family].config.model.model, display=False)
    glue(f"{family}_n_images", result.n_images, display=False)
    glue(f"{family}_n_units", int(scores_GKU.shape[1] * scores_GKU.shape[2]), display=False)


def scale_scores(result) -> torch.Tensor:
    """UnitMem per (scale, block, unit), without the optional pooled group."""
    keep = [i for i, name in enumerate(result.group_names) if name.startswith("scale")]
    return result.scores_GKU[keep]


# %% [markdown]
# ## Mean UnitMem per block, one curve per scale
#
# The mean over all units of a block, for the positions of each scale (scale $s$ has
# $p_s \times p_s$ token positions). UnitMem has no unit; it lies in [0, 1].
# The curves are the figure at the top of this page; the heatmap gives the same means as numbers.

# %% tags=["hide-input"]
mean_SK = {}
for family, result in unitmem.items():
    scores_SKU = scale_scores(result)
    mean_SK[family] = scores_SKU.mean(dim=2).numpy()
    frame = pd.DataFrame(mean_SK[family], index=pd.Index(scales[family], name="scale"))
    frame.columns.name = "block"
    long = frame.stack().rename("mean UnitMem").reset_index()

    fig, ax = plt.subplots(figsize=(8, 4))
    sns.lineplot(data=long, x="block", y="mean UnitMem", hue="scale", marker="o",
                 palette=style.ordered_colors(len(frame)), ax=ax)
    ax.set_xlabel(f"{style.LABELS['block']} (0 = first)")
    ax.set_ylabel(f"{style.LABELS['mean_unitmem']} of the block's fc1 units")
    ax.set_xticks(range(frame.shape[1]))
    ax.set_title(f"{runs[family].config.model.model}: mean UnitMem per block and scale")
    ax.legend(title=f"{style.LABELS['scale']} (tokens)", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_var_per_block.png", dpi=120)
    glue(f"fig_{family}_per_block", fig, display=False)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(1.0 * frame.shape[1] + 3, 0.5 * frame.shape[0] + 1.5))
    sns.heatmap(frame, annot=frame.shape[1] <= 16, fmt=".3f", cmap=style.SEQUENTIAL_CMAP, ax=ax,
                cbar_kws={"label": style.LABELS["mean_unitmem"]})
    ax.set_xlabel(style.LABELS["block"])
    ax.set_ylabel(f"{style.LABELS['scale']} (tokens)")
    ax.set_title(f"{runs[family].config.model.model}: mean UnitMem, scale x block")
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_var_heatmap.png", dpi=120)
    hottest_s, hottest_k = np.unravel_index(np.argmax(mean_SK[family]), mean_SK[family].shape)
    style.show(fig, style.alt_text("Heatmap", f"the mean UnitMem of {runs[family].config.model.model} per scale "
                                   f"(rows) and block (columns)", f"the highest, {mean_SK[family].max():.3f}, is at "
                                   f"scale {scales[family][hottest_s]}, block {hottest_k}"))

# %% [markdown]
# Where along the depth the memorizing units of one scale sit is summarised by two numbers: the
# block with the highest mean UnitMem (the *peak block*), and the UnitMem-weighted mean block index
# (the *centre of mass*, 0 = first block). The paper's pattern would show both moving deeper as the
# scale gets finer.

# %% tags=["hide-input"]
localization = {}
lead = []
for family, m_SK in mean_SK.items():
    peaks, centres_S = zip(*(summaries.depth_profile(m_K) for m_K in m_SK))
    table = pd.DataFrame({
        "scale": scales[family],
        "peak block": peaks,
        "centre of mass (block)": centres_S,
        "mean UnitMem (all blocks)": m_SK.mean(axis=1),
    })
    display(table.style.format({"centre of mass (block)": "{:.2f}", "mean UnitMem (all blocks)": "{:.3f}"}).hide(axis="index"))
    image_scales = table.iloc[1:]  # scale 0 measures class selectivity
    centres = image_scales["centre of mass (block)"].to_numpy()
    moves_deeper = summaries.centre_moves_deeper(centres)
    localization[family] = {
        "peak_block_by_scale": table["peak block"].tolist(),
        "centre_of_mass_by_scale": [round(float(c), 4) for c in table["centre of mass (block)"]],
        "centre_moves_deeper_with_scale": moves_deeper,
    }
    glue(f"{family}_peak_blocks", ", ".join(str(b) for b in table["peak block"]), display=False)
    glue(f"{family}_centre_first_image_scale", float(centres[0]), display=False)
    glue(f"{family}_centre_finest_scale", float(centres[-1]), display=False)
    early, shift = findings.localization_findings(runs[family], unitmem[family])  # bootstrap over units
    localization[family].update(
        {key: {"value": f.effect.value, "lo": f.effect.lo, "hi": f.effect.hi, "verdict": f.verdict}
         for key, f in (("early_at_coarsest_scale", early), ("depth_shift_slope", shift))})
    glue(f"{family}_early_verdict", early.verdict, display=False)
    glue(f"{family}_depth_shift_verdict", shift.verdict, display=False)
    glue(f"{family}_depth_shift_slope", shift.effect.value, display=False)
    sentence = (
        f"**{runs[family].config.model.model}.** Leaving out scale 0, the centre of mass of mean UnitMem sits at "
        f"block {centres[0]:.2f} at scale 1 (the middle block is {(m_SK.shape[1] - 1) / 2:g}; "
        f"centre minus middle {early.effect.text()}): that memorization sits in the early blocks at the coarsest image "
        f"scale **{early.verdict}**. It reaches block {centres[-1]:.2f} at the finest scale, a slope of "
        f"{shift.effect.text()} blocks per scale ({shift.effect.method}): that it moves to deeper blocks as the scale "
        f"gets finer **{shift.verdict}**"
        f"{'' if moves_deeper else ' (the centre of mass does not rise at every single scale step)'}. "
        f"Peak blocks by scale (scale 0 first): {', '.join(str(b) for b in table['peak block'])}.")
    display(Markdown(sentence))
    alt = style.alt_text("Line plot", f"the mean UnitMem of the fc1 units of each block of {runs[family].config.model.model}, "
                         "one line per scale from coarse (dark) to fine (light)",
                         f"the peak blocks by scale are {', '.join(str(b) for b in table['peak block'])}")
    caption = (f"Mean UnitMem per block of {runs[family].config.model.model}, one curve per scale (scale 0 sees only "
               "the class label). The verdict below reads the centre of mass of each curve.")
    lead.append(style.figure_md(f"fig_{family}_per_block", alt, caption, f"fig-unitmem-var-{family}") + "\n" + sentence)
glue("lead", Markdown("\n\n".join(lead) or f"**This run has no VAR model** (`model: {config.model.model}`)."),
     display=False)

# %% [markdown]
# ## Where the top units sit
#
# The intervention ranks all units of the model by one selection score per unit (**chosen**: the
# mean over scales of the per-scale UnitMem; parameter `selection`) and takes the global top k%.
# The left panel shows which share of each block's units that global top k% contains. The right
# panel asks the same per scale: the global top k% of units by the UnitMem of that scale alone.

# %%
chosen = {}  # family -> (units, 2): block and unit index of the global top k%
for family, result in unitmem.items():
    how = runs[family].config.sweep.selection
    scores_KU = result.selection_scores(None if how == "default" else how)
    chosen[family] = select_units(scores_KU, k_top[family], "global")
    print(f"top {k_top[family]:g}%: {len(chosen[family])} units")

# %% tags=["hide-input"]
top_units = {}
for family, result in unitmem.items():
    k = k_top[family]
    how = None if runs[family].config.sweep.selection == "default" else runs[family].config.sweep.selection
    n_blocks, n_units = result.selection_scores(how).shape
    chosen_M2 = chosen[family]
    per_block = np.bincount(chosen_M2[:, 0].numpy(), minlength=n_blocks)
    scores_SKU = scale_scores(result)
    per_scale_SK = np.stack([np.bincount(select_units(s_KU, k, "global")[:, 0].numpy(), minlength=n_blocks)
                             for s_KU in scores_SKU]) / n_units
    top_units[family] = {"k_percent": k, "units": int(len(chosen_M2)), "per_block": per_block.tolist(),
                         "share_per_block_by_scale": per_scale_SK.round(4).tolist()}
    glue(f"{family}_k_percent", k, display=False)
    glue(f"{family}_top_units", int(len(chosen_M2)), display=False)

    fig, (ax_sel, ax_scale) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1.3]})
    ax_sel.bar(np.arange(n_blocks), 100 * per_block / n_units, color=style.EDIT_COLORS["unitmem-half"])
    ax_sel.axhline(k, color=style.OKABE_ITO["grey"], linestyle="--", label=f"uniform ({k:g}%)")
    ax_sel.set_xlabel(style.LABELS["block"])
    ax_sel.set_ylabel("share of the block's fc1 units in the top k% (%)")
    ax_sel.set_xticks(range(n_blocks))
    ax_sel.set_title(f"selection score ({how or 'mean'} over scales), top {k:g}%")
    ax_sel.legend()
    frame = pd.DataFrame(100 * per_scale_SK, index=pd.Index(scales[family], name=f"{style.LABELS['scale']} (tokens)"))
    frame.columns.name = style.LABELS["block"]
    sns.heatmap(frame, annot=n_blocks <= 16, fmt=".1f", cmap=style.SEQUENTIAL_CMAP, ax=ax_scale,
                cbar_kws={"label": "share of the block's units (%)"})
    ax_scale.set_title(f"top {k:g}% by the UnitMem of each scale")
    fig.suptitle(f"{runs[family].config.model.model}: where the global top {k:g}% units sit")
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_var_top_units.png", dpi=120)
    style.show(fig, style.alt_text(
        "Bar chart and heatmap", f"the share of each block's fc1 units in the global top {k:g}% of "
        f"{runs[family].config.model.model}, by the selection score (bars) and by the UnitMem of each scale (heatmap)",
        f"by the selection score, block {int(np.argmax(per_block))} holds the most, "
        f"{100 * per_block.max() / n_units:.1f}% of its units"))

# %% [markdown]
# ## The distribution of UnitMem
#
# Most units respond to many images alike (UnitMem near 0); memorizing units form the right tail.
# The counts are on a logarithmic axis.

# %% tags=["hide-input"]
for family, result in unitmem.items():
    scores_SKU = scale_scores(result)
    long = pd.DataFrame({
        "UnitMem": scores_SKU.reshape(len(scores_SKU), -1).numpy().ravel(),
        "scale": np.repeat(scales[family], scores_SKU[0].numel()),
    })
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.histplot(data=long, x="UnitMem", hue="scale", element="step", fill=False, bins=50,
                 palette=style.ordered_colors(len(scales[family])), ax=ax)
    ax.set_yscale("log")
    ax.set_xlabel("UnitMem (0: every image alike, 1: one image only)")
    ax.set_ylabel("number of fc1 units")
    ax.set_title(f"{runs[family].config.model.model}: UnitMem of all fc1 units, per scale")
    fig.tight_layout()
    fig.savefig(runs[family].out / "unitmem_var_distribution.png", dpi=120)
    quantiles = long.groupby("scale")["UnitMem"].quantile([0.5, 0.9, 0.99, 1.0]).unstack()
    quantiles.columns = ["median", "90th percentile", "99th percentile", "max"]
    style.show(fig, style.alt_text("Step histograms, log count axis", f"the UnitMem of all fc1 units of "
                                   f"{runs[family].config.model.model}, one per scale",
                                   f"the median unit scores {long['UnitMem'].median():.3f} and the highest "
                                   f"{long['UnitMem'].max():.3f}"))
    display(quantiles.style.format("{:.3f}"))

# %% [markdown]
# ## The images behind the top units
#
# Each unit's most activating image (its argmax) is kept by the accumulator. For the top k% units
# of every image scale (scale 0 left out: all images of a class tie there), the table gives the share
# whose argmax is a planted image, beside the share of planted images among all images of D' (what
# a unit with a random argmax would give). The grid shows the images that are the argmax of the most
# top units.

# %% tags=["hide-input"]
argmax_summary = {}
for family, result in unitmem.items():
    run = runs[family]
    k = k_top[family]
    images = stages.training_images(run, run.config.unitmem.unitmem_fraction)
    dataset, ground_truth = images.dataset, images.ground_truth
    planted = images.testbed.is_planted() if images.testbed is not None else None
    scores_SKU, argmax_SKU = scale_scores(result), result.argmax_GKU[[i for i, n in enumerate(result.group_names)
                                                                     if n.startswith("scale")]]
    rows, top_ids = [], []
    for s in range(1, len(scores_SKU)):
        ids = summaries.top_unit_argmax_ids(scores_SKU[s], argmax_SKU[s], k)
        top_ids.append(ids)
        row = {"scale": scales[family][s], "top units": len(ids), "distinct argmax images": len(np.unique(ids))}
        if planted is not None:
            row["argmax planted (%)"] = 100 * float(planted[ids].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    display(table.style.format({"argmax planted (%)": "{:.1f}"}).hide(axis="index"))
    ids, counts = np.unique(np.concatenate(top_ids), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    summary = {"top_unit_argmax_distinct": int(len(ids))}
    if planted is not None:
        enrichment = summaries.planted_enrichment(np.concatenate(top_ids), planted, np.array(result.params["images"]))
        share, base_share, ratio = enrichment.share, enrichment.base_share, enrichment.ratio
        summary.update(top_unit_argmax_planted_share=share, planted_share_of_images=base_share)
        glue(f"{family}_top_argmax_planted_share", share, display=False)
        glue(f"{family}_planted_share_of_images", base_share, display=False)
        display(Markdown(
            f"**{run.config.model.model}.** Over the image scales, {100 * share:.1f}% of the top {k:g}% units have a "
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
    fig.suptitle(f"{run.config.model.model}: argmax images of the most top-{k:g}% units (scales 1+)")
    fig.tight_layout()
    fig.savefig(run.out / "unitmem_var_argmax_images.png", dpi=120)
    n_planted_shown = int(sum(planted[ids[j]] for j in shown)) if planted is not None else None
    style.show(fig, style.alt_text(
        f"Grid of {len(shown)} images", f"the training images that are the argmax of the most top-{k:g}% units of "
        f"{run.config.model.model}, each titled with its index and its number of units",
        f"{n_planted_shown} of them are planted (red titles)" if n_planted_shown is not None else None))

# %% [markdown]
# ## Localization against the planted ground truth
#
# The testbed knows which images were memorized. For the top k% units of every image scale, the left
# panel gives the share whose argmax is in each group (control, then the duplication levels), beside
# that group's share of D' (the dashed marks: what a unit with a random argmax would give). The
# right panel asks per image: scored by its highest UnitMem over the units it is the argmax of, how
# well are a group's images separated from the ordinary images of D' (AUC; 0.5 = not at all)? Both
# are shown for the run's ten augmented views and for one view (`n_views: 1`), so the difference the
# views make is visible. Intervals are 95% (Wilson; stratified bootstrap for the AUC).

# %% tags=["hide-input", "remove-stderr"]
def localization_frames(result, testbed, k):
    """(shares, aucs) DataFrames of memlib.summaries.localization_by_group over the image scales."""
    keep = [i for i, name in enumerate(result.group_names) if name.startswith("scale")][1:]
    shares, aucs = summaries.localization_by_group(result.scores_GKU[keep].numpy(), result.argmax_GKU[keep].numpy(), k,
                                               testbed.groups(), np.array(result.params["images"]), seed=config.run.seed)
    return pd.DataFrame(shares), pd.DataFrame(aucs)


localization_by_level = {}
for family, run in runs.items():
    testbed = stages.training_images(run, run.config.unitmem.unitmem_fraction).testbed
    if testbed is None:
        continue
    k = k_top[family]
    one_view = stages.stage_unitmem(stages.make_run(run.config.replace(n_views=1)))
    frames = {f"{run.config.unitmem.n_views} views": localization_frames(unitmem[family], testbed, k),
              "1 view": localization_frames(one_view, testbed, k)}
    shares, aucs = frames[f"{run.config.unitmem.n_views} views"]
    fig = style.localization_figure(frames, k, f"{run.config.model.model}: do the top units point at the memorized images?")
    style.show(fig, style.localization_alt(frames, k))
    localization_by_level[family] = {label: {"shares": sh.to_dict(orient="records"), "auc": au.to_dict(orient="records")}
                                     for label, (sh, au) in frames.items()}
    display(style.scroll_table(pd.concat({label: sh.set_index("group")[["share", "base_rate", "enrichment", "verdict"]]
                                          for label, (sh, _) in frames.items()}, axis=1).style.format(precision=3)))
    display(Markdown(summaries.localization_sentence(run.config.model.model, "of the image scales", k, shares, aucs)))

# %% [markdown]
# ### Scale 0 in the ranking
#
# Scale 0 sees only the class label, so its UnitMem is class selectivity, not memorization of an
# image. The chosen selection score averages all scales; leaving scale 0 out (`selection:
# mean-from-s1`) changes the ranking by this much:

# %% tags=["hide-input"]
for family, result in unitmem.items():
    k = k_top[family]
    with_s0, without_s0 = result.selection_scores("mean").numpy(), result.selection_scores("mean-from-s1").numpy()
    shared = summaries.shared_top_units(with_s0, without_s0, k)
    glue(f"{family}_scale0_shared", shared, display=False)
    frame = pd.DataFrame({"with scale 0 (chosen)": summaries.top_units_per_block(with_s0, k),
                          "without scale 0": summaries.top_units_per_block(without_s0, k)})
    frame.index.name = "block"
    display(style.scroll_table(frame.T.style.format("{:.1%}")))
    display(Markdown(f"**{runs[family].config.model.model}.** {100 * shared:.0f}% of the top {k:g}% units are the same "
                     "with and without scale 0; the table gives the share of the top units in each block."))

# %% [markdown]
# ## Summary
#
# The numbers of this page, with the parameters that produced them, are written to
# `summary-unitmem-var.json` in the results folder (a record for the reader; {doc}`reproduction` gathers its numbers from the result files).

# %% tags=["hide-input"]
for family, run in runs.items():
    result = unitmem[family]
    record = {
        "notebook": "unitmem-var",
        "model": run.config.model.model,
        "n_images": result.n_images,
        "scales": scales[family],
        "mean_unitmem_by_scale_block": mean_SK[family].round(6).tolist(),
        **localization[family], **top_units[family], **argmax_summary[family],
        "localization_by_level": localization_by_level.get(family),
    }
    write_record(run.out / "summary-unitmem-var.json",
                      {"numbers": record, **provenance(run.config.flat(), run.config.run.seed, started)})
    display(Markdown(
        f"- **{run.config.model.model}**: UnitMem of {int(scale_scores(result)[0].numel())} fc1 units at "
        f"{len(scales[family])} scales over {result.n_images} training images.\n"
        f"- Scale 0 depends only on the class label; its UnitMem is class selectivity.\n"
        f"- Peak block per scale: {', '.join(map(str, localization[family]['peak_block_by_scale']))}; that memorization "
        f"sits in the early blocks at the coarsest image scale: **{localization[family]['early_at_coarsest_scale']['verdict']}**; "
        f"that it moves deeper as the image scale gets finer: **{localization[family]['depth_shift_slope']['verdict']}**."))

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("unitmem-var", params_file, None)), display=False)

# %% tags=["remove-cell"]
# For the exercises (the exercise runs of notebooks/exercises.yaml glue the same keys):
# the localization verdicts of this run, as plain sentences, and the numbers they rest on.
for family, run in runs.items():
    glue(f"ex_{family}_k_percent", k_top[family], display=False)
    glue(f"ex_{family}_n_images", unitmem[family].n_images, display=False)
    glue(f"ex_{family}_top_units", top_units[family]["units"], display=False)
    if family not in localization_by_level:
        continue
    by_level = localization_by_level[family][f"{run.config.unitmem.n_views} views"]
    level_shares, level_aucs = pd.DataFrame(by_level["shares"]), pd.DataFrame(by_level["auc"])
    glue(f"ex_{family}_localization", summaries.localization_sentence(
        run.config.model.model, "of the image scales", k_top[family], level_shares, level_aucs).replace("**", ""), display=False)
    glue(f"ex_{family}_top_level", str(level_shares.iloc[-1]["group"]), display=False)
    glue(f"ex_{family}_top_level_share", float(level_shares.iloc[-1]["share"]), display=False)
    glue(f"ex_{family}_top_level_base_rate", float(level_shares.iloc[-1]["base_rate"]), display=False)
    glue(f"ex_{family}_planted_share", argmax_summary[family]["top_unit_argmax_planted_share"], display=False)
    glue(f"ex_{family}_planted_base_share", argmax_summary[family]["planted_share_of_images"], display=False)

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
# This page's run: {glue:text}`ex_var_localization:s`
#
# ````{exercise} The top 1% instead of the top 10%
# :label: ex-unitmem-var-top1
#
# **Predict.** This page locates the top {glue:text}`ex_var_k_percent:g`% units
# ({glue:text}`ex_var_top_units:d` units); {glue:text}`ex_var_planted_share:.1%` of them have a planted
# image as their argmax, against {glue:text}`ex_var_planted_base_share:.1%` planted images in D'. With
# `k_percent: 1`, only the units with the very highest UnitMem remain. Will the share pointing at
# planted images rise or fall, and will the verdicts on the most duplicated images and on the control
# group change?
#
# **Run** (`k_percent: 1`; UnitMem itself is not recomputed, only the ranking):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise unitmem-var-top1
# ```
#
# **Compare** the share of planted argmax images and the per-level verdicts with this page's.
# ````
#
# ```{solution} ex-unitmem-var-top1
# :class: dropdown
#
# The run `unitmem-var-top1` took {glue:text}`exercise-unitmem-var-top1.ipynb::page_seconds:.0f` s on
# this machine (UnitMem read from the cache). Of its top
# {glue:text}`exercise-unitmem-var-top1.ipynb::ex_var_k_percent:g`%
# ({glue:text}`exercise-unitmem-var-top1.ipynb::ex_var_top_units:d` units),
# {glue:text}`exercise-unitmem-var-top1.ipynb::ex_var_planted_share:.1%` have a planted argmax image
# (this page: {glue:text}`ex_var_planted_share:.1%` of the top {glue:text}`ex_var_k_percent:g`%; D':
# {glue:text}`exercise-unitmem-var-top1.ipynb::ex_var_planted_base_share:.1%`). Its computed
# verdicts: {glue:text}`exercise-unitmem-var-top1.ipynb::ex_var_localization:s` Fewer units give
# wider intervals: a difference between the two runs counts only where a verdict changes.
# ```
#
# ````{exercise} A smaller D'
# :label: ex-unitmem-var-small-dprime
#
# **Predict.** UnitMem compares a unit's activation on its most activating image with its mean over
# the other images of D' ({glue:text}`ex_var_n_images:d` images here). With `unitmem_images: 300`, D'
# keeps every planted and control image but far fewer ordinary ones, so planted images become a
# larger share of D'. Does the share of top units pointing at planted images rise just because the
# base rate rises? Which number tells you whether UnitMem still singles out memorized images?
#
# **Run** (`unitmem_images: 300`; UnitMem is recomputed on the smaller D'):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise unitmem-var-small-dprime
# ```
#
# **Compare** the share of the most duplicated group among the top units with its base rate, in
# both runs.
# ````
#
# ```{solution} ex-unitmem-var-small-dprime
# :class: dropdown
#
# The run `unitmem-var-small-dprime` took
# {glue:text}`exercise-unitmem-var-small-dprime.ipynb::page_seconds:.0f` s on this machine (UnitMem
# computed anew on {glue:text}`exercise-unitmem-var-small-dprime.ipynb::ex_var_n_images:d` images).
# {glue:text}`exercise-unitmem-var-small-dprime.ipynb::ex_var_planted_share:.1%` of the top units have
# a planted argmax image, against a base rate of
# {glue:text}`exercise-unitmem-var-small-dprime.ipynb::ex_var_planted_base_share:.1%` planted images
# in that D' (this page: {glue:text}`ex_var_planted_share:.1%` against
# {glue:text}`ex_var_planted_base_share:.1%`). The comparison that corrects for the base rate is the
# enrichment of each group over its share of D', with its verdict:
# {glue:text}`exercise-unitmem-var-small-dprime.ipynb::ex_var_localization:s`
# ```
