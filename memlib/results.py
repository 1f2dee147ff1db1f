"""Result files, their provenance, and a cache keyed by everything that produced them.

A result is a dict of tensors plus JSON metadata, stored as two files side by side::

    NAME.safetensors   the tensors (safetensors: no pickle, nothing executes on load)
    NAME.json          {"complete": true, "sha256": <of NAME.safetensors>, "meta": {...}}

Both are written atomically (a temporary file in the same folder, then ``os.replace``), the
tensors first and the JSON last: the JSON is the "complete" marker, and its sha256 must match
the tensor file on load. So a run killed mid-write leaves either no result or an old complete
one, and a truncated or modified tensor file raises :class:`ResultFileError` instead of being
read.

Every saved result carries :func:`provenance`: parameters, seed, code version (``memlib``'s
version and the git commit, or ``"unknown"``), timing and library versions.

The cache (:func:`cache_key`, :func:`cached`) names a result by a sha256 over the stage, its
parameters and the identities (content sha256) of its input files, so a changed parameter or
a changed checkpoint never reuses a stale result. File hashes are remembered by
(path, size, mtime) so multi-GB checkpoints are hashed once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

import memlib

FORMAT_VERSION = 1


class ResultFileError(ValueError):
    """A result file that is missing, incomplete, corrupt or not a result file."""


@dataclass
class Result:
    """What :func:`load_result` returns: the tensors, the metadata, and where they came from."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of
    ``data``, never a part (temporary file in the same folder, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Atomic write for writers that need a file name (``save_file(state, name)``):
    ``write(tmp)`` fills a temporary file in the same folder, which then replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=1, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultFileError(f"{path}: not valid JSON ({err})") from err


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from parameters and metadata: paths become strings, tuples lists,
    numpy/torch scalars numbers, non-finite floats the strings "nan"/"inf"/"-inf"."""
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, os.PathLike):
        return Path(obj).as_posix()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return to_jsonable(obj.item())
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():  # numpy scalar
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} ({obj!r:.60}) as JSON metadata")


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def git_commit(ignore: tuple[str, ...] = ()) -> str:
    """The commit of the repository ``memlib`` lives in (with ``+dirty`` for local changes to
    tracked files other than the paths in ``ignore``), or ``"unknown"`` outside a git checkout."""
    root = Path(memlib.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":!{path}" for path in ignore)],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "") if commit else "unknown"


def library_versions() -> dict[str, str]:
    """The versions a result depends on: Python, torch, numpy, safetensors, CUDA, the platform
    and torch's thread count."""
    import numpy
    import safetensors

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "cuda": torch.version.cuda or "none",
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
    }


def provenance(params: Mapping[str, Any], seed: int | None, started: float, finished: float | None = None) -> dict:
    """The record every result file carries. ``started``/``finished`` are ``time.time()`` values."""
    finished = time.time() if finished is None else finished
    return {
        "params": to_jsonable(params),
        "seed": seed,
        "code_version": {"memlib": memlib.__version__, "git_commit": git_commit()},
        "timing": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(finished - started, 3),
        },
        "libraries": library_versions(),
    }


# ---------------------------------------------------------------------------------------------
# Result files
# ---------------------------------------------------------------------------------------------


def result_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(tensor file, JSON file) of the result named ``path`` (with or without a suffix)."""
    base = Path(path)
    if base.suffix in (".safetensors", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def save_result(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Save ``tensors`` and JSON ``meta`` atomically (tensors first, the JSON marker last).
    Returns the JSON file's path. Tensors are stored contiguous, on CPU."""
    from safetensors.torch import save

    tensor_path, json_path = result_paths(path)
    json_path.unlink(missing_ok=True)  # a crash between the two writes must not leave an old marker
    data = save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})
    atomic_write_bytes(tensor_path, data)
    record = {
        "complete": True,
        "format": FORMAT_VERSION,
        "tensors_file": tensor_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "meta": to_jsonable(meta),
    }
    atomic_write_json(json_path, record)
    return json_path


def result_exists(path: str | os.PathLike) -> bool:
    """True when the result's JSON marker exists (completeness is verified by :func:`load_result`)."""
    return result_paths(path)[1].is_file()


def load_result(path: str | os.PathLike) -> Result:
    """Load a result saved by :func:`save_result`, verifying the marker and the sha256."""
    from safetensors.torch import load

    tensor_path, json_path = result_paths(path)
    if not json_path.is_file():
        raise ResultFileError(f"result {json_path} not found or incomplete (no JSON marker)")
    record = read_json(json_path)
    if not isinstance(record, dict) or record.get("complete") is not True or not {"sha256", "meta"} <= set(record):
        raise ResultFileError(f"{json_path}: not a complete memlib result record")
    try:
        data = tensor_path.read_bytes()
    except FileNotFoundError as err:
        raise ResultFileError(f"result tensors {tensor_path} missing (marker {json_path} exists)") from err
    if hashlib.sha256(data).hexdigest() != record["sha256"]:
        raise ResultFileError(
            f"{tensor_path}: sha256 does not match {json_path} (a partial, truncated or modified file); "
            "delete both files to recompute"
        )
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises its own error type; name the file once
        raise ResultFileError(f"{tensor_path}: not a safetensors file ({type(err).__name__}: {err})") from err
    return Result(tensors=tensors, meta=record["meta"], path=json_path)


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------

_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, hash_store: str | os.PathLike | None = None) -> str:
    """sha256 of a file's content, remembered by (absolute path, size, mtime) in this process
    and, if ``hash_store`` is given, in that JSON file (so a changed file is rehashed)."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key in _HASH_MEMO:
        return _HASH_MEMO[memo_key]
    store_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    store: dict[str, str] = {}
    if hash_store is not None and Path(hash_store).is_file():
        try:
            store = read_json(hash_store)
        except ResultFileError:
            store = {}
    if store_key not in store:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        store[store_key] = digest.hexdigest()
        if hash_store is not None:
            atomic_write_json(hash_store, store)
    _HASH_MEMO[memo_key] = store[store_key]
    return store[store_key]


def input_identity(path: str | os.PathLike, hash_store: str | os.PathLike | None = None) -> str:
    """Content identity of an input: a file's sha256; for a folder, a sha256 over the sorted
    listing of (relative path, size, mtime) of every file below it (not the content: an
    ImageNet folder is too large to read for a cache key)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path, hash_store)
    if path.is_dir():
        digest = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                stat = (Path(root) / name).stat()
                rel = (Path(root) / name).relative_to(path).as_posix()
                digest.update(f"{rel}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return "dir:" + digest.hexdigest()
    raise FileNotFoundError(f"cache input not found: {path}")


def cache_key(
    stage: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | os.PathLike] | None = None,
    hash_store: str | os.PathLike | None = None,
) -> str:
    """sha256 (hex) over the stage name, its parameters (canonical JSON) and the identities of
    its input files (:func:`input_identity`). Input names matter, input paths do not: the same
    checkpoint at another path gives the same key."""
    identities = {name: input_identity(path, hash_store) for name, path in sorted((inputs or {}).items())}
    canonical = json.dumps(
        {"stage": stage, "format": FORMAT_VERSION, "params": to_jsonable(params), "inputs": identities},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


ComputeFn = Callable[[Path], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]]
"""``compute(work) -> (tensors, info)``; ``work`` is the entry's folder (for partial results)."""


def cached(
    stage: str,
    settings: Mapping[str, Any],
    compute_fn: ComputeFn,
    cache_dir: str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike] | None = None,
    seed: int | None = None,
    *,
    latest: str | os.PathLike | None = None,
    writer: bool = True,
    wait: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = lambda message: None,
) -> Result:
    """The stored result of ``stage`` for these settings and inputs, or compute, store and
    return it: the one cache of memlib's stages and pages.

    The entry is the folder ``cache_dir/<stage>-<key[:16]>`` (:func:`cache_key`) holding the
    result ``<stage>`` and whatever ``compute_fn(folder)`` keeps there (a stage's shards). The
    result's metadata is ``{"stage", "cache_key", "work_dir", "info", **provenance}`` with the
    settings as its parameters. A damaged stored result is recomputed. Several processes
    (``torchrun``) all call ``compute_fn``; only the ``writer`` saves, and everyone reads the
    saved result after ``wait()`` (a barrier). With ``latest`` the result is also saved there.
    """
    cache_dir = Path(cache_dir)
    key = cache_key(stage, settings, inputs, hash_store=cache_dir / "file-hashes.json")
    work = cache_dir / f"{stage}-{key[:16]}"
    if result_exists(work / stage):
        try:
            result = load_result(work / stage)
            log(f"{stage}: finished before, reading {result.path}")
            return result
        except ResultFileError as err:
            log(f"{stage}: stored result damaged ({err}); recomputing")
    started = time.time()
    tensors, info = compute_fn(work)
    if writer:
        meta = {"stage": stage, "cache_key": key, "work_dir": work.name, "info": dict(info),
                **provenance(settings, seed, started)}
        save_result(work / stage, tensors, meta)
        if latest is not None:
            save_result(latest, tensors, meta)
    wait()
    return load_result(work / stage)


def text_sha256(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes (an identity of a listing, not of a file)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
