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


# --------------------------------------------------------------------------------
# Shared Bayesian fits. NUTS through nutpie compiles nothing per fit (the
# kernel of bayes_gmm._kernel is compiled once and cached on disk), but ADVI
# and PyMC's sampler compile PyTensor graphs (tens of seconds on a 2-core
# machine) and the fits themselves cost seconds, so tests share these.
# --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def separated_2d():
    """Two well-separated 2-D components, 200 points: (X, y, truth)."""
    from bayes_gmm import make_mixture

    return make_mixture(200, 2, 2, separation=6.0, random_state=3)


@pytest.fixture(scope="session")
def nuts_fit(separated_2d):
    """A small NUTS fit (2 chains x 300 draws) shared by the fast suite."""
    from bayes_gmm import GaussianMixtureBayes

    X, _, _ = separated_2d
    return GaussianMixtureBayes(
        2, draws=300, tune=300, chains=2, progressbar=False, random_state=0
    ).fit(X)


@pytest.fixture(scope="session")
def advi_fit(separated_2d):
    """A mean-field ADVI fit of the same data (300 draws of the approximation)."""
    from bayes_gmm import GaussianMixtureBayes

    X, _, _ = separated_2d
    return GaussianMixtureBayes(
        2, method="advi", draws=300, progressbar=False, random_state=0
    ).fit(X)
