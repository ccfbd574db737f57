"""Import timm's layers for the equality tests, or skip the calling test with the reason.

The import itself (timm without torchvision) is :func:`attnzoo.arena._timm.import_timm`, also
used by ``attnzoo bench vit``. ``make test`` installs timm with ``--no-deps`` (see Makefile), so
in CI these tests run; they skip only where timm is absent, saying so.
"""

from __future__ import annotations

import types

import pytest

from attnzoo.arena._timm import import_timm

__all__ = ["import_timm_module"]


def import_timm_module(name: str) -> types.ModuleType:
    """``importlib.import_module(name)`` for a timm submodule; skips the test when impossible."""
    try:
        return import_timm(name)
    except ImportError as error:
        pytest.skip(str(error))
