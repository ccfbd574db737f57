"""Import timm's model code without torchvision (for benchmarks and the test oracle).

timm declares torchvision as a dependency, and torchvision has no CPU build that matches the
pinned torch. timm's layers and ViT do not need it: the one torchvision symbol they import is
stubbed, and ``timm`` is registered as a bare package so that ``timm/__init__`` (which imports
``timm.data``, PIL and torchvision) is skipped. ``make test`` installs timm with ``--no-deps``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

import torch

__all__ = ["import_timm"]


def _install_stubs() -> None:
    if "timm" in sys.modules and getattr(sys.modules["timm"], "_attnzoo_stub", False):
        return
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("timm is not installed (pip install --no-deps timm)")
    if importlib.util.find_spec("torchvision") is None:
        tv, ops, misc = (
            types.ModuleType(n) for n in ("torchvision", "torchvision.ops", "torchvision.ops.misc")
        )

        class FrozenBatchNorm2d(torch.nn.Module):
            pass

        misc.FrozenBatchNorm2d = FrozenBatchNorm2d
        tv.ops, ops.misc = ops, misc
        for module in (tv, ops, misc):
            sys.modules.setdefault(module.__name__, module)
    root = spec.submodule_search_locations[0]
    package = types.ModuleType("timm")
    package.__path__ = [root]
    # a real spec, so that importlib.util.find_spec("timm") keeps working after the stub
    package.__spec__ = importlib.machinery.ModuleSpec("timm", None, is_package=True)
    package.__spec__.submodule_search_locations = [root]
    package._attnzoo_stub = True
    sys.modules["timm"] = package
    for sub in ("models", "data"):
        bare = types.ModuleType(f"timm.{sub}")
        bare.__path__ = [f"{root}/{sub}"]
        sys.modules[f"timm.{sub}"] = bare
    constants = importlib.import_module("timm.data.constants")
    for key in dir(constants):
        if key.isupper():
            setattr(sys.modules["timm.data"], key, getattr(constants, key))
    package.__version__ = importlib.import_module("timm.version").__version__


def import_timm(name: str) -> types.ModuleType:
    """``importlib.import_module(name)`` for a timm submodule, e.g. ``"timm.layers.cbam"``.

    Raises:
        ImportError: timm is missing or the module cannot be imported without torchvision.
    """
    try:
        _install_stubs()
        return importlib.import_module(name)
    except ImportError:
        raise
    except Exception as error:  # pragma: no cover - depends on the installed timm
        raise ImportError(f"cannot import {name} without torchvision: {error}") from error
