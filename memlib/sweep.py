"""The intervention sweep (spec/method.md, section 3): edit fc1 rows, rerun the attack on the
SAME candidates, optionally measure FID, for every (mode, k%, seed).

Modes (how units are chosen, and the factor on their incoming weights):

- ``unitmem-half``: the global top-k% by UnitMem selection score, x 0.5 (the paper's edit);
- ``random-half``: a uniformly random k% (the control), x 0.5, one row per seed (>= 3);
- ``unitmem-zero``: the global top-k% by UnitMem, x 0 (the paper: "no significant benefit");
- ``per-block-half``: the top-k% within every block, x 0.5;
- ``magnitude-half``: the global top-k% by mean activation, x 0.5 (does UnitMem add anything
  over "large units"?).

k = 0 edits nothing, so it is computed once, through the same editing code path, and shown as
the first row of every mode (and seed): it must equal the unedited model's attack result.

Prefix lengths (:func:`row_prefix_lengths`): the unedited row and, given the reported (k%, prefix),
the rows at the reported k attack at every prefix length; the other rows attack at the reported
prefix only, the one count the pages read at other k (an attack at one prefix is the same greedy
decoding whichever others run beside it). Without ``reported`` every row attacks at every prefix.

Resumable: every row is written to ``out_dir/rows/`` as it finishes (atomically), sealed with a
record checksum (:func:`memlib.results.write_record`) together with the sweep's ``identity`` (a
hash of what the rows depend on: scores, candidates, attack and model) and its own (mode, k,
seed); on a rerun, rows that pass the checksum and hold this identity and position are read back
instead of recomputed; an edited, damaged, foreign or misplaced row is named in the log and
recomputed. Under ``torchrun`` every rank computes the rows
``i % world_size == rank`` of the plan and rank 0 reads the table back after a barrier.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from .distributed import barrier
from .intervene import scaled_fc1_rows, select_units
from .models.generator import Generator
from .results import ResultFileError, interrupts_held, read_record, to_jsonable, write_record

MODES = {  # mode -> (select_units mode, factor, ranking statistic)
    "unitmem-half": ("global", 0.5, "unitmem"),
    "random-half": ("random", 0.5, "unitmem"),
    "unitmem-zero": ("global", 0.0, "unitmem"),
    "per-block-half": ("per-block", 0.5, "unitmem"),
    "magnitude-half": ("global", 0.5, "magnitude"),
}
BASELINE = ("baseline", 0, 0)

AttackFn = Callable[[Generator, Sequence[int]], object]
"""``attack(gen, prefix_lengths) -> AttackResult`` on the fixed baseline candidates
(memlib.extract.run_attack with ``candidates=...``) at those prefix lengths."""
FidFn = Callable[[Generator], tuple[list[float], str]]
"""``fid(gen) -> (one value per sampling seed, metric name)``: the row's ``fid`` is their mean,
``fid_by_seed`` the values (paired across rows: the same seeds for every row)."""


def sweep_identity(scores: Mapping[str, torch.Tensor], candidates: torch.Tensor, settings: Mapping) -> str:
    """sha256 over the ranking scores (statistic -> (K, U)), the candidate ids and the
    attack/model ``settings``."""
    digest = hashlib.sha256()
    for statistic in sorted(scores):
        digest.update(statistic.encode())
        digest.update(scores[statistic].detach().cpu().double().contiguous().numpy().tobytes())
    digest.update(torch.as_tensor(candidates).cpu().long().contiguous().numpy().tobytes())
    digest.update(repr(sorted(to_jsonable(settings).items())).encode())
    return digest.hexdigest()


def sweep_plan(k_percents: Sequence[float], modes: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, float, int]]:
    """The (mode, k, seed) rows to compute: the k = 0 baseline once, then every mode at every
    k > 0 (``random-half`` once per seed, the other modes with seed 0)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"sweep modes {unknown} unknown; expected some of {list(MODES)}")
    if "random-half" in modes and len(set(seeds)) < 3:
        raise ValueError(f"random_seeds: expected >= 3 distinct seeds for the random control, got {list(seeds)}")
    plan = [BASELINE]
    for mode in modes:
        for k in k_percents:
            if k == 0:
                continue
            for seed in (seeds if mode == "random-half" else [0]):
                plan.append((mode, k, int(seed)))
    return plan


def row_prefix_lengths(mode: str, k: float, prefix_lengths: Sequence[int],
                       reported: tuple[float, int] | None) -> list[int]:
    """The prefix lengths row (``mode``, ``k``) attacks at: all of ``prefix_lengths`` for the
    unedited model, for every row when ``reported`` is None, and for the rows at the reported
    k of ``reported = (k%, prefix)``; only the reported prefix for the other rows."""
    if reported is None or mode == "baseline" or k == reported[0]:
        return [int(n) for n in prefix_lengths]
    if reported[1] not in prefix_lengths:
        raise ValueError(f"reported_prefix: got {reported[1]}; expected one of the prefix_lengths {list(prefix_lengths)}")
    return [int(reported[1])]


def row_path(out_dir: str | Path, mode: str, k: float, seed: int) -> Path:
    return Path(out_dir) / "rows" / f"{mode}_k{k:g}_s{seed}.json"


def compute_row(
    gen: Generator, scores: Mapping[str, torch.Tensor], mode: str, k: float, seed: int, attack: AttackFn,
    prefix_lengths: Sequence[int], fid: FidFn | None
) -> dict:
    """One row: select the units (by the mode's statistic in ``scores``), edit (restored
    bit-exactly afterwards), attack at ``prefix_lengths``, FID."""
    started = time.time()
    select_mode, factor, statistic = MODES[mode] if mode != "baseline" else ("global", 1.0, "unitmem")
    if statistic not in scores:
        raise ValueError(f"sweep mode {mode!r} ranks by {statistic!r}, but the sweep has scores for {sorted(scores)}")
    units_M2 = select_units(scores[statistic], k, select_mode, seed=seed)
    with scaled_fc1_rows(gen.transformer, gen.fc1_names(), units_M2, factor=factor) as record:
        result = attack(gen, prefix_lengths)
        fid_by_seed, fid_metric = fid(gen) if fid is not None else (None, None)
    row = {
        "mode": mode,
        "k_percent": k,
        "seed": seed,
        "factor": factor,
        "units_edited": int(units_M2.shape[0]),
        "units_per_block": record.summary()["per_block"],
        "fid": None if fid_by_seed is None else float(sum(fid_by_seed) / len(fid_by_seed)),
        "fid_by_seed": fid_by_seed,
        "fid_metric": fid_metric,
        "similarity": result.similarity_name,
        "candidates": int(result.num_candidates_total),
        "prefix_lengths": list(result.prefix_lengths),
        "seconds": round(time.time() - started, 3),
    }
    for n, count in result.counts.items():
        row[f"extracted@{n}"] = count
    row["extracted_ids"] = {
        str(n): result.candidate_ids[hit].tolist() for n, hit in zip(result.prefix_lengths, result.extracted)
    }
    return row


def _row_identity(identity: str, mode: str, k: float, seed: int) -> dict:
    """What a row file must hold besides its row: the sweep's identity and the row's position."""
    return {"identity": identity, "row_of": {"mode": mode, "k_percent": k, "seed": seed}}


def read_row(path: Path, identity: str, mode: str, k: float, seed: int) -> dict:
    """The row stored in ``path`` after checking its record checksum, that it belongs to this
    sweep (``identity``) and to this (mode, k, seed), and that it holds a row;
    :class:`ResultFileError` naming the file otherwise."""
    record = read_record(path, expect=_row_identity(identity, mode, k, seed))
    if not isinstance(record.get("row"), dict):
        raise ResultFileError(f"{path}: no 'row' mapping (has keys {sorted(record)})")
    return record["row"]


def _stored_row(path: Path, identity: str, mode: str, k: float, seed: int, log: Callable[[str], None]) -> dict | None:
    """The finished row of ``path``; None when absent, or refused (the log says why)."""
    if not path.is_file():
        return None
    try:
        return read_row(path, identity, mode, k, seed)
    except ResultFileError as err:
        log(f"sweep {mode} k={k:g} seed={seed}: stored row refused ({err}); recomputing")
        return None


def run_sweep(
    gen: Generator,
    scores: Mapping[str, torch.Tensor],
    attack: AttackFn,
    out_dir: str | Path,
    identity: str,
    *,
    k_percents: Sequence[float],
    modes: Sequence[str],
    seeds: Sequence[int],
    prefix_lengths: Sequence[int],
    reported: tuple[float, int] | None = None,
    fid: FidFn | None = None,
    fid_modes: Sequence[str] | None = None,
    rank: int = 0,
    world_size: int = 1,
    log: Callable[[str], None] = lambda msg: None,
    on_row: Callable[[int, int], None] = lambda finished, total: None,
):
    """Compute (or read back) every row of :func:`sweep_plan` and return the table as a pandas
    DataFrame: one row per (mode, k, seed), k = 0 repeated for every mode and seed, columns
    ``mode, k_percent, seed, factor, units_edited, extracted@<n> ..., fid, fid_metric, ...``
    (``extracted@<n>`` is NaN where the row did not attack at ``n``: :func:`row_prefix_lengths`
    of ``prefix_lengths`` and ``reported``).

    ``scores``: ranking scores per (block, unit) by statistic: ``"unitmem"`` (the UnitMem
    selection score) and, for ``magnitude-half``, ``"magnitude"`` (the mean activation);
    ``identity``: :func:`sweep_identity` of what the rows depend on (a row stored under another
    identity is recomputed, never reused);
    ``fid_modes``: the modes whose rows get FID (and the k = 0 row); ``None``: every mode.
    ``on_row(finished, total)``: called as this rank's rows are found or computed.
    """
    plan = sweep_plan(k_percents, modes, seeds)
    prefixes = {(mode, k): row_prefix_lengths(mode, k, prefix_lengths, reported) for mode, k, _ in plan}  # checked first
    mine = [(mode, k, seed) for i, (mode, k, seed) in enumerate(plan) if i % world_size == rank]
    on_row(0, len(mine))
    for finished, (mode, k, seed) in enumerate(mine, start=1):
        path = row_path(out_dir, mode, k, seed)
        if _stored_row(path, identity, mode, k, seed, log) is not None:
            log(f"sweep {mode} k={k:g} seed={seed}: done before, skipped")
            on_row(finished, len(mine))
            continue
        wants_fid = fid is not None and (mode == "baseline" or fid_modes is None or mode in fid_modes)
        row = compute_row(gen, scores, mode, k, seed, attack, prefixes[(mode, k)], fid if wants_fid else None)
        with interrupts_held():  # a Ctrl-C during the write lands after it: the row is kept and counted
            write_record(path, {**_row_identity(identity, mode, k, seed), "row": row})
            on_row(finished, len(mine))
        log(f"sweep {mode} k={k:g} seed={seed}: {row['units_edited']} units, "
            + ", ".join(f"{key} {value}" for key, value in row.items() if key.startswith("extracted@")))
    barrier()
    rows = {(mode, k, seed): read_row(row_path(out_dir, mode, k, seed), identity, mode, k, seed)
            for mode, k, seed in plan}
    table = []
    for mode in modes:
        if 0 in k_percents:
            table.extend({**rows[BASELINE], "mode": mode, "seed": int(s)} for s in (seeds if mode == "random-half" else [0]))
        table.extend(rows[(m, k, s)] for (m, k, s) in plan if m == mode)
    return sweep_table(table, modes)


def sweep_table(rows: Sequence[Mapping], modes: Sequence[str]):
    """The sweep's rows as a DataFrame sorted by (mode in ``modes`` order, k%, seed), columns
    ``mode, k_percent, seed, factor, units_edited, extracted@<n> ..., fid, fid_metric``, then
    the others (as :func:`run_sweep` returns it, and as a stored sweep result reads back)."""
    import pandas as pd

    rows = sorted(rows, key=lambda row: (list(modes).index(row["mode"]), row["k_percent"], row["seed"]))
    frame = pd.DataFrame(rows)
    counts = [c for c in frame.columns if c.startswith("extracted@")]
    for column in ["fid", *counts]:  # rows without FID or not attacked at a prefix (None, or "nan" once stored): NaN
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    first = ["mode", "k_percent", "seed", "factor", "units_edited"] + sorted(counts, key=lambda c: int(c.split("@")[1])) \
        + ["fid", "fid_metric"]
    return frame[first + [c for c in frame.columns if c not in first]]
