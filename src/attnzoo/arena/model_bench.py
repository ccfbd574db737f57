"""Whole-model benchmarks: ViT forward against timm, and decoding with and without the KV cache.

``attnzoo bench vit`` times attnzoo's ``vit_base_patch16_224`` and timm's ViT of the same
configuration, carrying the same weights, in one process, alternating the two at every repeat
so that both see the same machine state; it also checks that their outputs agree.
``attnzoo bench decode`` times greedy decoding of a Transformer with the per-layer KV cache and
with full recomputation at every step, and checks that both produce the same tokens.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

import attnzoo

__all__ = ["DecodeConfig", "ViTConfig", "run_decode", "run_vit"]


@dataclass
class ViTConfig:
    """What ``bench vit`` measures."""

    model: str = "vit_base_patch16_224"
    batch: int = 8
    img_size: int = 224
    threads: int = 2
    repeats: int = 5
    warmup: int = 2


def _median_interleaved(calls: dict[str, Any], repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def run_vit(config: ViTConfig) -> dict[str, Any]:
    """Forward time of attnzoo's ViT and timm's (same weights), interleaved in one process."""
    from attnzoo.arena._timm import import_timm
    from attnzoo.models.vit_weights import to_timm_state_dict

    torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    ours = attnzoo.create_model(config.model, img_size=config.img_size).eval()
    vt = import_timm("timm.models.vision_transformer")
    theirs = vt.VisionTransformer(
        img_size=config.img_size,
        patch_size=ours.patch_embed.patch_size,
        embed_dim=ours.embed_dim,
        depth=len(ours.blocks),
        num_heads=ours.blocks[0].attn.num_heads,
    ).eval()
    theirs.load_state_dict(to_timm_state_dict(ours.state_dict()))
    images = torch.randn(config.batch, 3, config.img_size, config.img_size)
    with torch.no_grad():
        difference = (ours(images) - theirs(images)).abs().max().item()

        def run(model):
            return lambda: model(images)

        medians = _median_interleaved(
            {"attnzoo": run(ours), "timm": run(theirs)}, config.repeats, config.warmup
        )
    return {
        "config": asdict(config),
        "seconds": medians,
        "images_per_second": {k: config.batch / v for k, v in medians.items()},
        "timm_over_attnzoo": medians["timm"] / medians["attnzoo"],
        "max_abs_difference": difference,
        "torch": torch.__version__,
    }


@dataclass
class DecodeConfig:
    """What ``bench decode`` measures."""

    tokens: int = 256
    batch: int = 1
    src_len: int = 32
    dim: int = 512
    heads: int = 8
    layers: int = 6
    ffn: int = 2048
    vocab: int = 1000
    attention: str = "mha"
    threads: int = 2
    repeats: int = 3


def run_decode(config: DecodeConfig) -> dict[str, Any]:
    """Greedy decoding tokens/s with the KV cache and with recomputation (same tokens)."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    model = attnzoo.create_model(
        "transformer",
        src_vocab=config.vocab,
        tgt_vocab=config.vocab,
        dim=config.dim,
        num_heads=config.heads,
        num_encoder_layers=config.layers,
        num_decoder_layers=config.layers,
        ffn_dim=config.ffn,
        max_len=config.tokens + config.src_len + 1,
        eos_id=None,  # always generate the full length
        attention=config.attention,
    ).eval()
    src = torch.randint(3, config.vocab, (config.batch, config.src_len))
    outputs: dict[str, torch.Tensor] = {}

    def run(cached: bool):
        def call():
            outputs[str(cached)] = model.generate(src, max_len=config.tokens, use_cache=cached)

        return call

    medians = _median_interleaved(
        {"cached": run(True), "uncached": run(False)}, config.repeats, warmup=1
    )
    generated = config.batch * config.tokens
    return {
        "config": asdict(config),
        "seconds": medians,
        "tokens_per_second": {k: generated / v for k, v in medians.items()},
        "speedup": medians["uncached"] / medians["cached"],
        "same_tokens": bool(torch.equal(outputs["True"], outputs["False"])),
        "torch": torch.__version__,
    }
