"""attnzoo's dropout: bit-identical to PyTorch's, keeping a one-byte mask for backward."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
from attnzoo.functional import dropout
from attnzoo.layers import Dropout

SRC = Path(__file__).resolve().parents[2] / "src" / "attnzoo"
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while ``fn()`` runs (distinct storages)."""
    storages = {}

    def pack(tensor):
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def both(x, p, seed=3):
    """Output and input gradient of ``F.dropout`` and of attnzoo's, under one random state."""
    grad = torch.randn(x.shape, dtype=x.dtype)
    results = []
    for fn in (F.dropout, dropout):
        leaf = x.detach().clone().requires_grad_()
        torch.manual_seed(seed)
        out = fn(leaf, p)
        out.backward(grad)
        results.append((out.detach(), leaf.grad))
    return results


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.99])
def test_bit_identical_to_torch_dropout(dtype, p):
    (out_ref, grad_ref), (out, grad) = both(torch.randn(7, 33, 5, dtype=dtype), p)
    assert torch.equal(out, out_ref)
    assert torch.equal(grad, grad_ref)
    assert 0 < int((out == 0).sum()) < out.numel()  # something was dropped, something kept


def test_bit_identical_on_a_transposed_input_and_with_non_finite_values():
    x = torch.randn(16, 8, 12).transpose(0, 2)  # not contiguous: noise follows the layout
    x[0, 0, :4] = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0])
    (out_ref, grad_ref), (out, grad) = both(x, 0.3)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=0, equal_nan=True)


def test_keeps_one_byte_per_element_where_torch_keeps_four():
    x = torch.randn(64, 256, requires_grad=True)
    assert saved_bytes(lambda: F.dropout(x, 0.1)) == 4 * x.numel()
    assert saved_bytes(lambda: dropout(x, 0.1)) == x.numel()


def test_where_it_saves_nothing_it_is_torch_dropout():
    x = torch.randn(4, 6)
    assert dropout(x, 0.4, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    torch.manual_seed(1)
    expected = F.dropout(x, 0.4)
    torch.manual_seed(1)
    assert torch.equal(dropout(x, 0.4), expected)  # no gradient: nothing to keep
    y = x.clone()
    torch.manual_seed(1)
    assert dropout(y, 0.4, inplace=True) is y and torch.equal(y, expected)


def test_gradients_are_exact_to_second_order():
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)

    def seeded(t):
        torch.manual_seed(0)  # the same mask at every evaluation of gradcheck
        return dropout(t, 0.3) * t

    assert torch.autograd.gradcheck(seeded, (x,))
    assert torch.autograd.gradgradcheck(seeded, (x,))


def test_module_is_a_drop_in_replacement():
    module = Dropout(0.25)
    assert isinstance(module, nn.Dropout)
    assert repr(module) == repr(nn.Dropout(0.25))
    assert module.state_dict() == {}
    x = torch.randn(3, 10, requires_grad=True)
    torch.manual_seed(2)
    expected = nn.Dropout(0.25)(x)
    torch.manual_seed(2)
    assert torch.equal(module(x), expected)
    assert module.eval()(x) is x
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="p"):
            Dropout(bad)


def test_a_transformer_layer_keeps_a_quarter_of_torchs_dropout_memory():
    layer = attnzoo.create_model(
        "encoder_classifier", vocab_size=20, num_classes=2, max_len=64, dim=32, num_heads=2,
        num_layers=1, ffn_dim=128, dropout=0.1,
    ).train()  # fmt: skip
    tokens = torch.randint(1, 20, (2, 64))
    lean = saved_bytes(lambda: layer(tokens))
    originals = {}
    for name, module in layer.named_modules():
        if isinstance(module, Dropout):  # swap back to torch's own module
            originals[name] = module
    for name, module in originals.items():
        parent_name, _, child = name.rpartition(".")
        parent = layer.get_submodule(parent_name) if parent_name else layer
        setattr(parent, child, nn.Dropout(module.p))
    torch_bytes = saved_bytes(lambda: layer(tokens))
    assert len(originals) >= 4  # embeddings, residual, both MLP dropouts
    # every element under dropout now keeps 1 byte instead of 4: positions, attention
    # residual and fc2 outputs (B, L, 32) and the MLP hidden (B, L, 128)
    assert torch_bytes - lean == 3 * 2 * 64 * (32 + 32 + 128 + 32)


def test_the_library_uses_this_dropout_everywhere():
    """No module keeps a four-byte noise tensor: ``nn.Dropout`` / ``F.dropout`` are not used."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "dropout.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bnn\.Dropout\(|\bF\.dropout\(", line.split("#", 1)[0]):
                offenders.append(f"{path.relative_to(SRC)}:{number}")
    assert not offenders, offenders
