"""A full-scale rehearsal: the path a user with the paper's files takes, on stand-ins in the
official formats (tests/toy_fullscale.py) at tiny sizes.

For each family (VAR: ``var_d16.pth`` + ``vae_ch160v4096z32.pth``; RAR: ``rar_b.bin`` +
``maskgit-vqgan-imagenet-f16-256.bin``), with an ImageNet-layout folder of real wnids and awkward
files, TorchScript SSCD and Inception stand-ins and an ADM-style reference npz, the shipped
``notebooks/params/full-<model>.yaml`` is filled in and changed only where the tiny model or the
time demands (the model's sizes and stage-A span, two FID samples of two classes, a short sweep);
then every CLI stage runs (``python -m memlib unitmem|attack|sweep|fid``, in-process through
:func:`memlib.cli.main`), and every notebook of the book through ``scripts/run_notebooks.py`` on
the same results folder. Under torchrun, FID sharded over two ranks gives the one-process value.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import yaml
from toy_fullscale import (
    TINY,
    tiny_config,
    write_adm_reference,
    write_imagenet_folder,
    write_inception,
    write_official_checkpoints,
    write_sscd,
)

from memlib.cli import main
from memlib.config import load_config
from memlib.protocol import protocol_mismatches
from memlib.results import load_result
from memlib.yamlsafe import load_yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"var": "full-var-d16.yaml", "rar": "full-rar-b.yaml"}
# What the rehearsal changes in the shipped files, besides paths and device: the protocol
# settings a tiny model cannot keep, and the work (FID: 2 samples of 2 classes; a short sweep).
CHANGED = {
    "var": {"score_span": [5, 21], "prefix_lengths": [0, 1, 5], "k_percents": [0, 10]},  # scales of 1 + 4 + 16 tokens
    "rar": {"score_span": [10, 16], "prefix_lengths": [0, 1, 5, 14], "k_percents": [0, 5]},  # the last 6 of 16 tokens
}
WORK = {"fid_samples_per_class": 2, "fid_classes": 2, "sweep_modes": ["unitmem-half", "random-half"]}
EXPECTED_MISMATCHES = ["model_overrides", "score_span", "prefix_lengths", "reported_prefix", "fid_samples_per_class",
                       "fid_classes"]
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")]


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("standins")
    files = {"imagenet": write_imagenet_folder(folder / "train"), "sscd": write_sscd(folder / "sscd_disc_mixup.torchscript.pt"),
             "inception": write_inception(folder / "inception-copy.pt")}  # not clean-fid's file name
    files["reference"] = write_adm_reference(folder / "VIRTUAL_imagenet256_labeled.npz", files["inception"])
    for family in ("var", "rar"):
        files[family] = write_official_checkpoints(folder / family, family)
    return files


def full_scale_params(standins: dict, family: str, results: Path, path: Path) -> Path:
    """The shipped full-scale file with the stand-ins' paths and :data:`CHANGED`, :data:`WORK`."""
    params = load_yaml(ROOT / "notebooks" / "params" / SHIPPED[family])
    checkpoint, tokenizer = standins[family]
    params.update(device="cpu", results_dir=str(results), model_overrides=TINY[family][1],
                  checkpoint=str(checkpoint), tokenizer_checkpoint=str(tokenizer),
                  imagenet_train_dir=str(standins["imagenet"]["root"]),
                  sscd_torchscript=str(standins["sscd"]), inception_torchscript=str(standins["inception"]),
                  fid_reference_npz=str(standins["reference"]), **CHANGED[family], **WORK)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


# The pages that read the run's model (testbed and performance do not: the smoke book runs them);
# VAR's run also takes the RAR page's "no model of this family" path.
PAGES = {"var": ["unitmem-var", "unitmem-rar", "extraction", "mitigation", "tradeoff", "reproduction"],
         "rar": ["unitmem-rar", "extraction", "mitigation", "tradeoff", "reproduction"]}


@pytest.fixture(scope="module", params=["var", "rar"])
def rehearsal(request, standins, tmp_path_factory) -> dict:
    """Every CLI stage, then the pages, of one family's full-scale-shaped run (one torch thread:
    many tiny operations on a shared two-core machine)."""
    family = request.param
    folder = tmp_path_factory.mktemp(f"rehearsal-{family}")
    params = full_scale_params(standins, family, folder / "results", folder / "params.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for stage in ("unitmem", "attack", "sweep", "fid"):
            assert main([stage, "--params", str(params)]) == 0, stage
    finally:
        torch.set_num_threads(threads)
    cli_entries = sorted(p.name for p in (folder / "results").glob("*-*") if p.is_dir())
    only = [arg for name in PAGES[family] for arg in ("--only", name)]
    done = subprocess.run([sys.executable, "scripts/run_notebooks.py", "--params", str(params), "--out",
                           str(folder / "executed"), "--timeout", "900", "--jobs", "2", *only],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"family": family, "params": params, "results": folder / "results", "executed": folder / "executed",
            "cli_entries": cli_entries, "standins": standins}


def test_the_cli_stages_label_classes_by_wnid_and_skip_the_broken_file(rehearsal):
    results, imagenet = rehearsal["results"], rehearsal["standins"]["imagenet"]
    unitmem = load_result(results / "unitmem").meta["info"]
    assert unitmem["n_images"] == 4  # D' = 1% of every class: one image of each of the four
    attack = load_result(results / "attack")
    labels = sorted(set(attack.tensors["candidate_labels"].tolist()))
    assert labels == [0, 217, 508, 999]  # official indices of the folder's wnids, not 0..3
    assert len(attack.tensors["candidate_labels"]) == 15  # 16 files, the broken one skipped
    assert imagenet["broken"].name not in json.dumps(attack.meta["info"])
    sweep_csv = (results / "sweep.csv").read_text().splitlines()
    assert len(sweep_csv) == 1 + 2 * (1 + 3)  # header; at k = 0 and the paper's k: UnitMem-halved, random x 3 seeds


def test_fid_is_labelled_as_a_rehearsal_against_the_reference_mu_sigma(rehearsal):
    info = load_result(rehearsal["results"] / "fid").meta["info"]
    assert info["metric"] == "FID (2 of 1000 classes)" and len(info["classes"]) == 2 and info["num_samples"] == 4
    assert "'mu'/'sigma' of VIRTUAL_imagenet256_labeled.npz" in info["reference"] and info["fid"] > 0
    assert load_result(rehearsal["results"] / "fid").meta["params"]["fid"]["fid_classes"] == 2


def test_the_pages_ran_on_the_cli_results(rehearsal):
    for name in PAGES[rehearsal["family"]]:
        nbformat.read(rehearsal["executed"] / f"{name}.ipynb", as_version=4)
    assert not list(rehearsal["executed"].glob("*.failed.ipynb"))
    # the pages read the stages' results back: no stage was computed again under another key
    stages = ("unitmem-", "attack-", "sweep-", "fid-")
    after = sorted(p.name for p in rehearsal["results"].glob("*-*") if p.is_dir() and p.name.startswith(stages))
    cli = [name for name in rehearsal["cli_entries"] if name.startswith(stages)]
    assert set(cli) <= set(after)
    # the one entry a page adds: the mitigation page's edit with RAR's units ranked at T-1
    extra = [load_result(rehearsal["results"] / name / "sweep").meta["params"]["sweep"]["selection"]
             for name in sorted(set(after) - set(cli)) if name.startswith("sweep-")]
    assert extra == ([] if rehearsal["family"] == "var" else ["last"]) and len(extra) == len(set(after) - set(cli))


def _page_text(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/markdown", "")) for o in outputs)


def test_the_reproduction_page_names_every_protocol_mismatch(rehearsal):
    text = _page_text(rehearsal["executed"] / "reproduction.ipynb")
    assert "is one of the paper's models" not in text
    for key in EXPECTED_MISMATCHES:
        assert key in text, key


def test_the_protocol_names_what_the_rehearsal_changed(rehearsal):
    config = load_config(rehearsal["params"])
    assert [m.key for m in protocol_mismatches(config)] == EXPECTED_MISMATCHES
    assert tiny_config(rehearsal["family"]).num_classes == 1000


def test_fid_over_two_torchrun_ranks_equals_one_process(rehearsal, tmp_path):
    """``torchrun --nproc_per_node 2 -m memlib fid``: each rank samples half the batches; the
    merged score equals the single-process one to 1e-9 relative (float64 round-off)."""
    if rehearsal["family"] != "var":
        pytest.skip("one family is enough for the merge")
    params = tmp_path / "params.yaml"
    # batches of one sample, so that each rank draws some of the 4
    params.write_text(yaml.safe_dump({**yaml.safe_load(rehearsal["params"].read_text()), "batch_size": 1}, sort_keys=False))
    single, threads = tmp_path / "single", torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["fid", "--params", str(params), "--out", str(single)]) == 0
    finally:
        torch.set_num_threads(threads)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "memlib", "fid", "--params", str(params), "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "two").glob("fid-*/moments-seed0-rank*of2.json"))) == 2  # both ranks sampled
    one, two = (load_result(folder / "fid").meta["info"] for folder in (single, tmp_path / "two"))
    assert two["fid"] == pytest.approx(one["fid"], rel=1e-9) and two["num_samples"] == one["num_samples"] == 4
