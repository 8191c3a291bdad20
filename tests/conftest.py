"""Shared test fixtures: seeded RNG, optional torch and CuPy."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded generator per test (tests are deterministic)."""
    return np.random.default_rng(20261126)


@pytest.fixture(scope="session")
def torch():
    """PyTorch in float64 on the CPU, or skip: refcam never needs it, the cross-checks do."""
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float64)
    return torch


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` cleanly when CuPy or a CUDA device is missing."""
    from refcam.backend import gpu_available
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
