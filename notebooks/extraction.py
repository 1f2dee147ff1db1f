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
# # Extracting training images
#
# **Question: how many training images does the extraction attack recover from the unedited
# models, and how does that depend on the length of the prefix it starts from?**
#
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# The attack of {cite:t}`kowalczuk2025privacy` has four stages ({doc}`../book/method`):
#
# - **A.** score every training image with one teacher-forced pass: the fraction of its tokens the
#   model predicts correctly (top-1);
# - **B.** keep the highest-scoring images of every class as candidates;
# - **C.** generate each candidate from the first tokens of its ground-truth sequence (the
#   *prefix*), greedily, without guidance;
# - **D.** decode the generation and the candidate's ground-truth tokens with the same tokenizer and
#   call the image *extracted* when their copy-detection similarity exceeds a threshold.
#
# On the testbed the similarity is the pixel-space measure of `memlib.similarity` (one minus the
# mean absolute gray-level difference), not SSCD, and stage A scores the whole sequence because blank
# backgrounds make a last-tokens span a poor ranker ({doc}`../book/testbed`). Since the planted
# images are known there, this page also checks stage A against them and calibrates the decision
# threshold. The folded cell below holds the parameters; papermill replaces them.
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run: every setting (memlib/config.py, README table)
# -- what this page discusses; None: the parameter file's value
similarity = None                # "pixel" (testbed) or "sscd" (the paper)
threshold = None                 # extracted when similarity > threshold (the paper, SSCD: 0.75)
prefix_lengths = None            # prefix lengths in tokens; each model uses those it accepts
per_class = None                 # candidates per class (the paper: 5)
score_span = None                # stage A positions [start, stop]; None: the parameter file's (null: the whole sequence)
images_per_class = None          # columns of the image grids

# %% tags=["hide-input"]
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import stages, style, summaries
from memlib.config import page_config
from memlib.data import load_testbed, testbed_views
from memlib.extract import decode_images
from memlib.results import cached, provenance, text_sha256, write_record
from memlib.similarity import PixelSimilarity, calibrate_threshold

config = page_config(params_file, similarity=similarity, threshold=threshold, prefix_lengths=prefix_lengths,
                     per_class=per_class, score_span=score_span, images_per_class=images_per_class)
started = time.time()
style.apply()

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.config`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed pair `var-testbed` and `rar-testbed`; a
# full-scale run names one model. Each model uses the prefix lengths of `prefix_lengths` it can
# start from: every integer up to the sequence length for RAR, only the scale boundaries for VAR
# (the testbed's VAR: 0, 1, 5, 14, 30, 66 and 130 tokens for its scales 1, 2, 3, 4, 6 and 8).

# %% tags=["hide-input"]
runs = stages.make_runs(config, "attack", usable_prefixes=True)
headline = {family: stages.reported_prefix(run) for family, run in runs.items()}
for family, run in runs.items():
    print(f"{run.config.model.model}: {stages.shown_path(run.config.model.checkpoint)} on {run.device}; prefix lengths "
          f"{run.config.attack.prefix_lengths}; results in {stages.shown_path(run.out)}")

# %% [markdown]
# ## The attack on the unedited models
#
# `memlib.stages.stage_attack` runs stages A to D. Its result file is named by a hash of the
# parameters, the checkpoints and the data, so a second run of this notebook (and the sweep of
# {doc}`mitigation`) reads it back; the same file is what `python -m memlib attack` (or `torchrun ...
# -m memlib attack`) writes for a full-scale model. This book reports the count at each model's
# **reported prefix** (`reported_prefix`; by default the longest of the run, as the paper's 30 tokens;
# the testbed reports the paper's prefix at its scale: VAR's first four scales, 30 tokens, and an
# eighth of RAR's image, 8 tokens, as the paper's 30 of 256).

# %% tags=["remove-stderr"]
outcomes = {family: stages.stage_attack(run) for family, run in runs.items()}

# %% tags=["hide-input"]
attacks = {family: outcome.result for family, outcome in outcomes.items()}
candidate_tokens = {family: outcome.candidate_tokens_CL for family, outcome in outcomes.items()}

testbed = {family: load_testbed(run.config.data.testbed_file)
           for family, run in runs.items() if run.config.data.dataset == "testbed"}
rows, count_sentences = [], {}
for family, attack in attacks.items():
    planted = testbed[family].is_planted()[attack.candidate_ids.numpy()] if family in testbed else None
    for n, hit in zip(attack.prefix_lengths, attack.extracted.numpy()):
        row = {"model": runs[family].config.model.model, "prefix (tokens)": n, "candidates": len(hit),
               "extracted": int(hit.sum())}
        if planted is not None:
            row["extracted, planted"] = int((hit & planted).sum())
            row["extracted, not planted"] = int((hit & ~planted).sum())
            row["planted candidates"] = int(planted.sum())
        rows.append(row)
counts = pd.DataFrame(rows)
display(style.scroll_table(counts.style.hide(axis="index")))

for family, attack in attacks.items():
    n = headline[family]
    count = attack.counts[n]
    glue(f"{family}_model", runs[family].config.model.model, display=False)
    glue(f"{family}_prefix", n, display=False)
    glue(f"{family}_candidates", attack.num_candidates_total, display=False)
    glue(f"{family}_extracted", count, display=False)
    text = (f"**{runs[family].config.model.model}.** From a prefix of {n} tokens the attack extracts {count} of its "
            f"{attack.num_candidates_total} candidates ({attack.similarity_name} > {attack.threshold:g})")
    if family in testbed:
        planted = testbed[family].is_planted()[attack.candidate_ids.numpy()]
        hit = attack.extracted[attack.prefix_lengths.index(n)].numpy()
        n_planted_total = int(testbed[family].is_planted()[outcomes[family].image_ids_N.numpy()].sum())
        glue(f"{family}_extracted_planted", int((hit & planted).sum()), display=False)
        glue(f"{family}_extracted_not_planted", int((hit & ~planted).sum()), display=False)
        n_other = int((hit & ~planted).sum())
        text += (f": {int((hit & planted).sum())} of the {n_planted_total} planted images it attacked and "
                 f"{n_other} {'image that is' if n_other == 1 else 'images that are'} not planted")
    count_sentences[family] = text + "."
    display(Markdown(count_sentences[family]))

# %% [markdown]
# ## Extraction against duplication level
#
# The testbed's answer key: which images were planted, at how many copies per epoch, and which
# were chosen alike but seen once (the control group). Below, the share of each group the attack
# extracts from the reported prefix, with its 95% Wilson interval; the verdict compares the most
# duplicated level with the control group (`memlib.summaries.dose_response`).

# %% tags=["hide-input"]
dose_sentences = {}
if testbed:
    dose_rows, fig, axes = [], *plt.subplots(1, len(testbed), figsize=(5.2 * len(testbed), 3.6), squeeze=False)
    for ax, family in zip(axes[0], testbed):
        data, attack = testbed[family], attacks[family]
        attacked = outcomes[family].image_ids_N.numpy()  # every image stage A scored (max_images: a class-spread sample)
        groups = {name: np.intersect1d(ids, attacked) for name, ids in data.groups().items()}
        hit = attack.extracted[attack.prefix_lengths.index(headline[family])].numpy()
        extracted_ids = attack.candidate_ids.numpy()[hit]
        table = pd.DataFrame(summaries.extraction_by_group(extracted_ids, groups))
        candidates = set(attack.candidate_ids.tolist())
        table["candidates"] = [sum(int(i) in candidates for i in ids) for ids in groups.values()]
        effect, word = summaries.dose_response(extracted_ids, groups)
        glue(f"{family}_dose_verdict", word, display=False)
        glue(f"{family}_dose_effect", effect.text(".2f"), display=False)
        top = table.iloc[-1]
        glue(f"{family}_top_level_extracted", int(top["extracted"]), display=False)
        glue(f"{family}_top_level_images", int(top["images"]), display=False)
        glue(f"{family}_control_extracted", int(table.iloc[0]["extracted"]), display=False)
        x = np.arange(len(table))
        ax.bar(x, table["share"], color=[style.group_colors(data.levels)[group] for group in table["group"]])
        ax.errorbar(x, table["share"], yerr=np.clip([table["share"] - table["share_lo"], table["share_hi"] - table["share"]], 0, None),
                    fmt="none", ecolor="black", capsize=3)
        ax.set_xticks(x, table["group"])
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(style.LABELS["group"])
        ax.set_ylabel("share extracted")
        ax.set_title(f"{style.family_name(family, runs[family].config.model.model)}, prefix {headline[family]} tokens",
                     fontsize=11)
        dose_rows.append(table.assign(model=runs[family].config.model.model))
        dose_sentences[family] = (f"More duplicated images are extracted more often (top level minus control "
                                  f"{effect.text('.2f')}): **{word}**.")
        display(Markdown(f"**{runs[family].config.model.model}.** Extracted: "
                         + ", ".join(f"{r.group} {r.extracted}/{r.images}" for r in table.itertuples())
                         + ". " + dose_sentences[family]))
    fig.tight_layout()
    style.show(fig, style.alt_text(
        "Bar charts", "the share of each image group (control, then the duplication levels) that the attack extracts, "
        "with 95% intervals, one panel per model", "; ".join(
            f"{runs[f].config.model.model}: control {r.iloc[0]['share']:.2f}, {r.iloc[-1]['group']} {r.iloc[-1]['share']:.2f}"
            for f, r in zip(testbed, dose_rows))))
    dose_table = pd.concat(dose_rows)[["model", "group", "images", "candidates", "extracted", "share", "share_lo", "share_hi"]]
    display(style.scroll_table(dose_table.style.hide(axis="index").format(
        {"share": "{:.2f}", "share_lo": "{:.2f}", "share_hi": "{:.2f}"}),
        folded=f"The table of the figure ({len(dose_table)} rows): click to open"))

# %% [markdown]
# ## Stage A: does the score single out the memorized images?
#
# On the testbed every training image is scored (the same function and span as the attack's stage
# A), and the scores of planted and ordinary images are compared. The candidates of stage B are the
# top `per_class` images of every class by this score; their share of planted images is the
# precision of stage A.

# %% tags=["hide-input"]
def testbed_reconstructions(run, image_ids_N: np.ndarray) -> torch.Tensor:
    """The tokenizer's reconstructions (gray, (N, H, W)) of the training images the attack
    read (``image_ids_N``), cached by the model's checkpoints, the testbed file and the ids."""
    gen, cfg = run.generator(), run.config
    data = load_testbed(cfg.data.testbed_file)
    batch = cfg.run.batch_size

    def compute(work):
        images = testbed_views(data.train_images[image_ids_N], gen.family)  # the centre views the attack tokenizes
        with torch.no_grad():
            tokens_NL = torch.cat([gen.images_to_tokens(images[i : i + batch].to(gen.device)).cpu()
                                   for i in range(0, len(images), batch)])
        return {"reconstructions_NHW": decode_images(gen, tokens_NL, batch).mean(dim=1)}, {}

    settings = {**run.settings(), "images": len(image_ids_N), "image_ids_sha256": text_sha256(str(image_ids_N.tolist()))}
    inputs = {**run.model_inputs(), "testbed": data.path}
    return cached("testbed-reconstructions", settings, compute, run.cache / "cache", inputs=inputs,
                  seed=cfg.run.seed).tensors["reconstructions_NHW"]


stage_a = {}
for family in testbed:
    data, attack = testbed[family], attacks[family]
    scores = outcomes[family].scores_N.numpy()
    n = len(scores)
    planted = data.is_planted()[outcomes[family].image_ids_N.numpy()]  # of the scored images, in their order
    frame = pd.DataFrame({"stage-A score": scores, "image": np.where(planted, "planted", "not planted")})
    precision = float(data.is_planted()[attack.candidate_ids.numpy()].mean())
    stage_a[family] = {"candidate_precision": precision,
                       "median_score_planted": float(np.median(scores[planted])),
                       "median_score_not_planted": float(np.median(scores[~planted]))}
    glue(f"{family}_stage_a_precision", precision, display=False)

    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.histplot(data=frame, x="stage-A score", hue="image", stat="density", common_norm=False, bins=40,
                 element="step", palette=style.PLANTED_VS_OTHER, ax=ax)
    cutoff = float(attack.candidate_scores.min())
    ax.axvline(cutoff, color="black", linestyle=":", label="lowest candidate score")
    ax.set_xlabel("stage-A score (fraction of tokens predicted correctly, teacher-forced)")
    ax.set_ylabel("density (per group)")
    ax.set_title(f"{runs[family].config.model.model}: stage-A scores of all {n} training images")
    fig.tight_layout()
    fig.savefig(runs[family].out / "extraction_stage_a.png", dpi=120)
    style.show(fig, style.alt_text(
        "Step histograms", f"the stage-A scores of the planted and of the other training images of {runs[family].config.model.model}, "
        "with a dotted line at the lowest candidate score", f"the median score is {stage_a[family]['median_score_planted']:.3f} "
        f"for planted images and {stage_a[family]['median_score_not_planted']:.3f} for the others"))
    display(Markdown(
        f"**{runs[family].config.model.model}.** Median stage-A score {stage_a[family]['median_score_planted']:.3f} "
        f"for planted images and {stage_a[family]['median_score_not_planted']:.3f} for the others; "
        f"{100 * precision:.0f}% of the {attack.num_candidates_total} candidates are planted images."))

# %% [markdown]
# ## The count against the prefix length
#
# A longer prefix gives the model more of the image to start from. **VAR and RAR counts at "the same
# prefix" are not comparable**: a next-scale model's first tokens are whole coarse versions of the
# image (the testbed's VAR: 1, then 1 + 4 = 5, then 5 + 16 = 21 tokens for the 1 x 1, 2 x 2 and
# 4 x 4 scales), while a next-token model's first tokens are the top rows of the image in raster
# order. The right panel puts the prefix on a common axis, as a share of each model's sequence.

# %% tags=["hide-input"]
fig, (ax_tokens, ax_share) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for family, attack in attacks.items():
    seq_len = runs[family].generator().seq_len
    label = style.family_name(family, runs[family].config.model.model)
    counts_P = [attack.counts[n] for n in attack.prefix_lengths]
    ax_tokens.plot(attack.prefix_lengths, counts_P, marker="o", label=label, color=style.FAMILY_COLORS[family])
    ax_share.plot([100 * n / seq_len for n in attack.prefix_lengths], counts_P, marker="o", label=label,
                  color=style.FAMILY_COLORS[family])
ax_tokens.set_xlabel(style.LABELS["prefix"])
ax_tokens.set_ylabel(style.LABELS["extracted"])
ax_tokens.legend(fontsize=10)
ax_share.set_xlabel("prefix length (% of the model's token sequence)")
fig.suptitle("Extracted images against the prefix the generation starts from")
fig.tight_layout()
if runs:
    fig.savefig(Path(config.run.results_dir) / "extraction_vs_prefix.png", dpi=120)
glue("fig_vs_prefix", fig, display=False)
plt.close(fig)
alt = style.alt_text("Two line plots", "the number of extracted candidates of each model against the prefix length, "
                     "in tokens (left) and as a share of the model's token sequence (right)", "; ".join(
                         f"{runs[f].config.model.model} extracts {min(a.counts.values())} to {max(a.counts.values())}"
                         for f, a in attacks.items()))
caption = ("Extracted candidates against the prefix the generation starts from. Counts of a next-scale and a "
           "next-token model at the same number of prefix tokens are not comparable (right: a common axis).")
verdicts = [" ".join([count_sentences[f], dose_sentences.get(f, "")]) for f in attacks]
glue("lead", Markdown(style.figure_md("fig_vs_prefix", alt, caption, "fig-extraction-vs-prefix") + "\n"
                      + "\n\n".join(verdicts) if runs else "**This run has no model.**"), display=False)

# %% [markdown]
# ## Training images beside their generations
#
# Each column is one candidate at the model's reported prefix: the training image, its
# reconstruction by the tokenizer (decoded ground-truth tokens: what stage D compares against), and
# the generation. The titles give the similarity; red titles mark extracted images. The first grid
# shows the extracted candidates with the highest similarity, the second the candidates that were
# not extracted.

# %% tags=["hide-input"]
def candidate_grid(family: str, which: np.ndarray, title: str, file_name: str) -> None:
    run, attack = runs[family], attacks[family]
    gen = run.generator()
    p_index = attack.prefix_lengths.index(headline[family])
    dataset, ground_truth = attacked_images[family].dataset, attacked_images[family].ground_truth
    tokens = attack.generated_tokens[p_index][which].long()
    generated = decode_images(gen, tokens, run.config.run.batch_size)
    reconstructed = decode_images(gen, candidate_tokens[family][which], run.config.run.batch_size)
    fig, axes = plt.subplots(3, config.book.images_per_class, figsize=(1.3 * config.book.images_per_class, 4.6), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for j, c in enumerate(which):
        image, _ = dataset[int(attack.candidate_ids[c])]
        for row, shown in enumerate((ground_truth(image), reconstructed[j], generated[j])):
            axes[row, j].imshow(shown.permute(1, 2, 0).numpy().clip(0, 1))
        hit = bool(attack.extracted[p_index, c])
        axes[0, j].set_title(f"#{int(attack.candidate_ids[c])}\nsim {float(attack.similarity[p_index, c]):.3f}",
                             fontsize=8, color=style.HIGHLIGHT_COLOR if hit else "black")
    for row, label in enumerate(("training", "tokenizer", "generated")):
        axes[row, 0].set_ylabel(label, fontsize=9)
    for ax in axes[:, len(which):].ravel():
        ax.axis("off")
    fig.suptitle(f"{run.config.model.model}, prefix {headline[family]} tokens: {title}", fontsize=11)
    fig.tight_layout()
    fig.savefig(run.out / file_name, dpi=120)
    n_hit = int(attack.extracted[p_index, which].sum())
    style.show(fig, style.image_grid_alt(["training image", "tokenizer reconstruction", "generation"], len(which),
                                         f"{len(which)} {title} of {run.config.model.model} at a prefix of "
                                         f"{headline[family]} tokens, {n_hit} of them extracted (red titles)"))


attacked_images = {family: stages.training_images(run, 1.0) for family, run in runs.items()}
for family, attack in attacks.items():
    p_index = attack.prefix_lengths.index(headline[family])
    sims, hit = attack.similarity[p_index].numpy(), attack.extracted[p_index].numpy()
    by_similarity = np.argsort(-sims, kind="stable")
    extracted_ids = by_similarity[hit[by_similarity]][:config.book.images_per_class]
    missed_ids = by_similarity[~hit[by_similarity]][:config.book.images_per_class]
    if len(extracted_ids):
        candidate_grid(family, extracted_ids, "extracted candidates", "extraction_grid_extracted.png")
    if len(missed_ids):
        candidate_grid(family, missed_ids, "not extracted (most similar first)", "extraction_grid_not_extracted.png")

# %% [markdown]
# ## Calibrating the threshold on the testbed
#
# A copy-detection threshold is a modelling choice. On the testbed it can be checked: for each
# candidate's generation at the reported prefix, compare its similarity to **its own source** (the
# candidate's reconstruction, what stage D uses) with its similarity to **the nearest other training
# image** (the most similar reconstruction of any other training image). A good threshold lies above
# almost all of the second and below most of the first. `memlib.similarity.calibrate_threshold`
# picks the threshold with the best balanced accuracy between the two groups.

# %% tags=["hide-input"]
calibration = {}
measure = PixelSimilarity()
for family in testbed:
    run, attack = runs[family], attacks[family]
    if attack.similarity_name != measure.name:
        print(f"{run.config.model.model}: the attack used {attack.similarity_name}; the calibration needs the pixel measure")
        continue
    gen = run.generator()
    p_index = attack.prefix_lengths.index(headline[family])
    generated = decode_images(gen, attack.generated_tokens[p_index].long(), run.config.run.batch_size)
    image_ids_N = outcomes[family].image_ids_N
    recon_N3HW = testbed_reconstructions(run, image_ids_N.numpy()).unsqueeze(1).expand(-1, 3, -1, -1)
    sims_CN = measure.pairwise(generated, recon_N3HW)
    own = attack.similarity[p_index].double()
    source_columns = torch.searchsorted(image_ids_N, attack.candidate_ids)  # each candidate's column
    sims_CN[torch.arange(len(own)), source_columns] = -np.inf  # leave out the source itself
    nearest_other = sims_CN.max(dim=1).values.double()
    result = calibrate_threshold(own, nearest_other)
    used_fpr = float((nearest_other > attack.threshold).double().mean())
    used_tpr = float((own > attack.threshold).double().mean())
    calibration[family] = {**result.to_dict(), "used_threshold": attack.threshold,
                           "used_true_positive_rate": used_tpr, "used_false_positive_rate": used_fpr}
    glue(f"{family}_calibrated_threshold", result.threshold, display=False)
    glue(f"{family}_used_threshold_fpr", used_fpr, display=False)

    frame = pd.DataFrame({"similarity": np.concatenate([own.numpy(), nearest_other.numpy()]),
                          "compared with": ["its own source"] * len(own) + ["nearest other training image"] * len(own)})
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.histplot(data=frame, x="similarity", hue="compared with", bins=30, element="step", ax=ax,
                 palette={"its own source": style.PLANTED_VS_OTHER["planted"],
                          "nearest other training image": style.PLANTED_VS_OTHER["not planted"]})
    ax.axvline(attack.threshold, color="black", linestyle="--", label=f"used threshold {attack.threshold:g}")
    ax.axvline(result.threshold, color="gray", linestyle=":", label=f"calibrated {result.threshold:.3f}")
    ax.set_xlabel(f"similarity of a generation ({measure.name})")
    ax.set_ylabel("generations")
    ax.set_title(f"{run.config.model.model}: generations at prefix {headline[family]} tokens")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(run.out / "extraction_threshold_calibration.png", dpi=120)
    style.show(fig, style.alt_text(
        "Step histograms", f"the similarity of each generation of {run.config.model.model} to its own source and to the "
        "nearest other training image, with the used and the calibrated threshold",
        f"the calibrated threshold is {result.threshold:.3f}; the run used {attack.threshold:g}"))
    display(Markdown(
        f"**{run.config.model.model}.** The balanced-accuracy threshold is {result.threshold:.3f} (true-positive rate "
        f"{result.true_positive_rate:.2f}, false-positive rate {result.false_positive_rate:.2f}). At the threshold "
        f"this run used, {attack.threshold:g}, {100 * used_tpr:.0f}% of the generations count as copies of their "
        f"source and {100 * used_fpr:.0f}% would count as copies of another training image."))

# %% [markdown]
# ## Summary
#
# The numbers of this page, with the parameters that produced them, are written to
# `summary-extraction.json` in each model's results folder (a record for the reader; {doc}`reproduction` gathers its numbers from the result files).

# %% tags=["hide-input"]
lines = []
for family, run in runs.items():
    attack = attacks[family]
    record = {"notebook": "extraction", "model": run.config.model.model, "prefix_lengths": attack.prefix_lengths,
              "counts": {str(n): c for n, c in attack.counts.items()}, "headline_prefix": headline[family],
              "extracted": attack.counts[headline[family]], "candidates": attack.num_candidates_total,
              "similarity": attack.similarity_name, "threshold": attack.threshold,
              "stage_a": stage_a.get(family), "calibration": calibration.get(family)}
    if family in testbed:
        planted = testbed[family].is_planted()[attack.candidate_ids.numpy()]
        hit = attack.extracted[attack.prefix_lengths.index(headline[family])].numpy()
        record.update(extracted_planted=int((hit & planted).sum()), extracted_not_planted=int((hit & ~planted).sum()),
                      planted_images=int(testbed[family].is_planted()[outcomes[family].image_ids_N.numpy()].sum()))
    write_record(run.out / "summary-extraction.json",
                      {"numbers": record, **provenance(run.config.flat(), run.config.run.seed, started)})
    lines.append(f"- **{run.config.model.model}**: {record['extracted']} of {record['candidates']} candidates extracted "
                 f"from a {headline[family]}-token prefix"
                 + (f" ({record['extracted_planted']} planted, {record['extracted_not_planted']} not planted)"
                    if family in testbed else "") + ".")
lines.append("- Counts of a next-scale and a next-token model at the same number of prefix tokens are not comparable.")
display(Markdown("\n".join(lines)))

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("extraction", params_file, None)), display=False)

# %% tags=["remove-cell"]
# For the exercises (the exercise runs of notebooks/exercises.yaml glue the same keys): the
# counts at the reported prefix against the answer key, and the dose-response verdict as a sentence.
for family, attack in attacks.items():
    run, prefix = runs[family], headline[family]
    hit = attack.extracted[attack.prefix_lengths.index(prefix)].numpy()
    glue(f"ex_{family}_prefix", prefix, display=False)
    glue(f"ex_{family}_threshold", attack.threshold, display=False)
    glue(f"ex_{family}_candidates", attack.num_candidates_total, display=False)
    glue(f"ex_{family}_extracted", int(hit.sum()), display=False)
    if family in calibration:
        glue(f"ex_{family}_used_fpr", calibration[family]["used_false_positive_rate"], display=False)
        glue(f"ex_{family}_used_tpr", calibration[family]["used_true_positive_rate"], display=False)
    if family not in testbed:
        continue
    n_read = run.config.data.max_images or len(testbed[family].train_labels)
    groups = {name: ids[ids < n_read] for name, ids in testbed[family].groups().items()}
    planted = testbed[family].is_planted()[attack.candidate_ids.numpy()]
    glue(f"ex_{family}_extracted_planted", int((hit & planted).sum()), display=False)
    glue(f"ex_{family}_extracted_not_planted", int((hit & ~planted).sum()), display=False)
    by_group = summaries.extraction_by_group(attack.candidate_ids.numpy()[hit], groups)
    effect, word = summaries.dose_response(attack.candidate_ids.numpy()[hit], groups)
    glue(f"ex_{family}_dose_sentence", summaries.claim_sentence(
        f"{run.config.model.model}, prefix {prefix}: extracted share of the {by_group[-1]['group']} images "
        f"({by_group[-1]['extracted']} of {by_group[-1]['images']}) minus that of the control group "
        f"({by_group[0]['extracted']} of {by_group[0]['images']})", effect, word), display=False)

# %% [markdown] tags=["exercise"]
# ## Exercises
#
# Each exercise changes one setting of this page's run. Write your prediction down first, then run
# the variant from the repository root: it executes this page with the change, under its own results
# folder (`results/testbed/exercises/<id>`), reusing every cached result the change leaves alone.
# Compare with the answer key (which candidates are planted, and at which level) and with this page's
# run. The solution says what the variant run of this book showed; its numbers are glued from that
# run ({doc}`../book/exercise-runs`).
#
# This page's run, at threshold {glue:text}`ex_var_threshold:g`: `var-testbed` extracts
# {glue:text}`ex_var_extracted:d` of {glue:text}`ex_var_candidates:d` candidates from a
# {glue:text}`ex_var_prefix:d`-token prefix ({glue:text}`ex_var_extracted_planted:d` planted,
# {glue:text}`ex_var_extracted_not_planted:d` not), `rar-testbed` {glue:text}`ex_rar_extracted:d`
# from {glue:text}`ex_rar_prefix:d` tokens ({glue:text}`ex_rar_extracted_planted:d` planted,
# {glue:text}`ex_rar_extracted_not_planted:d` not). {glue:text}`ex_var_dose_sentence:s`;
# {glue:text}`ex_rar_dose_sentence:s`.
#
# ````{exercise} A stricter copy decision
# :label: ex-extraction-strict-threshold
#
# **Predict.** A generation counts as a copy when its similarity to the candidate's tokenizer
# reconstruction exceeds `threshold`. At this page's threshold, {glue:text}`ex_var_used_fpr:.0%` (VAR)
# and {glue:text}`ex_rar_used_fpr:.0%` (RAR) of the generations would also count as copies of
# another training image (the calibration above). With `threshold: 0.995`, which count falls more:
# the planted candidates extracted or the others? Does the dose-response verdict survive?
#
# **Run** (`threshold: 0.995`; the attack is recomputed, since its result depends on the threshold):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise extraction-strict-threshold
# ```
#
# **Compare** planted against not-planted extractions and the verdicts with this page's.
# ````
#
# ```{solution} ex-extraction-strict-threshold
# :class: dropdown
#
# The run `extraction-strict-threshold` took
# {glue:text}`exercise-extraction-strict-threshold.ipynb::page_seconds:.0f` s on this machine. At
# threshold {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_var_threshold:g`, `var-testbed`
# extracts {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_var_extracted:d`
# ({glue:text}`exercise-extraction-strict-threshold.ipynb::ex_var_extracted_planted:d` planted,
# {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_var_extracted_not_planted:d` not) and
# `rar-testbed` {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_rar_extracted:d`
# ({glue:text}`exercise-extraction-strict-threshold.ipynb::ex_rar_extracted_planted:d` planted,
# {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_rar_extracted_not_planted:d` not); the
# share of generations that would count as copies of another image is
# {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_var_used_fpr:.0%` (VAR) and
# {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_rar_used_fpr:.0%` (RAR). Computed:
# {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_var_dose_sentence:s`;
# {glue:text}`exercise-extraction-strict-threshold.ipynb::ex_rar_dose_sentence:s`.
# ```
#
# ````{exercise} A shorter prefix
# :label: ex-extraction-short-prefix
#
# **Predict.** The attacker gives the model the first tokens of the image: here
# {glue:text}`ex_var_prefix:d` (VAR) and {glue:text}`ex_rar_prefix:d` (RAR). With
# `reported_prefix: {var: 5, rar: 5}` the page reports the count at 5 tokens (VAR's first three
# scales). Which images does a shorter prefix still recover, and does the attack still tell the
# duplicated images from the control group?
#
# **Run** (`reported_prefix: {var: 5, rar: 5}`; the attack already generated from 5 tokens, so it is
# read from the cache):
#
# ```bash
# .venv/bin/python scripts/run_notebooks.py \
#   --params notebooks/params/testbed.yaml --exercise extraction-short-prefix
# ```
#
# **Compare** the counts per group and the dose-response verdict with this page's.
# ````
#
# ```{solution} ex-extraction-short-prefix
# :class: dropdown
#
# The run `extraction-short-prefix` took {glue:text}`exercise-extraction-short-prefix.ipynb::page_seconds:.0f` s
# on this machine. From {glue:text}`exercise-extraction-short-prefix.ipynb::ex_var_prefix:d` tokens,
# `var-testbed` extracts {glue:text}`exercise-extraction-short-prefix.ipynb::ex_var_extracted:d`
# candidates ({glue:text}`exercise-extraction-short-prefix.ipynb::ex_var_extracted_planted:d` planted)
# and `rar-testbed` {glue:text}`exercise-extraction-short-prefix.ipynb::ex_rar_extracted:d`
# ({glue:text}`exercise-extraction-short-prefix.ipynb::ex_rar_extracted_planted:d` planted). Computed:
# {glue:text}`exercise-extraction-short-prefix.ipynb::ex_var_dose_sentence:s`;
# {glue:text}`exercise-extraction-short-prefix.ipynb::ex_rar_dose_sentence:s`.
# ```
