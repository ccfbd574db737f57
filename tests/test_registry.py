"""The registry API: create, list_names, info, create_model, errors."""

from __future__ import annotations

import pytest
import torch

import attnzoo
from attnzoo.registry import FAMILIES, REGISTRIES, Paper, Registry

PAPER = Paper("t", "a", 2020, "https://example.org")


def test_create_list_info():
    assert "mha" in attnzoo.list_names(family="sequence")
    assert attnzoo.list_names("sin*", family="positional") == ["sincos_2d", "sinusoidal"]
    assert set(attnzoo.list_names(tags=("relative", "score_bias"))) >= {"alibi", "t5_bias"}
    entry = attnzoo.info("rope")
    assert entry.family == "positional" and entry.paper.url == "https://arxiv.org/abs/2104.09864"
    assert attnzoo.create("mha", 16, num_heads=2)(torch.zeros(1, 3, 16)).shape == (1, 3, 16)
    every = attnzoo.list_names()
    assert every == sorted(every) and len(every) == len(set(every))


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="Did you mean 'mha'"):
        attnzoo.create("mah", 16)
    with pytest.raises(ValueError, match="family"):
        attnzoo.list_names(family="nope")


def test_create_model_rejects_non_models():
    with pytest.raises(ValueError, match="not a model"):
        attnzoo.create_model("mha")


def test_duplicate_names_raise_across_families():
    with pytest.raises(ValueError, match="duplicate registry name 'mha'"):
        REGISTRIES["efficient"].register("mha", paper=PAPER)(object)
    with pytest.raises(ValueError, match="lower_snake_case"):
        Registry("vision").register("Bad-Name", paper=PAPER)
    with pytest.raises(TypeError, match="Paper"):
        Registry("vision").register("x", paper="a paper")
    with pytest.raises(ValueError, match="family"):
        Registry("audio")


def test_every_family_registry_exists():
    assert set(REGISTRIES) == set(FAMILIES)
