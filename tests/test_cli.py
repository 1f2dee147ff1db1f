import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from toy_pipeline import write_tiny_var

from memlib.cli import main
from memlib.config import load_config, require
from memlib.results import load_result

ROOT = Path(__file__).resolve().parent.parent


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


# ---- parameters ----------------------------------------------------------------------------


def test_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "memlib", "--help"], capture_output=True, text=True, cwd=ROOT,
                         env=_env(), timeout=120)
    assert out.returncode == 0
    for stage in ("unitmem", "attack", "sweep", "fid", "train"):
        assert stage in out.stdout


def test_bad_parameter_file_exits_with_code_2(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text("n_views: zero\n")
    assert main(["unitmem", "--params", str(path), "--out", str(tmp_path)]) == 2
    assert "n_views: got 'zero'" in capsys.readouterr().err


# ---- stages ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Parameters of a tiny random VAR on 24 testbed images, and one uninterrupted
    single-process run of the sweep stage (which runs unitmem and attack first)."""
    folder = tmp_path_factory.mktemp("tiny")
    params = write_tiny_var(folder / "ckpt")
    params.update(k_percents=[0, 20], sweep_modes=["unitmem-half", "random-half"])
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    torch.manual_seed(0)
    assert main(["sweep", "--params", str(path), "--out", str(folder / "reference")]) == 0
    return path, folder / "reference"


def _assert_same_result(out_a: Path, out_b: Path, name: str):
    a, b = load_result(out_a / name), load_result(out_b / name)
    assert a.tensors.keys() == b.tensors.keys()
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), f"{name}: {key} differs"


def test_reference_run_wrote_results_with_provenance(tiny):
    _, reference = tiny
    unitmem = load_result(reference / "unitmem")
    info = unitmem.meta["info"]
    assert info["n_images"] == 24 and info["group_names"][-1] == "all"
    assert unitmem.meta["params"]["unitmem"]["n_views"] == 2 and unitmem.meta["seed"] == 0
    assert set(unitmem.meta["params"]) == {"run", "model", "data", "unitmem", "images"}  # the sections it read
    assert {"code_version", "timing", "libraries"} <= set(unitmem.meta)
    assert len(list((reference / unitmem.meta["work_dir"] / "shards").glob("shard-*.json"))) == 4
    attack = load_result(reference / "attack")
    labels = attack.tensors["candidate_labels"]
    assert len(labels.unique()) == len(labels) >= 5  # one candidate per class present
    assert attack.tensors["extracted"].shape == (3, len(labels))  # 3 prefix lengths
    table = pd.read_csv(reference / "sweep.csv")
    assert len(table) == 1 + 1 + 3 + 3  # k = 0 per mode and seed, then k = 20
    base = table[table.k_percent == 0].iloc[0]
    assert base["extracted@5"] == int(attack.tensors["extracted"][2].sum())


@pytest.mark.slow
def test_two_torchrun_processes_give_the_single_process_result(tiny, tmp_path):
    path, reference = tiny
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "memlib", "sweep", "--params", str(path), "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[rank 1/2]" in done.stderr  # the work was really split
    _assert_same_result(tmp_path, reference, "unitmem")
    _assert_same_result(tmp_path, reference, "attack")
    a, b = pd.read_csv(tmp_path / "sweep.csv"), pd.read_csv(reference / "sweep.csv")
    assert a.drop(columns="seconds").equals(b.drop(columns="seconds"))


@pytest.mark.slow
def test_killed_run_resumes_from_finished_shards(tiny, tmp_path):
    path, reference = tiny
    cmd = [sys.executable, "-m", "memlib", "unitmem", "--params", str(path), "--out", str(tmp_path)]
    process = subprocess.Popen(cmd, cwd=ROOT, env={**_env(), "MEMLIB_SHARD_PAUSE_S": "30"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("unitmem-*/shards/shard-00000.json")) and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    first_shard = next(tmp_path.glob("unitmem-*/shards/shard-00000.json"))
    assert not (tmp_path / "unitmem.json").exists()  # really interrupted
    assert not first_shard.with_name("shard-00001.json").exists()
    written = first_shard.stat().st_mtime_ns
    assert main(["unitmem", "--params", str(path), "--out", str(tmp_path)]) == 0
    assert first_shard.stat().st_mtime_ns == written  # reused, not recomputed
    _assert_same_result(tmp_path, reference, "unitmem")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Matrix is singular")  # 20 samples of 128-d features
def test_fid_stage_with_the_testbed_classifier(tiny, tmp_path):
    from memlib.classifier import TestbedClassifier, save_classifier

    path, _ = tiny
    torch.manual_seed(0)
    save_classifier(TestbedClassifier(), tmp_path / "classifier.safetensors", {"note": "random weights, test only"})
    params = yaml.safe_load(path.read_text())
    params.update(classifier_checkpoint=str(tmp_path / "classifier.safetensors"), fid_samples_per_class=2)
    params_path = tmp_path / "p.yaml"
    params_path.write_text(yaml.safe_dump(params))
    assert main(["fid", "--params", str(params_path), "--out", str(tmp_path / "out")]) == 0
    meta = load_result(tmp_path / "out" / "fid").meta
    assert meta["info"]["metric"] == "testbed FID" and meta["info"]["fid"] > 0
    assert set(meta["params"]) == {"run", "model", "fid"}  # the sections the stage read
    assert main(["fid", "--params", str(params_path), "--out", str(tmp_path / "out")]) == 0  # cached
    assert load_result(tmp_path / "out" / "fid").meta["info"]["fid"] == meta["info"]["fid"]
    assert len(list((tmp_path / "out").glob("fid-*/fid.json"))) == 1
    del params["classifier_checkpoint"]
    params_path.write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="classifier_checkpoint: got ''"):
        require(load_config(params_path), "fid")


def test_an_fid_setting_does_not_invalidate_unitmem_or_attack(tiny):
    """Each stage's cache key comes from the config sections it reads: a changed FID setting
    reads UnitMem and the attack back from the reference run instead of recomputing them."""
    from memlib import stages

    path, reference = tiny
    config = load_config(path).replace(fid_samples_per_class=7, fid_feature="inception")
    run = stages.make_run(config, reference)
    written = {name: (reference / f"{name}.json").stat().st_mtime_ns for name in ("unitmem", "attack")}
    unitmem, attack = stages.stage_unitmem(run), stages.stage_attack(run)
    assert unitmem.n_images == 24 and attack.result.num_candidates_total == len(attack.candidate_tokens_CL)
    assert {name: (reference / f"{name}.json").stat().st_mtime_ns for name in written} == written
    assert len(list(reference.glob("unitmem-*"))) == len(list(reference.glob("attack-*"))) == 1
    # a UnitMem setting does change UnitMem's key, and not the attack's
    changed = stages.make_run(config.replace(activation="pre"), reference)
    settings = changed.settings("data", "unitmem")
    assert settings["unitmem"]["activation"] == "pre" and "fid" not in settings and "attack" not in settings
