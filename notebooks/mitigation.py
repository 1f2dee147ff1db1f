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
# -- the run
seed = 0                         # seeds every random choice (the random units use random_seeds)
device = "auto"                  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
results_dir = "results/testbed"  # result files, figures and summaries (git-ignored)
batch_size = 64                  # rows per forward pass
shard_size = 256                 # images or candidates per resumable shard
amp = "auto"                     # bf16 autocast: "auto" (on CUDA only), true or false
# -- the model: "" is the testbed pair (var-testbed, rar-testbed) with the shipped checkpoints
model = ""                       # a name of memlib's model registry, e.g. "var-d30"
model_overrides = {}             # config fields to replace (testing only)
checkpoint = ""                  # the transformer's weights file (full scale)
tokenizer_checkpoint = ""        # the tokenizer's weights file (full scale)
# -- the images
dataset = "testbed"              # "testbed" or "imagenet"
testbed_file = ""                # "": data/fashion_mnist_testbed.npz
imagenet_train_dir = ""          # ImageNet-1k train folder (dataset "imagenet")
strict_images = False            # an unreadable ImageNet file: error (true) or skipped (false)
unitmem_fraction = 0.01          # share of every ImageNet class in D' (the paper: 1%)
max_images = 0                   # use only the first N training images (0: all)
# -- UnitMem (as in the UnitMem pages)
n_views = 1                      # views per image (testbed: 1, its views are the image itself)
activation = "post"              # "post": |GELU(fc1)|, "pre": |fc1|
unitmem_pooled = False           # also collect the activation pooled over all positions
selection = "default"            # ranking score: VAR "mean"/"max"/"pooled", RAR "last"/"all"
# -- the attack (as in the extraction page)
similarity = "pixel"             # "pixel" (testbed) or "sscd" (the paper)
sscd_torchscript = ""            # sscd_disc_mixup.torchscript.pt (similarity "sscd")
threshold = 0.99                 # extracted when similarity > threshold (the paper, SSCD: 0.75)
prefix_lengths = [0, 1, 5, 8]     # prefix lengths in tokens; each model uses those it accepts
per_class = 10                   # candidates per class (the paper: 5)
score_span = None                # stage A positions [start, stop]; None: the whole sequence
# -- the intervention sweep
k_percent = None                 # the k% this page reports; None: the paper's (VAR 10%, RAR 5%)
k_percents = [0, 1, 5, 10, 20]  # every k% the sweep edits (0: the unedited model)
sweep_modes = ["unitmem-half", "random-half", "unitmem-zero"]  # how units are chosen and scaled
random_seeds = [0, 1, 2]         # seeds of the random-unit control (at least 3)
sweep_fid = True                 # measure FID (testbed: "testbed FID") for every sweep row
# -- FID
fid_feature = "testbed"          # "testbed" (the testbed classifier) or "inception"
fid_samples_per_class = 20       # class-conditional samples per class (the paper: 50)
inception_torchscript = ""       # clean-fid's inception-2015-12-05.pt (fid_feature "inception")
fid_reference_npz = ""           # reference statistics (full scale: the ADM ImageNet 256 batch)
classifier_checkpoint = "data/checkpoints/classifier.safetensors"  # the testbed FID's classifier
sampling_kwargs = {}             # Generator.sample keywords for FID ({}: the family's defaults)

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import cli
from memlib.data import load_testbed
from memlib.params import SPECS, paper_k_percent, run_models
from memlib.results import atomic_write_json, provenance

given = {key: value for key, value in globals().items() if key in SPECS}
started = time.time()
sns.set_theme(style="whitegrid", context="notebook")
MODE_LABELS = {"baseline": "unedited", "unitmem-half": "top UnitMem, halved", "random-half": "random units, halved",
               "unitmem-zero": "top UnitMem, zeroed", "per-block-half": "top UnitMem per block, halved"}

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.params`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed pair `var-testbed` and `rar-testbed`; a
# full-scale run names one model. The k% this page reports must be one of the sweep's `k_percents`.

# %% tags=["hide-input"]
models = run_models(given, "sweep", filter_prefixes=True)
runs = {family: cli.make_run(params, Path(params["results_dir"])) for family, params in models.items()}
headline = {family: max(run.params["prefix_lengths"]) for family, run in runs.items()}
k_report = {family: float(k_percent if k_percent is not None else paper_k_percent(family)) for family in runs}
for family, run in runs.items():
    if k_report[family] not in run.params["k_percents"]:
        raise ValueError(f"k_percent: the page reports k = {k_report[family]:g}% for {run.params['model']}, which "
                         f"k_percents {run.params['k_percents']} does not contain; add it there")
    if "unitmem-half" not in run.params["sweep_modes"]:
        raise ValueError(f"sweep_modes: got {run.params['sweep_modes']}; this page needs 'unitmem-half'")
    print(f"{run.params['model']}: k = {k_report[family]:g}%, prefix {headline[family]} tokens, "
          f"sweep {run.params['sweep_modes']} at k% {run.params['k_percents']}")

# %% [markdown]
# ## The sweep
#
# `memlib.cli.stage_sweep` reads (or computes) UnitMem and the unedited attack, then edits the model
# for every (mode, k%, seed), reruns stages C and D of the attack on the same candidates and, with
# `sweep_fid`, measures FID. Each row is written to its own file as it finishes, named by a hash of
# everything the row depends on, so a second run of this notebook and {doc}`tradeoff` read the rows
# back; `python -m memlib sweep` (or `torchrun ... -m memlib sweep`) writes the same rows for a
# full-scale model. On the testbed the FID column is a **testbed FID**: the Frechet distance of the
# testbed classifier's features, not FID in the paper's sense.

# %% tags=["remove-stderr"]
sweeps = {family: cli.stage_sweep(run) for family, run in runs.items()}
for family, table in sweeps.items():
    columns = ["mode", "k_percent", "seed", "units_edited"] + [c for c in table if c.startswith("extracted@")] + ["fid"]
    display(Markdown(f"**{runs[family].params['model']}**: {len(table)} rows (all columns: `sweep.csv` in "
                     f"`{runs[family].out}`); FID column: {table['fid_metric'].dropna().iloc[0] if table['fid'].notna().any() else 'not measured'}"))
    display(table[columns].style.format({"fid": "{:.2f}"}, na_rep="—").hide(axis="index"))

# %% [markdown]
# ## Extraction after the edit, at the reported k
#
# The count is the number of candidates extracted at each model's longest prefix. The random
# control is shown as the mean over its seeds, with each seed as a dot.

# %%
def at_k(table: pd.DataFrame, family: str) -> pd.DataFrame:
    """The rows of the unedited model and of every mode at the reported k, with the count."""
    column = f"extracted@{headline[family]}"
    base = table[table["k_percent"] == 0].iloc[[0]].assign(mode="baseline")
    rows = pd.concat([base, table[table["k_percent"] == k_report[family]]], ignore_index=True)
    return rows.assign(extracted=rows[column], model=runs[family].params["model"])


results, summaries = {}, {}
for family, table in sweeps.items():
    rows = at_k(table, family)
    results[family] = rows
    before = int(rows.loc[rows["mode"] == "baseline", "extracted"].iloc[0])
    grouped = rows.groupby("mode", sort=False)["extracted"]
    summary = {"k_percent": k_report[family], "prefix": headline[family], "extracted_before": before,
               "units_edited": int(rows.loc[rows["mode"] == "unitmem-half", "units_edited"].iloc[0]),
               "candidates": int(rows["candidates"].iloc[0])}
    for mode, values in grouped:
        if mode == "baseline":
            continue
        key = mode.replace("-", "_")
        summary[f"{key}_extracted_mean"] = float(values.mean())
        if mode == "random-half":
            summary.update(random_half_extracted_sd=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           random_half_extracted_min=int(values.min()), random_half_extracted_max=int(values.max()),
                           random_half_seeds=int(len(values)))
    if rows["fid"].notna().any():
        fid_by_mode = rows.groupby("mode", sort=False)["fid"].mean()
        summary.update(fid_metric=str(rows["fid_metric"].dropna().iloc[0]), fid_before=float(fid_by_mode["baseline"]),
                       fid_after=float(fid_by_mode["unitmem-half"]))
        if "random-half" in fid_by_mode:
            random_fid = rows.loc[rows["mode"] == "random-half", "fid"]
            summary.update(random_half_fid_min=float(random_fid.min()), random_half_fid_max=float(random_fid.max()))
    summaries[family] = summary

    after = summary["unitmem_half_extracted_mean"]
    glue(f"{family}_k_percent", k_report[family], display=False)
    glue(f"{family}_extracted_before", before, display=False)
    glue(f"{family}_extracted_after", int(after), display=False)
    text = (f"**{runs[family].params['model']}, top {k_report[family]:g}% ({summary['units_edited']} units).** "
            f"Halving the top UnitMem units changes the count from {before} to {int(after)}")
    if before:
        change = (after - before) / before
        summary["extracted_change"] = change
        glue(f"{family}_extracted_change", change, display=False)
        text += f" ({100 * change:+.0f}%)"
    if "random_half_extracted_mean" in summary:
        glue(f"{family}_random_extracted_mean", summary["random_half_extracted_mean"], display=False)
        text += (f"; halving as many random units gives {summary['random_half_extracted_mean']:.1f} on average "
                 f"(from {summary['random_half_extracted_min']} to {summary['random_half_extracted_max']} over "
                 f"{summary['random_half_seeds']} seeds)")
        verdict = ("fewer images extractable than any random seed" if after < summary["random_half_extracted_min"] else
                   "more images extractable than any random seed" if after > summary["random_half_extracted_max"] else
                   "a count within the range of the random seeds")
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
    frame = pd.concat(results.values(), ignore_index=True).assign(edit=lambda f: f["mode"].map(MODE_LABELS))
    grid = sns.catplot(data=frame, x="edit", y="extracted", col="model", kind="bar", errorbar=("pi", 100),
                       color="#9bb7d4", sharey=False, height=4, aspect=1.2)
    grid.map_dataframe(sns.stripplot, x="edit", y="extracted", color="black", size=5)
    grid.set_axis_labels("", "extracted candidates")
    for ax, (family, rows) in zip(grid.axes.flat, results.items()):
        ax.set_title(f"{runs[family].params['model']}: top/random {k_report[family]:g}%, prefix {headline[family]}")
        ax.tick_params(axis="x", labelrotation=20)
    grid.figure.suptitle("Extraction after editing fc1 units (bar: mean; line: range over seeds)", y=1.03)
    grid.figure.savefig(Path(results_dir) / "mitigation_at_k.png", dpi=120, bbox_inches="tight")
    plt.show()

# %% [markdown]
# ## Which images stay extractable
#
# On the testbed, the extracted candidates split into planted images and others. An edit that
# targets memorization should remove planted images first.

# %%
for family, rows in results.items():
    if runs[family].params["dataset"] != "testbed":
        continue
    planted = load_testbed(runs[family].params["testbed_file"] or None).is_planted()
    split = []
    for _, row in rows.iterrows():
        ids = np.asarray(row["extracted_ids"][str(headline[family])], dtype=int)
        split.append({"edit": MODE_LABELS[row["mode"]], "seed": row["seed"], "extracted": len(ids),
                      "planted": int(planted[ids].sum()), "not planted": int((~planted[ids]).sum())})
    display(Markdown(f"**{runs[family].params['model']}**, top {k_report[family]:g}%:"))
    display(pd.DataFrame(split).style.hide(axis="index"))

# %% [markdown]
# ## The count against the prefix length, before and after the edit
#
# The same edits at every prefix length of the run (the random control: mean over seeds).

# %%
if results:
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, (family, rows) in zip(axes[0], results.items()):
        prefixes = runs[family].params["prefix_lengths"]
        for mode, group in rows.groupby("mode", sort=False):
            ax.plot(prefixes, [group[f"extracted@{n}"].mean() for n in prefixes], marker="o", label=MODE_LABELS[mode])
        ax.set_xlabel("prefix length (tokens)")
        ax.set_ylabel("extracted candidates")
        ax.set_title(f"{runs[family].params['model']}, k = {k_report[family]:g}%")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(results_dir) / "mitigation_vs_prefix.png", dpi=120)
    plt.show()

# %% [markdown]
# ## Summary
#
# The numbers of this page, with the parameters that produced them, are written to
# `summary-mitigation.json` in each model's results folder; {doc}`reproduction` reads them there.

# %%
lines = []
for family, run in runs.items():
    summary = summaries[family]
    atomic_write_json(run.out / "summary-mitigation.json",
                      {"numbers": {"notebook": "mitigation", "model": run.params["model"], **summary},
                       **provenance(run.params, run.params["seed"], started)})
    line = (f"- **{run.params['model']}**, top {summary['k_percent']:g}% halved: {summary['extracted_before']} → "
            f"{int(summary['unitmem_half_extracted_mean'])} extracted")
    if "random_half_extracted_mean" in summary:
        line += f" (random units: {summary['random_half_extracted_mean']:.1f} on average)"
    if "fid_before" in summary:
        line += f"; {summary['fid_metric']} {summary['fid_before']:.2f} → {summary['fid_after']:.2f}"
    lines.append(line + ".")
if not runs:
    lines.append("- No model in this run.")
display(Markdown("\n".join(lines)))
