import pytest
import torch

from memlib.hooks import capture
from toy_transformer import ToyTransformer


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("mlp_name", ["ffn", "mlp"])
def test_hooks_fire_once_per_forward_and_reduce_inside(mlp_name):
    model = ToyTransformer(mlp_name=mlp_name)
    x = torch.randn(2, 5, 8)
    with capture(model, model.fc1_names, lambda name, out: out.abs().mean(1)) as store:
        model(x)
        model(x)
    for name in model.fc1_names:
        assert len(store[name]) == 2
        assert store[name][0].shape == (2, 16)  # reduced over positions inside the hook
    ref = model.blocks[0].get_submodule(f"{mlp_name}.fc1")(model.blocks[0].norm(x)).abs().mean(1)
    torch.testing.assert_close(store[model.fc1_names[0]][0], ref)
    assert _hook_count(model) == 0


def test_hooks_removed_after_exception():
    model = ToyTransformer()
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, model.fc1_names, lambda name, out: out):
            assert _hook_count(model) == 3
            raise RuntimeError("boom")
    assert _hook_count(model) == 0


def test_bad_name_registers_nothing():
    model = ToyTransformer()
    with pytest.raises(KeyError, match="blocks.9.ffn.fc1"):
        with capture(model, ["blocks.0.ffn.fc1", "blocks.9.ffn.fc1"], lambda name, out: out):
            pass
    assert _hook_count(model) == 0


def test_exception_inside_reduce_still_removes_hooks():
    model = ToyTransformer()

    def bad_reduce(name, out):
        raise ValueError("reduce failed")

    with pytest.raises(ValueError, match="reduce failed"):
        with capture(model, model.fc1_names, bad_reduce):
            model(torch.randn(1, 2, 8))
    assert _hook_count(model) == 0
