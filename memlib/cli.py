"""``python -m memlib STAGE --params FILE [--out DIR]``: the pipeline's stages (:mod:`memlib.stages`)
from the command line, resumable and ``torchrun``-able.

Stages: ``unitmem`` (UnitMem of every fc1 unit), ``attack`` (the extraction attack on the
unedited model), ``sweep`` (the intervention sweep; runs or reuses unitmem and attack), ``fid``
(FID of the unedited model) and ``train`` (forwarded to ``memlib.train``).

This module only parses the arguments, reads the parameter file (:func:`memlib.config.load_config`:
one error naming every bad key), runs the stage, and turns memlib's errors into one line and an
exit code: bad parameters exit with 2; an unreadable or mismatched checkpoint, image folder,
result or TorchScript file, or a file that cannot be written (disk full), with 1, printed as one
``error:`` line without a traceback (``--traceback`` raises it instead). Ctrl-C and SIGTERM (what
``torchrun`` and schedulers send) end a stage with one line saying what finished and was kept
(shards, sweep rows, results) and exit 130 / 143; temporary files are removed, and a rerun of
the same command resumes from what was kept.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import distributed as dist_utils
from .config import REPO_ROOT, load_config, model_configs, require
from .stages import STAGES, Run, make_run

STAGE_HELP = {
    "unitmem": "UnitMem of every fc1 unit over the training images",
    "attack": "the extraction attack (score, candidates, greedy generation, similarity) on the unedited model",
    "sweep": "the intervention sweep over k%%, modes and seeds on the attack's candidates",
    "fid": "FID (or the testbed's feature distance) of the unedited model",
    "train": "train the testbed models (forwards its arguments to memlib.train)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memlib",
        description="Resumable, torchrun-able stages of the memorization pipeline. "
        "Run under torchrun --nproc_per_node=N -m memlib STAGE ... to shard the work.",
    )
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE", title="stages")
    for name, text in STAGE_HELP.items():
        sub = stages.add_parser(name, help=text, description=text, add_help=name != "train")
        if name == "train":
            continue
        sub.add_argument("--params", type=Path, required=True, help="YAML parameter file (notebooks/params/*.yaml)")
        sub.add_argument("--out", type=Path, default=None, help="output folder (default: results_dir of the parameters)")
        sub.add_argument("--base-dir", type=Path, default=REPO_ROOT,
                         help="folder that relative paths in the parameters are relative to (default: the repository root)")
        sub.add_argument("--traceback", action="store_true",
                         help="on an error, raise it with its full traceback instead of printing one line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from . import train

        return train.main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        print(f"error: --out: {args.out} is a file; expected a folder (existing or not)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.params, base_dir=args.base_dir, stage=args.stage)
        require(config, args.stage, source=str(args.params))
        (config,) = model_configs(config, args.stage).values()  # as the pages resolve it (the paper's k%), same cache keys
    except (ValueError, FileNotFoundError) as err:
        if args.traceback:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    run = None
    try:
        run = make_run(config, args.out)
        STAGES[args.stage](run)
    except (ValueError, OSError) as err:  # CheckpointError, ResultFileError, bad data, missing or unwritable files
        if args.traceback:
            raise
        print(f"error: {args.stage}: {err} (--traceback shows where)", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as err:
        if args.traceback:
            raise
        how, code = ("SIGTERM", Terminated.code) if isinstance(err, Terminated) else ("Ctrl-C", 130)
        print(interruption_message(args.stage, how, run), file=sys.stderr)
        return code
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        dist_utils.shutdown()
    return 0


class Terminated(SystemExit):
    """SIGTERM, raised where the process is, so ``finally`` blocks run (temporary files are
    removed); uncaught it exits with 143 like the signal would."""

    code = 128 + signal.SIGTERM

    def __init__(self):
        super().__init__(self.code)


def _exit_on_sigterm(signum, frame):
    raise Terminated()


def interruption_message(stage: str, how: str, run: Run | None) -> str:
    """The one line an interrupted stage ends with: what this process finished and kept."""
    prefix = f"[rank {run.rank}/{run.world_size}] " if run is not None and run.world_size > 1 else ""
    kept = ", ".join(f"{part} {state}" for part, state in (run.progress.items() if run is not None else ()))
    if not kept:
        return f"{prefix}{stage} interrupted ({how}) before any part finished; run the same command again to start it"
    return f"{prefix}{stage} interrupted ({how}): finished and kept: {kept}; run the same command again to resume"
