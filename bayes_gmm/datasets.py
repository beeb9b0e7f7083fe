"""Data: synthetic mixtures with known truth, and the bundled real data sets."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from bayes_gmm._covariance import get_covariance_type
from bayes_gmm._validation import check_random_state, check_scalar

__all__ = ["MixtureTruth", "make_mixture", "load_faithful", "load_galaxies"]


@dataclass(frozen=True)
class MixtureTruth:
    """The parameters a synthetic data set was drawn from."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray  # EM shape of covariance_type
    covariance_type: str


def make_mixture(
    n_samples=500,
    n_components=3,
    n_features=2,
    *,
    covariance_type="full",
    separation=4.0,
    weights=None,
    random_state=None,
):
    """Draw a Gaussian mixture data set with known parameters.

    Means are placed at random with every pair at least ``separation``
    (in units of the largest component standard deviation) apart; the
    covariances are random with standard deviations between 0.5 and 1.

    Parameters
    ----------
    n_samples : int, default=500
        Number of points.
    n_components : int, default=3
        Number of components.
    n_features : int, default=2
        Number of features.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Structure of the true covariances.
    separation : float, default=4.0
        Minimum distance between two means, in standard deviations.
    weights : array-like of shape (n_components,), optional
        True weights; equal by default.
    random_state : int, Generator or None, default=None
        Seed.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        Data, in random order.
    y : ndarray of shape (n_samples,)
        True component of each point.
    truth : MixtureTruth
        The parameters.

    Examples
    --------
    >>> X, y, truth = make_mixture(100, 2, 2, random_state=0)
    >>> X.shape, truth.means.shape
    ((100, 2), (2, 2))
    """
    k = check_scalar("n_components", n_components, int, min_value=1)
    d = check_scalar("n_features", n_features, int, min_value=1)
    n = check_scalar("n_samples", n_samples, int, min_value=1)
    ct = get_covariance_type(covariance_type)
    rng = check_random_state(random_state)
    if weights is None:
        w = np.full(k, 1.0 / k)
    else:
        w = np.asarray(weights, dtype=float)
        if w.shape != (k,) or np.any(w < 0):
            raise ValueError(f"'weights' must be {k} non-negative numbers.")
        w = w / w.sum()

    def random_cov():
        sd = rng.uniform(0.5, 1.0, size=d)
        if d > 1:
            q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        else:
            q = np.ones((1, 1))
        return (q * sd**2) @ q.T

    if ct.name == "full":
        cov = np.stack([random_cov() for _ in range(k)])
    elif ct.name == "tied":
        cov = random_cov()
    elif ct.name == "diag":
        cov = rng.uniform(0.5, 1.0, size=(k, d)) ** 2
    else:
        cov = rng.uniform(0.5, 1.0, size=k) ** 2
    means = np.zeros((k, d))
    spread = separation * max(k, 2) ** (1.0 / d) * 1.5
    for j in range(k):
        for _ in range(10_000):
            cand = rng.uniform(-spread, spread, size=d)
            if j == 0 or np.min(np.linalg.norm(means[:j] - cand, axis=1)) >= separation:
                break
        else:  # pragma: no cover - very unlikely with the box above
            raise RuntimeError("could not place separated means; lower 'separation'")
        means[j] = cand
    chol = ct.to_cholesky(cov, k, d)
    labels = rng.choice(k, size=n, p=w)
    z = rng.standard_normal((n, d))
    # x = mu_j + L_j z, one component at a time: O(n d) memory (indexing the
    # factors by label would build an (n, d, d) array). The same einsum
    # contraction as over all rows at once, so the same numbers to the bit.
    X = np.empty((n, d))
    for j in range(k):
        rows = np.flatnonzero(labels == j)
        X[rows] = means[j] + np.einsum("ij,nj->ni", chol[j], z[rows])
    return X, labels, MixtureTruth(w, means, cov, ct.name)


def _read_csv(name):
    import pandas as pd

    with resources.files("bayes_gmm.data").joinpath(name).open("r") as fh:
        return pd.read_csv(fh)


def load_faithful():
    """Old Faithful geyser eruptions (272 x 2).

    ``eruptions`` is the eruption time and ``waiting`` the waiting time to the
    next eruption, both in minutes. From R's ``datasets::faithful``; Härdle
    (1991), *Smoothing Techniques with Implementation in S*; Azzalini and
    Bowman (1990), Applied Statistics 39, 357-365. Many values are tied.

    Returns
    -------
    pandas.DataFrame
        Columns ``eruptions`` and ``waiting``.

    Examples
    --------
    >>> load_faithful().shape
    (272, 2)
    """
    return _read_csv("faithful.csv")


def load_galaxies(scale=1.0):
    """Velocities of 82 galaxies in the Corona Borealis region (km/s).

    From R's ``MASS::galaxies``; Postman, Huchra and Geller (1986),
    Astronomical Journal 92, 1238-1247; Roeder (1990), JASA 85, 617-624. The
    values are as MASS records them (the mixture literature following
    Richardson and Green (1997) uses 26960 for the 78th value, MASS has
    26690).

    Parameters
    ----------
    scale : float, default=1.0
        Divide the velocities by this (``1000`` gives the 1000 km/s units of
        the mixture literature).

    Returns
    -------
    pandas.DataFrame
        One column, ``velocity``.

    Examples
    --------
    >>> float(load_galaxies(scale=1000)["velocity"].min())
    9.172
    """
    df = _read_csv("galaxies.csv")
    df["velocity"] = df["velocity"] / scale
    return df
