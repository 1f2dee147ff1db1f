"""The training-data extraction attack of Kowalczuk et al. (spec/method.md, section 4).

Stages, each a function of a :class:`~memlib.models.generator.Generator`:

A. :func:`score_images`: one teacher-forced pass per training image; the score is the fraction
   of ground-truth tokens that are the model's top-1 prediction over a span of positions
   (paper: VAR's last scale, RAR's last 99 tokens; testbed: the full sequence, because blank
   backgrounds make a last-tokens span a poor ranker, spec/testbed-notes.md lesson 2).
B. :func:`select_candidates`: the top ``per_class`` images of every class by that score
   (:class:`TopPerClass`: the same, streamed, in memory bounded by the number of candidates).
C. :func:`generate_from_prefix`: keep the first ``n`` ground-truth tokens, decode greedily.
D. Decode the generated and the ground-truth tokens with the same tokenizer and compare them
   with a copy-detection :mod:`~memlib.similarity`; extracted = similarity > threshold.

:func:`run_attack` runs A-D (or C-D on given candidates, after an intervention) and returns an
:class:`AttackResult`. For ``torchrun``, every rank calls it with its ``rank``/``world_size``
and the same candidates; :func:`merge_attack_results` restores the full, ordered result.

Tensor legend: N training images, C candidates, L tokens per image, V vocabulary, P prefix
lengths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from memlib.models.generator import Generator, check_finite_logits, eval_mode


def _check_tokens_labels(tokens_NL: torch.Tensor, labels_N: torch.Tensor, gen: Generator) -> None:
    if tokens_NL.ndim != 2 or tokens_NL.shape[1] != gen.seq_len:
        raise ValueError(f"tokens: expected shape (N, {gen.seq_len}), got {tuple(tokens_NL.shape)}")
    if labels_N.shape != (tokens_NL.shape[0],):
        raise ValueError(f"labels: expected shape ({tokens_NL.shape[0]},), got {tuple(labels_N.shape)}")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")


def _resolve_span(span: tuple[int, int] | None, seq_len: int) -> tuple[int, int]:
    if span is None:
        return 0, seq_len
    start, stop = span
    if not 0 <= start < stop <= seq_len:
        raise ValueError(f"span: expected (start, stop) with 0 <= start < stop <= {seq_len}, got {span!r}")
    return int(start), int(stop)


# ---- A. score ------------------------------------------------------------------------------


def score_images(gen: Generator, tokens_NL: torch.Tensor, labels_N: torch.Tensor,
                 span: tuple[int, int] | None = None, batch_size: int = 64) -> torch.Tensor:
    """Stage A: per image, the fraction of ground-truth tokens in ``span = (start, stop)`` of
    the L positions that equal the argmax of the teacher-forced logits -> float64 (N,) on the
    CPU. ``span=None`` scores the full sequence."""
    _check_tokens_labels(tokens_NL, labels_N, gen)
    _check_batch_size(batch_size)
    start, stop = _resolve_span(span, gen.seq_len)
    hits = []
    with torch.no_grad(), eval_mode(gen.transformer, gen.tokenizer):
        for i in range(0, len(tokens_NL), batch_size):
            tokens_BL = tokens_NL[i : i + batch_size].to(gen.device)
            logits_BLV = gen.teacher_forced_logits(tokens_BL, labels_N[i : i + batch_size].to(gen.device))
            check_finite_logits(gen, logits_BLV, f"rows {i}..{i + len(tokens_BL) - 1} of tokens_NL")
            top1_Bl = logits_BLV[:, start:stop].argmax(dim=-1)
            hits.append((top1_Bl == tokens_BL[:, start:stop]).sum(dim=1).cpu())
    if not hits:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(hits).double() / (stop - start)


# ---- B. candidates -------------------------------------------------------------------------


def select_candidates(scores_N: torch.Tensor, labels_N: torch.Tensor, per_class: int = 5) -> torch.Tensor:
    """Stage B: indices (into N) of the ``per_class`` highest-scoring images of every class
    present in ``labels_N`` -> int64 (C,). Classes in increasing order, within a class by
    decreasing score; equal scores go to the lower index. A class with fewer images gives all."""
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class: expected a positive integer, got {per_class!r}")
    scores_N, labels_N = torch.as_tensor(scores_N), torch.as_tensor(labels_N)
    if scores_N.shape != labels_N.shape or scores_N.ndim != 1:
        raise ValueError(f"scores {tuple(scores_N.shape)} and labels {tuple(labels_N.shape)}: expected equal (N,)")
    order = torch.sort(scores_N, descending=True, stable=True).indices  # stable: ties keep index order
    chosen = [order[labels_N[order] == c][:per_class] for c in torch.unique(labels_N).tolist()]
    return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)


class TopPerClass:
    """Stage B over a stream of scored images: the ``per_class`` highest-scoring images of
    every class among those added so far, with one payload row each (their tokens).

    Memory holds at most ``per_class`` rows per class, whatever the number of images added.
    After any sequence of :meth:`add` calls, :meth:`result` equals :func:`select_candidates`
    over everything added, in its order (classes increasing, within a class by decreasing
    score, equal scores to the lower id), when the ids are the positions of the images (or any
    ids increasing with them); ids must be distinct. A NaN score (an image not scored) is never
    selected. Chunks merged in any grouping give the same result, so shards merge exactly.
    """

    def __init__(self, per_class: int):
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"per_class: expected a positive integer, got {per_class!r}")
        self.per_class = per_class
        self.ids_C = torch.zeros(0, dtype=torch.long)
        self.scores_C = torch.zeros(0, dtype=torch.float64)
        self.labels_C = torch.zeros(0, dtype=torch.long)
        self.rows_CL: torch.Tensor | None = None

    def add(self, ids_N: torch.Tensor, scores_N: torch.Tensor, labels_N: torch.Tensor, rows_NL: torch.Tensor) -> None:
        """Merge N more images (ids, float64 scores, labels, payload rows) into the selection."""
        ids_N, scores_N, labels_N = (torch.as_tensor(x) for x in (ids_N, scores_N, labels_N))
        if not (ids_N.shape == scores_N.shape == labels_N.shape == rows_NL.shape[:1]) or ids_N.ndim != 1:
            raise ValueError(f"ids {tuple(ids_N.shape)}, scores {tuple(scores_N.shape)}, labels {tuple(labels_N.shape)} "
                             f"and rows {tuple(rows_NL.shape)}: expected equal length N")
        scored = ~torch.isnan(scores_N.double())
        rows = rows_NL[scored] if self.rows_CL is None else torch.cat([self.rows_CL, rows_NL[scored].to(self.rows_CL.dtype)])
        ids = torch.cat([self.ids_C, ids_N[scored].long()])
        scores = torch.cat([self.scores_C, scores_N[scored].double()])
        labels = torch.cat([self.labels_C, labels_N[scored].long()])
        keep = _top_per_class(scores, labels, ids, self.per_class)
        self.ids_C, self.scores_C, self.labels_C, self.rows_CL = ids[keep], scores[keep], labels[keep], rows[keep]

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(ids (C,), labels (C,), scores (C,), rows (C, L)) of the selected images, in
        :func:`select_candidates`' order."""
        return self.ids_C, self.labels_C, self.scores_C, self.rows_CL


def _top_per_class(scores_N: torch.Tensor, labels_N: torch.Tensor, ids_N: torch.Tensor, per_class: int) -> torch.Tensor:
    """Indices of the ``per_class`` best of every class: by label, then decreasing score, then id."""
    order = torch.sort(ids_N, stable=True).indices
    order = order[torch.sort(scores_N[order], descending=True, stable=True).indices]
    order = order[torch.sort(labels_N[order], stable=True).indices]
    _, counts = torch.unique_consecutive(labels_N[order], return_counts=True)
    rank = torch.arange(len(order)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return order[rank < per_class]


# ---- C. generate ---------------------------------------------------------------------------


def generate_from_prefix(gen: Generator, tokens_CL: torch.Tensor, labels_C: torch.Tensor,
                         n_prefix: int, batch_size: int = 64) -> torch.Tensor:
    """Stage C: keep the first ``n_prefix`` ground-truth tokens, decode the rest greedily,
    class-conditional, no guidance -> int64 (C, L) on the CPU."""
    _check_tokens_labels(tokens_CL, labels_C, gen)
    _check_batch_size(batch_size)
    out = []
    with torch.no_grad(), eval_mode(gen.transformer, gen.tokenizer):
        for i in range(0, len(tokens_CL), batch_size):
            out.append(gen.greedy_from_prefix(tokens_CL[i : i + batch_size].to(gen.device),
                                              labels_C[i : i + batch_size].to(gen.device), n_prefix).cpu())
    return torch.cat(out) if out else torch.zeros(0, gen.seq_len, dtype=torch.long)


def decode_images(gen: Generator, tokens_NL: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Tokens -> images (N, 3, H, W) in [0, 1] on the CPU, in batches."""
    _check_batch_size(batch_size)
    out = []
    with torch.no_grad(), eval_mode(gen.transformer, gen.tokenizer):
        for i in range(0, len(tokens_NL), batch_size):
            out.append(gen.tokens_to_images(tokens_NL[i : i + batch_size].to(gen.device)).cpu())
    if not out:
        return torch.zeros(0, 3, gen.image_size, gen.image_size)
    return torch.cat(out)


# ---- the result ----------------------------------------------------------------------------


@dataclass
class AttackResult:
    """Outcome of stages C-D for C candidates (all of them, or one rank's shard).

    Per-prefix tensors are stacked in the order of ``prefix_lengths`` (P rows).
    ``positions`` are the candidates' places in the full candidate list (``0 .. C-1`` for an
    unsharded result), used by :func:`merge_attack_results`.
    """

    candidate_ids: torch.Tensor  # (C,) int64, indices into the N training images
    candidate_labels: torch.Tensor  # (C,) int64
    candidate_scores: torch.Tensor  # (C,) float64, stage-A score under the attacked model
    positions: torch.Tensor  # (C,) int64
    prefix_lengths: list[int]
    similarity: torch.Tensor  # (P, C) float32
    extracted: torch.Tensor  # (P, C) bool, similarity > threshold
    generated_tokens: torch.Tensor  # (P, C, L) int32
    threshold: float
    similarity_name: str
    span: tuple[int, int] | None
    per_class: int
    num_candidates_total: int
    meta: dict = field(default_factory=dict)  # free-form, saved as given (e.g. model name, seed)

    @property
    def counts(self) -> dict[int, int]:
        """Number of extracted candidates per prefix length."""
        return {n: int(row.sum()) for n, row in zip(self.prefix_lengths, self.extracted)}

    def to_dict(self) -> dict:
        """Plain tensors, lists and numbers (``torch.load(weights_only=True)`` reads them back)."""
        return {
            "candidate_ids": self.candidate_ids, "candidate_labels": self.candidate_labels,
            "candidate_scores": self.candidate_scores, "positions": self.positions,
            "prefix_lengths": list(self.prefix_lengths), "similarity": self.similarity,
            "extracted": self.extracted, "generated_tokens": self.generated_tokens,
            "counts": [self.counts[n] for n in self.prefix_lengths],
            "threshold": float(self.threshold), "similarity_name": self.similarity_name,
            "span": None if self.span is None else list(self.span), "per_class": self.per_class,
            "num_candidates_total": self.num_candidates_total, "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "AttackResult":
        missing = {f for f in cls.__dataclass_fields__ if f not in d}
        if missing:
            raise ValueError(f"attack result dict lacks keys {sorted(missing)}")
        return cls(
            candidate_ids=d["candidate_ids"], candidate_labels=d["candidate_labels"],
            candidate_scores=d["candidate_scores"], positions=d["positions"],
            prefix_lengths=[int(n) for n in d["prefix_lengths"]], similarity=d["similarity"],
            extracted=d["extracted"], generated_tokens=d["generated_tokens"], threshold=float(d["threshold"]),
            similarity_name=d["similarity_name"], span=None if d["span"] is None else tuple(d["span"]),
            per_class=int(d["per_class"]), num_candidates_total=int(d["num_candidates_total"]),
            meta=dict(d["meta"]),
        )


# ---- A-D -----------------------------------------------------------------------------------


def check_prefix_lengths(gen: Generator, prefix_lengths: Sequence[int]) -> None:
    """``ValueError`` naming ``prefix_lengths`` unless every one is a prefix ``gen`` accepts
    (VAR: scale boundaries); the stages call it before any work."""
    valid = set(gen.valid_prefix_lengths())
    bad = [n for n in prefix_lengths if n not in valid]
    if not prefix_lengths or bad:
        raise ValueError(f"prefix_lengths: {list(prefix_lengths)} not all in the model's valid lengths {sorted(valid)}")


def run_attack(
    gen: Generator,
    tokens_NL: torch.Tensor,
    labels_N: torch.Tensor,
    *,
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    threshold: float,
    prefix_lengths: Sequence[int],
    per_class: int = 5,
    span: tuple[int, int] | None = None,
    batch_size: int = 64,
    candidates: torch.Tensor | None = None,
    meta: dict | None = None,
) -> AttackResult:
    """The attack, stages A-D, on the N training images given as ground-truth tokens.

    - ``candidates=None``: stage A scores all N images, stage B picks ``per_class`` per class.
      Given candidate indices (e.g. ``result.candidate_ids`` of the unedited model), A and B
      are skipped and the same candidates are regenerated; ``candidate_scores`` then holds the
      stage-A score of just those candidates under ``gen``.
    - Stage D compares each generation with the candidate's ground-truth tokens decoded by the
      same tokenizer.
    - Sharding (:func:`memlib.stages.stage_attack`): attack contiguous blocks of candidates,
      set each result's ``candidate_ids`` and ``positions``, and join them with
      :func:`merge_attack_results`.
    """
    _check_tokens_labels(tokens_NL, labels_N, gen)
    _check_batch_size(batch_size)
    check_prefix_lengths(gen, prefix_lengths)
    if candidates is None:
        scores_N = score_images(gen, tokens_NL, labels_N, span=span, batch_size=batch_size)
        candidates = select_candidates(scores_N, labels_N, per_class=per_class)
        all_scores = scores_N[candidates]
    else:
        candidates = torch.as_tensor(candidates, dtype=torch.long)
        if candidates.ndim != 1 or (len(candidates) and not 0 <= int(candidates.min()) <= int(candidates.max()) < len(tokens_NL)):
            raise ValueError(f"candidates: expected 1-D indices in [0, {len(tokens_NL)}), got shape {tuple(candidates.shape)}")
        all_scores = None
    positions = torch.arange(len(candidates))
    ids_C = candidates
    tokens_CL, labels_C = tokens_NL[ids_C], labels_N[ids_C]
    scores_C = all_scores if all_scores is not None else score_images(
        gen, tokens_CL, labels_C, span=span, batch_size=batch_size)

    # stages C and D, one batch of candidates at a time (bounded memory for large images)
    similarity_PC = torch.zeros(len(prefix_lengths), len(ids_C))
    generated_PCL = torch.zeros(len(prefix_lengths), len(ids_C), gen.seq_len, dtype=torch.int32)
    for i in range(0, len(ids_C), batch_size):
        batch = slice(i, i + batch_size)
        targets = decode_images(gen, tokens_CL[batch], batch_size)
        for p, n_prefix in enumerate(prefix_lengths):
            tokens_gen = generate_from_prefix(gen, tokens_CL[batch], labels_C[batch], n_prefix, batch_size)
            similarity_PC[p, batch] = similarity(decode_images(gen, tokens_gen, batch_size), targets)
            generated_PCL[p, batch] = tokens_gen.to(torch.int32)
    return AttackResult(
        candidate_ids=ids_C, candidate_labels=labels_C.long().cpu(), candidate_scores=scores_C.double(),
        positions=positions, prefix_lengths=[int(n) for n in prefix_lengths], similarity=similarity_PC,
        extracted=similarity_PC > threshold, generated_tokens=generated_PCL,
        threshold=float(threshold), similarity_name=getattr(similarity, "name", type(similarity).__name__),
        span=None if span is None else (int(span[0]), int(span[1])), per_class=per_class,
        num_candidates_total=len(candidates), meta=dict(meta or {}),
    )


def merge_attack_results(results: Sequence[AttackResult]) -> AttackResult:
    """Join the shards of one attack (any order) into the result an unsharded run gives.

    Raises ``ValueError`` when the shards disagree on their settings or do not cover every
    candidate position exactly once.
    """
    if not results:
        raise ValueError("results: expected at least one AttackResult")
    first = results[0]
    keys = ("prefix_lengths", "threshold", "similarity_name", "span", "per_class", "num_candidates_total")
    for r in results[1:]:
        differ = [k for k in keys if getattr(r, k) != getattr(first, k)]
        if differ:
            raise ValueError(f"shards disagree on {differ}; they are not from the same attack")
    positions = torch.cat([r.positions for r in results])
    order = torch.argsort(positions)
    if not torch.equal(positions[order], torch.arange(first.num_candidates_total)):
        raise ValueError(f"shards cover candidate positions {sorted(positions.tolist())[:10]}...; "
                         f"expected each of 0..{first.num_candidates_total - 1} exactly once")

    def cat(name: str, dim: int = 0) -> torch.Tensor:
        return torch.cat([getattr(r, name) for r in results], dim=dim).index_select(dim, order)

    return AttackResult(
        candidate_ids=cat("candidate_ids"), candidate_labels=cat("candidate_labels"),
        candidate_scores=cat("candidate_scores"), positions=positions[order],
        prefix_lengths=list(first.prefix_lengths), similarity=cat("similarity", 1), extracted=cat("extracted", 1),
        generated_tokens=cat("generated_tokens", 1), threshold=first.threshold,
        similarity_name=first.similarity_name, span=first.span, per_class=first.per_class,
        num_candidates_total=first.num_candidates_total, meta=dict(first.meta),
    )
