"""Packed variable-length sequences: each equals the sequence run alone; offsets are checked."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attnzoo
from attnzoo.functional import attention
from attnzoo.functional.varlen import varlen_attention

F64 = torch.float64


def lengths_and_offsets(seed=0, n=8):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, 12, (n,), generator=gen)
    lengths[3] = 0  # an empty sequence in the middle
    return lengths.tolist(), torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])


@pytest.mark.parametrize("causal", [False, True])
def test_packing_eight_sequences_equals_running_each_alone(causal):
    torch.manual_seed(0)
    mha = attnzoo.create("mha", 16, num_heads=4, num_kv_heads=2).double().eval()
    lengths, offsets = lengths_and_offsets()
    sequences = [torch.randn(1, n, 16, dtype=F64) for n in lengths]
    packed = torch.cat(sequences, dim=1)  # (1, T, C)
    out = mha(packed, cu_seqlens=offsets, is_causal=causal)
    for seq, a, b in zip(sequences, offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        if b > a:
            assert_close(out[:, a:b], mha(seq, is_causal=causal))
    assert_close(mha(packed[0], cu_seqlens=offsets, is_causal=causal), out[0])  # unbatched


def test_varlen_attention_with_separate_key_offsets():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(5, 4, 8, generator=gen, dtype=F64)
    k = torch.randn(9, 2, 8, generator=gen, dtype=F64)
    v = torch.randn(9, 2, 6, generator=gen, dtype=F64)
    cu_q, cu_k = torch.tensor([0, 2, 5]), torch.tensor([0, 4, 9])
    out = varlen_attention(q, k, v, cu_q, cu_k, is_causal=True)
    for (a, b), (c, d) in (((0, 2), (0, 4)), ((2, 5), (4, 9))):
        heads = [t.transpose(0, 1)[None] for t in (q[a:b], k[c:d], v[c:d])]
        assert_close(out[a:b], attention(*heads, is_causal=True)[0].transpose(0, 1))


def test_packed_attention_never_builds_the_whole_matrix():
    lengths = [64] * 8
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    q = torch.randn(512, 2, 8)
    seen = []

    class Watch(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                seen.append(out.numel())
            return out

    with Watch():
        varlen_attention(q, q, q, offsets)
    assert max(seen) < 512 * 512  # per sequence, never (sum L)^2


def test_bad_offsets_and_combinations_raise():
    q = torch.randn(7, 2, 4)
    with pytest.raises(ValueError, match=r"must start at 0 and end at the number of packed tokens"):
        varlen_attention(q, q, q, torch.tensor([0, 3, 6]))
    with pytest.raises(ValueError, match="non-decreasing"):
        varlen_attention(q, q, q, torch.tensor([0, 5, 3, 7]))
    with pytest.raises(TypeError, match="integers"):
        varlen_attention(q, q, q, torch.tensor([0.0, 7.0]))
    mha = attnzoo.create("mha", 8, num_heads=2)
    with pytest.raises(ValueError, match="one row"):
        mha(torch.randn(2, 7, 8), cu_seqlens=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="self-attention without mask"):
        mha(torch.randn(1, 7, 8), cu_seqlens=torch.tensor([0, 7]), need_weights=True)


def test_packed_kv_cache_decodes_each_sequence_as_if_alone():
    torch.manual_seed(0)
    attn = attnzoo.create("mha", 32, num_heads=4, num_kv_heads=2).double().eval()
    lengths = [5, 1, 9, 3, 7, 2, 6, 4]  # prompts
    new_tokens = 4
    whole = [torch.randn(n + new_tokens, 32, dtype=torch.float64) for n in lengths]
    cache = attnzoo.PackedKVCache()
    prompts = torch.cat([seq[:n] for seq, n in zip(whole, lengths, strict=True)])[None]
    cu = torch.tensor([0, *lengths]).cumsum(0)
    outputs = [attn(prompts, cu_seqlens=cu, cache=cache, is_causal=True)[0]]
    step = torch.arange(len(lengths) + 1)  # one token per sequence
    for t in range(new_tokens):
        tokens = torch.stack([seq[n + t] for seq, n in zip(whole, lengths, strict=True)])[None]
        outputs.append(attn(tokens, cu_seqlens=step, cache=cache, is_causal=True)[0])
    assert cache.lengths() == [n + new_tokens for n in lengths]
    starts = cu.tolist()
    for i, (seq, n) in enumerate(zip(whole, lengths, strict=True)):
        alone = attn(seq[None], is_causal=True)[0]  # (L_i + new, C)
        assert_close(outputs[0][starts[i] : starts[i + 1]], alone[:n])
        for t in range(new_tokens):
            assert_close(outputs[1 + t][i], alone[n + t])


def test_packed_kv_cache_refuses_another_batch_and_the_plain_cache():
    attn = attnzoo.create("mha", 16, num_heads=2)
    cache = attnzoo.PackedKVCache()
    attn(torch.randn(1, 5, 16), cu_seqlens=torch.tensor([0, 2, 5]), cache=cache)
    with pytest.raises(ValueError, match="decodes 2 packed sequences"):
        attn(torch.randn(1, 3, 16), cu_seqlens=torch.tensor([0, 1, 2, 3]), cache=cache)
    with pytest.raises(TypeError, match=r"must be an attnzoo\.PackedKVCache"):
        attn(torch.randn(1, 3, 16), cu_seqlens=torch.tensor([0, 3]), cache=attnzoo.KVCache())
