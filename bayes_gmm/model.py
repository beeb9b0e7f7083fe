"""The Bayesian Gaussian mixture as a PyMC model (building only, never sampling).

The model is written in standardised units: the data are shifted and scaled
column by column (one common scale for ``spherical``, whose covariance must
stay spherical in the data's units), the priors below are placed on the
standardised parameters, and the parameters in data units are deterministic
transforms of them. Fitting ``1000 * X`` therefore gives the same posterior
in the scaled units.

Priors, in standardised units (``z = (x - m) / s``):

.. math::

    w &\\sim \\mathrm{Dirichlet}(\\alpha \\mathbf 1_K) \\\\
    \\mu^z_{kd} &\\sim N(0, \\tau_\\mu^2) \\\\
    \\sigma^z &\\sim \\mathrm{HalfNormal}(\\tau_\\sigma) \\\\
    \\Omega_k &\\sim \\mathrm{LKJ}(\\eta) \\quad (\\text{full and tied})

with ``alpha = weights_concentration``, ``tau_mu = mean_scale``,
``tau_sigma = sd_scale`` and ``eta = lkj_eta`` (:class:`Priors`). The
likelihood is the mixture density with the assignments marginalised out by
log-sum-exp, vectorised over observations and components.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.tensor.linalg import solve_triangular

from bayes_gmm._covariance import get_covariance_type

__all__ = ["Priors", "build_model", "initial_point", "mixture_logp", "standardisation"]

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class Priors:
    """Hyper-parameters of the priors, in units of the standardised data.

    Parameters
    ----------
    weights_concentration : float, default=1.0
        Dirichlet concentration ``alpha`` of every weight (1 is uniform on
        the simplex; larger values shrink towards equal weights; values
        below 1 let superfluous components empty out).
    mean_scale : float, default=2.0
        Standard deviation of the Normal prior of every mean, in data
        standard deviations around the data mean.
    sd_scale : float, default=1.0
        Scale of the HalfNormal prior of every component standard
        deviation, in data standard deviations.
    lkj_eta : float, default=2.0
        LKJ shape of the correlation matrices (1 is uniform over
        correlations; 2 mildly favours small correlations).

    Examples
    --------
    >>> Priors(lkj_eta=1.0).to_dict()["lkj_eta"]
    1.0
    """

    weights_concentration: float = 1.0
    mean_scale: float = 2.0
    sd_scale: float = 1.0
    lkj_eta: float = 2.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not np.isfinite(value)
                or value <= 0
            ):
                raise ValueError(
                    f"Priors.{f.name} must be a positive finite number, got {value!r}."
                )

    def to_dict(self):
        """Return the hyper-parameters as a plain dict."""
        return {k: float(v) for k, v in asdict(self).items()}

    def to_json(self):
        """Return the hyper-parameters as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        """Rebuild from :meth:`to_dict` output (or a JSON string)."""
        if isinstance(data, str):
            data = json.loads(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown prior(s) {unknown}; valid: {sorted(known)}.")
        return cls(**data)


def standardisation(X, covariance_type):
    """Location and scale used to standardise ``X`` for a covariance type.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    covariance_type : str
        The covariance type (``spherical`` gets one common scale).

    Returns
    -------
    loc : ndarray of shape (n_features,)
    scale : ndarray of shape (n_features,)
    """
    X = np.asarray(X, dtype=float)
    loc = X.mean(axis=0)
    sd = X.std(axis=0)
    positive = sd[sd > 0]
    fallback = float(np.exp(np.mean(np.log(positive)))) if positive.size else 1.0
    sd = np.where(sd > 0, sd, fallback)
    return loc, get_covariance_type(covariance_type).standardising_scale(sd)


def mixture_logp(value, weights, means, chol, *, diagonal=False):
    """Pointwise log density of a Gaussian mixture, marginalised over labels.

    .. math::

        \\log p(x_n) = \\operatorname{logsumexp}_k \\big[\\log w_k
        + \\log N(x_n \\mid \\mu_k, L_k L_k^T)\\big]

    vectorised over observations and components (no loop over ``K``).

    Parameters
    ----------
    value : TensorVariable of shape (n, D)
        Observations.
    weights : TensorVariable of shape (K,)
        Mixture weights.
    means : TensorVariable of shape (K, D)
        Component means.
    chol : TensorVariable of shape (K, D, D)
        Lower Cholesky factors of the covariances.
    diagonal : bool, default=False
        If the factors are known to be diagonal (``diag`` and ``spherical``),
        divide instead of solving.

    Returns
    -------
    TensorVariable of shape (n,)
    """
    d = value.shape[-1]
    diff = value[None, :, :] - means[:, None, :]  # (K, n, D)
    diag = pt.diagonal(chol, axis1=-2, axis2=-1)  # (K, D)
    if diagonal:
        y = diff / diag[:, None, :]
    else:
        # L^{-1} (x - mu) by a batched triangular solve on (K, D, n).
        y = solve_triangular(chol, diff.transpose(0, 2, 1), lower=True)
        y = y.transpose(0, 2, 1)
    maha = pt.sum(y**2, axis=-1)  # (K, n)
    log_det = pt.sum(pt.log(diag), axis=-1)  # (K,)
    comp = -0.5 * (d * _LOG_2PI + maha) - log_det[:, None] + pt.log(weights)[:, None]
    return pt.logsumexp(comp, axis=0)


def _core(t, ndim):
    """Drop leading length-1 batch dimensions down to ``ndim``."""
    while t.ndim > ndim:
        t = t[0]
    return t


def _mixture_random(weights, means, chol, rng=None, size=None):
    """Draws of the mixture (posterior/prior predictive), numpy side."""
    n = int(np.prod(size)) if size is not None else 1
    k, d = means.shape[-2:]
    labels = rng.choice(k, size=n, p=weights / weights.sum())
    z = rng.standard_normal((n, d))
    out = means[labels] + np.einsum("nij,nj->ni", chol[labels], z)
    return out.reshape((*tuple(size or ()), d)) if size is not None else out[0]


def build_model(
    X,
    n_components,
    *,
    covariance_type="full",
    priors=None,
    order_means=None,
    feature_names=None,
):
    """Build the PyMC model of a Bayesian Gaussian mixture (does not sample).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Data (validated by the caller; a DataFrame's columns name features).
    n_components : int
        Number of components ``K``.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        Covariance structure: ``full`` an LKJ-Cholesky prior per component,
        ``tied`` one shared, ``diag`` a scale per (component, feature),
        ``spherical`` one scale per component.
    priors : Priors, optional
        Prior hyper-parameters (see :class:`Priors` for the defaults).
    order_means : int or None, default=None
        If an int, constrain the means of that feature to increase with the
        component index (an ordered transform), which removes label
        switching at the price of distorting the posterior where components
        overlap in that feature. Off by default: relabelling is preferred.
    feature_names : sequence of str, optional
        Coordinates of the ``feature`` dimension.

    Notes
    -----
    The priors in data units, with :math:`m_d` and :math:`s_d` the mean and
    standard deviation of feature ``d`` (``spherical``: one common
    :math:`s`, the geometric mean of the :math:`s_d`), and the defaults of
    :class:`Priors`:

    .. math::

        w &\\sim \\mathrm{Dirichlet}(\\alpha \\mathbf 1_K),
            \\quad \\alpha = 1 \\\\
        \\mu_{kd} &\\sim N\\big(m_d, (\\tau_\\mu s_d)^2\\big),
            \\quad \\tau_\\mu = 2 \\\\
        \\sigma_{kd} &\\sim \\mathrm{HalfNormal}(\\tau_\\sigma s_d),
            \\quad \\tau_\\sigma = 1 \\\\
        \\Sigma_k &= \\operatorname{diag}(\\sigma_k)\\, \\Omega_k\\,
            \\operatorname{diag}(\\sigma_k), \\quad
            \\Omega_k \\sim \\mathrm{LKJ}(\\eta), \\quad \\eta = 2

    (``weights_concentration``, ``mean_scale``, ``sd_scale``, ``lkj_eta``).
    ``full`` has one LKJ-Cholesky prior per component (``chol_cov_{k}``),
    ``tied`` one shared (``chol_cov``), ``diag`` a HalfNormal scale per
    (component, feature) (``sds_z``) and ``spherical`` one per component
    (``sd_z``, the same in every feature). So a component's mean lies a
    priori within about two data standard deviations of the data mean, and
    its spread is of the order of the data's. Because the priors act on the
    standardised parameters, fitting ``a X + b`` gives the same posterior in
    the new units.

    Returns
    -------
    pymc.Model
        Free variables ``weights``, ``means_z`` and the covariance factors;
        deterministics ``means`` and ``covariances`` in data units; the
        observed ``x`` whose pointwise log-likelihood is the marginal
        mixture density.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(20, 2))
    >>> model = build_model(X, 2, covariance_type="diag")
    >>> [rv.name for rv in model.free_RVs]
    ['weights', 'means_z', 'sds_z']
    """
    X = np.asarray(X, dtype=float)
    n, d = X.shape
    k = int(n_components)
    ct = get_covariance_type(covariance_type)
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise TypeError(f"'priors' must be a Priors instance, got {type(priors)}.")
    loc, scale = standardisation(X, ct.name)
    names = (
        [str(f) for f in feature_names]
        if feature_names is not None
        else [f"x{j}" for j in range(d)]
    )
    coords = {
        "component": np.arange(k),
        "feature": names,
        "feature_bis": names,
        "obs": np.arange(n),
    }
    with pm.Model(coords=coords) as model:
        # Data, location and scale are shared variables so that a compiled
        # model can be reused on new data of the same shape.
        x_data = pm.Data("X", X, dims=("obs", "feature"))
        loc_t = pm.Data("loc", loc)
        scale_t = pm.Data("scale", scale)
        weights = pm.Dirichlet(
            "weights", a=np.full(k, priors.weights_concentration), dims="component"
        )
        means_z = _means_prior(priors, k, d, order_means)
        chol_z = _CHOLESKY_PRIORS[ct.name](priors, k, d)  # (K, D, D) standardised
        pm.Deterministic(
            "means", means_z * scale_t + loc_t, dims=("component", "feature")
        )
        chol_data = chol_z * scale_t[None, :, None]  # diag(s) L
        cov = chol_data @ chol_data.transpose(0, 2, 1)
        pm.Deterministic("covariances", _EM_SHAPE[ct.name](cov), dims=ct.dims)

        def logp(value, w, mu, chol):
            # The parameters arrive with broadcastable batch dims of length 1.
            w, mu, chol = _core(w, 1), _core(mu, 2), _core(chol, 3)
            zval = (value - loc_t) / scale_t
            log_jac = pt.sum(pt.log(scale_t))  # density in data units
            return mixture_logp(zval, w, mu, chol, diagonal=ct.diagonal) - log_jac

        def random(w, mu, chol, rng=None, size=None):
            w, mu, chol = _core(w, 1), _core(mu, 2), _core(chol, 3)
            draws = _mixture_random(w, mu, chol, rng=rng, size=size)
            return draws * scale + loc

        pm.CustomDist(
            "x",
            weights,
            means_z,
            chol_z,
            logp=logp,
            random=random,
            signature="(k),(k,d),(k,d,d)->(d)",
            observed=x_data,
            dims=("obs", "feature"),
        )
    model.bayes_gmm_info = {
        "covariance_type": ct.name,
        "n_components": k,
        "loc": loc,
        "scale": scale,
        "order_means": order_means,
        "priors": priors,
    }
    return model


def _means_prior(priors, k, d, order_means):
    if order_means is None:
        return pm.Normal(
            "means_z", 0.0, priors.mean_scale, dims=("component", "feature")
        )
    j = int(order_means)
    if not 0 <= j < d:
        raise ValueError(f"'order_means' must be a feature index in [0, {d}), got {j}.")
    ordered = _ordered_normal("means_z_ordered", priors.mean_scale, k)
    if d == 1:
        return pm.Deterministic(
            "means_z", ordered[:, None], dims=("component", "feature")
        )
    rest = pm.Normal("means_z_rest", 0.0, priors.mean_scale, shape=(k, d - 1))
    full = pt.concatenate([rest[:, :j], ordered[:, None], rest[:, j:]], axis=1)
    return pm.Deterministic("means_z", full, dims=("component", "feature"))


def _ordered_normal(name, sigma, k):
    """``k`` iid ``N(0, sigma^2)`` constrained to increase (ordered transform).

    The density is the Normal one restricted to increasing vectors; forward
    draws (prior predictive) are sorted Normal draws, which have that
    density, so prior sampling agrees with the constraint (``pm.Normal`` with
    ``transform=ordered`` would draw unsorted values).
    """

    def logp(value, base):
        return pt.sum(
            -0.5 * (value / sigma) ** 2 - np.log(sigma) - 0.5 * _LOG_2PI, axis=-1
        )

    def random(base, rng=None, size=None):
        shape = (*tuple(np.atleast_1d(size)), k) if size is not None else (k,)
        return np.sort(rng.normal(0.0, sigma, size=shape), axis=-1)

    def support_point(rv, size, base):
        return pt.as_tensor(np.linspace(-1.0, 1.0, k) * min(sigma, 1.0))

    return pm.CustomDist(
        name,
        np.zeros(k),
        logp=logp,
        random=random,
        support_point=support_point,
        signature="(k)->(k)",
        default_transform=pm.distributions.transforms.ordered,
    )


# Per-type prior of the standardised Cholesky factors, beside the table of
# bayes_gmm._covariance (which stays numpy only). Each returns (K, D, D).
def _lkj_chol(name, priors, d):
    if d == 1:  # no correlations: the factor is the standard deviation
        sd = pm.HalfNormal(name, priors.sd_scale, shape=1)
        return sd[:, None]
    packed = pm.LKJCholeskyCov(
        name,
        eta=priors.lkj_eta,
        n=d,
        sd_dist=pm.HalfNormal.dist(priors.sd_scale, shape=d),
        compute_corr=False,
    )
    return pm.math.expand_packed_triangular(d, packed, lower=True)


def _full_prior(priors, k, d):
    # LKJCholeskyCov is not batched: one per component (a loop over K while
    # building the priors only; the likelihood is vectorised).
    return pt.stack([_lkj_chol(f"chol_cov_{j}", priors, d) for j in range(k)])


def _tied_prior(priors, k, d):
    chol = _lkj_chol("chol_cov", priors, d)
    return pt.broadcast_to(chol, (k, d, d))


def _diag_prior(priors, k, d):
    sds = pm.HalfNormal("sds_z", priors.sd_scale, dims=("component", "feature"))
    return sds[:, :, None] * pt.eye(d)


def _spherical_prior(priors, k, d):
    sd = pm.HalfNormal("sd_z", priors.sd_scale, dims="component")
    return sd[:, None, None] * pt.eye(d)


_CHOLESKY_PRIORS = {
    "full": _full_prior,
    "tied": _tied_prior,
    "diag": _diag_prior,
    "spherical": _spherical_prior,
}

# Covariances (K, D, D) -> the EM shape of each type.
_EM_SHAPE = {
    "full": lambda cov: cov,
    "tied": lambda cov: cov[0],
    "diag": lambda cov: pt.diagonal(cov, axis1=-2, axis2=-1),
    "spherical": lambda cov: pt.mean(pt.diagonal(cov, axis1=-2, axis2=-1), axis=-1),
}


# Per-type values of the covariance free variables at given standardised
# Cholesky factors chol_z (K, D, D): name -> value, in constrained space.
def _lkj_value(chol):
    d = chol.shape[-1]
    if d == 1:
        return chol[..., 0, :].copy()
    return chol[np.tril_indices(d)]


_COVARIANCE_VALUES = {
    "full": lambda cz: {f"chol_cov_{j}": _lkj_value(c) for j, c in enumerate(cz)},
    "tied": lambda cz: {"chol_cov": _lkj_value(cz[0])},
    "diag": lambda cz: {"sds_z": np.diagonal(cz, axis1=-2, axis2=-1).copy()},
    "spherical": lambda cz: {"sd_z": cz[:, 0, 0].copy()},
}


def initial_point(model, weights, means, covariances):
    """Values of the model's free variables at given mixture parameters.

    Parameters
    ----------
    model : pymc.Model
        A model from :func:`build_model`.
    weights : ndarray of shape (K,)
        Weights (kept away from the simplex boundary).
    means : ndarray of shape (K, D)
        Means in data units.
    covariances : ndarray
        Covariances in the EM shape of the model's covariance type.

    Returns
    -------
    dict
        ``{free variable name: value}`` in constrained space, for
        ``pm.sample(initvals=...)`` and ``pm.fit(start=...)``. With
        ``order_means`` the components are first sorted on that feature.
    """
    info = model.bayes_gmm_info
    ct = get_covariance_type(info["covariance_type"])
    loc, scale = info["loc"], info["scale"]
    k, d = np.shape(means)
    chol = np.asarray(ct.to_cholesky(np.asarray(covariances, float), k, d))
    chol_z = chol / scale[None, :, None]
    w = np.clip(np.asarray(weights, float), 1e-3, None)
    w = w / w.sum()
    means_z = (np.asarray(means, float) - loc) / scale
    j = info["order_means"]
    if j is not None:
        order = np.argsort(means_z[:, j], kind="stable")
        w, means_z, chol_z = w[order], means_z[order], chol_z[order]
    point = {"weights": w}
    if j is None:
        point["means_z"] = means_z
    else:
        ordered = means_z[:, j].copy()
        # strictly increasing for the ordered transform
        ordered = ordered + 1e-6 * np.arange(k)
        point["means_z_ordered"] = ordered
        if d > 1:
            point["means_z_rest"] = np.delete(means_z, j, axis=1)
    point.update(_COVARIANCE_VALUES[ct.name](chol_z))
    return point
