import json
import threading
import time
from pathlib import Path

import pytest
import torch

from memlib import results
from memlib.results import ResultFileError, cache_key, cached, load_result, save_result


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float64).reshape(2, 3), "b": torch.tensor([True, False])}
    meta = {"k": 10, "path": tmp_path / "x", "pair": (1, 2), **results.provenance({"k": 10}, seed=3, started=0.0)}
    save_result(tmp_path / "r", tensors, meta)
    loaded = load_result(tmp_path / "r")
    assert torch.equal(loaded.tensors["a"], tensors["a"]) and torch.equal(loaded.tensors["b"], tensors["b"])
    assert loaded.meta["pair"] == [1, 2] and loaded.meta["path"] == (tmp_path / "x").as_posix()
    assert loaded.meta["seed"] == 3 and loaded.meta["params"] == {"k": 10}
    assert loaded.meta["code_version"]["memlib"] == results.memlib.__version__
    assert set(loaded.meta["libraries"]) >= {"torch", "numpy", "python"}
    assert not list(tmp_path.glob("*.tmp"))  # no temporary files left behind


def test_truncated_tensor_file_is_detected(tmp_path):
    save_result(tmp_path / "r", {"a": torch.randn(100)}, {})
    tensor_file = tmp_path / "r.safetensors"
    tensor_file.write_bytes(tensor_file.read_bytes()[:-40])
    with pytest.raises(ResultFileError, match="sha256"):
        load_result(tmp_path / "r")


def test_modified_tensor_file_is_detected(tmp_path):
    save_result(tmp_path / "r", {"a": torch.zeros(10)}, {})
    data = bytearray((tmp_path / "r.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "r.safetensors").write_bytes(bytes(data))
    with pytest.raises(ResultFileError, match="sha256"):
        load_result(tmp_path / "r")


def test_tensors_without_marker_are_incomplete(tmp_path):
    save_result(tmp_path / "r", {"a": torch.zeros(3)}, {})
    (tmp_path / "r.json").unlink()  # as if killed between the two writes
    assert not results.result_exists(tmp_path / "r")
    with pytest.raises(ResultFileError, match="incomplete"):
        load_result(tmp_path / "r")
    (tmp_path / "r.json").write_text(json.dumps({"complete": False}))
    with pytest.raises(ResultFileError, match="not a complete"):
        load_result(tmp_path / "r")


def test_cache_key_changes_with_params_and_input_content_only(tmp_path):
    ckpt = tmp_path / "model.bin"
    ckpt.write_bytes(b"weights-1")
    base = cache_key("unitmem", {"k": 10, "views": 10}, {"checkpoint": ckpt})
    assert cache_key("unitmem", {"views": 10, "k": 10}, {"checkpoint": ckpt}) == base  # order does not matter
    assert cache_key("unitmem", {"k": 5, "views": 10}, {"checkpoint": ckpt}) != base
    assert cache_key("attack", {"k": 10, "views": 10}, {"checkpoint": ckpt}) != base
    copy = tmp_path / "elsewhere.bin"
    copy.write_bytes(b"weights-1")
    assert cache_key("unitmem", {"k": 10, "views": 10}, {"checkpoint": copy}) == base  # identity, not path
    ckpt.write_bytes(b"weights-2")
    assert cache_key("unitmem", {"k": 10, "views": 10}, {"checkpoint": ckpt}) != base
    with pytest.raises(FileNotFoundError):
        cache_key("unitmem", {}, {"checkpoint": tmp_path / "missing.bin"})


def test_file_hash_is_remembered_by_path_size_mtime(tmp_path):
    import os

    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 1000)
    store = tmp_path / "hashes.json"
    first = results.file_sha256(path, store)
    assert len(results.read_record(store)["hashes"]) == 1
    # same size and mtime: the stored hash is returned without reading the file again
    stat = path.stat()
    path.write_bytes(b"y" * 1000)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    results._HASH_MEMO.clear()
    assert results.file_sha256(path, store) == first
    # a new mtime means a changed file: rehashed
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert results.file_sha256(path, store) != first


def test_cached_computes_once_and_recomputes_on_changed_params(tmp_path):
    calls = []

    def compute(work):
        calls.append(work)
        return {"x": torch.tensor([float(len(calls))])}, {"note": "hi"}

    first = cached("stage", {"k": 1}, compute, tmp_path, seed=0, latest=tmp_path / "latest")
    again = cached("stage", {"k": 1}, compute, tmp_path, seed=0)
    assert len(calls) == 1 and torch.equal(first.tensors["x"], again.tensors["x"])
    assert again.meta["info"] == {"note": "hi"} and again.meta["stage"] == "stage"
    assert again.meta["params"] == {"k": 1} and calls[0] == tmp_path / again.meta["work_dir"]
    assert again.path == calls[0] / "stage.json"  # the entry's folder holds the result
    assert torch.equal(results.load_result(tmp_path / "latest").tensors["x"], first.tensors["x"])
    other = cached("stage", {"k": 2}, compute, tmp_path, seed=0)
    assert len(calls) == 2 and float(other.tensors["x"]) == 2.0
    # a damaged cache entry is recomputed, not read
    tensor_file = first.path.with_suffix(".safetensors")
    tensor_file.write_bytes(tensor_file.read_bytes()[:-4])
    cached("stage", {"k": 1}, compute, tmp_path, seed=0)
    assert len(calls) == 3


def _job(tmp_path, compute, world_size=2):
    """The ranks of one torchrun job as threads: rank 0 writes, a threading barrier is the job's."""
    barrier = threading.Barrier(world_size, timeout=60)
    found = [None] * world_size

    def rank(r):
        found[r] = cached("stage", {"k": 3}, compute, tmp_path, writer=r == 0, wait=barrier.wait)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world_size)]
    return threads, found


def test_every_rank_of_a_job_computes_and_reads_what_its_writer_saved_and_a_second_job_waits_and_reads_it(tmp_path):
    calls, started, release = [], threading.Event(), threading.Event()

    def compute(work):
        calls.append(threading.current_thread().name)
        started.set()
        release.wait(60)  # the first job is still computing while the second one starts
        return {"x": torch.tensor([float(len(calls))])}, {}

    first, first_found = _job(tmp_path, compute)
    for t in first:
        t.start()
    assert started.wait(60)
    second, second_found = _job(tmp_path, compute)
    for t in second:
        t.start()
    time.sleep(0.5)
    assert len(calls) == 2, "the second job computed while the first held the entry"  # only the first job's two ranks
    release.set()
    for t in first + second:
        t.join(60)
    assert len(calls) == 2, "the second job computed what the first one had finished"
    assert all(torch.equal(r.tensors["x"], first_found[0].tensors["x"]) for r in first_found + second_found)


def test_to_jsonable_refuses_unknown_objects():
    with pytest.raises(TypeError, match="object"):
        results.to_jsonable({"a": object()})
    assert results.to_jsonable({"x": float("nan"), "t": torch.tensor(2)}) == {"x": "nan", "t": 2}


def test_pages_show_paths_relative_to_the_repository():
    from memlib.stages import shown_path

    root = Path(__file__).resolve().parents[1]
    assert shown_path(root / "results" / "testbed" / "var-testbed") == "results/testbed/var-testbed"
    assert shown_path(root / "data" / "checkpoints" / "x.safetensors") == "data/checkpoints/x.safetensors"
    outside = Path("/") / "no-such-root" / "model.pth"  # outside the repository and the working folder
    assert shown_path(outside) == "model.pth"


def test_a_run_with_cache_dir_shares_the_stage_cache_but_keeps_its_own_latest_copy(tmp_path):
    from memlib import stages
    from memlib.config import make_config

    computed = []

    def compute(work):
        computed.append(work)
        return {"x": torch.arange(3)}, {"n": 3}

    main = stages.Run(make_config(results_dir=str(tmp_path / "main")), tmp_path / "main", torch.device("cpu"))
    stages.stage_result(main, "demo", {"a": 1}, compute, {})
    assert computed[0].parent == tmp_path / "main" and (tmp_path / "main" / "demo.json").is_file()
    variant_config = make_config(results_dir=str(tmp_path / "variant"), cache_dir=str(tmp_path / "main"))
    variant = stages.Run(variant_config, tmp_path / "variant", torch.device("cpu"))
    assert stages.stage_result(variant, "demo", {"a": 1}, compute, {}).tensors["x"].tolist() == [0, 1, 2]
    assert len(computed) == 1, "the variant recomputed a stage the main run had cached"
    stages.stage_result(variant, "demo", {"a": 2}, compute, {})  # changed settings: computed, into the shared cache
    assert computed[1].parent == tmp_path / "main"
    assert load_result(tmp_path / "main" / "demo").meta["params"] == {"a": 1}, "the variant overwrote the main run's latest copy"
    assert load_result(tmp_path / "variant" / "demo").meta["params"] == {"a": 2}
