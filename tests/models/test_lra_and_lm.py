"""The LRA encoder classifier (single and two-tower) and the decoder-only language model."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import attnzoo

MIXERS = attnzoo.list_names(family="sequence") + attnzoo.list_names(family="efficient")
SMALL_OPTIONS = {
    "bigbird": {"block_size": 4},
    "reformer": {"bucket_size": 4},
    "sinkhorn": {"bucket_size": 4},
    "local": {"window": 4},
    "longformer": {"window": 4},
    "strided": {"stride": 4},
    "sparse_transformer": {"block": 4, "num_summary": 2},
    "nystrom": {"num_landmarks": 4},
    "linformer": {"k": 8},
}


def ids(batch, length, vocab=20, seed=0, low=1):
    return torch.randint(low, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def classifier(**kwargs):
    options = {"vocab_size": 20, "num_classes": 10, "max_len": 32, "dropout": 0.0, **kwargs}
    return attnzoo.create_model("encoder_classifier", **options).double().eval()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_changes_nothing(pooling):
    model = classifier(pooling=pooling)
    tokens = ids(3, 12)
    out = model(tokens)
    padded = torch.cat([tokens, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    assert_close(model(padded), out)
    real = torch.ones_like(padded, dtype=torch.bool)
    real[:, 12:] = False
    garbage = padded.clone()
    garbage[:, 12:] = ids(3, 5, seed=1)
    assert_close(model(garbage, mask=real), out)


def test_mean_pooling_is_the_mean_of_real_tokens():
    model = classifier()
    tokens = ids(2, 9)
    tokens[1, 6:] = 0
    features = []
    handle = model.norm.register_forward_hook(lambda m, i, o: features.append(o))
    pooled = model.encode(tokens)
    handle.remove()
    real = (tokens != 0).double()[..., None]
    assert_close(pooled, (features[0] * real).sum(1) / real.sum(1))


def test_a_row_without_real_tokens_is_finite():
    model = classifier()
    tokens = ids(2, 6)
    tokens[0] = 0
    out = model(tokens)
    assert torch.isfinite(out).all()
    assert_close(model.encode(tokens)[0], torch.zeros(model.dim, dtype=torch.float64))


def test_two_towers_share_weights_and_see_the_four_features():
    model = classifier(dual=True, num_classes=2)
    a, b = ids(2, 10), ids(2, 7, seed=3)
    x1, x2 = model.encode(a), model.encode(b)
    expected = model.head(torch.cat([x1, x2, x1 * x2, x1 - x2], dim=-1))
    assert_close(model(a, b), expected)
    assert model.head[0].in_features == 4 * model.dim


@pytest.mark.parametrize("attention", MIXERS)
def test_every_mechanism_trains_in_the_classifier(attention):
    model = classifier(attention=attention, attention_kwargs=SMALL_OPTIONS.get(attention)).float()
    tokens = ids(2, 32)
    tokens[1, 20:] = 0
    model.train()
    loss = torch.nn.functional.cross_entropy(model(tokens), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    if attnzoo.info(attention).obj.fixed_length:
        assert model.layers[0].attn.seq_len == 32  # max_len, given automatically


def test_cls_pooling_gives_fixed_length_mechanisms_one_more_position():
    model = classifier(pooling="cls", attention="linformer", attention_kwargs={"k": 8})
    assert model.layers[0].attn.seq_len == 33 and model.pos.max_len == 33
    assert model(ids(2, 32)).shape == (2, 10)


def test_classifier_bad_input():
    model = classifier()
    with pytest.raises(ValueError, match="more than max_len=32"):
        model(ids(1, 33))
    with pytest.raises(ValueError, match="token id 20"):
        model(torch.full((1, 4), 20))
    with pytest.raises(ValueError, match="dual=True"):
        model(ids(1, 4), ids(1, 4))
    with pytest.raises(ValueError, match="needs tokens2"):
        classifier(dual=True)(ids(1, 4))
    with pytest.raises(ValueError, match="same batch"):
        classifier(dual=True)(ids(1, 4), ids(2, 4))
    with pytest.raises(ValueError, match="pooling must be one of"):
        classifier(pooling="max")


def lm(**kwargs):
    options = {
        "vocab_size": 30,
        "dim": 32,
        "num_heads": 4,
        "num_layers": 2,
        "max_len": 40,
        "dropout": 0.0,
        **kwargs,
    }
    return attnzoo.create_model("decoder_lm", **options).eval()


def test_language_model_is_causal():
    model = lm().double()
    tokens = ids(2, 12, vocab=30)
    logits = model(tokens)
    changed = tokens.clone()
    changed[:, 7:] = ids(2, 5, vocab=30, seed=9)
    assert_close(model(changed)[:, :7], logits[:, :7])


@pytest.mark.parametrize("attention", ["mha", "linear", "performer", "local", "aft"])
@pytest.mark.parametrize("beam_size", [1, 2])
def test_lm_cached_decoding_equals_recomputation(attention, beam_size):
    model = lm(attention=attention, attention_kwargs=SMALL_OPTIONS.get(attention))
    prompt = ids(2, 5, vocab=30)
    cached = model.generate(prompt, max_len=9, beam_size=beam_size)
    assert torch.equal(
        cached, model.generate(prompt, max_len=9, beam_size=beam_size, use_cache=False)
    )
    if beam_size == 1:
        out = prompt
        for _ in range(9):
            out = torch.cat([out, model(out)[:, -1:].argmax(-1)], dim=1)
        assert torch.equal(cached, out[:, 5:])


@pytest.mark.parametrize("attention", MIXERS)
def test_lm_builds_with_causal_mechanisms_and_refuses_the_others(attention):
    options = SMALL_OPTIONS.get(attention)
    if not attnzoo.info(attention).obj.supports_causal:
        with pytest.raises(ValueError, match=f"attention='{attention}' cannot be the causal"):
            lm(attention=attention, attention_kwargs=options)
        return
    model = lm(attention=attention, attention_kwargs=options)
    assert model(ids(2, 40, vocab=30)).shape == (2, 40, 30)


def test_lm_bad_input():
    model = lm()
    with pytest.raises(ValueError, match="exceeds the model's max_len=40"):
        model.generate(ids(1, 35, vocab=30), max_len=10)
    with pytest.raises(ValueError, match="max_len must be an int >= 1"):
        model.generate(ids(1, 3, vocab=30), max_len=0)
    with pytest.raises(ValueError, match="beam_size must be an int >= 1"):
        model.generate(ids(1, 3, vocab=30), max_len=2, beam_size=0)
    with pytest.raises(ValueError, match="prompt holds token id 30"):
        model.generate(torch.full((1, 2), 30), max_len=2)
    with pytest.raises(ValueError, match=r"mask must have the shape of tokens \(1, 3\)"):
        model(ids(1, 3, vocab=30), mask=torch.ones(1, 4, dtype=torch.bool))


@pytest.mark.parametrize("attention", MIXERS)
def test_record_attention_on_a_model_with_any_mechanism(attention):
    model = classifier(attention=attention, attention_kwargs=SMALL_OPTIONS.get(attention))
    tokens = ids(2, 32)
    if not attnzoo.info(attention).obj.has_attention_weights:
        with (
            pytest.raises(ValueError, match=r"'layers\.0\.attn', 'layers\.1\.attn' .* no"),
            attnzoo.viz.record_attention(model),
        ):
            pass
        return
    with attnzoo.viz.record_attention(model) as maps:
        out = model(tokens)
    assert list(maps) == ["layers.0.attn", "layers.1.attn"]
    assert maps["layers.0.attn"].shape[:3] == (2, model.layers[0].attn.num_heads, 32)
    assert torch.isfinite(maps["layers.1.attn"]).all()
    assert_close(out, model(tokens))
