"""Fixtures of the viz tests: a small timm-layout stand-in for the ViT (fast viz logic tests)."""

from __future__ import annotations

import pytest
from viz_helpers import StandInViT

import attnzoo


@pytest.fixture
def standin_vit(monkeypatch):
    """Always the small stand-in (for tests of the viz logic, not of the model)."""
    real = attnzoo.create_model

    def create_model(name, **kwargs):
        return StandInViT(**kwargs) if name.startswith("vit_") else real(name, **kwargs)

    monkeypatch.setattr(attnzoo, "create_model", create_model)
