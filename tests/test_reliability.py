"""Bad inputs, untrusted files, interruption, numerics and determinism, through the public entry
points: ``memlib.config.make_config`` (notebooks), ``python -m memlib STAGE`` (``main``),
``load_generator``, ``ImageFolderSample``, result files, UnitMem collection and the attack.

Every model here is tiny (tests/toy_pipeline.py); billion-parameter configs are only built on
the meta device by ``load_generator`` itself, which allocates nothing.
"""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn
from toy_pipeline import ToyVAR, same_views, toy_dataset, write_tiny_var

from memlib import data as mdata
from memlib.cli import main
from memlib.collect import accumulate_unitmem, group_means_reducer, view_means
from memlib.config import make_config, require
from memlib.extract import score_images
from memlib.fid import FeatureStats
from memlib.models.loading import CheckpointError
from memlib.models.registry import load_generator
from memlib.results import ResultFileError, load_result, record_sha256, result_paths, save_result
from memlib.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning"),
              pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random VAR's two checkpoint files and the CLI parameters that load it."""
    folder = tmp_path_factory.mktemp("tiny")
    return folder, write_tiny_var(folder / "ckpt")


def _params_file(folder: Path, params: dict, name: str = "params.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(params))
    return path


def _run_cli(capsys, stage: str, params_path: Path, out: Path) -> tuple[int, str]:
    code = main([stage, "--params", str(params_path), "--out", str(out)])
    return code, capsys.readouterr().err


# ---- 1. parameters -------------------------------------------------------------------------


def test_notebook_parameters_are_validated_in_one_call(tmp_path):
    with pytest.raises(ValueError) as err:
        make_config({"seed": -1, "images_per_class": 0, "testbed_file": "absent.npz"}, base_dir=tmp_path)
    message = str(err.value)
    assert "seed: got -1; expected an integer >= 0" in message
    assert "images_per_class: got 0; expected a positive integer" in message
    assert "testbed_file: got 'absent.npz'" in message and "not found" in message
    config = make_config({"seed": 3, "results_dir": "out", "images_per_class": 4, "testbed_file": None}, base_dir=tmp_path)
    assert config.data.testbed_file is None and config.run.results_dir == str(tmp_path / "out") and config.run.seed == 3
    with pytest.raises(ValueError, match=r"stage 'attack'(.|\n)*model: got ''(.|\n)*checkpoint: got ''"):
        require(make_config(seed=0), "attack")
    with pytest.raises(ValueError, match="stage: got 'atack'; expected one of unitmem, attack"):
        require(make_config(seed=0), "atack")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_cli_stage_validates_its_parameters_before_any_work(tmp_path, capsys, stage):
    path = _params_file(tmp_path, {"k_percent": 0, "model": "var-d99", "checkpoint": "nope.pth", "n_views": 1.5})
    code, err = _run_cli(capsys, stage, path, tmp_path / "out")
    assert code == 2 and "Traceback" not in err
    for needle in ("k_percent: got 0; expected null (the paper's k% of the family) or a percentage with 0 < k <= 100",
                   "model: got 'var-d99'",
                   "checkpoint: got 'nope.pth'", "n_views: got 1.5; expected a positive integer"):
        assert needle in err
    assert not (tmp_path / "out").exists()  # failed before doing anything


def test_a_full_scale_file_with_six_empty_paths_names_all_of_them_at_once(tmp_path, capsys):
    code, err = _run_cli(capsys, "sweep", ROOT / "notebooks" / "params" / "full-var-d16.yaml", tmp_path / "out")
    assert code == 2 and "Traceback" not in err
    for key in ("checkpoint", "tokenizer_checkpoint", "imagenet_train_dir", "sscd_torchscript", "inception_torchscript",
                "fid_reference_npz"):
        assert f"\n  {key}: got ''; expected" in err, key
    assert not (tmp_path / "out").exists()


def test_a_prefix_length_the_model_cannot_take_is_refused_before_stage_a(tiny, tmp_path, capsys):
    _, params = tiny
    code, err = _run_cli(capsys, "attack", _params_file(tmp_path, {**params, "prefix_lengths": [0, 7]}), tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: attack: prefix_lengths: [0, 7] not all in the model's valid lengths [0, 1, 5, 21] (--traceback shows where)"]
    assert not list(tmp_path.glob("out/attack-*/scores/*"))  # nothing was scored


def test_a_checkpoint_folder_and_an_out_file_are_named_for_what_they_are(tiny, tmp_path, capsys):
    _, params = tiny
    (tmp_path / "weights").mkdir()
    code, err = _run_cli(capsys, "unitmem", _params_file(tmp_path, {**params, "checkpoint": str(tmp_path / "weights")}),
                         tmp_path / "out")
    assert code == 2 and f"expected an existing file (a folder: {tmp_path / 'weights'})" in err
    (tmp_path / "a-file").write_text("")
    code, err = _run_cli(capsys, "unitmem", _params_file(tmp_path, params), tmp_path / "a-file")
    assert code == 2 and err.strip() == f"error: --out: {tmp_path / 'a-file'} is a file; expected a folder (existing or not)"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_device_without_cuda_is_named(tiny, tmp_path, capsys):
    _, params = tiny
    code, err = _run_cli(capsys, "unitmem", _params_file(tmp_path, {**params, "device": "cuda"}), tmp_path)
    assert code == 1 and "device: got 'cuda'" in err and "Traceback" not in err


# ---- 2. files ------------------------------------------------------------------------------


def test_load_generator_refuses_a_checkpoint_of_another_model(tiny):
    _, params = tiny
    weights, tokenizer = params["checkpoint"], params["tokenizer_checkpoint"]
    # a small VAR file into the var-d30 config (built on the meta device: nothing is allocated)
    with pytest.raises(CheckpointError) as err:
        load_generator("var-d30", weights, tokenizer)
    assert weights in str(err.value) and "depth=30" in str(err.value)
    assert re.search(r"missing keys: [1-9]\d* \(blocks\.2\.", str(err.value))
    # VAR weights loaded as RAR
    with pytest.raises(CheckpointError, match=r"(?s)transformer\.safetensors.*RARConfig.*missing keys"):
        load_generator("rar-testbed", weights, tokenizer)
    # the two files swapped
    with pytest.raises(CheckpointError, match="tokenizer.safetensors"):
        load_generator("var-d16", tokenizer, weights)


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "other-model", "pickle"])
def test_cli_stage_with_a_bad_checkpoint_prints_one_error(tiny, tmp_path, capsys, damage):
    _, params = tiny
    good = Path(params["checkpoint"]).read_bytes()
    bad = tmp_path / "transformer.safetensors"
    if damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "corrupt":
        bad.write_bytes(b"\x00" * 64 + good[64:])
    elif damage == "other-model":  # the tokenizer's file given as the transformer's
        bad.write_bytes(Path(params["tokenizer_checkpoint"]).read_bytes())
    else:
        bad = tmp_path / "transformer.pth"
        bad.write_bytes(pickle.dumps(_Payload(str(tmp_path / "payload_ran"))))
    code, err = _run_cli(capsys, "unitmem", _params_file(tmp_path, {**params, "checkpoint": str(bad)}), tmp_path / "o")
    assert code == 1, err
    assert err.startswith("error: unitmem: ") and str(bad) in err and "Traceback" not in err
    assert "--traceback" in err
    assert not (tmp_path / "payload_ran").exists()


def test_cli_traceback_flag_raises_the_error_itself(tiny, tmp_path):
    _, params = tiny
    missing = _params_file(tmp_path, {**params, "checkpoint": str(tmp_path / "absent.safetensors")})
    with pytest.raises((ValueError, FileNotFoundError), match="absent.safetensors"):
        main(["unitmem", "--params", str(missing), "--out", str(tmp_path / "o"), "--traceback"])
    bad = tmp_path / "transformer.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="transformer.safetensors"):
        main(["unitmem", "--params", str(_params_file(tmp_path, {**params, "checkpoint": str(bad)})),
              "--out", str(tmp_path / "o"), "--traceback"])


def _images(folder: Path, per_class: dict[str, int], fmt: str = "JPEG") -> None:
    rng = np.random.default_rng(0)
    for name, n in per_class.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / name / f"{i}.jpg", fmt)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_jpeg_is_counted_or_an_error_under_strict(tmp_path):
    _images(tmp_path, {"a": 3, "b": 3})
    _truncate(tmp_path / "b" / "1.jpg")  # PIL's verify() passes this file; decoding it fails
    sample = mdata.ImageFolderSample(tmp_path, fraction=1.0, class_ids="sorted")
    readable = sample.readable()
    assert len(readable) == 5 and [p.name for p, _ in sample.skipped] == ["1.jpg"]
    assert "1 files skipped: 1.jpg (unreadable image (OSError))" in sample.summary()
    assert all(sample[i][0].size == (48, 40) for i in readable)
    with pytest.raises(ValueError, match=r"b/1\.jpg: unreadable image .*strict=True"):
        mdata.ImageFolderSample(tmp_path, fraction=1.0, strict=True, class_ids="sorted").readable()
    # a file damaged after listing names itself when it is read
    _truncate(tmp_path / "a" / "0.jpg")
    with pytest.raises(ValueError, match=r"a/0\.jpg: unreadable image"):
        sample[0]


def test_cli_image_folder_summary_and_strict_flag(tiny, tmp_path, capsys):
    _, params = tiny
    _images(tmp_path / "train", {"n01440764": 3, "n01443537": 3})  # ImageNet wnids 0 and 1
    _truncate(tmp_path / "train" / "n01443537" / "2.jpg")
    (tmp_path / "train" / "n01440764" / "notes.txt").write_text("not an image")
    folder_params = {**params, "dataset": "imagenet", "imagenet_train_dir": str(tmp_path / "train"),
                     "unitmem_fraction": 1.0, "max_images": 0}
    code, err = _run_cli(capsys, "unitmem", _params_file(tmp_path, folder_params), tmp_path / "out")
    assert code == 0, err
    assert "5 images from 2 classes" in err and "2 files skipped" in err and "2.jpg" in err
    assert load_result(tmp_path / "out" / "unitmem").meta["info"]["n_images"] == 5
    strict = _params_file(tmp_path, {**folder_params, "strict_images": True}, "strict.yaml")
    code, err = _run_cli(capsys, "unitmem", strict, tmp_path / "out")
    assert code == 1 and "notes.txt: not an image file (extension) (strict=True)" in err and "Traceback" not in err


class _WrongShape(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3)).repeat(1, 3)  # (B, 9) descriptors instead of (B, 512)


@pytest.mark.parametrize("sscd", ["wrong-shape", "not-torchscript"])
def test_cli_attack_with_a_bad_sscd_file_prints_one_error(tiny, tmp_path, capsys, sscd):
    _, params = tiny
    path = tmp_path / "sscd.pt"
    if sscd == "wrong-shape":
        torch.jit.script(_WrongShape()).save(str(path))
        expected = r"returned \(\d+, 9\); expected descriptors of shape \(\d+, 512\)"
    else:
        torch.save({"w": torch.zeros(2)}, path)
        expected = "cannot load .* as a TorchScript module"
    attack_params = {**params, "similarity": "sscd", "sscd_torchscript": str(path), "max_images": 6}
    code, err = _run_cli(capsys, "attack", _params_file(tmp_path, attack_params), tmp_path / "out")
    assert code == 1 and "Traceback" not in err
    assert re.search(f"error: attack: .*{expected}", err) and str(path) in err


# ---- 3. untrusted files --------------------------------------------------------------------


class _Payload:
    """Unpickling this object creates the file ``marker``: code hidden in a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_result_file_holding_a_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    import hashlib

    marker = tmp_path / "payload_ran"
    save_result(tmp_path / "r", {"x": torch.arange(3)}, {"note": "ok"})
    tensor_path, json_path = result_paths(tmp_path / "r")
    evil = pickle.dumps(_Payload(str(marker)))
    tensor_path.write_bytes(evil)
    record = json.loads(json_path.read_text())

    def forged(tensor_bytes: bytes) -> str:  # a consistent forgery: both checksums recomputed
        changed = {**record, "sha256": hashlib.sha256(tensor_bytes).hexdigest()}
        return json.dumps({**changed, "record_sha256": record_sha256(changed)})

    json_path.write_text(forged(evil))
    with pytest.raises(ResultFileError, match=r"r\.safetensors: not a safetensors file"):
        load_result(tmp_path / "r")
    torch.save({"x": _Payload(str(marker))}, tensor_path)  # torch's zip format
    json_path.write_text(forged(tensor_path.read_bytes()))
    with pytest.raises(ResultFileError):
        load_result(tmp_path / "r")
    assert not marker.exists()


def test_feature_statistics_with_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "stats.npz"
    np.savez(path, mu=np.array([_Payload(str(tmp_path / "payload_ran"))], dtype=object), sigma=np.eye(1),
             n=np.int64(2), extractor=np.str_("x"))
    with pytest.raises(ValueError, match=r"stats\.npz: not a feature statistics file.*allow_pickle=False"):
        FeatureStats.load(path)
    path.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ValueError, match=r"stats\.npz"):
        FeatureStats.load(path)
    assert not (tmp_path / "payload_ran").exists()


def test_every_load_site_in_memlib_is_tensor_only():
    """torch.load only with weights_only=True, np.load never with pickles, no pickle module;
    torch.jit.load (TorchScript runs code) only for the SSCD and the Inception files, and the
    README says so."""
    sources = {p.relative_to(ROOT).as_posix(): p.read_text() for p in (ROOT / "memlib").rglob("*.py")}
    for name, text in sources.items():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{name}: {call}"
        for call in re.findall(r"np\.load\([^)]*\)", text):
            assert "allow_pickle=False" in call, f"{name}: {call}"
        assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M), name
        assert "pickle.load" not in text and "torch.serialization.add_safe_globals" not in text, name
    assert sorted(n for n, t in sources.items() if "torch.jit.load(" in t) == ["memlib/fid.py", "memlib/similarity.py"]
    readme = (ROOT / "README.md").read_text()
    assert "TorchScript files (SSCD, clean-fid's Inception) are trusted code" in readme


# ---- 4. interruption -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(tiny):
    """One uninterrupted in-process run of the unitmem and attack stages."""
    folder, params = tiny
    path = _params_file(folder, params)
    for stage in ("unitmem", "attack"):
        assert main([stage, "--params", str(path), "--out", str(folder / "reference")]) == 0
    return path, folder / "reference"


def _same_result(out_a: Path, out_b: Path, name: str) -> None:
    a, b = load_result(out_a / name), load_result(out_b / name)
    assert a.tensors.keys() == b.tensors.keys()
    for key in a.tensors:
        assert torch.equal(a.tensors[key], b.tensors[key]), f"{name}: {key} differs"


SHARDS = {"unitmem": "unitmem-*/shards", "attack": "attack-*/scores"}


@pytest.mark.slow
@pytest.mark.parametrize("stage, sig", [("unitmem", signal.SIGTERM), ("attack", signal.SIGKILL),
                                        ("attack", signal.SIGTERM)])
def test_interrupted_stage_resumes_and_equals_the_uninterrupted_run(reference, tmp_path, stage, sig):
    # (unitmem with SIGKILL: tests/test_cli.py::test_killed_run_resumes_from_finished_shards)
    path, ref = reference
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MEMLIB_SHARD_PAUSE_S": "30"}
    process = subprocess.Popen([sys.executable, "-m", "memlib", stage, "--params", str(path), "--out", str(tmp_path)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(f"{SHARDS[stage]}/shard-00000.json")) and time.time() < deadline:
            time.sleep(0.05)
        process.send_signal(sig)
    finally:
        code = process.wait(timeout=60)
    assert code == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    first = next(tmp_path.glob(f"{SHARDS[stage]}/shard-00000.json"))
    assert not (tmp_path / f"{stage}.json").exists() and not first.with_name("shard-00001.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    # a partial tensor file without its marker, and a damaged one with a marker, are never read as complete
    first.with_name("shard-00001.safetensors").write_bytes(b"partial")
    save_result(first.with_name("shard-00002"), {"x": torch.zeros(2)}, {})
    first.with_name("shard-00002.safetensors").write_bytes(b"damaged")
    written = first.stat().st_mtime_ns
    assert main([stage, "--params", str(path), "--out", str(tmp_path)]) == 0
    assert first.stat().st_mtime_ns == written  # the finished shard was reused
    _same_result(tmp_path, ref, stage)


# ---- 5. numerics ---------------------------------------------------------------------------


def _broken_head() -> ToyVAR:
    gen = ToyVAR()
    with torch.no_grad():
        gen.transformer.head.bias[1] = float("inf")
    return gen


def test_non_finite_logits_name_the_head_in_scoring_and_collection():
    dataset = toy_dataset(n=6)
    gen = _broken_head()
    tokens = gen.images_to_tokens(dataset.tensors[0])
    with pytest.raises(ValueError, match=r"non-finite teacher-forced logits .* output head 'head' for rows 0\.\.5"):
        score_images(gen, tokens, dataset.tensors[1])
    with pytest.raises(ValueError, match=r"output head 'head' for views 0\.\.3"):
        accumulate_unitmem(gen, dataset, range(4), n_views=1, views=same_views, batch_size=4)
    assert all(not m._forward_hooks for m in gen.transformer.modules())  # hooks removed after the error
    assert gen.transformer.training  # and the mode restored


def test_bf16_autocast_accumulates_in_float32_and_float64():
    torch.manual_seed(0)
    gen, dataset = ToyVAR(), toy_dataset(n=6)
    seen = []
    hook = gen.transformer.blocks[0].ffn.fc1.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    try:
        acc = accumulate_unitmem(gen, dataset, range(6), n_views=1, views=same_views, amp=True)
    finally:
        hook.remove()
    assert set(seen) == {torch.bfloat16}  # the forward really ran in bf16
    assert acc.sum.dtype == torch.float64 and acc.max.dtype == torch.float64
    reduce = group_means_reducer(gen.position_groups())
    assert reduce("blocks.0.ffn.act", torch.randn(2, 16, 6, dtype=torch.bfloat16)).dtype == torch.float32
    views = dataset.tensors[0]
    means_amp = view_means(gen, views, dataset.tensors[1], gen.position_groups(), amp=True)
    means_fp32 = view_means(gen, views, dataset.tensors[1], gen.position_groups(), amp=False)
    assert means_amp.dtype == torch.float32
    torch.testing.assert_close(means_amp, means_fp32, rtol=0.05, atol=0.05)  # bf16 rounding only
    exact = accumulate_unitmem(gen, dataset, range(6), n_views=1, views=same_views, amp=False)
    torch.testing.assert_close(acc.scores(), exact.scores(), rtol=0.05, atol=0.02)


# ---- 6. determinism ------------------------------------------------------------------------


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in ("timing", "seconds", "record_sha256")}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


@pytest.mark.parametrize("stage", ["unitmem", "attack"])
def test_same_parameters_give_identical_result_files(reference, tmp_path, stage):
    path, ref = reference
    assert main([stage, "--params", str(path), "--out", str(tmp_path)]) == 0
    (tensors_a, json_a), (tensors_b, json_b) = result_paths(ref / stage), result_paths(tmp_path / stage)
    assert tensors_a.read_bytes() == tensors_b.read_bytes()
    record_a, record_b = json.loads(json_a.read_text()), json.loads(json_b.read_text())
    assert record_a["meta"]["timing"] != {} and _without_timing(record_a) == _without_timing(record_b)
