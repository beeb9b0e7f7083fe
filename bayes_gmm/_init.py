"""Starting points for EM (numpy and scikit-learn only).

Every start is computed on a standardised copy of the data, so that it does
not depend on the units of the features (scikit-learn runs k-means on the raw
features, and on data such as Old Faithful, whose columns differ in scale by
a factor of 20, its starts land in poor optima).
"""

from __future__ import annotations

import numpy as np

from bayes_gmm._validation import seed_from

__all__ = ["INIT_PARAMS", "initial_resp", "standardise"]

INIT_PARAMS = ("k-means++", "kmeans", "random", "random_from_data")


def standardise(X):
    """Scale-free copy of X used by every start (columns centred, unit sd)."""
    sd = X.std(axis=0)
    sd[sd <= 0] = 1.0
    return (X - X.mean(axis=0)) / sd


def _nearest(Z, centres):
    """Hard assignment of rows of Z to their nearest centre (squared Euclid)."""
    d2 = (
        np.einsum("nd,nd->n", Z, Z)[:, None]
        - 2.0 * Z @ centres.T
        + np.einsum("kd,kd->k", centres, centres)[None, :]
    )
    return np.argmin(d2, axis=1)


def _one_hot(labels, n_components):
    resp = np.zeros((labels.shape[0], n_components))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def initial_resp(X, Z, n_components, init_params, rng):
    """Responsibilities that start one EM run (all starts are scale-free)."""
    n = X.shape[0]
    if init_params == "kmeans":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=n_components, n_init=1, random_state=seed_from(rng))
        return _one_hot(km.fit(Z).labels_, n_components)
    if init_params == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        centres, _ = kmeans_plusplus(Z, n_components, random_state=seed_from(rng))
        return _one_hot(_nearest(Z, centres), n_components)
    if init_params == "random_from_data":
        idx = rng.choice(n, size=n_components, replace=False)
        return _one_hot(_nearest(Z, Z[idx]), n_components)
    # "random": Dirichlet-like random soft responsibilities, as scikit-learn.
    resp = rng.uniform(size=(n, n_components))
    return resp / resp.sum(axis=1, keepdims=True)
