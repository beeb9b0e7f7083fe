"""The posterior predictive density of plot_density, reduced block by block.

Oracle: scipy's logsumexp over draws of the full (S, n) array of
``_draws_log_density`` (itself checked against scipy's multivariate normal
in test_plots), with blocks forced to a few draws.
"""

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayes_gmm import plots


def test_blockwise_predictive_density_equals_the_full_reduction(monkeypatch, rng):
    s, k, d, n = 37, 3, 2, 50
    weights = rng.dirichlet(np.ones(k), size=s)
    means = rng.normal(size=(s, k, d))
    a = rng.normal(size=(s, k, d, d)) * 0.3
    cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)
    chol = np.linalg.cholesky(cov)
    points = rng.normal(size=(n, d)) * 2
    brute = np.array(
        [
            [
                logsumexp(
                    [
                        np.log(weights[i, j])
                        + multivariate_normal(means[i, j], cov[i, j]).logpdf(x)
                        for j in range(k)
                    ]
                )
                for x in points
            ]
            for i in range(s)
        ]
    )
    want = logsumexp(brute, axis=0) - np.log(s)
    monkeypatch.setattr(plots, "_BLOCK_FLOATS", n * k * d * 4)  # 4 draws a block
    got = plots._predictive_log_density(weights, means, chol, points)
    np.testing.assert_allclose(got, want, rtol=1e-10)
