"""The Transformer encoder-decoder: equal to torch.nn's layers, causal, padded, decoding."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import attnzoo
from attnzoo.models.decoding import length_penalty
from attnzoo.sequence.interop import inverted_key_padding_mask, load_from_torch

SRC_V, TGT_V, DIM, HEADS, FFN = 23, 29, 32, 4, 64


def tiny(**kwargs):
    options = {
        "src_vocab": SRC_V,
        "tgt_vocab": TGT_V,
        "dim": DIM,
        "num_heads": HEADS,
        "num_encoder_layers": 2,
        "num_decoder_layers": 2,
        "ffn_dim": FFN,
        "dropout": 0.0,
        "max_len": 64,
        **kwargs,
    }
    return attnzoo.create_model("transformer", **options)


def tokens(batch, length, vocab, seed=0, low=3):
    return torch.randint(low, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def torch_stacks(model, norm_first):
    """torch.nn encoder/decoder stacks carrying the weights of ``model``."""
    enc_layer = nn.TransformerEncoderLayer(
        DIM, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    dec_layer = nn.TransformerDecoderLayer(
        DIM, HEADS, FFN, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    enc_norm = nn.LayerNorm(DIM) if norm_first else None
    dec_norm = nn.LayerNorm(DIM) if norm_first else None
    encoder = nn.TransformerEncoder(enc_layer, 2, norm=enc_norm, enable_nested_tensor=False)
    decoder = nn.TransformerDecoder(dec_layer, 2, norm=dec_norm)
    encoder, decoder = encoder.double().eval(), decoder.double().eval()
    for ours, theirs in zip(model.encoder, encoder.layers, strict=True):
        load_from_torch(ours.attn, theirs.self_attn)
        theirs.linear1.load_state_dict(ours.mlp.fc1.state_dict())
        theirs.linear2.load_state_dict(ours.mlp.fc2.state_dict())
        theirs.norm1.load_state_dict(ours.norm1.state_dict())
        theirs.norm2.load_state_dict(ours.norm2.state_dict())
    for ours, theirs in zip(model.decoder, decoder.layers, strict=True):
        load_from_torch(ours.self_attn, theirs.self_attn)
        load_from_torch(ours.cross_attn, theirs.multihead_attn)
        theirs.linear1.load_state_dict(ours.mlp.fc1.state_dict())
        theirs.linear2.load_state_dict(ours.mlp.fc2.state_dict())
        for i in (1, 2, 3):
            getattr(theirs, f"norm{i}").load_state_dict(getattr(ours, f"norm{i}").state_dict())
    if norm_first:
        encoder.norm.load_state_dict(model.encoder_norm.state_dict())
        decoder.norm.load_state_dict(model.decoder_norm.state_dict())
    return encoder, decoder


@pytest.mark.parametrize("norm_first", [False, True])
def test_equals_torch_transformer_layers(norm_first):
    model = tiny(norm_first=norm_first).double().eval()
    for layer in model.decoder:  # larger weights than the default init: a sharper comparison
        for p in layer.parameters():
            nn.init.normal_(p, std=0.2) if p.dim() > 1 else nn.init.normal_(p, std=0.1)
    encoder, decoder = torch_stacks(model, norm_first)
    src, tgt = tokens(3, 9, SRC_V), tokens(3, 7, TGT_V, seed=1)
    src[1, 6:] = 0  # padding (pad_id = 0)
    tgt[2, 5:] = 0
    src_real, tgt_real = src != 0, tgt != 0
    logits = model(src, tgt)

    scale = math.sqrt(DIM)
    src_x = model.src_pos(model.src_embed(src) * scale)
    tgt_x = model.tgt_pos(model.tgt_embed(tgt) * scale)
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)  # torch polarity: True = masked
    memory = encoder(src_x, src_key_padding_mask=inverted_key_padding_mask(src_real))
    out = decoder(
        tgt_x,
        memory,
        tgt_mask=causal,
        tgt_key_padding_mask=inverted_key_padding_mask(tgt_real),
        memory_key_padding_mask=inverted_key_padding_mask(src_real),
    )
    expected = out @ model.tgt_embed.weight.T  # tied output projection
    # rows of padded target positions attend to real keys only in both; compare real rows
    assert_close(logits[tgt_real], expected[tgt_real])


def test_decoder_is_causal_and_source_padding_is_ignored():
    model = tiny().double().eval()
    src, tgt = tokens(2, 8, SRC_V), tokens(2, 6, TGT_V, seed=2)
    logits = model(src, tgt)
    changed = tgt.clone()
    changed[:, 3:] = tokens(2, 3, TGT_V, seed=3)
    assert_close(model(src, changed)[:, :3], logits[:, :3])
    padded = torch.cat([src, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    assert_close(model(padded, tgt), logits)
    # explicit masks: garbage under a False entry of src_mask changes nothing
    real = torch.ones_like(padded, dtype=torch.bool)
    real[:, 8:] = False
    garbage = padded.clone()
    garbage[:, 8:] = tokens(2, 4, SRC_V, seed=4)
    assert_close(model(garbage, tgt, src_mask=real), logits)


def test_parameter_counts_follow_table_3_and_match_torch():
    base = attnzoo.create_model(
        "transformer_base", src_vocab=37000, tgt_vocab=37000, share_embeddings=True
    )
    d, ff, vocab = 512, 2048, 37000
    attn = 4 * d * d + 4 * d
    ffn = 2 * d * ff + ff + d
    expected = 6 * (attn + ffn + 2 * 2 * d) + 6 * (2 * attn + ffn + 3 * 2 * d) + vocab * d
    assert sum(p.numel() for p in base.parameters()) == expected == 63_082_496  # paper: 65M
    torch_core = nn.Transformer(d, 8, 6, 6, ff, batch_first=True)
    core = sum(p.numel() for p in torch_core.parameters()) - 2 * 2 * d  # torch adds final norms
    assert expected == core + vocab * d
    big = attnzoo.create_model("transformer_big", src_vocab=37000, tgt_vocab=37000)
    assert big.dim == 1024 and big.decoder[0].self_attn.num_heads == 16
    assert big.encoder[0].mlp.fc1.out_features == 4096 and big.src_pos.dropout.p == 0.3


def greedy_reference(model, src, max_len):
    """Greedy decoding written out: full recomputation, argmax, no caches."""
    out = torch.full((src.shape[0], 1), model.bos_id)
    for _ in range(max_len):
        nxt = model(src, out)[:, -1].argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], dim=1)
    return out[:, 1:]


@pytest.mark.parametrize("attention", ["mha", "linear", "performer", "local"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_cached_and_uncached_decoding_give_the_same_tokens(attention, beam_size):
    model = tiny(attention=attention, eos_id=None).eval()
    src = tokens(3, 7, SRC_V)
    cached = model.generate(src, max_len=10, beam_size=beam_size)
    uncached = model.generate(src, max_len=10, beam_size=beam_size, use_cache=False)
    assert torch.equal(cached, uncached) and cached.shape == (3, 10)
    if beam_size == 1:
        assert torch.equal(cached, greedy_reference(model, src, 10))


def sequence_logprob(model, src, out):
    tgt = torch.cat([torch.full((src.shape[0], 1), model.bos_id), out], dim=1)
    logp = model(src, tgt[:, :-1]).log_softmax(-1)
    return logp.gather(-1, out[..., None]).squeeze(-1).sum(-1)


def test_beam_search_finds_more_likely_sequences_than_greedy():
    torch.manual_seed(3)
    model = tiny(eos_id=None).eval()
    src = tokens(6, 7, SRC_V, seed=5)
    greedy = model.generate(src, max_len=6)
    beam = model.generate(src, max_len=6, beam_size=5, alpha=0.0)
    with torch.no_grad():
        assert (
            sequence_logprob(model, src, beam) >= sequence_logprob(model, src, greedy) - 1e-5
        ).all()
    assert torch.equal(model.generate(src, max_len=6, beam_size=1), greedy)


class ScriptedSession:
    """Decoding session whose log-probabilities follow a script: row r emits script[r][t]."""

    def __init__(self, script, vocab=6):
        self.script, self.vocab, self.rows = torch.tensor(script), vocab, None

    def step(self, tokens):
        step = tokens.shape[1] - 1
        rows = torch.arange(tokens.shape[0]) if self.rows is None else self.rows
        wanted = self.script[rows % len(self.script), min(step, self.script.shape[1] - 1)]
        logprobs = torch.full((tokens.shape[0], self.vocab), -5.0)
        logprobs[torch.arange(tokens.shape[0]), wanted] = -0.1
        return logprobs

    def reorder(self, index):
        self.rows = index


def test_greedy_search_stops_at_eos_and_pads_after_it():
    from attnzoo.models.decoding import greedy_search

    session = ScriptedSession([[3, 2, 4, 4, 4], [3, 4, 4, 2, 4]])
    out = greedy_search(session, torch.ones(2, 1, dtype=torch.long), max_len=8, eos_id=2, pad_id=0)
    assert out.tolist() == [[3, 2, 0, 0], [3, 4, 4, 2]]  # stops once every row ended


def test_beam_search_keeps_finished_hypotheses():
    from attnzoo.models.decoding import beam_search

    session = ScriptedSession([[3, 2, 4, 4, 4]])
    out = beam_search(
        session, torch.ones(1, 1, dtype=torch.long), beam_size=2, max_len=6, eos_id=2, pad_id=0
    )
    assert out[0, :2].tolist() == [3, 2] and (out[0, 2:] == 0).all()


def test_generate_restores_training_mode():
    model = tiny().train()
    model.generate(tokens(1, 4, SRC_V), max_len=3)
    assert model.training


def test_length_penalty_is_gnmt():
    assert_close(length_penalty(torch.tensor([7.0]), 0.6), torch.tensor([(12 / 6) ** 0.6]))


@pytest.mark.parametrize(
    "attention", attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
)
def test_every_mechanism_builds_or_refuses_at_construction(attention):
    cls = attnzoo.info(attention).obj
    options = {"bucket_size": 8} if attention in ("reformer", "sinkhorn") else {}
    if not cls.supports_causal:
        with pytest.raises(ValueError, match="supports_causal"):
            tiny(attention=attention, attention_kwargs=options)
        return
    model = tiny(attention=attention, attention_kwargs=options, max_len=16).eval()
    src, tgt = tokens(2, 11, SRC_V), tokens(2, 9, TGT_V)
    src[0, 8:] = 0
    logits = model(src, tgt)
    assert logits.shape == (2, 9, TGT_V) and torch.isfinite(logits).all()
    model.train()
    model(src, tgt).sum().backward()


def test_bad_input_is_a_clear_error():
    model = tiny()
    src, tgt = tokens(2, 5, SRC_V), tokens(2, 4, TGT_V)
    with pytest.raises(ValueError, match="src holds token id 23"):
        model(torch.full((2, 5), SRC_V), tgt)
    with pytest.raises(ValueError, match="tgt holds token id -1"):
        model(src, torch.full((2, 4), -1))
    with pytest.raises(TypeError, match="integer token ids"):
        model(src.float(), tgt)
    with pytest.raises(ValueError, match="src_mask must have the shape of src"):
        model(src, tgt, src_mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(TypeError, match="src_mask must be a bool"):
        model(src, tgt, src_mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match="max_len must be an int >= 1"):
        model.generate(src, max_len=0)
    with pytest.raises(ValueError, match="beam_size must be an int >= 1"):
        model.generate(src, max_len=3, beam_size=0)
    with pytest.raises(ValueError, match=r"unknown name 'mhaa'.*'mha'"):
        tiny(attention="mhaa")
    with pytest.raises(ValueError, match="sequence or efficient mechanism"):
        tiny(attention="se")
    with pytest.raises(ValueError, match="supports_cross"):
        tiny(cross_attention="reformer")
    with pytest.raises(ValueError, match="share_embeddings"):
        tiny(share_embeddings=True)
    with pytest.raises(TypeError, match="attention_kwargs do not fit 'local'"):
        tiny(attention="local", attention_kwargs={"windw": 3})
    with pytest.raises(ValueError, match="use_cache=True"):
        tiny(attention="reformer", attention_kwargs={"bucket_size": 8}).generate(
            src, max_len=2, use_cache=True
        )


def test_loading_another_configuration_names_the_first_mismatching_key():
    model = tiny()
    other = tiny(ffn_dim=FFN * 2)
    with pytest.raises(ValueError, match=r"'encoder\.0\.mlp\.fc1\.weight' has shape \(128, 32\)"):
        model.load_state_dict(other.state_dict())
    state = model.state_dict()
    state.pop("decoder.1.norm3.bias")
    with pytest.raises(ValueError, match=r"missing key 'decoder\.1\.norm3\.bias'"):
        model.load_state_dict(state)
    state = {**model.state_dict(), "extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected key 'extra\.weight'"):
        model.load_state_dict(state)
    model.load_state_dict(tiny().state_dict())  # same configuration loads
