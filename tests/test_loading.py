"""Reading checkpoint files: strict loading, clear errors, and refusal of code-carrying pickles."""

import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from memlib.models.loading import CheckpointError, load_strict, read_state_dict


class Small(nn.Module):
    def __init__(self, hidden=4):
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))


@pytest.fixture
def state():
    torch.manual_seed(0)
    return Small().state_dict()


def test_safetensors_and_pth_roundtrip(tmp_path, state):
    save_file(state, tmp_path / "m.safetensors")
    torch.save(state, tmp_path / "m.pth")
    for name in ("m.safetensors", "m.pth"):
        model = Small()
        load_strict(model, read_state_dict(tmp_path / name), source=name, config="small")
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key])


def test_meta_build_is_assigned(tmp_path, state):
    with torch.device("meta"):
        model = Small()
    load_strict(model, state, source="memory", config="small")
    assert not model.fc1.weight.is_meta and torch.equal(model.fc1.weight, state["fc1.weight"])


def test_mismatch_names_missing_unexpected_and_wrong_shape(state):
    bad = dict(state)
    del bad["fc2.bias"]  # missing
    bad["fc3.weight"] = torch.zeros(1)  # unexpected
    bad["fc1.weight"] = torch.zeros(5, 3)  # wrong shape
    model = Small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_strict(model, bad, source="bad.pth", config="Small(hidden=4)")
    message = str(err.value)
    for needle in ("bad.pth", "Small(hidden=4)", "fc2.bias", "fc3.weight", "fc1.weight (5, 3) vs model (4, 3)"):
        assert needle in message
    for key, value in model.state_dict().items():  # nothing was half-loaded
        assert torch.equal(value, before[key])


def test_checkpoint_of_another_model_is_named(tmp_path):
    torch.save(Small(hidden=8).state_dict(), tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="wrong-shaped keys: 3"):
        load_strict(Small(), read_state_dict(tmp_path / "other.pth"), source="other.pth", config="small")


def test_missing_truncated_and_corrupt_files(tmp_path, state):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pth")
    torch.save(state, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    save_file(state, tmp_path / "full.safetensors")
    st = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(st[: len(st) - 10])
    (tmp_path / "corrupt.bin").write_bytes(b"\x00not a checkpoint at all" * 10)
    for name in ("truncated.pth", "truncated.safetensors", "corrupt.bin"):
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            read_state_dict(tmp_path / name)


def test_not_a_flat_tensor_mapping(tmp_path):
    torch.save({"epoch": 3, "w": torch.zeros(2)}, tmp_path / "mixed.pth")
    with pytest.raises(CheckpointError, match="flat mapping"):
        read_state_dict(tmp_path / "mixed.pth")


class _Payload:
    """Unpickling this object calls ``open(marker, 'w')``: code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


UNSAFE_ADVICE = ("weights_only", "safe_globals", "trust")  # torch's text: load with weights_only=False / allowlist


def test_crafted_pickle_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    for name in ("evil.pth", "evil.bin"):
        path = tmp_path / name
        torch.save({"fc1.weight": torch.zeros(1), "trap": _Payload(str(marker))}, path)
        with pytest.raises(CheckpointError) as err:
            read_state_dict(path)
        assert str(err.value).startswith(f"cannot read checkpoint {path}: it holds a pickled Python object (")
        assert "memlib never unpickles" in str(err.value)
        # a raw pickle file (not torch's zip format) is refused too
        path.write_bytes(pickle.dumps(_Payload(str(marker))))
        with pytest.raises(CheckpointError) as raw_err:
            read_state_dict(path)
        for message in (str(err.value), str(raw_err.value)):
            assert "\n" not in message and not any(word in message for word in UNSAFE_ADVICE), message
        assert err.value.__cause__ is None and raw_err.value.__cause__ is None  # not even in a --traceback
    assert not marker.exists()


def test_a_folder_is_not_reported_as_missing(tmp_path):
    (tmp_path / "var_d16.pth").mkdir()
    with pytest.raises(CheckpointError, match=r"var_d16\.pth is a folder; expected a \.safetensors, \.pth"):
        read_state_dict(tmp_path / "var_d16.pth")


@pytest.mark.parametrize("key, dtype", [("fc1.weight", torch.int64), ("fc2.bias", torch.int32),
                                        ("steps", torch.float32), ("steps", torch.bool)])
def test_tensors_of_another_kind_are_refused_naming_file_and_key(tmp_path, state, key, dtype):
    """Right names and shapes, but integers for a float parameter (or the reverse): refused, the
    model untouched; before, they were cast and a stage ran on a model of zeros."""
    bad = dict(state)
    bad[key] = state[key].round().to(dtype)
    path = tmp_path / "cast.safetensors"
    save_file(bad, path)
    model = Small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_strict(model, read_state_dict(path), source=str(path), config="small")
    assert str(err.value).startswith(f"checkpoint {path} holds tensors of another kind than the model")
    assert f"{key} {dtype} vs model {state[key].dtype}" in str(err.value)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])


def test_tensors_of_the_same_kind_are_cast(tmp_path, state):
    narrower = {k: v.half() if v.is_floating_point() else v.int() for k, v in state.items()}
    model = Small()
    load_strict(model, narrower, source="narrow", config="small")
    assert model.fc1.weight.dtype == torch.float32 and model.steps.dtype == torch.int64
    assert torch.equal(model.fc1.weight, narrower["fc1.weight"].float())
