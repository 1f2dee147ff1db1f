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
# # The testbed data
#
# **Question: what do the testbed models see during training, and which images are they meant
# to memorize?**
#
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# The testbed is a subset of Fashion-MNIST {cite:p}`xiao2017fashion` in which a few training
# images per class are *planted*: each is repeated a known number of times per training epoch
# (2, 4, 8, 16 or 32 copies, its *duplication level*), so that a small model memorizes the most
# repeated ones while it merely learns the rest. A *control group*, chosen by the same rule but
# seen once, is what every planted image is compared with. Where memorization can exist is then
# known in advance, and every later notebook checks its measurements against it.
# The page {doc}`../book/testbed` explains the design; this notebook shows the data itself.
#
# The folded cell below holds the parameters; papermill replaces them (see the folded cell after it).
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run's parameter file (named in the re-run box)
seed = 0                        # seeds which training images the grid shows
results_dir = "results/testbed" # the figures are also saved here as PNG files
images_per_class = 8            # columns of the grid of training images
testbed_file = None             # None: the shipped data/fashion_mnist_testbed.npz

# %% tags=["hide-input"]
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown
from myst_nb import glue

from memlib import style
from memlib.collect import fc1_width
from memlib.data import DATA_DIR, load_testbed, testbed_views, training_indices
from memlib.extract import decode_images
from memlib.models.registry import load_generator

style.apply()
started = time.time()

if isinstance(images_per_class, bool) or not isinstance(images_per_class, int) or images_per_class < 1:
    raise ValueError(f"images_per_class: expected an integer >= 1, got {images_per_class!r}")
figure_dir = Path(results_dir) / "testbed"
figure_dir.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(seed)

# %% [markdown]
# ## The splits
#
# `load_testbed` checks the file's checksum against `data/PROVENANCE.json` before returning
# the arrays: images are `uint8` of shape (N, 32, 32) (the 28 x 28 originals padded by two
# pixels), labels are class indices, `planted_ids` and `control_ids` are positions in the
# training split, and `train_copies` is how often each training image is seen per epoch.

# %%
data = load_testbed(testbed_file)
is_planted, is_control = data.is_planted(), data.is_control()
groups = data.groups()

label_sets = {"training images": data.train_labels,
              "of which planted": data.train_labels[is_planted],
              "of which control": data.train_labels[is_control],
              "held-out images": data.heldout_labels}
counts = pd.DataFrame({name: np.bincount(ids, minlength=data.num_classes)
                       for name, ids in label_sets.items()},
                      index=pd.Index(data.class_names, name="class"))
counts.loc["all classes"] = counts.sum()
counts

# %% tags=["remove-input"]
glue("n_train", len(data.train_labels), display=False)
glue("n_heldout", len(data.heldout_labels), display=False)
glue("n_planted", int(is_planted.sum()), display=False)
glue("n_control", int(is_control.sum()), display=False)
glue("n_classes", data.num_classes, display=False)
glue("n_levels", len(data.levels), display=False)
glue("level_min", min(data.levels), display=False)
glue("level_max", max(data.levels), display=False)
glue("planted_per_level", len(groups[f"{min(data.levels)}x"]), display=False)

# %% [markdown]
# ## Ordinary training images
#
# Each row is one class; the images are drawn at random (with `seed`) from the training images
# that are *not* planted.

# %% tags=["hide-input"]
fig, axes = plt.subplots(
    data.num_classes, images_per_class, figsize=(0.9 * images_per_class + 1.4, 0.9 * data.num_classes),
    squeeze=False,
)
for label, row in enumerate(axes):
    candidates = np.flatnonzero((data.train_labels == label) & ~is_planted & ~is_control)
    shown = rng.choice(candidates, size=min(images_per_class, len(candidates)), replace=False)
    for ax, index in zip(row, shown):
        ax.imshow(data.train_images[index], cmap="gray_r", vmin=0, vmax=255)
    for ax in row:
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(data.class_names[label], rotation=0, ha="right", va="center", fontsize=9)
fig.suptitle("Ordinary training images (neither planted nor control), one row per class")
fig.tight_layout()
fig.savefig(figure_dir / "training_images.png", dpi=120)
glue("fig_training_images", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_training_images
# :alt: Grid of ordinary training images of the testbed, one row per class, in inverted gray levels.
# :name: fig-testbed-training-images
#
# Randomly drawn training images of the testbed that are neither planted nor in the control group
# (gray levels inverted: dark is bright in the original).
# ```
#
# ## The planted images and the control group
#
# {glue:text}`n_planted:d` images are planted: per class one at each of the
# {glue:text}`n_levels:d` duplication levels from {glue:text}`level_min:d` to
# {glue:text}`level_max:d` copies per epoch, so {glue:text}`planted_per_level:d` images per level.
# The {glue:text}`n_control:d` control images (5 per class) were chosen by the same rule and are
# seen once, like every other image: a planted image and a control image differ only in how often
# the model saw them.

# %% tags=["hide-input"]
rows_of = {name: ids for name, ids in groups.items() if name != "control"}
control_by_class = [groups["control"][data.train_labels[groups["control"]] == label] for label in range(data.num_classes)]
rows_of["control (first)"] = np.array([ids[0] for ids in control_by_class])
fig, axes = plt.subplots(len(rows_of), data.num_classes, figsize=(0.9 * data.num_classes + 1.6, 0.95 * len(rows_of)),
                         squeeze=False)
for row, (name, ids) in zip(axes, rows_of.items()):
    by_class = {int(data.train_labels[i]): int(i) for i in ids}
    for label, ax in enumerate(row):
        if label in by_class:
            ax.imshow(data.train_images[by_class[label]], cmap="gray_r", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
for ax, name in zip(axes[0], data.class_names):
    ax.set_title(name, fontsize=7)
fig.suptitle("Planted images by duplication level (copies per epoch), and one control image per class")
fig.tight_layout()
fig.savefig(figure_dir / "planted_images.png", dpi=120)
glue("fig_planted_images", fig, display=False)
plt.close(fig)

# %% [markdown]
# The planted images and the control group are the figure at the top of this page.
#
# An extraction attack starts generation from the first tokens of an image, which on a 32 x 32
# image cover its top rows. If two planted images of a class began with the same rows, a model
# could complete only one of them from that prefix. The planted and control images were therefore
# chosen so that their first 8 pixel rows differ (`data/PROVENANCE.json` states the rule). The
# smallest mean absolute difference of the first 8 rows between two of them in the same class is
# {glue:text}`planted_min_top_rows_diff:.1f` gray levels (of 255).

# %% tags=["hide-input"]
top_rows = 8
smallest_difference = np.inf
chosen = np.concatenate([data.planted_ids, data.control_ids])
for ids in (chosen[data.train_labels[chosen] == label] for label in range(data.num_classes)):
    rows_PK = data.train_images[ids, :top_rows].reshape(len(ids), -1).astype(np.float64)  # P planted, K pixels
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            smallest_difference = min(smallest_difference, np.abs(rows_PK[i] - rows_PK[j]).mean())
glue("planted_min_top_rows_diff", float(smallest_difference), display=False)

# %% [markdown]
# ## Duplication as a minority
#
# Training visits every training image once per epoch and every planted image as often as its
# level says (`memlib.data.training_indices`). The paper's memorized images are a few hundred of
# 1.28 million; here the planted copies are {glue:text}`planted_share_of_epoch:.1%` of the
# {glue:text}`epoch_size:d` sequences of one epoch. The figure shows what one epoch is made of.

# %% tags=["hide-input"]
epoch = training_indices(data)
epoch_is_planted = is_planted[epoch]
glue("epoch_size", len(epoch), display=False)
glue("planted_share_of_epoch", float(epoch_is_planted.mean()), display=False)

composition = pd.Series(
    {"ordinary and control images (once)": int((~epoch_is_planted).sum()),
     **{f"planted at {level} copies": int(data.train_copies[groups[f"{level}x"]].sum()) for level in data.levels}}
)
fig, ax = plt.subplots(figsize=(7, 3.2))
colors = [style.ORDINARY_COLOR] + list(style.planted_colors(data.levels).values())
ax.barh(composition.index[::-1], composition.values[::-1], color=colors[::-1])
for y, value in enumerate(composition.values[::-1]):
    ax.text(value, y, f" {value:,}", va="center", fontsize=8)
ax.set_xscale("log")
ax.set_xlabel("sequences per training epoch (log scale)")
ax.set_title(f"One training epoch: planted copies are {epoch_is_planted.mean():.1%} of {len(epoch):,} sequences")
fig.tight_layout()
fig.savefig(figure_dir / "epoch_composition.png", dpi=120)
glue("fig_epoch_composition", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_epoch_composition
# :alt: Horizontal bar chart, log scale, of the sequences of one training epoch: the images seen once, and the copies of the planted images at each duplication level.
# :name: fig-testbed-epoch
#
# The sequences of one training epoch: every ordinary and control image once, each planted image
# as often as its level (log scale).
# ```
#
# ## Augmentation and views
#
# The paper's models train with augmentation, and UnitMem's definition averages a unit's
# activation over augmented *views* of an image. The testbed does both with each family's own
# augmentation at 32 x 32 (`memlib.data.testbed_views`): VAR resizes to 36 and crops 32 at random,
# RAR resizes to 35, crops 32 at random and flips. A quarter of the training presentations are such
# views and the rest the family's centre view (`data/README.md` says why: with every presentation
# augmented, ten CPU epochs memorized nothing). Below: the centre view and four random views of
# three planted images, per family.

# %% tags=["hide-input"]
examples = groups[f"{max(data.levels)}x"][:3]
view_rng = torch.Generator().manual_seed(seed)
fig, axes = plt.subplots(2 * len(examples), 5, figsize=(6.2, 2.6 * len(examples)), squeeze=False)
for f, family in enumerate(("var", "rar")):
    for e, index in enumerate(examples):
        row = axes[2 * e + f]
        shown = [testbed_views(data.train_images[index : index + 1], family)[0]]
        shown += [testbed_views(data.train_images[index : index + 1], family, view_rng)[0] for _ in range(4)]
        for ax, view in zip(row, shown):
            ax.imshow(view.mean(dim=0).numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(f"{family.upper()} #{index}", rotation=0, ha="right", va="center", fontsize=8)
axes[0, 0].set_title("centre view", fontsize=8)
for ax in axes[0, 1:]:
    ax.set_title("random view", fontsize=8)
fig.tight_layout()
fig.savefig(figure_dir / "views.png", dpi=120)
glue("fig_views", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_views
# :alt: Grid of three planted images, each in one centre view and four random training views, for the augmentation of VAR and of RAR, in inverted gray levels.
# :name: fig-testbed-views
#
# The centre view and four random training views of three planted images, for each family's
# augmentation (gray levels inverted).
# ```
#
# ## The testbed models
#
# Two small models are trained on these images by `make checkpoints` (`memlib/train.py`), each with
# its own tokenizer, and shipped in `data/checkpoints` with a JSON record of how they were trained:
#
# - `var-testbed`, a next-scale model in the layout of VAR {cite:p}`tian2024var`: a multi-scale
#   VQVAE turns an image into token maps of 1 x 1, 2 x 2, 3 x 3, 4 x 4, 6 x 6 and 8 x 8 codes (130
#   tokens), and an 8-block transformer predicts each scale from the coarser ones;
# - `rar-testbed`, a next-token model in the layout of RAR {cite:p}`yu2024rar`: a VQGAN turns an image
#   into 8 x 8 codes, and an 8-block transformer predicts them one by one in raster order (64 tokens).

# %% tags=["hide-input"]
CHECKPOINTS = DATA_DIR / "checkpoints"
MODEL_NAMES = {"var": "var-testbed", "rar": "rar-testbed"}
generators, records = {}, {}
for family, name in MODEL_NAMES.items():
    generators[family] = load_generator(name, CHECKPOINTS / f"{name}.safetensors",
                                        CHECKPOINTS / f"{name}-tokenizer.safetensors")
    records[family] = json.loads((CHECKPOINTS / f"{name}.json").read_text(encoding="utf-8"))

models = pd.DataFrame({
    name: {
        "tokens per image": generators[family].seq_len,
        "transformer blocks": len(generators[family].fc1_names()),
        "fc1 units per block": fc1_width(generators[family]),
        "transformer parameters": sum(p.numel() for p in generators[family].transformer.parameters()),
        "tokenizer parameters": sum(p.numel() for p in generators[family].tokenizer.parameters()),
        "epochs trained": records[family]["epochs_run"],
        "epoch kept": records[family]["kept_epoch"],
        "held-out loss of the kept epoch (nats/token)": round(records[family]["kept_heldout_loss"], 4),
        "training time (s, CPU)": records[family]["wall_seconds"],
    }
    for family, name in MODEL_NAMES.items()
}, dtype=object)
for family in MODEL_NAMES:
    glue(f"{family}_epochs_run", records[family]["epochs_run"], display=False)
    glue(f"{family}_kept_epoch", records[family]["kept_epoch"], display=False)
models

# %% [markdown]
# ### Where training stopped
#
# Memorization spreads with training: trained long enough, a small model memorizes ordinary images
# too, and the planted set stops being special ({doc}`../book/testbed`). The trainer therefore keeps
# the weights of the epoch with the lowest held-out loss (teacher-forced cross-entropy on the
# centre views of the held-out images) and stops when it has not improved for two epochs, after at
# most ten.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(MODEL_NAMES), figsize=(11, 3.6), squeeze=False)
for ax, (family, name) in zip(axes[0], MODEL_NAMES.items()):
    log = pd.DataFrame(records[family]["log"])
    trained = log[log["epoch"] > 0]
    ax.plot(trained["epoch"], trained["train_loss"], marker="o", label="training images (with label dropout)")
    ax.plot(log["epoch"], log["heldout_loss"], marker="s", label="held-out images")
    ax.axvline(records[family]["kept_epoch"], color=style.OKABE_ITO["grey"], linestyle="--", label="epoch kept")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(name)
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(figure_dir / "training_curves.png", dpi=120)
glue("fig_training_curves", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_training_curves
# :alt: Two line plots, one per testbed transformer, of the training and held-out cross-entropy per epoch, with a dashed line at the epoch whose weights are kept.
# :name: fig-testbed-training-curves
#
# Training and held-out loss per epoch of the two testbed transformers; the dashed line marks the
# epoch whose weights are shipped (epoch 0: before training).
# ```
#
# The trainer also checks what the models memorized: greedy decoding from the first tokens of an
# centre view (VAR: the 1 x 1 and 2 x 2 scales, 5 tokens; RAR: the first row of 8 tokens, and two
# rows) counts as *reproduced* when at least 90% of the remaining tokens equal the original's, per
# duplication level, for the control group, for a sample of ordinary training images and for
# held-out images. {doc}`extraction` runs the full attack.

# %% tags=["hide-input"]
checks = []
for family, name in MODEL_NAMES.items():
    check = records[family]["memorization_check"]
    for prefix, counts in check["prefixes"].items():
        checks.append({"model": name, "prefix (tokens)": int(prefix),
                       **{group: counts[group] for group in groups},
                       "ordinary (sample)": counts["other_train"], "held-out (sample)": counts["heldout"]})
checks = pd.DataFrame(checks)
top = f"{max(data.levels)}x"
for family, name in MODEL_NAMES.items():
    first = checks[checks["model"] == name].iloc[0]
    glue(f"{family}_check_top", int(first[top].split("/")[0]), display=False)
    glue(f"{family}_check_top_of", int(first[top].split("/")[1]), display=False)
    glue(f"{family}_check_control", int(first["control"].split("/")[0]), display=False)
reproduced = {family: checks[checks["model"] == name].iloc[0] for family, name in MODEL_NAMES.items()}  # shortest prefix
lead_alt = style.image_grid_alt(list(rows_of), data.num_classes,
                                "the planted training images, one column per class, one row per duplication level "
                                "and a last row with the first control image of each class, in inverted gray levels")
lead_caption = ("The planted images, one row per duplication level (copies per epoch) and one column per class, "
                "and the first control image of every class (gray levels inverted).")
glue("lead", Markdown(style.figure_md("fig_planted_images", lead_alt, lead_caption, "fig-testbed-planted-images") + "\n" + (
    f"**{int(is_planted.sum())} of the {len(data.train_labels)} training images are planted**, at {len(data.levels)} "
    f"duplication levels from {min(data.levels)} to {max(data.levels)} copies per epoch; their copies are "
    f"{epoch_is_planted.mean():.1%} of the sequences of one epoch. Greedy decoding from a short prefix reproduces "
    + " and ".join(f"{reproduced[f][top]} ({style.FAMILY_NAMES[f]})" for f in MODEL_NAMES)
    + f" of the images planted at {max(data.levels)} copies, and "
    + " and ".join(f"{reproduced[f]['control']} ({style.FAMILY_NAMES[f]})" for f in MODEL_NAMES)
    + " of the control images, seen once.")), display=False)
checks

# %% [markdown]
# ### The tokenizers
#
# The attack compares a generation with the *tokenizer's reconstruction* of the training image, so
# how faithfully each tokenizer reproduces an image matters. Each column below is one held-out image
# per class (never seen in training), with its reconstruction by each tokenizer. The reconstruction
# error over the first {glue:text}`n_recon:d` held-out images is the mean absolute difference in gray
# levels (of 255): {glue:text}`var_recon_mae:.1f` for VAR's VQVAE and {glue:text}`rar_recon_mae:.1f`
# for RAR's VQGAN.

# %% tags=["hide-input"]
n_recon = 250  # held-out images for the reconstruction error (a few seconds per tokenizer on a CPU)
heldout = {family: testbed_views(data.heldout_images[:n_recon], family) for family in MODEL_NAMES}  # centre views
glue("n_recon", n_recon, display=False)
reconstructions = {}
with torch.no_grad():
    for family, gen in generators.items():
        reconstructions[family] = decode_images(gen, gen.images_to_tokens(heldout[family]), batch_size=n_recon)
for family, recon in reconstructions.items():
    mae = 255 * (recon.mean(dim=1) - heldout[family].mean(dim=1)).abs().mean()
    glue(f"{family}_recon_mae", float(mae), display=False)

one_per_class = [int(np.flatnonzero(data.heldout_labels[:n_recon] == label)[0]) for label in range(data.num_classes)]
rows = [("held-out image\n(VAR centre view)", heldout["var"])]
rows += [(f"{MODEL_NAMES[f]} tokenizer", r) for f, r in reconstructions.items()]
fig, axes = plt.subplots(len(rows), data.num_classes, figsize=(0.95 * data.num_classes + 1.6, 1.05 * len(rows)),
                         squeeze=False)
for (label, images), row in zip(rows, axes):
    for ax, index in zip(row, one_per_class):
        ax.imshow(images[index].mean(dim=0).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
for ax, index in zip(axes[0], one_per_class):
    ax.set_title(data.class_names[data.heldout_labels[index]], fontsize=7)
fig.tight_layout()
fig.savefig(figure_dir / "tokenizer_reconstructions.png", dpi=120)
glue("fig_tokenizer_reconstructions", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_tokenizer_reconstructions
# :alt: Grid of one held-out image per class (top row) and its reconstructions by the VAR and the RAR tokenizer (rows below), in inverted gray levels.
# :name: fig-testbed-reconstructions
#
# One held-out image per class and its reconstruction (encode its centre view to tokens, decode)
# by each tokenizer (gray levels inverted).
# ```
#
# ### Samples
#
# Class-conditional samples of each model, with its default sampling (VAR: classifier-free guidance
# 1.5, no top-k or top-p; RAR: guidance 2.0), seeded with `seed`. Each row is one class.

# %% tags=["hide-input"]
for family, gen in generators.items():
    labels = torch.arange(data.num_classes).repeat_interleave(images_per_class)
    with torch.no_grad():
        tokens = gen.sample(labels, generator=torch.Generator().manual_seed(seed))
    samples = decode_images(gen, tokens)
    fig, axes = plt.subplots(data.num_classes, images_per_class,
                             figsize=(0.9 * images_per_class + 1.4, 0.9 * data.num_classes), squeeze=False)
    for ax, image in zip(axes.ravel(), samples):
        ax.imshow(image.mean(dim=0).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    for label, row in enumerate(axes):
        row[0].set_ylabel(data.class_names[label], rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{MODEL_NAMES[family]}: class-conditional samples, one row per class")
    fig.tight_layout()
    fig.savefig(figure_dir / f"samples_{family}.png", dpi=120)
    glue(f"fig_samples_{family}", fig, display=False)
    plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_samples_var
# :alt: Grid of class-conditional samples of var-testbed, one row per class, in inverted gray levels.
# :name: fig-testbed-samples-var
#
# Samples of `var-testbed` (gray levels inverted).
# ```
#
# ```{glue:figure} fig_samples_rar
# :alt: Grid of class-conditional samples of rar-testbed, one row per class, in inverted gray levels.
# :name: fig-testbed-samples-rar
#
# Samples of `rar-testbed` (gray levels inverted).
# ```
#
# ## Summary
#
# - The testbed trains on {glue:text}`n_train:d` images of {glue:text}`n_classes:d` classes and
#   keeps {glue:text}`n_heldout:d` held-out images that no model sees.
# - {glue:text}`n_planted:d` of the training images are planted at {glue:text}`n_levels:d`
#   duplication levels ({glue:text}`level_min:d` to {glue:text}`level_max:d` copies per epoch);
#   their copies make up {glue:text}`planted_share_of_epoch:.1%` of the {glue:text}`epoch_size:d`
#   sequences of one epoch. {glue:text}`n_control:d` control images, chosen by the same rule, are
#   seen once.
# - Their first rows differ within each class, so a prefix identifies one image.
# - Two 8-block models are trained on them with their family's augmentation, `var-testbed`
#   (next-scale) and `rar-testbed` (next-token), each kept at the epoch of its lowest held-out loss
#   (epochs {glue:text}`var_kept_epoch:d` and {glue:text}`rar_kept_epoch:d`). Greedy decoding from a
#   short prefix reproduces {glue:text}`var_check_top:d` (VAR) and {glue:text}`rar_check_top:d` (RAR)
#   of the {glue:text}`var_check_top_of:d` images planted at {glue:text}`level_max:d` copies, and
#   {glue:text}`var_check_control:d` (VAR) and {glue:text}`rar_check_control:d` (RAR) control images.

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("testbed", params_file, None)), display=False)

# %% tags=["remove-cell"]
# For the exercises (the exercise runs of notebooks/exercises.yaml glue the same keys):
# the training image nearest to each class-conditional sample of the figure above (pixel
# similarity to every training image as stored), against the answer key.
from memlib import summaries as _summaries  # noqa: E402
from memlib.similarity import PixelSimilarity as _PixelSimilarity  # noqa: E402

glue("ex_seed", seed, display=False)
glue("ex_images_per_class", images_per_class, display=False)
glue("ex_planted_share_of_train", float(is_planted.mean()), display=False)
train_N3HW = torch.from_numpy(data.train_images).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
for family, gen in generators.items():
    sample_labels = torch.arange(data.num_classes).repeat_interleave(images_per_class)
    with torch.no_grad():
        sampled = decode_images(gen, gen.sample(sample_labels, generator=torch.Generator().manual_seed(seed)))
    nearest_id = _PixelSimilarity().pairwise(sampled, train_N3HW).argmax(dim=1).numpy()
    hits = int(is_planted[nearest_id].sum())
    effect, word = _summaries.over_base_rate(hits, len(sampled), float(is_planted.mean()))
    glue(f"ex_{family}_samples", len(sampled), display=False)
    glue(f"ex_{family}_nearest_planted", hits, display=False)
    glue(f"ex_{family}_nearest_distinct", len(set(nearest_id[is_planted[nearest_id]].tolist())), display=False)
    glue(f"ex_{family}_nearest_verdict", _summaries.claim_sentence(
        f"{MODEL_NAMES[family]}: share of samples nearest a planted image minus the planted share of the training set",
        effect, word, ".3f"), display=False)

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise changes one setting of this page's run. Write your prediction down first, then run
# the variant from the repository root: it executes this page with the change, under its own results
# folder (`results/testbed/exercises/<id>`), reusing every cached result the change leaves alone.
# Compare with the answer key and with this page's run. The solution says what the variant run of
# this book showed; its numbers are glued from that run ({doc}`../book/exercise-runs`).
#
# For every class-conditional sample in the figures above, the nearest training image in pixel
# space (`memlib.similarity.PixelSimilarity`) is a planted image for {glue:text}`ex_var_nearest_planted:d` of the
# {glue:text}`ex_var_samples:d` samples of `var-testbed` and {glue:text}`ex_rar_nearest_planted:d`
# of the {glue:text}`ex_rar_samples:d` samples of `rar-testbed` (`seed` {glue:text}`ex_seed:d`),
# while planted images are only {glue:text}`ex_planted_share_of_train:.1%` of the training set.
# Computed against that base rate: {glue:text}`ex_var_nearest_verdict:s`; {glue:text}`ex_rar_nearest_verdict:s`.
#
# ````{exercise} Another sampling seed
# :label: ex-testbed-seed
#
# **Predict.** The samples are drawn with `seed` {glue:text}`ex_seed:d`. With `seed: 1` the models draw other samples.
# Which of this page's numbers change: the planted set and its share of the training set, the number
# of samples whose nearest training image is planted, the verdict against the base rate?
#
# **Run** (`seed: 1`):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise testbed-seed
# ```
#
# **Compare** the counts of both seeds with each other and with the base rate.
# ````
#
# ```{solution} ex-testbed-seed
# :class: dropdown
#
# The run `testbed-seed` took {glue:text}`exercise-testbed-seed.ipynb::page_seconds:.0f` s on this
# machine. With `seed: 1` the nearest training image is planted for
# {glue:text}`exercise-testbed-seed.ipynb::ex_var_nearest_planted:d` of
# {glue:text}`exercise-testbed-seed.ipynb::ex_var_samples:d` VAR samples and
# {glue:text}`exercise-testbed-seed.ipynb::ex_rar_nearest_planted:d` of
# {glue:text}`exercise-testbed-seed.ipynb::ex_rar_samples:d` RAR samples (this page, seed
# {glue:text}`ex_seed:d`: {glue:text}`ex_var_nearest_planted:d` and {glue:text}`ex_rar_nearest_planted:d`). The planted
# set is the data file's, so its share stays {glue:text}`exercise-testbed-seed.ipynb::ex_planted_share_of_train:.1%`.
# The computed verdicts of that run: {glue:text}`exercise-testbed-seed.ipynb::ex_var_nearest_verdict:s`;
# {glue:text}`exercise-testbed-seed.ipynb::ex_rar_nearest_verdict:s`. The difference between the two
# seeds is the sampling noise of one set of samples of this size: read a change only where the
# verdicts differ.
# ```
#
# ````{exercise} Twice as many samples
# :label: ex-testbed-more-samples
#
# **Predict.** `images_per_class: 16` draws 16 samples per class instead of this page's
# {glue:text}`ex_images_per_class:d`. Does the number of
# samples nearest a planted image double? Do they hit more *different* planted images (this run:
# {glue:text}`ex_var_nearest_distinct:d` for VAR, {glue:text}`ex_rar_nearest_distinct:d` for RAR),
# and does the interval of the verdict get narrower?
#
# **Run** (`images_per_class: 16`):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise testbed-more-samples
# ```
#
# **Compare** with the base rate and with this page's run.
# ````
#
# ```{solution} ex-testbed-more-samples
# :class: dropdown
#
# The run `testbed-more-samples` took {glue:text}`exercise-testbed-more-samples.ipynb::page_seconds:.0f` s
# on this machine. Of {glue:text}`exercise-testbed-more-samples.ipynb::ex_var_samples:d` VAR samples,
# {glue:text}`exercise-testbed-more-samples.ipynb::ex_var_nearest_planted:d` are nearest a planted image
# ({glue:text}`exercise-testbed-more-samples.ipynb::ex_var_nearest_distinct:d` different ones); of
# {glue:text}`exercise-testbed-more-samples.ipynb::ex_rar_samples:d` RAR samples,
# {glue:text}`exercise-testbed-more-samples.ipynb::ex_rar_nearest_planted:d`
# ({glue:text}`exercise-testbed-more-samples.ipynb::ex_rar_nearest_distinct:d` different ones); this
# page's {glue:text}`ex_images_per_class:d` per class: {glue:text}`ex_var_nearest_planted:d` and {glue:text}`ex_rar_nearest_planted:d`.
# Computed: {glue:text}`exercise-testbed-more-samples.ipynb::ex_var_nearest_verdict:s`;
# {glue:text}`exercise-testbed-more-samples.ipynb::ex_rar_nearest_verdict:s`.
# ```
