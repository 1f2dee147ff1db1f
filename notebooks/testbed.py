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
# The testbed is a small subset of Fashion-MNIST {cite:p}`xiao2017fashion` in which a few
# training images per class are *planted*: each is repeated many times per training epoch, so
# that a small model memorizes them while it merely learns the rest. Where memorization exists
# is then known in advance, and every later notebook can check its measurements against it.
# The page {doc}`../book/testbed` explains the design; this notebook shows the data itself.
#
# The cell below holds the parameters; papermill replaces them (see the collapsed cell after it).

# %% tags=["parameters"]
seed = 0                        # seeds which training images the grid shows
results_dir = "results/testbed" # the figures are also saved here as PNG files
images_per_class = 8            # columns of the grid of training images
testbed_file = None             # None: the shipped data/fashion_mnist_testbed.npz

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from myst_nb import glue

from memlib.data import DEFAULT_DUPLICATION, load_testbed, training_indices

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
# pixels), labels are class indices, and `planted_ids` are positions in the training split.

# %%
data = load_testbed(testbed_file)
is_planted = data.is_planted()

counts = pd.DataFrame(
    {
        "training images": np.bincount(data.train_labels, minlength=data.num_classes),
        "of which planted": np.bincount(data.train_labels[is_planted], minlength=data.num_classes),
        "held-out images": np.bincount(data.heldout_labels, minlength=data.num_classes),
    },
    index=pd.Index(data.class_names, name="class"),
)
counts.loc["all classes"] = counts.sum()
counts

# %%
glue("n_train", len(data.train_labels), display=False)
glue("n_heldout", len(data.heldout_labels), display=False)
glue("n_planted", int(is_planted.sum()), display=False)
glue("n_classes", data.num_classes, display=False)
glue("planted_per_class", int(is_planted.sum()) // data.num_classes, display=False)

# %% [markdown]
# ## Ordinary training images
#
# Each row is one class; the images are drawn at random (with `seed`) from the training images
# that are *not* planted.

# %%
fig, axes = plt.subplots(
    data.num_classes, images_per_class, figsize=(0.9 * images_per_class + 1.4, 0.9 * data.num_classes),
    squeeze=False,
)
for label, row in enumerate(axes):
    candidates = np.flatnonzero((data.train_labels == label) & ~is_planted)
    shown = rng.choice(candidates, size=min(images_per_class, len(candidates)), replace=False)
    for ax, index in zip(row, shown):
        ax.imshow(data.train_images[index], cmap="gray_r", vmin=0, vmax=255)
    for ax in row:
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(data.class_names[label], rotation=0, ha="right", va="center", fontsize=9)
fig.suptitle("Ordinary (non-planted) training images, one row per class")
fig.tight_layout()
fig.savefig(figure_dir / "training_images.png", dpi=120)
glue("fig_training_images", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_training_images
# :name: fig-testbed-training-images
#
# Randomly drawn training images of the testbed that are not planted (gray levels inverted:
# dark is bright in the original).
# ```
#
# ## The planted images
#
# These {glue:text}`n_planted:d` images ({glue:text}`planted_per_class:d` per class) are the ones
# the models are meant to memorize.

# %%
planted_by_class = [data.planted_ids[data.train_labels[data.planted_ids] == label] for label in range(data.num_classes)]
columns = max(len(ids) for ids in planted_by_class)
fig, axes = plt.subplots(data.num_classes, columns, figsize=(0.9 * columns + 1.4, 0.9 * data.num_classes), squeeze=False)
for label, (row, ids) in enumerate(zip(axes, planted_by_class)):
    for ax, index in zip(row, ids):
        ax.imshow(data.train_images[index], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"#{index}", fontsize=7, pad=2)
    for ax in row:
        ax.set_xticks([])
        ax.set_yticks([])
    row[0].set_ylabel(data.class_names[label], rotation=0, ha="right", va="center", fontsize=9)
fig.suptitle("Planted training images (title: position in the training split)")
fig.tight_layout()
fig.savefig(figure_dir / "planted_images.png", dpi=120)
glue("fig_planted_images", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_planted_images
# :name: fig-testbed-planted-images
#
# The planted images of every class.
# ```
#
# An extraction attack starts generation from the first tokens of an image, which on a 32 x 32
# image cover its top rows. If two planted images of a class began with the same rows, a model
# could complete only one of them from that prefix. The planted images were therefore chosen so
# that their first 8 pixel rows differ (`data/PROVENANCE.json` states the rule). The smallest
# mean absolute difference of the first 8 rows between two planted images of the same class is
# {glue:text}`planted_min_top_rows_diff:.1f` gray levels (of 255).

# %%
top_rows = 8
smallest_difference = np.inf
for ids in planted_by_class:
    rows_PK = data.train_images[ids, :top_rows].reshape(len(ids), -1).astype(np.float64)  # P planted, K pixels
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            smallest_difference = min(smallest_difference, np.abs(rows_PK[i] - rows_PK[j]).mean())
glue("planted_min_top_rows_diff", float(smallest_difference), display=False)

# %% [markdown]
# ## The duplication factor
#
# Training visits every training image once per epoch and every planted image
# {glue:text}`duplication:d` times (`memlib.data.training_indices`). The figure shows what one
# epoch is made of.

# %%
epoch = training_indices(data, DEFAULT_DUPLICATION)
epoch_is_planted = is_planted[epoch]
glue("duplication", DEFAULT_DUPLICATION, display=False)
glue("epoch_size", len(epoch), display=False)
glue("planted_share_of_epoch", float(epoch_is_planted.mean()), display=False)

per_class = pd.DataFrame(
    {
        "ordinary images": np.bincount(data.train_labels[epoch[~epoch_is_planted]], minlength=data.num_classes),
        "planted images (all copies)": np.bincount(data.train_labels[epoch[epoch_is_planted]], minlength=data.num_classes),
    },
    index=list(data.class_names),
)
fig, ax = plt.subplots(figsize=(7, 3.5))
per_class.plot.bar(stacked=True, ax=ax, color=["#9bb7d4", "#c0392b"], width=0.8)
ax.set_xlabel("class")
ax.set_ylabel("samples per training epoch")
ax.set_ylim(0, 1.3 * per_class.sum(axis=1).max())  # room for the legend above the bars
ax.legend(loc="upper left", ncol=2, frameon=False)
ax.set_title(f"One training epoch: each planted image is seen {DEFAULT_DUPLICATION} times")
ax.tick_params(axis="x", labelrotation=45)
for tick in ax.get_xticklabels():
    tick.set_horizontalalignment("right")
fig.tight_layout()
fig.savefig(figure_dir / "epoch_composition.png", dpi=120)
glue("fig_epoch_composition", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_epoch_composition
# :name: fig-testbed-epoch
#
# Samples per class in one training epoch: ordinary images once, planted images
# {glue:text}`duplication:d` times each.
# ```
#
# ## Summary
#
# - The testbed trains on {glue:text}`n_train:d` images of {glue:text}`n_classes:d` classes and
#   keeps {glue:text}`n_heldout:d` held-out images that no model sees.
# - {glue:text}`n_planted:d` of the training images are planted. Repeated
#   {glue:text}`duplication:d` times, they make up {glue:text}`planted_share_of_epoch:.1%` of the
#   {glue:text}`epoch_size:d` samples of one epoch.
# - Their first rows differ within each class, so a prefix identifies one planted image.
