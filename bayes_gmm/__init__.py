"""bayes_gmm: Gaussian mixtures by EM and by full Bayesian inference, side by side.

The EM side (:class:`GaussianMixtureEM`, data sets) imports only numpy, scipy
and scikit-learn; the Bayesian side (PyMC, ArviZ) is imported lazily on first
use, so ``import bayes_gmm`` stays fast.
"""

import logging
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from bayes_gmm._validation import (
    BayesGMMWarning,
    ConvergenceWarning,
    DegenerateComponentWarning,
)
from bayes_gmm.datasets import load_faithful, load_galaxies, make_mixture
from bayes_gmm.em import GaussianMixtureEM

try:
    __version__ = version("bayes_gmm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

logging.getLogger("bayes_gmm").addHandler(logging.NullHandler())

# name -> module for the lazily imported side (PyMC, ArviZ, pandas, matplotlib).
_LAZY = {
    "GaussianMixtureBayes": "bayes_gmm.bayes",
    "MixtureResult": "bayes_gmm.result",
    "ResultFileError": "bayes_gmm.result",
    "Priors": "bayes_gmm.model",
    "build_model": "bayes_gmm.model",
    "relabel": "bayes_gmm.relabel",
    "waic": "bayes_gmm.result",
    "EMGrid": "bayes_gmm.selection",
    "ModelComparison": "bayes_gmm.selection",
    "bic_pick_stability": "bayes_gmm.selection",
    "compare_models": "bayes_gmm.selection",
    "fit_em_grid": "bayes_gmm.selection",
    "Diagnosis": "bayes_gmm.diagnostics",
    "diagnose": "bayes_gmm.diagnostics",
    "compare_fits": "bayes_gmm.comparison",
    "mixture_divergence": "bayes_gmm.comparison",
    "bootstrap_em": "bayes_gmm.uncertainty",
    "plot_clusters": "bayes_gmm.plots",
    "plot_comparison": "bayes_gmm.plots",
    "plot_covariance_types": "bayes_gmm.plots",
    "plot_criteria": "bayes_gmm.plots",
    "plot_density": "bayes_gmm.plots",
    "plot_pairs": "bayes_gmm.plots",
    "plot_posterior_ellipses": "bayes_gmm.plots",
    "plot_uncertainty": "bayes_gmm.plots",
}

__all__ = [
    "BayesGMMWarning",
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "GaussianMixtureEM",
    "load_faithful",
    "load_galaxies",
    "make_mixture",
    *sorted(_LAZY),
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bayes_gmm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
