"""Quickstart: build mechanisms by name, read their papers, look at the weights."""

import torch

import attnzoo

print(attnzoo.list_names(family="sequence"))
print(attnzoo.info("rope").paper.url)

mha = attnzoo.create("mha", 64, num_heads=4)
x, context = torch.randn(2, 10, 64), torch.randn(2, 7, 64)
real_tokens = torch.ones(2, 7, dtype=torch.bool)
real_tokens[1, 5:] = False  # the second context has two padding tokens
out, weights = mha(x, context, mask=real_tokens, need_weights=True)
print(out.shape, weights.shape)  # (2, 10, 64) and (2, 4, 10, 7)
assert torch.equal(weights[1, :, :, 5:], torch.zeros(4, 10, 2))

with attnzoo.viz.record_attention(mha) as maps:
    mha(x, is_causal=True)
print({name: tuple(w.shape) for name, w in maps.items()})

print(attnzoo.masks.to_string(attnzoo.masks.longformer(2, global_indices=[0]), 12))
