"""Shared fixtures. Owned by the core; test modules mirror the package modules."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    """Close every figure a test opened."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def faithful():
    """Old Faithful as a float ndarray (272 x 2)."""
    from bayes_gmm import load_faithful

    return load_faithful().to_numpy(dtype=float)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
