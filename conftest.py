"""Root conftest: names available to the doctests in ``src/attnzoo``."""

import pytest
import torch

import attnzoo


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    torch.manual_seed(0)
    doctest_namespace["torch"] = torch
    doctest_namespace["attnzoo"] = attnzoo
