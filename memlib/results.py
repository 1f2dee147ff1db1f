"""Result files, their provenance, and a cache keyed by everything that produced them.

A result is a dict of tensors plus JSON metadata, stored as two files side by side::

    NAME.safetensors   the tensors (safetensors: no pickle, nothing executes on load)
    NAME.json          {"complete": true, "format": 2, "sha256": <of NAME.safetensors>,
                        "meta": {...}, "record_sha256": <of this record's canonical JSON>}

Both are written atomically (a temporary file in the same folder, then ``os.replace``), the
tensors first and the JSON last: the JSON is the "complete" marker. On load the record's own
checksum must match its content (:func:`read_record`: an edited digit of the metadata is
caught, not only damage to the tensors), its sha256 must match the tensor file, and the caller
may require values of its metadata (:func:`load_result` ``expect``: the cache requires the
entry's stage and cache key, so a record copied in from another entry is refused). So a run
killed mid-write leaves either no result or an old complete one, and a truncated, modified or
foreign record raises :class:`ResultFileError` instead of being read. JSON-only records (the
sweep's rows, the file-hash store) are sealed the same way (:func:`write_record`). The checks
detect accidents, stale and misplaced files, not a forger who recomputes the checksums.

A temporary file of a write that never finished (the process was killed) is removed by the next
successful write into its folder; temporary names carry the writer's host and process id, so a
live writer's file is never touched. Written files get the permissions the user's umask allows.
:func:`interrupts_held` holds Ctrl-C and SIGTERM over a write and the counting of it as kept.

Every saved result carries :func:`provenance`: parameters, seed, code version (``memlib``'s
version and the git commit, or ``"unknown"``), timing and library versions.

The cache (:func:`cache_key`, :func:`cached`) names a result by a sha256 over the stage, its
parameters and the identities (content sha256) of its input files, so a changed parameter or
a changed checkpoint never reuses a stale result. File hashes are remembered by
(path, size, mtime) so multi-GB checkpoints are hashed once. Each entry is computed under a lock
(``fcntl.flock`` on ``<entry>/.lock``, held by rank 0 for a ``torchrun`` job): a second run or
job of the same stage waits for the first and reads its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

import memlib

FORMAT_VERSION = 2  # of a result record; 2: sealed by record_sha256 (format 1 records are refused and recomputed)
KEY_VERSION = 1  # of what cache_key hashes: unchanged by format 2, so an old entry is found, refused and recomputed


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


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give a new file (mkstemp gives 0o600)
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", platform.node()) or "host"
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[^.]+\.tmp$")


def _temporary_file(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` named ``.NAME.<host>-<pid>.<random>.tmp``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_HOST}-{os.getpid()}.", suffix=".tmp")
    except OSError as err:
        raise _write_error(path, err) from err


def _write_error(path: Path, err: OSError) -> OSError:
    """The OSError of a failed write as one line naming the file (disk full, permissions, a
    folder in the way)."""
    return OSError(err.errno, f"cannot write {path}: {err.strerror or err}")


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_alive(host: str, pid: int) -> bool:
    if host != _HOST:
        return True  # another machine's writer (a shared file system): never touched
    return process_exists(pid)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files in ``folder`` left by writers of this host that no longer run
    (a killed save); returns them. A live writer's temporary file is kept."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = _TEMP_NAME.match(entry.name) if entry.name.startswith(".") else None
            if match and not _writer_alive(match["host"], int(match["pid"])):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


def _finish(tmp: str, path: Path) -> None:
    """Give ``tmp`` the umask's permissions, move it onto ``path``, and clear the folder of dead
    writers' temporary files."""
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, path)
    remove_stale_temporaries(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either its old content or all of
    ``data``, never a part (temporary file in the same folder, fsync, ``os.replace``). A failed
    write (disk full) raises one ``OSError`` naming ``path`` and leaves no temporary file."""
    path = Path(path)
    fd, tmp = _temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _finish(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Atomic write for writers that need a file name (``save_file(state, name)``):
    ``write(tmp)`` fills a temporary file in the same folder, which then replaces ``path``."""
    path = Path(path)
    fd, tmp = _temporary_file(path)
    os.close(fd)
    try:
        write(Path(tmp))
        _finish(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, err) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block has finished, then pass them on to the
    handlers they would have reached. Around a result's write and the counting of it as kept:
    an interrupt then neither loses a result that was computed nor leaves one on disk that the
    interrupted stage's last line does not count. Outside the main thread (where Python runs
    no signal handlers) it holds nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: held.append(signum)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: a handler not set from Python
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)


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


def record_sha256(record: Mapping[str, Any]) -> str:
    """sha256 of a record's canonical JSON (sorted keys, no spaces), leaving out its own
    ``record_sha256``: a record's checksum over everything it holds."""
    body = {key: value for key, value in to_jsonable(record).items() if key != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def write_record(path: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Write the JSON ``record`` atomically, sealed with its :func:`record_sha256`."""
    record = to_jsonable(record)
    atomic_write_json(path, {**record, "record_sha256": record_sha256(record)})


def read_record(path: str | os.PathLike, expect: Mapping[str, Any] | None = None) -> dict:
    """A record written by :func:`write_record`, after :func:`verify_record`.
    ``FileNotFoundError`` when there is none."""
    path = Path(path)
    record = read_json(path)
    verify_record(path, record, expect)
    return record


def verify_record(path: Path, record: Any, expect: Mapping[str, Any] | None = None) -> None:
    """Check that ``record`` (read from ``path``) is sealed by its :func:`record_sha256` and holds
    ``expect``'s values (its identity); :class:`ResultFileError` naming the file otherwise."""
    if not isinstance(record, dict):
        raise ResultFileError(f"{path}: not a memlib record (a JSON {type(record).__name__})")
    if "record_sha256" not in record:
        raise ResultFileError(f"{path}: has no record checksum (an older memlib's format, or not a memlib record)")
    if record["record_sha256"] != record_sha256(record):
        raise ResultFileError(f"{path}: content does not match its record checksum (edited or damaged after it was written)")
    check_expected(path, record, expect)


def check_expected(path: Path, record: Mapping[str, Any], expect: Mapping[str, Any] | None) -> None:
    """``ResultFileError`` naming ``path`` and the first key of ``expect`` whose value ``record``
    does not hold (a record of another result)."""
    for key, value in (expect or {}).items():
        if record.get(key) != to_jsonable(value):
            raise ResultFileError(f"{path}: {key} is {record.get(key)!r:.80}, expected {to_jsonable(value)!r:.80} "
                                  "(a record of another result, copied or moved here)")


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
    """Save ``tensors`` and JSON ``meta`` atomically (tensors first, the sealed JSON record
    last). Returns the JSON file's path. Tensors are stored contiguous, on CPU."""
    from safetensors.torch import save

    tensor_path, json_path = result_paths(path)
    json_path.unlink(missing_ok=True)  # a crash between the two writes must not leave an old marker
    data = save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})
    atomic_write_bytes(tensor_path, data)
    write_record(json_path, {
        "complete": True,
        "format": FORMAT_VERSION,
        "tensors_file": tensor_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "meta": to_jsonable(meta),
    })
    return json_path


def result_exists(path: str | os.PathLike) -> bool:
    """True when the result's JSON marker exists (completeness is verified by :func:`load_result`)."""
    return result_paths(path)[1].is_file()


def load_result(path: str | os.PathLike, expect: Mapping[str, Any] | None = None) -> Result:
    """Load a result saved by :func:`save_result`: the record's checksum and format, its
    tensor file's name and sha256, and the values ``expect`` requires of its metadata (the
    result's identity, e.g. ``{"stage": ..., "cache_key": ...}``) are all checked first.
    :class:`ResultFileError` naming the file when any check fails."""
    from safetensors.torch import load

    tensor_path, json_path = result_paths(path)
    if not json_path.is_file():
        raise ResultFileError(f"result {json_path} not found or incomplete (no JSON marker)")
    record = read_json(json_path)
    if not isinstance(record, dict) or record.get("complete") is not True or not {"sha256", "meta"} <= set(record):
        raise ResultFileError(f"{json_path}: not a complete memlib result record")
    verify_record(json_path, record)
    if record.get("format") != FORMAT_VERSION or not isinstance(record["meta"], dict):
        raise ResultFileError(f"{json_path}: result format {record.get('format')!r}; expected {FORMAT_VERSION}")
    check_expected(json_path, record, {"tensors_file": tensor_path.name})
    check_expected(json_path, record["meta"], expect)
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
    and, if ``hash_store`` is given, in that JSON file (so a changed file is rehashed; a store
    that fails its record checksum is ignored and rewritten)."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo_key in _HASH_MEMO:
        return _HASH_MEMO[memo_key]
    store_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    store: dict[str, str] = {}
    if hash_store is not None and Path(hash_store).is_file():
        with contextlib.suppress(ResultFileError):
            hashes = read_record(hash_store).get("hashes")
            store = hashes if isinstance(hashes, dict) else {}
    if store_key not in store:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        store[store_key] = digest.hexdigest()
        if hash_store is not None:
            write_record(hash_store, {"hashes": store})
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


def input_identities(inputs: Mapping[str, str | os.PathLike] | None,
                     hash_store: str | os.PathLike | None = None) -> dict[str, str]:
    """``{name: input_identity(path)}`` of a stage's input files, by name."""
    return {name: input_identity(path, hash_store) for name, path in sorted((inputs or {}).items())}


def key_of(stage: str, params: Mapping[str, Any], identities: Mapping[str, str]) -> str:
    """The cache key of ``stage`` with these parameters and input identities (:func:`cache_key`)."""
    canonical = json.dumps(
        {"stage": stage, "format": KEY_VERSION, "params": to_jsonable(params), "inputs": dict(identities)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def cache_key(
    stage: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | os.PathLike] | None = None,
    hash_store: str | os.PathLike | None = None,
) -> str:
    """sha256 (hex) over the stage name, its parameters (canonical JSON) and the identities of
    its input files (:func:`input_identity`). Input names matter, input paths do not: the same
    checkpoint at another path gives the same key."""
    return key_of(stage, params, input_identities(inputs, hash_store))


ComputeFn = Callable[[Path], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]]
"""``compute(work) -> (tensors, info)``; ``work`` is the entry's folder (for partial results)."""


def load_entry(path: str | os.PathLike, stage: str, key: str) -> Result:
    """The result ``path`` of a cache entry of ``stage`` with cache key ``key``: it must pass
    :func:`load_result`, record that stage and key, and its recorded parameters and input
    identities must give that key again (its metadata is bound to its identity)."""
    result = load_result(path, expect={"stage": stage, "cache_key": key})
    meta = result.meta
    if not isinstance(meta.get("inputs"), dict) or key_of(stage, meta.get("params"), meta["inputs"]) != key:
        raise ResultFileError(f"{result.path}: its parameters and inputs do not give its cache key {key[:16]}")
    return result


@contextlib.contextmanager
def entry_lock(work: Path, stage: str, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the cache entry ``work`` exclusively (``fcntl.flock`` on ``work/.lock``; the kernel
    releases it when the process ends, killed or not); ``log`` says when it waits for another
    run of the same stage."""
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{stage}: another run is computing {work}; waiting for it to finish")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stored(path: Path, stage: str, key: str, log: Callable[[str], None]) -> Result | None:
    """The entry's verified result, or None (absent; refused, which ``log`` says in one line)."""
    if not result_exists(path):
        return None
    try:
        return load_entry(path, stage, key)
    except ResultFileError as err:
        log(f"{stage}: stored result refused ({err}); recomputing")
        return None


def _update_latest(latest: Path, result: Result, log: Callable[[str], None]) -> None:
    """Make ``latest`` a copy of ``result`` unless it already is one that passes its checks."""
    try:
        current = load_result(latest)
        if current.meta == result.meta and current.tensors.keys() == result.tensors.keys():
            return
    except ResultFileError as err:
        if result_exists(latest):
            log(f"latest copy refused ({err}); rewriting it from {result.path}")
    save_result(latest, result.tensors, result.meta)


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
    result's metadata is ``{"stage", "cache_key", "work_dir", "inputs", "info", **provenance}``
    with the settings as its parameters and the input files' identities as ``inputs``. A stored
    result is used only when it passes :func:`load_entry`; otherwise the log says why in one line
    and it is recomputed. The processes of one job (``torchrun``) all call ``compute_fn``; only
    the ``writer`` saves. With ``latest`` the writer also keeps a copy there (of
    the stored result, when it was finished before).

    The entry is computed under :func:`entry_lock`, held by the ``writer``: a second process
    (or ``torchrun`` job) of the same stage waits, then reads the first one's result. The other
    ranks of a job (not ``writer``) take no lock; they pass the first ``wait()`` once their writer
    holds it, and every rank then checks for a result again, so all ranks of a job agree on
    computing or reading. ``wait()`` is also called after the writer has saved, and everyone
    reads the saved result.
    """
    cache_dir = Path(cache_dir)
    identities = input_identities(inputs, hash_store=cache_dir / "file-hashes.json")
    key = key_of(stage, settings, identities)
    work = cache_dir / f"{stage}-{key[:16]}"
    result = _stored(work / stage, stage, key, log)
    if result is not None:
        log(f"{stage}: finished before, reading {result.path}")
    else:
        with entry_lock(work, stage, log) if writer else contextlib.nullcontext():
            wait()  # a job's other ranks go on once its writer holds the entry
            result = _stored(work / stage, stage, key, lambda message: None)  # finished by the run it waited for?
            if result is not None:
                log(f"{stage}: the other run finished it; reading {result.path}")
            else:
                started = time.time()
                tensors, info = compute_fn(work)
                if writer:
                    meta = {"stage": stage, "cache_key": key, "work_dir": work.name, "inputs": identities,
                            "info": dict(info), **provenance(settings, seed, started)}
                    save_result(work / stage, tensors, meta)
                wait()
                result = load_entry(work / stage, stage, key)
    if latest is not None and writer:
        _update_latest(Path(latest), result, log)
    return result


def text_sha256(text: str) -> str:
    """sha256 (hex) of a text's UTF-8 bytes (an identity of a listing, not of a file)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
