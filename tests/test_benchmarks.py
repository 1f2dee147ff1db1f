"""The benchmark scripts' own logic (not their timings): that they still run against memlib's
API, that the results file keeps what it should, and that bench_book never deletes outside the
repository."""

import importlib
import json
import subprocess
from pathlib import Path

import pytest
import torch
from toy_pipeline import ToyVAR

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    """Import a script of benchmarks/ by name (they import their sibling ``common``)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def test_capture_case_runs_every_variant_on_a_toy_model(bench):
    bench_capture = bench("bench_capture")
    torch.manual_seed(0)
    gen = ToyVAR()
    images, labels = bench("common").synthetic_batch(gen, 6)
    seconds = bench_capture.capture_case(gen, images, labels, batch_size=4, repeats=2)
    assert set(seconds) == {"tokenize", "forward", "hooked", "collect"}
    assert all(len(runs) == 2 and all(s > 0 for s in runs) for runs in seconds.values())


def test_write_entries_replaces_by_name_and_prefix_and_keeps_the_rest(bench, tmp_path):
    common = bench("common")
    path = tmp_path / "results.json"
    ctx = {"machine": {}, "date": "2026-01-01T00:00:00+00:00", "git_commit": "x", "load_average": [0, 0, 0]}
    old = [common.entry(name, [1.0, 3.0, 2.0], "s", "old", ctx=ctx) for name in ("book/a", "book/b", "capture/c")]
    common.write_entries(old, path=path)
    common.write_entries([common.entry("book/a", [5.0], "s", "new", ctx=ctx)], path=path, replace_prefix="book/")
    entries = json.loads(path.read_text())["entries"]
    assert list(entries) == ["book/a", "capture/c"]  # book/b was stale: dropped with its prefix
    assert entries["book/a"]["median"] == 5.0 and entries["capture/c"]["median"] == 2.0
    assert not list(tmp_path.glob("*.tmp"))
    path.write_text(json.dumps({"format": 0, "entries": {}}))
    with pytest.raises(ValueError, match="results.json"):
        common.read_results(path)


def test_target_verdicts(bench):
    common = bench("common")
    assert common.target(">=", 0.9, 0.9, "t")["holds"] and not common.target(">=", 0.9, 0.89, "t")["holds"]
    assert common.target("<=", 10, 3.6, "t")["holds"] and not common.target("<=", 10, 10.1, "t")["holds"]


def test_bench_book_refuses_a_results_dir_outside_the_repository_before_deleting_anything(bench, tmp_path, monkeypatch):
    bench_book = bench("bench_book")
    ran = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: ran.append(args))
    params = tmp_path / "params.yaml"
    params.write_text("results_dir: ../../somewhere-else\n")
    with pytest.raises(ValueError, match="outside the repository"):
        bench_book.clear_caches(params)
    assert ran == []  # not even `make clean` ran


def test_gpu_check_stage_a_and_fid_measurements_run_memlibs_code_on_a_toy_model(bench, monkeypatch):
    import memlib.extract
    import memlib.fid

    gpu_check = bench("gpu_check")
    calls = []
    for module, name in ((memlib.extract, "score_images"), (memlib.fid, "feature_stats")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    gen, device = ToyVAR(), torch.device("cpu")
    assert len(gpu_check.stage_a_seconds(gen, device, 4, 2, amp=False, repeats=2)) == 2
    assert len(gpu_check.fid_samples_seconds(gen, device, 2, 2, repeats=1)) == 1
    assert calls == ["score_images"] * 3 + ["feature_stats"] * 2  # each timed call after one warm-up
    with pytest.raises(ValueError, match="at most one sample per class"):
        gpu_check.fid_samples_seconds(gen, device, gen.num_classes + 1, 2, repeats=1)


def test_stage_a_benchmark_measures_memlibs_stage_a_decoding_and_forward_on_a_folder(bench, tmp_path):
    bench_stage_a = bench("bench_stage_a")
    bench_stage_a.write_folder(tmp_path / "train", 12, n_classes=3)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["n01440764", "n01443537", "n01484850"]
    for variant in ("stage_a", "decode", "forward"):
        measured = bench_stage_a.child(variant, tmp_path / "train", workers=1 if variant == "decode" else 0)
        assert measured["images"] == 12 and measured["seconds"] > 0 and measured["peak_rss_mib"] > 0, variant


def test_bf16_benchmark_agreement_and_stage_a_candidates(bench):
    bench_bf16 = bench("bench_bf16")
    assert bench_bf16.agreement(torch.tensor([[0, 1], [0, 2], [1, 5]]), torch.tensor([[1, 5], [0, 1], [3, 3]])) == 2 / 3
    assert bench_bf16.agreement(torch.tensor([4, 5, 6, 7]), torch.tensor([7, 4])) == 0.5
    torch.manual_seed(0)
    gen = ToyVAR()
    tokens = torch.randint(0, 4, (8, gen.seq_len))  # the toy vocabulary: 4 gray levels
    labels = torch.arange(8) % gen.num_classes
    scores32, candidates32 = bench_bf16.stage_a_candidates(gen, tokens, labels, amp=False)
    assert torch.equal(candidates32, memlib_select(scores32, labels))
    scores16, _ = bench_bf16.stage_a_candidates(gen, tokens, labels, amp=True)
    assert scores16.shape == scores32.shape


def memlib_select(scores, labels):
    from memlib.extract import select_candidates

    return select_candidates(scores, labels, per_class=10)


def test_bench_tests_times_make_test_quiet_then_busy_and_always_stops_the_busy_processes(bench, monkeypatch):
    bench_tests, common = bench("bench_tests"), bench("common")

    class Spinner:
        killed = False

        def kill(self):
            self.killed = True

        def wait(self):
            pass

    spun, written = [], []

    def spinners(count):
        spun.extend(Spinner() for _ in range(count))
        return spun[-count:]

    monkeypatch.setattr(bench_tests, "spinners", spinners)
    monkeypatch.setattr(common, "wait_for_quiet_machine", lambda *args: [0.0, 0.0, 0.0])
    monkeypatch.setattr(common, "write_entries", lambda entries, replace_prefix: written.append((entries, replace_prefix)))
    seconds = iter([480.0, 950.0])
    monkeypatch.setattr(bench_tests, "make_test", lambda: next(seconds))
    bench_tests.main(["--busy", "2"])
    (entries, prefix), = written
    assert prefix == "tests/" and [e["name"] for e in entries] == ["tests/make_test/idle", "tests/make_test/busy"]
    assert [e["median"] for e in entries] == [480.0, 950.0] and [e["target"]["holds"] for e in entries] == [True, False]
    assert entries[1]["settings"]["busy_processes"] == 2 and len(spun) == 2 and all(s.killed for s in spun)

    def failing():
        raise subprocess.CalledProcessError(2, ["make", "test"])

    monkeypatch.setattr(bench_tests, "make_test", failing)
    with pytest.raises(subprocess.CalledProcessError):
        bench_tests.main(["--busy", "1"])  # the quiet run fails: nothing more written
    assert len(written) == 1 and len(spun) == 2
    written.clear()
    runs = iter([lambda: 480.0, failing])
    monkeypatch.setattr(bench_tests, "make_test", lambda: next(runs)())
    with pytest.raises(subprocess.CalledProcessError):
        bench_tests.main(["--busy", "1"])  # the busy run fails: its busy process is stopped, nothing written
    assert written == [] and len(spun) == 3 and spun[-1].killed
