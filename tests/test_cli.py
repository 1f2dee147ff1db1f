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
from memlib.params import load_params, validate
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


def test_validation_names_parameter_value_and_expectation(tmp_path):
    with pytest.raises(ValueError) as err:
        validate({"k_percent": 0, "n_views": -3, "activaton": "post", "model": "var-d99", "checkpoint": "nope.pth"},
                 base_dir=tmp_path)
    message = str(err.value)
    assert "k_percent: got 0; expected a percentage with 0 < k <= 100" in message
    assert "n_views: got -3; expected a positive integer" in message
    assert "activaton: unknown parameter" in message
    assert "model: got 'var-d99'" in message and "var-d30" in message  # lists the known names
    assert "checkpoint: got 'nope.pth'" in message and "not found" in message


def test_defaults_paths_and_stage_requirements(tmp_path):
    (tmp_path / "w.pth").write_bytes(b"")
    params = validate({"checkpoint": "w.pth", "random_seeds": [3, 4, 5]}, base_dir=tmp_path)
    assert params["checkpoint"] == str(tmp_path / "w.pth") and params["n_views"] == 10 and params["seed"] == 0
    path = tmp_path / "p.yaml"
    path.write_text("checkpoint: w.pth\n")
    with pytest.raises(ValueError, match="stage 'unitmem'(.|\n)*model: got ''(.|\n)*tokenizer_checkpoint"):
        load_params(path, base_dir=tmp_path, stage="unitmem")
    with pytest.raises(ValueError, match="random_seeds: got \\[1, 2\\]; expected a list of >= 3"):
        validate({"random_seeds": [1, 2]})
    with pytest.raises(ValueError, match="sscd_torchscript: got ''"):
        validate({"similarity": "sscd"})


def test_the_repository_parameter_files_validate():
    for name in ("testbed.yaml", "smoke.yaml"):
        load_params(ROOT / "notebooks" / "params" / name)


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
    assert unitmem.meta["n_images"] == 24 and unitmem.meta["group_names"][-1] == "all"
    assert unitmem.meta["params"]["n_views"] == 2 and unitmem.meta["seed"] == 0
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
    assert meta["metric"] == "testbed FID" and meta["fid"] > 0
    assert main(["fid", "--params", str(params_path), "--out", str(tmp_path / "out")]) == 0  # cached
    assert load_result(tmp_path / "out" / "fid").meta["fid"] == meta["fid"]
    del params["classifier_checkpoint"]
    params_path.write_text(yaml.safe_dump(params))
    with pytest.raises(ValueError, match="classifier_checkpoint: got ''"):
        load_params(params_path, stage="fid")
