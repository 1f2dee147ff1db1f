"""``python -m memlib STAGE --params FILE [--out DIR]``: the pipeline's stages (:mod:`memlib.stages`)
from the command line, resumable and ``torchrun``-able.

Stages: ``unitmem`` (UnitMem of every fc1 unit), ``attack`` (the extraction attack on the
unedited model), ``sweep`` (the intervention sweep; runs or reuses unitmem and attack), ``fid``
(FID of the unedited model) and ``train`` (forwarded to ``memlib.train``).

This module only parses the arguments, reads the parameter file (:func:`memlib.config.load_config`:
one error naming every bad key), runs the stage, and turns memlib's errors into one line and an
exit code: bad parameters exit with 2; an unreadable or mismatched checkpoint, image folder,
result or TorchScript file with 1, printed as one ``error:`` line without a traceback
(``--traceback`` raises it instead). SIGTERM (what ``torchrun`` and schedulers send) ends a run
like Ctrl-C, so temporary files are removed; finished shards stay and a rerun resumes from them.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import distributed as dist_utils
from .config import REPO_ROOT, load_config, model_configs, require
from .stages import STAGES, make_run

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
    try:
        config = load_config(args.params, base_dir=args.base_dir)
        require(config, args.stage, source=str(args.params))
        (config,) = model_configs(config, args.stage).values()  # as the pages resolve it (the paper's k%), same cache keys
    except (ValueError, FileNotFoundError) as err:
        if args.traceback:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        STAGES[args.stage](make_run(config, args.out))
    except (ValueError, FileNotFoundError) as err:  # CheckpointError, ResultFileError, bad data: one line
        if args.traceback:
            raise
        print(f"error: {args.stage}: {err} (--traceback shows where)", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        dist_utils.shutdown()
    return 0


def _exit_on_sigterm(signum, frame):
    """Turn SIGTERM into SystemExit, so ``finally`` blocks run (temporary files are removed)."""
    raise SystemExit(128 + signum)
