"""Every stored record is checked before it is used, as a user meets it: a digit edited in a
result's JSON, a record copied in from another entry, a shard or sweep row moved, a record of
an older format, a save killed half-way, two runs of the same stage at once, a full disk, and
Ctrl-C during a stage. The stages are run through ``memlib.cli.main`` (what
``python -m memlib`` runs) or the function the stages call (``cached``, ``run_sweep``)."""

import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from toy_pipeline import ToyVAR, toy_dataset, write_tiny_var

from memlib import results
from memlib.cli import main
from memlib.extract import run_attack
from memlib.results import ResultFileError, cached, load_result, save_result
from memlib.similarity import PixelSimilarity
from memlib.sweep import row_path, run_sweep

ROOT = Path(__file__).resolve().parent.parent


def _edit(path: Path, change) -> None:
    """Rewrite the JSON file ``path`` as a user with an editor would: ``change(record)`` edits
    the parsed record in place; the layout stays memlib's."""
    record = json.loads(path.read_text())
    change(record)
    text = json.dumps(record, indent=1, sort_keys=True) + "\n"
    assert text != path.read_text(), "the edit changed nothing"
    path.write_text(text)


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ---- stage records, through the command line ----------------------------------------------


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """A tiny random VAR attacked on 12 testbed images (two stage-A shards), once."""
    folder = tmp_path_factory.mktemp("attacked")
    params = {**write_tiny_var(folder / "ckpt"), "max_images": 12}
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    assert main(["attack", "--params", str(path), "--out", str(folder / "out")]) == 0
    return path, folder / "out"


def _attack(capsys, path: Path, out: Path) -> str:
    capsys.readouterr()
    assert main(["attack", "--params", str(path), "--out", str(out)]) == 0
    return capsys.readouterr().err


def _entry(out: Path, stage: str) -> Path:
    (entry,) = out.glob(f"{stage}-*/{stage}.json")
    return entry


@pytest.mark.parametrize("edit", ["prefix_lengths", "threshold"])
def test_an_edited_digit_of_a_cache_entry_is_named_and_recomputed(attacked, capsys, edit):
    path, out = attacked
    entry = _entry(out, "attack")
    before = load_result(entry)
    if edit == "prefix_lengths":  # the relabelled counts: [0, 1, 5] -> [0, 1, 8]
        _edit(entry, lambda r: r["meta"]["info"]["attack"]["prefix_lengths"].__setitem__(2, 8))
    else:
        _edit(entry, lambda r: r["meta"]["params"]["attack"].__setitem__("threshold", 0.5))
    with pytest.raises(ResultFileError, match="does not match its record checksum"):
        load_result(entry)
    err = _attack(capsys, path, out)
    assert f"attack: stored result refused ({entry}: content does not match its record checksum" in err
    after = load_result(entry)
    assert after.meta["info"] == before.meta["info"] and after.meta["params"] == before.meta["params"]
    assert torch.equal(after.tensors["extracted"], before.tensors["extracted"])


def test_an_edited_latest_copy_is_refused_and_rewritten_from_its_entry(attacked, capsys):
    path, out = attacked
    _edit(out / "attack.json", lambda r: r["meta"]["info"]["attack"]["counts"].__setitem__(0, 7))
    with pytest.raises(ResultFileError, match=r"attack\.json: content does not match its record checksum"):
        load_result(out / "attack")  # nothing to recompute it from: refused, never read
    err = _attack(capsys, path, out)
    assert "attack: finished before" in err and f"latest copy refused ({out / 'attack.json'}" in err
    assert load_result(out / "attack").meta == load_result(_entry(out, "attack")).meta


def test_edited_and_misplaced_shards_are_recomputed_not_merged(attacked, capsys):
    path, out = attacked
    entry = _entry(out, "attack")
    before = load_result(entry)
    scores = entry.parent / "scores"
    entry.unlink()  # as if killed before the final save: the shards are read again
    _edit(scores / "shard-00000.json", lambda r: r["meta"]["params"]["attack"].__setitem__("per_class", 3))
    for suffix in (".json", ".safetensors"):  # shard 0's files in shard 1's place
        shutil.copy(scores / f"shard-00000{suffix}", scores / f"shard-00001{suffix}")
    err = _attack(capsys, path, out)
    assert "attack stage A shard 0: refused" in err and "does not match its record checksum" in err
    assert "attack stage A shard 1: refused" in err
    after = load_result(entry)
    assert torch.equal(after.tensors["scores_N"], before.tensors["scores_N"])
    assert load_result(scores / "shard-00001").meta["shard"] == 1


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 20 samples of 128-d features
def test_an_edited_fid_value_is_recomputed(attacked, tmp_path, capsys):
    from memlib.classifier import TestbedClassifier, save_classifier

    path, _ = attacked
    torch.manual_seed(0)
    save_classifier(TestbedClassifier(), tmp_path / "classifier.safetensors", {"note": "random weights, test only"})
    params = {**yaml.safe_load(path.read_text()), "classifier_checkpoint": str(tmp_path / "classifier.safetensors"),
              "fid_samples_per_class": 2, "fid_seeds": [0]}
    params_path = tmp_path / "fid.yaml"
    params_path.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    assert main(["fid", "--params", str(params_path), "--out", str(out)]) == 0
    entry = _entry(out, "fid")
    value = load_result(entry).meta["info"]["fid"]
    _edit(entry, lambda r: r["meta"]["info"].__setitem__("fid", value - 8))  # the 9.027 -> 1.0279
    capsys.readouterr()
    assert main(["fid", "--params", str(params_path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"fid: stored result refused ({entry}: content does not match its record checksum" in err
    assert load_result(entry).meta["info"]["fid"] == value == load_result(out / "fid").meta["info"]["fid"]


# ---- the cache, through results.cached (what every stage and page calls) ------------------


def _counting():
    calls = []

    def compute(work):
        calls.append(work)
        return {"x": torch.tensor([float(len(calls))])}, {"n": len(calls)}

    return calls, compute


def test_a_record_copied_from_another_entry_is_refused(tmp_path):
    calls, compute = _counting()
    logs = []
    one = cached("stage", {"k": 1}, compute, tmp_path)
    two = cached("stage", {"k": 2}, compute, tmp_path)
    for suffix in (".json", ".safetensors"):  # entry 2's result copied over entry 1's
        shutil.copy(two.path.with_suffix(suffix), one.path.with_suffix(suffix))
    again = cached("stage", {"k": 1}, compute, tmp_path, log=logs.append)
    assert len(calls) == 3 and again.meta["params"] == {"k": 1}
    assert any(f"stage: stored result refused ({one.path}: cache_key is" in line and "another result" in line
               for line in logs), logs


def test_parameters_edited_with_their_checksum_recomputed_do_not_match_the_key(tmp_path):
    calls, compute = _counting()
    first = cached("stage", {"k": 1}, compute, tmp_path)
    record = json.loads(first.path.read_text())
    record["meta"]["params"] = {"k": 5}  # a consistent edit: checksum recomputed, key left
    record["record_sha256"] = results.record_sha256(record)
    first.path.write_text(json.dumps(record))
    logs = []
    cached("stage", {"k": 1}, compute, tmp_path, log=logs.append)
    assert len(calls) == 2 and any("do not give its cache key" in line for line in logs), logs


def test_a_record_of_the_old_format_is_recomputed_with_one_line(tmp_path):
    calls, compute = _counting()
    first = cached("stage", {"k": 1}, compute, tmp_path)
    record = json.loads(first.path.read_text())
    del record["record_sha256"]
    first.path.write_text(json.dumps({**record, "format": 1}))  # what memlib wrote before records were sealed
    logs = []
    cached("stage", {"k": 1}, compute, tmp_path, log=logs.append)
    assert len(calls) == 2
    assert [line for line in logs if "refused" in line] == [
        f"stage: stored result refused ({first.path}: has no record checksum (an older memlib's format, or not a "
        "memlib record)); recomputing"]
    assert load_result(first.path).meta["info"] == {"n": 2}


# ---- sweep rows, through run_sweep (what stage_sweep calls) -------------------------------


@pytest.fixture(scope="module")
def sweep_setup():
    gen = ToyVAR(seed=1)
    images, labels = toy_dataset(n=16, seed=2).tensors
    tokens = gen.images_to_tokens(images)
    kwargs = dict(similarity=PixelSimilarity(), threshold=0.55, prefix_lengths=[0, 1, 5], per_class=3)
    baseline = run_attack(gen, tokens, labels, **kwargs)
    calls = []

    def attack(edited, prefix_lengths):
        calls.append(1)
        return run_attack(edited, tokens, labels, candidates=baseline.candidate_ids, **{**kwargs, "prefix_lengths": prefix_lengths})

    scores = {"unitmem": torch.rand(3, 6, generator=torch.Generator().manual_seed(0))}
    return gen, scores, attack, calls


def _sweep(setup, folder, log=lambda line: None):
    gen, scores, attack, _ = setup
    return run_sweep(gen, scores, attack, folder, "id-A", k_percents=[0, 20, 50], modes=["unitmem-half"],
                     seeds=[0, 1, 2], prefix_lengths=[0, 1, 5], log=log)


def test_edited_missing_and_moved_sweep_rows_are_recomputed(sweep_setup, tmp_path):
    calls = sweep_setup[3]
    table = _sweep(sweep_setup, tmp_path)
    k20, k50 = row_path(tmp_path, "unitmem-half", 20, 0), row_path(tmp_path, "unitmem-half", 50, 0)
    baseline = row_path(tmp_path, "baseline", 0, 0)
    _edit(k20, lambda r: r["row"].__setitem__("extracted@5", r["row"]["extracted@5"] + 2))  # the 2 -> 4
    shutil.copy(baseline, k50)  # the k = 0 row in the k = 50 row's place
    record = json.loads(baseline.read_text())
    del record["row"]  # a row without its row, sealed consistently
    record["record_sha256"] = results.record_sha256(record)
    baseline.write_text(json.dumps(record))
    logs, done = [], len(calls)
    again = _sweep(sweep_setup, tmp_path, logs.append)
    assert len(calls) - done == 3  # all three recomputed, none read
    assert any(f"stored row refused ({k20}: content does not match its record checksum" in line for line in logs)
    assert any(f"stored row refused ({k50}: row_of is" in line for line in logs)
    assert any(f"stored row refused ({baseline}: no 'row' mapping" in line for line in logs)
    cols = [c for c in table.columns if c != "seconds"]
    assert table[cols].equals(again[cols])


# ---- interrupted and concurrent writes -----------------------------------------------------


def test_a_temporary_file_of_a_killed_save_is_gone_after_the_next_save(tmp_path):
    target = tmp_path / "r.json"
    killed = subprocess.run(  # a save killed in the middle of writing
        [sys.executable, "-c", "import os, signal, sys; from memlib.results import atomic_write_with; "
         "atomic_write_with(sys.argv[1], lambda tmp: (tmp.write_text('half'), os.kill(os.getpid(), signal.SIGKILL)))",
         str(target)], env=_env(), timeout=300)
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = tmp_path.glob(".r.json.*.tmp")
    live = tmp_path / f".other.json.{results._HOST}-{os.getpid()}.abcdefgh.tmp"  # a live writer's file
    live.write_text("in progress")
    assert not target.exists()
    save_result(tmp_path / "r", {"x": torch.zeros(2)}, {})
    assert not leftover.exists() and live.exists()
    assert load_result(tmp_path / "r").tensors["x"].shape == (2,)


def test_result_files_are_readable_as_the_umask_allows(tmp_path):
    save_result(tmp_path / "r", {"x": torch.zeros(2)}, {})
    mask = os.umask(0)
    os.umask(mask)
    for name in ("r.json", "r.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask


LOCKED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from memlib.results import cached

    folder, name = Path(sys.argv[1]), sys.argv[2]

    def compute(work):
        (folder / f"{name}-computing").touch()
        while not (folder / "release").exists():
            time.sleep(0.05)
        return {"x": torch.tensor([1.0])}, {"by": name}

    result = cached("stage", {"k": 1}, compute, folder / "cache", log=lambda line: print(line, flush=True))
    print("by", result.meta["info"]["by"], flush=True)
""")


def test_a_second_run_of_the_same_stage_waits_and_reads_the_first_ones_result(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(LOCKED_RUN)

    def start(name):
        return subprocess.Popen([sys.executable, str(script), str(tmp_path), name], env=_env(),
                                stdout=(tmp_path / f"{name}.log").open("w"), stderr=subprocess.STDOUT)

    def wait_for(condition):
        deadline = time.time() + 300
        while not condition() and time.time() < deadline:
            time.sleep(0.05)
        assert condition()

    first = start("first")
    wait_for(lambda: (tmp_path / "first-computing").exists())
    second = start("second")
    wait_for(lambda: "waiting for it to finish" in (tmp_path / "second.log").read_text())
    (tmp_path / "release").touch()
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    log = (tmp_path / "second.log").read_text()
    assert not (tmp_path / "second-computing").exists()  # the second run computed nothing
    assert "stage: the other run finished it; reading" in log and log.strip().endswith("by first")


def test_a_full_disk_is_one_line_naming_the_file(attacked, tmp_path):
    path, _ = attacked

    def small_files():  # the disk "fills" after 2 kB: writes beyond fail with EFBIG, as ENOSPC would
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    done = subprocess.run([sys.executable, "-m", "memlib", "attack", "--params", str(path), "--out", str(tmp_path)],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=small_files)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: attack: [Errno 27] cannot write ") and str(tmp_path) in line
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_stage_ends_with_one_line_saying_what_was_kept(attacked, tmp_path, sig):
    path, _ = attacked
    process = subprocess.Popen([sys.executable, "-m", "memlib", "unitmem", "--params", str(path), "--out",
                                str(tmp_path)], cwd=ROOT, env={**_env(), "MEMLIB_SHARD_PAUSE_S": "30"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               # Ctrl-C reaches it as at a terminal, even when this test was started with SIGINT
                               # ignored (a background job of a script), which Python would keep
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not list(tmp_path.glob("unitmem-*/shards/shard-00000.json")) and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(sig)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == (130 if sig == signal.SIGINT else 143), err
    assert "Traceback" not in err
    how = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert err.strip().splitlines()[-1] == (f"unitmem interrupted ({how}): finished and kept: unitmem shards 1 of 2; "
                                            "run the same command again to resume")
    assert not list(tmp_path.rglob("*.tmp"))


def _interrupted_once(monkeypatch, marker: Path, sig: int) -> None:
    """Make the next atomic write's clean-up, once ``marker`` is in place, receive ``sig``: the
    moment after a result is on disk and before the stage has counted it."""
    finish_clean_up = results.remove_stale_temporaries

    def signalled_once_the_marker_is_in_place(parent):
        if marker.is_file():
            monkeypatch.setattr(results, "remove_stale_temporaries", finish_clean_up)
            os.kill(os.getpid(), sig)
        finish_clean_up(parent)

    monkeypatch.setattr(results, "remove_stale_temporaries", signalled_once_the_marker_is_in_place)


@pytest.fixture
def cli_signal_handlers():
    """Ctrl-C and SIGTERM handled as in ``python -m memlib`` at a terminal (raise KeyboardInterrupt
    and Terminated), even when this test runs with SIGINT ignored (a background job of a
    script); the test's own handlers are restored after."""
    from memlib import cli

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                signal.SIGTERM: signal.signal(signal.SIGTERM, cli._exit_on_sigterm)}
    yield {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: cli.Terminated}
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_right_after_a_shard_is_written_keeps_and_counts_that_shard(tmp_path, monkeypatch, cli_signal_handlers, sig):
    from memlib import stages
    from memlib.cli import interruption_message
    from memlib.config import make_config

    run = stages.Run(make_config(results_dir=str(tmp_path), shard_size=2), tmp_path, torch.device("cpu"))
    folder = tmp_path / "shards"
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    _interrupted_once(monkeypatch, folder / "shard-00000.json", sig)
    with pytest.raises(cli_signal_handlers[sig]):
        stages.run_shards(run, folder, 4, lambda ids: ({"x": torch.tensor(list(ids))}, {}), "unitmem", {"a": 1})
    assert load_result(folder / "shard-00000").tensors["x"].tolist() == [0, 1]
    assert not (folder / "shard-00001.json").exists()
    assert interruption_message("unitmem", "Ctrl-C", run) == (
        "unitmem interrupted (Ctrl-C): finished and kept: unitmem shards 1 of 2; run the same command again to resume")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # the handlers are back


def test_an_interrupt_right_after_a_sweep_row_is_written_keeps_and_counts_that_row(sweep_setup, tmp_path, monkeypatch,
                                                                                    cli_signal_handlers):
    gen, scores, attack, _ = sweep_setup
    counted = []
    _interrupted_once(monkeypatch, row_path(tmp_path, "baseline", 0, 0), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(gen, scores, attack, tmp_path, "id-A", k_percents=[0, 20], modes=["unitmem-half"], seeds=[0],
                  prefix_lengths=[0, 1, 5], on_row=lambda done, total: counted.append((done, total)))
    assert counted == [(0, 2), (1, 2)]
    assert results.read_record(row_path(tmp_path, "baseline", 0, 0))["row"]["k_percent"] == 0
    assert not row_path(tmp_path, "unitmem-half", 20, 0).exists()


def test_a_stages_settings_name_files_by_content_not_by_path(tmp_path):
    """The same checkpoints in another folder (another clone, a moved checkout) give the same
    settings, hence the same cache keys; a changed file gives others."""
    import shutil

    from memlib import stages
    from memlib.config import load_config

    run = stages.make_runs(load_config("notebooks/params/smoke.yaml"), "unitmem", family="var")["var"]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    copies = {key: shutil.copy(getattr(run.config.model, key), moved) for key in ("checkpoint", "tokenizer_checkpoint")}
    elsewhere = stages.make_run(run.config.replace(**copies))
    assert elsewhere.settings("data", "unitmem") == run.settings("data", "unitmem")
    assert "elsewhere" not in str(elsewhere.settings("data", "unitmem"))
    with open(copies["checkpoint"], "ab") as f:
        f.write(b"\0")
    changed = stages.make_run(run.config.replace(**copies))
    assert changed.settings("data", "unitmem")["model"]["checkpoint"] != run.settings("data", "unitmem")["model"]["checkpoint"]
