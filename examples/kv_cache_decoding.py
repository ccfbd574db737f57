"""Incremental decoding with a KV cache equals one causal call on the whole sequence."""

import torch

import attnzoo

torch.manual_seed(0)
mha = attnzoo.create("mha", 32, num_heads=4, num_kv_heads=2).eval()  # grouped-query attention
x = torch.randn(1, 12, 32)

with torch.no_grad():
    full = mha(x, is_causal=True)
    cache = attnzoo.KVCache(max_len=12)
    steps = [mha(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(12)]

decoded = torch.cat(steps, dim=1)
torch.testing.assert_close(decoded, full)
print(
    f"token-by-token decoding matches one causal call (max diff {(decoded - full).abs().max():.2e})"
)
