"""Evidence that the testbed is fit for purpose, written to ``data/testbed_evidence.json``.

    python scripts/testbed_evidence.py            # a few minutes on one CPU thread

For each shipped testbed model (``var-testbed``, ``rar-testbed`` in ``data/checkpoints``):

1. **Tokenizer**: reconstruction error (MSE and MAE, pixels in [0, 1]) on the held-out images.
2. **Samples**: class-conditional samples with the family's default sampling (VAR: guidance
   1.5, no top-k/top-p; RAR: guidance 2.0, temperature 1), seeded. The testbed classifier
   (``data/checkpoints/classifier.safetensors``) says whether they look like their classes:
   the fraction whose predicted class is the conditioning class (for scale: its accuracy on
   real held-out images and on their tokenizer reconstructions).
3. **Memorization**: the extraction attack scaled to the testbed (memlib.extract), on the
   family's centre views (what the models are trained to draw):
   A. score every training image by teacher-forced top-1 accuracy over the FULL sequence;
   B. the top ``per_class`` images of every class are the candidates;
   C. greedy generation from a ground-truth prefix (VAR: scales 1x1 and 2x2 = 5 tokens;
      RAR: 8 tokens = the first token row; each family also a second prefix);
   D. pixel similarity (memlib.similarity.PixelSimilarity) between the decoded generation and
      the tokenizer reconstruction of the training image; extracted = similarity > threshold.
   Extraction is reported by duplication level (the control group, each level, the ordinary
   images): the dose response the book's pages build on.

Why the full sequence in stage A (spec/testbed-notes.md, lesson 2): about half of the tokens
of a Fashion-MNIST image are the blank-background code, so ordinary images with blank bottom
rows get a perfect score over a last-tokens span and crowd out the memorized ones. The JSON
also records, for comparison, how the paper's span (VAR: the last scale; RAR: the last 24 of
64 tokens, the paper's last 99 of 256 scaled) ranks the planted images and what the attack
extracts with it.

**The threshold** is calibrated, not chosen: for each candidate's generation at the headline
prefix, its similarity to its own source (positives) and to the most similar OTHER training
image (negatives: how alike a generation and a training image it was not made from can be).
The rule, fixed before looking at any extraction count: the smallest threshold that at most
``max_fpr`` (1%) of the negatives exceed (memlib.similarity.calibrate_threshold, rule
``max_fpr``). It uses no knowledge of which images are planted. The balanced-accuracy
threshold of the same two samples is recorded beside it, with the counts it would give.

Figures (``data/evidence/``): sample grids per family, tokenizer reconstructions, the
calibration histograms. Everything is seeded; the JSON records the parameters, the seeds, the
sha256 of every checkpoint and of the data file, the code version and the wall time, and is
written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from matplotlib.figure import Figure  # noqa: E402 (no pyplot: no GUI backend, no global state)

from memlib.classifier import load_classifier  # noqa: E402
from memlib.data import DATA_DIR, load_testbed, testbed_views  # noqa: E402
from memlib.extract import decode_images, generate_from_prefix, run_attack, score_images, select_candidates  # noqa: E402
from memlib.models.registry import load_generator  # noqa: E402
from memlib.results import atomic_write_json, file_sha256, git_commit, library_versions  # noqa: E402
from memlib.similarity import PixelSimilarity, calibrate_threshold, source_and_nearest_other  # noqa: E402

SCRIPT = "scripts/testbed_evidence.py"
SCRIPT_VERSION = 2
MODELS = {"var": "var-testbed", "rar": "rar-testbed"}
# Prefix lengths in tokens, headline first. VAR: the paper's prefix, the first four scales
# 1x1, 2x2, 3x3, 4x4 (30 tokens; the testbed's first four scales are the paper's), and the
# first three (14). RAR: the first token row of the 8x8 grid (8, an eighth of the image like the
# paper's 30 of 256), and two rows (16).
PREFIXES = {"var": (30, 14), "rar": (8, 16)}
# The paper's stage-A span, scaled to the testbed: VAR's last scale (the 8x8 = positions
# 66..129 of scales 1, 2, 3, 4, 6, 8); RAR's last 99 of 256 tokens ~ the last 24 of 64.
LAST_SPANS = {"var": (66, 130), "rar": (40, 64)}
LAST_SPAN_NAMES = {"var": "last scale (8x8, positions 66-129)", "rar": "last 24 tokens (positions 40-63)"}
# Fitness targets, fixed before the graded testbed was trained: memorization exists where it
# was planted most (at least half of the most duplicated level extracted) and almost only there
# (at least 80% of what is extracted is planted).
TARGET_TOP_LEVEL_EXTRACTED_FRACTION = 0.5
TARGET_PLANTED_FRACTION = 0.8


@dataclass(frozen=True)
class EvidenceParams:
    seed: int = 0  # seeds the samples and the choice of a training subset (max_images)
    per_class: int = 10  # stage-B candidates per class: 100 candidates for 50 planted images
    calibration_rule: str = "max_fpr"
    max_fpr: float = 0.01  # at most 1% of "generation vs nearest other training image" above the threshold
    samples_per_class: int = 50  # class-conditional samples judged by the classifier
    grid_per_class: int = 8  # columns of the sample grids
    max_images: int = 0  # 0: every training image; N: a seeded subset of N (quick checks only)
    max_heldout: int = 0  # 0: every held-out image for the reconstruction error
    batch_size: int = 100


def auc(scores_pos: np.ndarray, scores_neg: np.ndarray) -> float:
    """Area under the ROC curve: P(a positive scores above a negative), ties counted 1/2."""
    if len(scores_pos) == 0 or len(scores_neg) == 0:
        return float("nan")
    greater = (scores_pos[:, None] > scores_neg[None, :]).sum()
    ties = (scores_pos[:, None] == scores_neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(scores_pos) * len(scores_neg)))


def summary_stats(values: torch.Tensor) -> dict:
    v = values.double().numpy()
    if v.size == 0:
        return {"n": 0}
    q = np.quantile(v, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "q01": float(q[0]), "q05": float(q[1]), "q25": float(q[2]), "median": float(q[3]),
            "q75": float(q[4]), "q95": float(q[5]), "q99": float(q[6]), "max": float(v.max())}


def stage_a_summary(scores_N: torch.Tensor, planted_N: np.ndarray, labels_N: torch.Tensor, per_class: int) -> dict:
    """How well a stage-A score ranks the planted images: AUC planted vs non-planted, precision
    among the top ``n_planted`` images, and how many planted images the candidate pool holds."""
    s = scores_N.numpy()
    n_planted = int(planted_N.sum())
    top = np.argsort(-s, kind="stable")[:n_planted]
    pool = select_candidates(scores_N, labels_N, per_class=per_class).numpy()
    return {
        "auc_planted_vs_not": auc(s[planted_N], s[~planted_N]),
        "precision_at_n_planted": float(planted_N[top].mean()) if n_planted else float("nan"),
        "n_planted": n_planted,
        "candidates": int(len(pool)),
        "planted_among_candidates": int(planted_N[pool].sum()),
        "non_planted_with_perfect_score": int((s[~planted_N] == 1.0).sum()),
        "mean_score_planted": float(s[planted_N].mean()) if n_planted else float("nan"),
        "mean_score_not_planted": float(s[~planted_N].mean()),
    }


def extraction_counts(extracted_C: np.ndarray, planted_C: np.ndarray, n_planted: int) -> dict:
    n_extracted, n_planted_hit = int(extracted_C.sum()), int((extracted_C & planted_C).sum())
    return {
        "extracted": n_extracted,
        "planted_extracted": n_planted_hit,
        "non_planted_extracted": n_extracted - n_planted_hit,
        "precision": n_planted_hit / n_extracted if n_extracted else float("nan"),
        "planted_recall": n_planted_hit / n_planted if n_planted else float("nan"),
    }


def per_class_accuracy(predicted_N: torch.Tensor, labels_N: torch.Tensor, num_classes: int) -> list[float]:
    return [float((predicted_N[labels_N == c] == c).double().mean()) if (labels_N == c).any() else float("nan")
            for c in range(num_classes)]


def confusion(predicted_N: torch.Tensor, labels_N: torch.Tensor, num_classes: int) -> list[list[int]]:
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long)
    counts.index_put_((labels_N, predicted_N), torch.ones_like(labels_N), accumulate=True)
    return counts.tolist()


def sampling_defaults(gen) -> dict:
    """The keywords ``gen.sample()`` uses when given none: VAR's signature defaults, RAR's config."""
    if gen.family == "rar":
        return {key: getattr(gen.config, key) for key in ("guidance_scale", "guidance_scale_pow", "temperature")}
    return {key: p.default for key, p in inspect.signature(gen.sample).parameters.items()
            if p.default is not inspect.Parameter.empty and key != "generator"}


def evaluate_family(family: str, data, train_ids: np.ndarray, heldout_n: int, params: EvidenceParams,
                    checkpoint_dir: Path, classifier) -> tuple[dict, dict]:
    """All numbers of one family -> (the JSON record, tensors for the figures)."""
    name = MODELS[family]
    gen = load_generator(name, checkpoint_dir / f"{name}.safetensors", checkpoint_dir / f"{name}-tokenizer.safetensors")
    bs = params.batch_size
    similarity = PixelSimilarity()

    # 1. tokenizer reconstruction on held-out images (centre views)
    heldout = testbed_views(data.heldout_images[:heldout_n], family)
    heldout_labels = torch.as_tensor(data.heldout_labels[:heldout_n])
    with torch.no_grad():
        heldout_tokens = torch.cat([gen.images_to_tokens(b) for b in heldout.split(bs)])
    heldout_recon = decode_images(gen, heldout_tokens, bs)
    tokenizer = {
        "heldout_images": int(heldout_n),
        "mse": float((heldout_recon - heldout).pow(2).mean()),
        "mae": float((heldout_recon - heldout).abs().mean()),
        "mae_gray_levels": float(255 * (heldout_recon - heldout).abs().mean()),
        "codes_used": int(heldout_tokens.unique().numel()),
        "pixel_range": "[0, 1], all three (gray-copied) channels",
    }

    # 2. samples judged by the testbed classifier
    sample_labels = torch.arange(data.num_classes).repeat_interleave(params.samples_per_class)
    rng = torch.Generator().manual_seed(params.seed)
    with torch.no_grad():
        sample_tokens = torch.cat([gen.sample(sample_labels[i : i + bs], generator=rng)
                                   for i in range(0, len(sample_labels), bs)])
        samples = decode_images(gen, sample_tokens, bs)
        predicted = torch.cat([classifier(b).argmax(1) for b in samples.split(bs)])
        heldout_pred = torch.cat([classifier(b).argmax(1) for b in heldout.split(bs)])
        recon_pred = torch.cat([classifier(b).argmax(1) for b in heldout_recon.split(bs)])
    correct = predicted == sample_labels
    sampling = sampling_defaults(gen)
    samples_record = {
        "sampling": {**sampling, "note": "the family's defaults (Generator.sample without keywords)"},
        "seed": params.seed, "samples_per_class": params.samples_per_class,
        "classifier_accuracy": float(correct.double().mean()),
        "classifier_accuracy_per_class": per_class_accuracy(predicted, sample_labels, data.num_classes),
        "reference_classifier_accuracy_heldout_real": float((heldout_pred == heldout_labels).double().mean()),
        "reference_classifier_accuracy_heldout_reconstructed": float((recon_pred == heldout_labels).double().mean()),
        "reference_classifier_accuracy_heldout_reconstructed_per_class": per_class_accuracy(recon_pred, heldout_labels, data.num_classes),
        "confusion_rows_conditioning_columns_predicted": confusion(predicted, sample_labels, data.num_classes),
        "reading": "the classifier was trained on sharp real images; the tokenizers blur thin structure (sandal straps, "
                   "shirt buttons), so even reconstructions of real held-out images of those classes are often "
                   "misclassified: compare the samples with the reconstructed held-out images, not with the real ones",
        "chance": 1.0 / data.num_classes,
    }

    # 3. the attack on the training images (all of them, or a seeded subset)
    train_labels = torch.as_tensor(data.train_labels[train_ids])
    planted_N = data.is_planted()[train_ids]
    n_planted = int(planted_N.sum())
    with torch.no_grad():
        train_tokens = torch.cat([gen.images_to_tokens(b) for b in testbed_views(data.train_images[train_ids], family).split(bs)])
    train_recon = decode_images(gen, train_tokens, bs)  # the sources of stage D and of "nearest other"

    scores_full = score_images(gen, train_tokens, train_labels, span=None, batch_size=bs)
    scores_last = score_images(gen, train_tokens, train_labels, span=LAST_SPANS[family], batch_size=bs)
    codes, code_counts = train_tokens.unique(return_counts=True)
    stage_a = {
        "used": "full sequence",
        "why": "spec/testbed-notes.md, lesson 2: with the feasibility study's k-means tokenizer 47% of all tokens were "
               "the background code and a last-24-tokens span let ordinary images with blank bottom rows tie at a "
               "perfect score (precision at 50: 0.36-0.54, against 0.98-1.00 for the full sequence). The full "
               "sequence is the span that does not depend on how a tokenizer codes the background; 'last_span' "
               "records how the paper's span does with the shipped tokenizers",
        "most_common_code_share": float(code_counts.max()) / train_tokens.numel(),
        "most_common_code": int(codes[code_counts.argmax()]),
        "full_sequence": stage_a_summary(scores_full, planted_N, train_labels, params.per_class),
        "last_span": {"span": list(LAST_SPANS[family]), "what": LAST_SPAN_NAMES[family],
                      **stage_a_summary(scores_last, planted_N, train_labels, params.per_class)},
    }

    # calibration: generations of the full-sequence candidates at the headline prefix
    candidates = select_candidates(scores_full, train_labels, per_class=params.per_class)
    headline = PREFIXES[family][0]
    generated = decode_images(gen, generate_from_prefix(gen, train_tokens[candidates], train_labels[candidates], headline, bs), bs)
    to_source, to_other, _ = source_and_nearest_other(similarity, generated, candidates, train_recon)
    calibrated = calibrate_threshold(to_source, to_other, rule=params.calibration_rule, max_fpr=params.max_fpr)
    balanced = calibrate_threshold(to_source, to_other, rule="balanced_accuracy")
    threshold = calibrated.threshold

    attack = run_attack(gen, train_tokens, train_labels, similarity=similarity, threshold=threshold,
                        prefix_lengths=list(PREFIXES[family]), per_class=params.per_class, span=None, batch_size=bs)
    if not torch.equal(attack.candidate_ids, candidates) or not torch.allclose(attack.similarity[0], to_source, atol=1e-6):
        raise RuntimeError(f"{name}: run_attack disagrees with the calibration pass (candidates or similarities)")
    planted_C = planted_N[attack.candidate_ids.numpy()]
    by_prefix = {str(n): {"prefix_tokens": n, **extraction_counts(attack.extracted[p].numpy(), planted_C, n_planted)}
                 for p, n in enumerate(attack.prefix_lengths)}
    balanced_hits = (attack.similarity[0] > balanced.threshold).numpy()

    last_attack = run_attack(gen, train_tokens, train_labels, similarity=similarity, threshold=threshold,
                             prefix_lengths=[headline], per_class=params.per_class, span=LAST_SPANS[family], batch_size=bs)
    last_planted_C = planted_N[last_attack.candidate_ids.numpy()]

    headline_counts = by_prefix[str(headline)]
    extracted_train_ids = set(train_ids[attack.candidate_ids.numpy()[attack.extracted[0].numpy()]].tolist())
    candidate_train_ids = set(train_ids[attack.candidate_ids.numpy()].tolist())
    groups = {**data.groups(), "ordinary": np.flatnonzero(~data.is_planted() & ~data.is_control())}
    by_level = {}
    for group, ids in groups.items():
        ids = np.intersect1d(ids, train_ids)
        by_level[group] = {"images": int(ids.size), "candidates": sum(int(i) in candidate_train_ids for i in ids),
                           "extracted": sum(int(i) in extracted_train_ids for i in ids)}
    top_level = by_level[f"{max(data.levels)}x"]
    top_level_fraction = top_level["extracted"] / top_level["images"] if top_level["images"] else float("nan")
    record = {
        "model": name,
        "tokenizer": tokenizer,
        "samples": samples_record,
        "stage_a": stage_a,
        "attack": {
            "similarity": similarity.name,
            "stage_d_reference": "the tokenizer reconstruction of the training image (decode of its ground-truth tokens)",
            "score_span": "full sequence",
            "per_class": params.per_class,
            "candidates": int(len(candidates)),
            "planted_among_candidates": int(planted_C.sum()),
            "prefixes": list(PREFIXES[family]),
            "headline_prefix": headline,
            "threshold": threshold,
            "by_prefix": by_prefix,
            "by_level_at_headline_prefix": by_level,
            "by_class_planted_extracted": np.bincount(
                train_labels[attack.candidate_ids].numpy()[attack.extracted[0].numpy() & planted_C],
                minlength=data.num_classes).tolist(),
        },
        "calibration": {
            "prefix_tokens": headline,
            "generations": int(len(candidates)),
            "positives": "similarity of each candidate's generation to its own source (tokenizer reconstruction)",
            "negatives": "similarity of the same generation to the most similar other training image (reconstruction)",
            "rule": f"{params.calibration_rule}: the smallest midpoint threshold that at most {params.max_fpr:g} of the "
                    "negatives exceed; fixed before any count was seen; uses no planted labels",
            "chosen": calibrated.to_dict(),
            "to_source": summary_stats(to_source),
            "to_nearest_other": summary_stats(to_other),
            "alternative_balanced_accuracy": {
                **balanced.to_dict(),
                "headline_counts_at_this_threshold": extraction_counts(balanced_hits, planted_C, n_planted),
            },
        },
        "last_span_comparison": {
            "what": f"the same attack with stage A over the {LAST_SPAN_NAMES[family]}, same threshold",
            "planted_among_candidates": int(last_planted_C.sum()),
            **extraction_counts(last_attack.extracted[0].numpy(), last_planted_C, n_planted),
        },
        "targets": {
            "top_level_extracted_fraction_at_least": TARGET_TOP_LEVEL_EXTRACTED_FRACTION,
            "top_level_extracted_fraction": top_level_fraction,
            "planted_fraction_at_least": TARGET_PLANTED_FRACTION,
            "met": bool(top_level_fraction >= TARGET_TOP_LEVEL_EXTRACTED_FRACTION
                        and headline_counts["precision"] >= TARGET_PLANTED_FRACTION),
        },
    }
    figures = {"heldout": heldout, "heldout_recon": heldout_recon, "samples": samples, "sample_labels": sample_labels,
               "to_source": to_source, "to_other": to_other, "threshold": threshold,
               "balanced_threshold": balanced.threshold, "planted_C": planted_C}
    return record, figures


# ---- figures --------------------------------------------------------------------------------


def _blank_axes(axes) -> None:
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])


def save_sample_grid(path: Path, name: str, samples, labels, class_names, per_row: int, sampling: dict, accuracy: float) -> None:
    n_classes = len(class_names)
    fig = Figure(figsize=(0.9 * per_row + 1.6, 0.9 * n_classes + 0.6))
    axes = fig.subplots(n_classes, per_row, squeeze=False)
    _blank_axes(axes)
    for c in range(n_classes):
        for j, index in enumerate(torch.nonzero(labels == c).flatten()[:per_row].tolist()):
            axes[c, j].imshow(samples[index].mean(dim=0).numpy(), cmap="gray", vmin=0, vmax=1)
        axes[c, 0].set_ylabel(class_names[c], rotation=0, ha="right", va="center", fontsize=9)
    settings = ", ".join(f"{k} {v}" for k, v in sampling.items() if k != "note")
    fig.suptitle(f"{name}: class-conditional samples ({settings}); classifier accuracy {accuracy:.2f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_reconstructions(path: Path, figures: dict, families: dict, data, heldout_n: int) -> None:
    labels = data.heldout_labels[:heldout_n]
    columns = [int(np.flatnonzero(labels == c)[0]) for c in range(data.num_classes) if (labels == c).any()]
    first = next(iter(figures.values()))
    rows = [("held-out", first["heldout"])] + [
        (f"{MODELS[family]}\ntokenizer\nMSE {families[family]['tokenizer']['mse']:.4f}", f["heldout_recon"])
        for family, f in figures.items()]
    fig = Figure(figsize=(0.95 * len(columns) + 1.6, 1.05 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    _blank_axes(axes)
    for (label, images), row in zip(rows, axes):
        for ax, index in zip(row, columns):
            ax.imshow(images[index].mean(dim=0).numpy(), cmap="gray", vmin=0, vmax=1)
        row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for ax, index in zip(axes[0], columns):
        ax.set_title(data.class_names[labels[index]], fontsize=7)
    fig.suptitle("tokenizer reconstructions of held-out images (encode, decode)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def save_calibration(path: Path, figures: dict) -> None:
    fig = Figure(figsize=(6 * len(figures), 3.8))
    axes = fig.subplots(1, len(figures), squeeze=False)
    for ax, (family, f) in zip(axes[0], figures.items()):
        low = float(min(f["to_source"].min(), f["to_other"].min()))
        bins = np.linspace(low, 1.0, 40)
        planted = torch.as_tensor(f["planted_C"])
        ax.hist(f["to_other"].numpy(), bins=bins, alpha=0.6, color="#5b7fa6", label="to nearest other training image")
        ax.hist(f["to_source"][planted].numpy(), bins=bins, alpha=0.6, color="#c0392b", label="to own source (planted)")
        ax.hist(f["to_source"][~planted].numpy(), bins=bins, alpha=0.6, color="#e69f00", label="to own source (not planted)")
        ax.axvline(f["threshold"], color="black", linestyle="--", label=f"threshold {f['threshold']:.4f} (max FPR)")
        ax.axvline(f["balanced_threshold"], color="gray", linestyle=":", label=f"balanced acc. {f['balanced_threshold']:.4f}")
        ax.set_xlabel("pixel similarity of a generation (1 - mean |diff|)")
        ax.set_ylabel("generations")
        ax.set_title(f"{MODELS[family]}, prefix {PREFIXES[family][0]} tokens", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("threshold calibration: own source vs nearest other training image "
                 "(planted/not planted only colours the bars; the rule does not use it)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---- main -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    defaults = EvidenceParams()
    parser = argparse.ArgumentParser(description="Write the testbed's fitness evidence (see the module docstring).")
    parser.add_argument("--out", type=Path, default=DATA_DIR / "testbed_evidence.json", help="the JSON to write")
    parser.add_argument("--figures", type=Path, default=DATA_DIR / "evidence", help="folder of the PNG figures")
    parser.add_argument("--checkpoints", type=Path, default=DATA_DIR / "checkpoints", help="folder of the testbed checkpoints")
    parser.add_argument("--data", type=Path, default=None, help="testbed npz (default: data/fashion_mnist_testbed.npz)")
    for field in dataclasses.fields(EvidenceParams):
        if field.name != "calibration_rule":
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(getattr(defaults, field.name)),
                                default=getattr(defaults, field.name))
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    params = EvidenceParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(EvidenceParams)
                               if f.name != "calibration_rule"})
    for key in ("per_class", "samples_per_class", "grid_per_class", "batch_size"):
        if getattr(params, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')}: expected an integer >= 1, got {getattr(params, key)}")
    if params.max_images < 0 or params.max_heldout < 0:
        raise ValueError("--max-images and --max-heldout: expected 0 (all) or a positive count")
    if not 0.0 <= params.max_fpr <= 1.0:
        raise ValueError(f"--max-fpr: expected a rate in [0, 1], got {params.max_fpr}")
    torch.set_num_threads(1)
    started = time.time()
    data = load_testbed(args.data)
    n_train = len(data.train_labels)
    if params.max_images and params.max_images < n_train:
        train_ids = np.sort(np.random.default_rng(params.seed).choice(n_train, size=params.max_images, replace=False))
    else:
        train_ids = np.arange(n_train)
    heldout_n = min(params.max_heldout or len(data.heldout_labels), len(data.heldout_labels))
    classifier_path = args.checkpoints / "classifier.safetensors"
    classifier = load_classifier(classifier_path)

    families, figures = {}, {}
    for family in MODELS:
        family_started = time.time()
        families[family], figures[family] = evaluate_family(family, data, train_ids, heldout_n, params, args.checkpoints, classifier)
        families[family]["seconds"] = round(time.time() - family_started, 1)
        print(f"{MODELS[family]}: {families[family]['attack']['by_prefix']} ({families[family]['seconds']} s)", flush=True)

    args.figures.mkdir(parents=True, exist_ok=True)
    figure_files = {"reconstructions": "tokenizer_reconstructions.png", "calibration": "threshold_calibration.png"}
    save_reconstructions(args.figures / figure_files["reconstructions"], figures, families, data, heldout_n)
    save_calibration(args.figures / figure_files["calibration"], figures)
    for family, f in figures.items():
        figure_files[f"samples_{family}"] = f"samples_{family}.png"
        save_sample_grid(args.figures / f"samples_{family}.png", MODELS[family], f["samples"], f["sample_labels"],
                         data.class_names, params.grid_per_class, families[family]["samples"]["sampling"],
                         families[family]["samples"]["classifier_accuracy"])

    checkpoint_files = [f"{name}{part}.safetensors" for name in MODELS.values() for part in ("", "-tokenizer")]
    record = {
        "script": SCRIPT,
        "script_version": SCRIPT_VERSION,
        "command": "python " + SCRIPT + ("" if argv is None and len(sys.argv) == 1 else
                                         " " + " ".join(argv if argv is not None else sys.argv[1:])),
        "params": dataclasses.asdict(params),
        "seeds": {"samples": params.seed, "training_subset": params.seed if params.max_images else None,
                  "note": "stage A-D are deterministic (greedy); the seed drives sampling only"},
        "training_images": int(len(train_ids)),
        "planted_images": int(data.is_planted()[train_ids].sum()),
        "data_file": data.path.name,
        "data_sha256": file_sha256(data.path),
        "checkpoints_sha256": {f: file_sha256(args.checkpoints / f) for f in checkpoint_files},
        "classifier_sha256": file_sha256(classifier_path),
        "code_version": git_commit(),
        "libraries": library_versions(),
        "torch_threads": torch.get_num_threads(),
        "figures": {k: f"{args.figures.name}/{v}" for k, v in figure_files.items()},
        "families": families,
        "all_targets_met": all(f["targets"]["met"] for f in families.values()),
        "note": "the 'families.*.attack.by_prefix' counts at 'headline_prefix' are the headline numbers; the "
                "similarity is a pixel-space measure, not SSCD, so the threshold is not the paper's 0.75",
        "wall_seconds": round(time.time() - started, 1),
    }
    atomic_write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
