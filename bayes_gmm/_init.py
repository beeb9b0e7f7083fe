"""Starting points for EM (numpy and scipy only).

The likelihood of a Gaussian mixture has many local optima, and EM climbs
to the one whose basin it starts in. scikit-learn starts every run from
k-means on the raw features, so on data whose columns differ in scale (Old
Faithful: eruption minutes vs waiting minutes, a factor of 12 in standard
deviation) its starts see mostly the widest column and often land in poor
optima. The starts here never look at the units of the features: they are
drawn on the *standardised* data (each column centred, unit variance),
reweighted by random column weights drawn independently of the data, so
multiplying a column by a constant changes the fit only by that change of
units (exactly so for the ``full``, ``tied`` and ``diag`` models, which are
themselves equivariant; up to ``reg_covar``).

The default, ``init_params="kmeans"``, is a small search rather than
``n_init`` independent k-means runs (:class:`StartPlan`). For ``n_init = m``:

1. **Candidates.** ``4 m`` (at least 8) partitions of the data, drawn in
   turn from eight generators: scikit-learn's own start (Lloyd's k-means to
   convergence, :class:`sklearn.cluster.KMeans`, on the data in their
   units: the one generator that sees the units; on data whose units mean
   something, such as principal-component scores, it is the best single
   start, and with it the search holds scikit-learn's start: with the
   user's int seed, these candidates are the successive k-means starts of
   ``GaussianMixture(n_init=..., random_state=seed)``, on all rows, and
   the first, the start of its default fit, always runs to convergence);
   Lloyd's
   k-means on the standardised data; nearest-centre partitions around
   k-means++ seeds, Lloyd's k-means and nearest-centre partitions around
   ``K`` data points drawn at random, each on a *view* of the standardised
   data whose columns are multiplied by random weights ``exp(N(0, 1))``;
   k-means++ partitions and centres of Ward's clustering of a random
   subsample (at most 500 rows) on the standardised data itself; Lloyd's
   k-means on views with weights ``exp(N(0, 4))``. A view has an
   anisotropic metric, as the raw features have for scikit-learn, but one
   drawn at random rather than read from the units: across views the
   partitions follow different columns, which is where the diversity of the
   starts comes from.
2. **Screening** ("short EM", Biernacki, Celeux and Govaert 2003). Each
   candidate runs 5 EM iterations; candidates that are then identical are
   dropped.
3. **Convergence.** The candidates run to convergence by EM accelerated
   with SQUAREM (Varadhan and Roland 2008): until a cycle of three EM
   iterations gains less than ``1e-8`` in mean log-likelihood, at most 600
   iterations. Plain EM crawls for hundreds of iterations along flat ridges
   of the likelihood, so a looser stop ranks the candidates by where they
   were stopped rather than by the optimum they are heading to (Old
   Faithful, full, K = 5: a start whose EM sits at -4.0536 for 200
   iterations and reaches the best known optimum, -4.0404, after 500).
   Optima with a component collapsing onto a few points are set aside:
   one held up by ``reg_covar`` alone, fewer than 10 points narrower than
   2% of the data's spread, or, ``full``, fewer points than ``D + 1`` (the
   road to a spurious optimum of the unbounded likelihood; see
   :class:`_Collapse`; not tested on data with fewer than 10 rows per
   component).
4. **Split and merge** (Ueda et al. 2000), from each of the five best
   distinct optima in turn. A round tries moves, most promising first: for
   each pair of components, most overlapping first, cut their union in two
   anew, and merge them while cutting each third component in two, every
   cut made both along the principal axis and into a core and a shell. All
   moves of a round run 2 EM iterations, the best quarter (at least 12) 8
   more, the best three run to convergence, and an improvement is kept; at
   most five rounds from each optimum. The moves are generated lazily:
   there are ``K (K - 1)^2`` of them, and a round makes only those it pays
   for.
5. The starts are the distinct optima without a collapsed component, best
   first (at most ``m``; collapsed optima below the best of them fill up
   the list; with no other optimum, the collapsed ones).

**The budget.** Every stage is paid for from one budget, counted in work
(multiply-adds, so that a fit is the same on any machine): an EM iteration
of one candidate costs ``rows x K x (w + 20)`` (``w = D^2`` for full, ``D``
otherwise) and every batched iteration a fixed overhead. The budget is what
scikit-learn spends on ``m`` starts (per start a k-means and 15 EM
iterations on all the data, with scikit-learn's per-iteration overhead)
plus a fixed allowance of ~0.2 s. Screening takes at most 40% of it (fewer
candidates, never fewer than ``m``, then fewer iterations); convergence
half of what is left (fewer iterations, then fewer candidates when fewer
than 30 iterations each would be paid for); each split-and-merge round half
of what then remains, with as many moves as it pays for, and the search
stops when a round cannot pay for two moves. On small classic data the
budget covers the whole search; as ``K x D`` grows the stages shrink
smoothly, and on large problems the search is scikit-learn's start and a
few others screened by a few iterations. The search does not depend on
the user's ``max_iter`` and ``tol``, which bound the final EM runs.

All the EM of the search runs on many candidates at once (:class:`_BatchEM`,
one vectorised pass over all of them), which makes a candidate iteration a
fraction of the cost of a single EM run's. EM then runs once from every
distinct start with the user's ``tol`` and ``max_iter`` and keeps the best,
as usual (``n_iter_``, ``converged_`` and ``lower_bounds_`` describe that
final run; ``n_iter_search_`` counts the search's iterations); when the
search found fewer distinct optima than ``n_init``, the values in
``init_lower_bounds_`` repeat. With more rows than the search needs
(``max(2000, 20 K (D + 1))``) it works on a random sample of that size, so
its cost does not grow with ``N``.

A grid of models (:func:`bayes_gmm.selection.fit_em_grid`) shares its
candidates (:class:`GridStarts`): those of one ``K`` are drawn once for all
covariance types, the first being the ``K``-cluster cut of one Ward
hierarchy of the standardised data (mclust's hierarchical start), and each
model's search gets a smaller budget (4 batched EM iterations per
``n_init``, no allowance) and hands out its best optimum only.

The result on classic small data sets (``benchmarks/optima.py``,
``benchmarks/results/optima.md``; Old Faithful, iris, wine and galaxies,
every covariance type, K = 1..6, random_state 0..4, ``n_init=10``): the
default fit is in a worse optimum than scikit-learn's
``GaussianMixture(n_init=10)`` in at most one of the 419 (cell, seed)
pairs where scikit-learn's is not degenerate, and in a better one in about
130.

The other ``init_params`` are single strategies with one independent start
each, as in scikit-learn but on the standardised data: ``k-means++`` and
``random_from_data`` partition the data around ``K`` centres (k-means++
seeds, or data points drawn uniformly), ``random`` draws random soft
responsibilities. The same independent starts, with ``kmeans`` meaning one
Lloyd k-means per start, are used when some but not all of
``weights_init``, ``means_init`` and ``precisions_init`` are given (the
search optimises complete parameter sets).
"""

from __future__ import annotations

import itertools
import logging

import numpy as np

__all__ = [
    "INIT_PARAMS",
    "GridStarts",
    "StartPlan",
    "initial_resp",
    "standardise",
]

logger = logging.getLogger("bayes_gmm")

INIT_PARAMS = ("k-means++", "kmeans", "random", "random_from_data")

# A component whose covariance has an eigenvalue below this, in units of the
# data variances, is collapsing onto a few points (a spurious optimum) ...
# (half of benchmarks/optima.py's floor: see _Collapse)
_EIG_FLOOR = 5e-4
_FEW_POINTS = 10  # ... when it holds fewer points than this, or
_THIN_FLOOR = 5e-4  # ... below this when it holds less than
_LARGE_SHARE = 0.75  # ... this share of an average component
# The default search (see the module docstring).
_CANDIDATES_PER_START = 4  # candidate partitions per start handed out
_SCREEN_ITER = 5  # EM iterations that screen a candidate
_REFINE_FROM = 5  # distinct optima split and merge starts from
_MOVE_ITER = 10  # EM iterations that screen a split-and-merge move
_MOVE_ITER_FIRST = 2  # ... of which every move gets the first ones
_MOVE_KEEP = 12  # at least this many moves get the others
_MOVE_CONVERGE = 3  # best moves of a round run to convergence
_MAX_ROUNDS = 5  # split-and-merge rounds (each must improve)
_CONVERGE_TOL = 1e-8  # "converged" inside the search (gain of a SQUAREM cycle)
_CONVERGE_ITER = 600  # at most this many EM iterations per convergence
_SLOW = 1e-6  # a candidate gaining less than this per cycle barely moves ...
_MET = 1e-9  # ... and has met another one within this of its value
_SAME = 1e-5  # optima closer than this in mean log-likelihood are one
_MIN_SCREEN_SAMPLES = 2000
_WARD_SAMPLES = 500  # rows of the subsample Ward's clustering sees
_BATCH_FLOATS = 2**19  # floats in one (candidates, K, rows) temporary
_MOVE_FLOATS = 2**24  # floats in the responsibilities of one round's moves
# The budget (see the module docstring). Work is counted in multiply-adds:
# an EM iteration of one candidate costs rows x K x (w + _ROW_WORK), ``w``
# D^2 for full and D otherwise (the rest of the cost: exp, log-sum-exp,
# M-step), and every batched iteration _CALL_WORK more (numpy's overhead,
# ~0.1-0.3 ms).
_ROW_WORK = 20
_CALL_WORK = 3e5
# The search's budget models what scikit-learn spends on one start: k-means
# and set-up, then EM iterations on all the data, each costing the work
# above and its (larger) Python overhead.
_BUDGET_ITER = 15  # such EM iterations per start handed out
_SK_START_WORK = 5e6  # ... k-means and set-up of a start (~5 ms)
_SK_CALL_WORK = 1e6  # ... overhead of one of its iterations (~0.5 ms)
_BUDGET_ALLOWANCE = 3e8  # ... plus this much (~0.15-0.25 s) for any fit
# ... fewer iterations when its start settles within its tol during the
# screening (scikit-learn's fit then stops early), but at least this many:
_SK_TOL = 1e-3
_MIN_SK_ITER = 3
_SCREEN_SHARE = 0.4  # at most this share of the budget screens candidates
_CONVERGE_SHARE = 0.5  # ... and this share of what is left converges them
_MIN_CONVERGE = 30  # fewer iterations than this: converge fewer candidates
_GRID_ITER = 4  # a model of a grid: batched EM iterations on the sample per n_init
_GRID_WARD_SAMPLES = 2000  # rows of the grid's Ward hierarchy
_EPS = np.finfo(np.float64).eps
_LOG_2PI = np.log(2.0 * np.pi)
_LOG_TINY = np.log(1e-200)
# Candidate partitions, in turn: (kind, spread of the random column weights
# of the standardised data it is drawn on; 0: none).
# ``raw``: scikit-learn's own start, Lloyd's k-means to convergence on the
# data in their units (the one generator that sees the units: on data whose
# units are meaningful, such as principal-component scores, it is the best
# single start, and with it the search holds scikit-learn's start).
_KINDS = (
    ("raw", None),
    ("kmeans", 0.0),
    ("k-means++", 1.0),
    ("kmeans", 1.0),
    ("random_from_data", 1.0),
    ("k-means++", 0.0),
    ("ward", 0.0),
    ("kmeans", 2.0),
)


def standardise(X):
    """Scale-free copy of X (columns centred, unit standard deviation)."""
    sd = X.std(axis=0)
    sd[sd <= 0] = 1.0
    return (X - X.mean(axis=0)) / sd


# ----------------------------------------------------------------- partitions
def _sq_dist(Z, centres):
    """Squared Euclidean distances, shape (n, K)."""
    d2 = (
        np.einsum("nd,nd->n", Z, Z)[:, None]
        - 2.0 * Z @ centres.T
        + np.einsum("kd,kd->k", centres, centres)[None, :]
    )
    return np.maximum(d2, 0.0, out=d2)


def _nearest(Z, centres):
    """Hard assignment of rows of Z to their nearest centre."""
    return np.argmin(_sq_dist(Z, centres), axis=1)


def _one_hot(labels, n_components):
    resp = np.zeros((labels.shape[0], n_components))
    resp[np.arange(labels.shape[0]), labels] = 1.0
    return resp


def _kmeans_plusplus(Z, n_components, rng):
    """Greedy k-means++ seeding (Arthur and Vassilvitskii 2007), as sklearn.

    Each new centre is the best, by the resulting potential, of
    ``2 + log K`` candidates drawn with probability proportional to the
    squared distance to the nearest centre so far.
    """
    n = Z.shape[0]
    n_trials = 2 + int(np.log(n_components))
    centres = np.empty((n_components, Z.shape[1]))
    centres[0] = Z[rng.integers(n)]
    closest = _sq_dist(Z, centres[:1])[:, 0]
    for c in range(1, n_components):
        total = closest.sum()
        if total <= 0.0:  # fewer distinct points than components
            centres[c] = Z[rng.integers(n)]
            continue
        cand = rng.choice(n, size=n_trials, p=closest / total)
        d2 = np.minimum(closest[:, None], _sq_dist(Z, Z[cand]))
        best = int(np.argmin(d2.sum(axis=0)))
        centres[c] = Z[cand[best]]
        closest = d2[:, best]
    return centres


def _lloyd(Z, centres, max_iter=30):
    """Lloyd's k-means from ``centres``; returns the labels."""
    labels = _nearest(Z, centres)
    for _ in range(max_iter):
        counts = np.bincount(labels, minlength=centres.shape[0])
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, Z)
        filled = counts > 0  # an emptied cluster keeps its centre
        centres = centres.copy()
        centres[filled] = sums[filled] / counts[filled, None]
        new = _nearest(Z, centres)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _ward_centres(Z, n_components, rng, size=_WARD_SAMPLES):
    """Centres of Ward's hierarchical clustering of a random subsample."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = Z.shape[0]
    m = min(n, max(n_components + 1, int(0.7 * n)), size)
    sub = Z[rng.choice(n, size=m, replace=False)]
    labels = fcluster(linkage(sub, "ward"), n_components, "maxclust") - 1
    centres = np.stack([sub[labels == j].mean(axis=0) for j in range(labels.max() + 1)])
    if centres.shape[0] < n_components:  # ties: fewer clusters than asked
        extra = sub[rng.choice(m, size=n_components - centres.shape[0], replace=False)]
        centres = np.vstack([centres, extra])
    return centres


def _labels(Z, n_components, kind, rng):
    """A partition of the rows of Z of the given kind."""
    if kind == "random_from_data":
        idx = rng.choice(Z.shape[0], size=n_components, replace=False)
        return _nearest(Z, Z[idx])
    if kind == "ward":
        return _nearest(Z, _ward_centres(Z, n_components, rng))
    centres = _kmeans_plusplus(Z, n_components, rng)
    if kind == "kmeans":
        return _lloyd(Z, centres)
    return _nearest(Z, centres)


def initial_resp(X, Z, n_components, init_params, rng):
    """Responsibilities of one independent start (scale-free).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    Z : ndarray of shape (n_samples, n_features)
        ``standardise(X)``.
    n_components : int
        Number of components.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
        Kind of start: a Lloyd k-means partition, a partition around
        k-means++ seeds or around data points drawn uniformly, or random
        soft responsibilities.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    ndarray of shape (n_samples, n_components)
        Responsibilities (rows sum to one).
    """
    if init_params == "random":
        # Random soft responsibilities, as scikit-learn.
        resp = rng.uniform(size=(X.shape[0], n_components))
        return resp / resp.sum(axis=1, keepdims=True)
    return _one_hot(_labels(Z, n_components, init_params, rng), n_components)


# ------------------------------------------------------------- batched EM
class _Mixtures:
    """``S`` candidate mixtures of ``K`` components, as one batch.

    Means are in the centred frame of the search's rows. Covariances are
    stored so that the four types share the arithmetic: ``full`` (S, K, D,
    D), ``tied`` (S, 1, D, D), ``diag`` (S, K, D), ``spherical`` (S, K, 1).
    """

    __slots__ = ("weights", "means", "cov")

    def __init__(self, weights, means, cov):
        self.weights, self.means, self.cov = weights, means, cov

    def __len__(self):
        return self.weights.shape[0]

    def take(self, idx):
        return _Mixtures(self.weights[idx], self.means[idx], self.cov[idx])


def _where(mask, a, b):
    """Candidate-wise choice: ``a`` where ``mask``, else ``b``."""

    def pick(x, y):
        return np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y)

    return _Mixtures(
        pick(a.weights, b.weights), pick(a.means, b.means), pick(a.cov, b.cov)
    )


def _is_pd(cov):
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return False
    return True


class _BatchEM:
    """EM on many candidate mixtures at once (the search's workhorse).

    One vectorised pass updates every candidate of a batch: on small data
    most of the cost of an EM iteration is the overhead of numpy calls,
    which the candidates then share. Every term is a matrix product over
    all candidates and components (shape (S K, rows)): the Mahalanobis
    distance expanded as ``x^T P x - 2 x^T P mu + mu^T P mu`` with ``P`` the
    precision ``L^-T L^-1`` built from the Cholesky factor, and the M-step
    statistics ``R X`` and ``R (X x X)``, on the data centred on their mean
    as in :mod:`bayes_gmm.em`. (The expansion loses ~``eps (x / sd)^2`` to
    cancellation, negligible for ranking candidates; the fit itself runs
    :func:`bayes_gmm.em.run_em` from the starts.) Rows and candidates are
    processed in blocks whose temporaries hold at most ``_BATCH_FLOATS``
    floats. A candidate whose covariance is not positive definite gets a
    mean log-likelihood of ``-inf`` and is left as it was.
    """

    def __init__(self, X, covariance_type, reg_covar, chunk_size=None):
        self.chunk_size = chunk_size
        self.center = X.mean(axis=0)
        self.X = X - self.center
        self.n, self.d = X.shape
        self.ct = covariance_type
        self.reg = reg_covar
        sd = X.std(axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)
        # Units of the covariances in standardised terms (see _vec).
        if covariance_type in ("full", "tied"):
            self.cov_unit = np.outer(self.sd, self.sd)
        elif covariance_type == "diag":
            self.cov_unit = self.sd**2
        else:
            self.cov_unit = np.mean(self.sd**2)
        self.n_iter = 0  # EM iterations spent, summed over candidates
        self.work = 0.0  # ... and their cost (see _ROW_WORK)
        self.row_cost = (self.d * self.d if covariance_type == "full" else self.d) + (
            _ROW_WORK
        )
        self.Xt = np.ascontiguousarray(self.X.T)
        self.X2 = self.X * self.X
        self.X2t = np.ascontiguousarray(self.X2.T)
        self.sq = self.X2.sum(axis=1)
        self.xtx = self.X.T @ self.X
        self.square = self.ct in ("full", "tied")
        d2 = self.d * self.d
        self._outer = None
        if self.square and self.n * d2 <= _BATCH_FLOATS:
            self._outer = self._xx(slice(None))

    def _xx(self, r):
        """Rows ``x x^T`` of a block, flattened, shape (rows, D * D)."""
        if self._outer is not None:
            return self._outer[r]
        x = self.X[r]
        return (x[:, :, None] * x[:, None, :]).reshape(x.shape[0], -1)

    def _blocks(self, s, k):
        """Candidate and row blocks whose temporaries fit the budget."""
        width = self.d * self.d if self.square else self.d
        rows = int(min(self.n, max(1, _BATCH_FLOATS // max(k, width))))
        if self.chunk_size is not None:
            rows = max(1, min(rows, int(self.chunk_size)))
        group = int(max(1, _BATCH_FLOATS // (k * rows)))
        groups = [slice(a, min(a + group, s)) for a in range(0, s, group)]
        return groups, [slice(a, min(a + rows, self.n)) for a in range(0, self.n, rows)]

    def _stats(self, s, k):
        if self.ct == "full":
            second = np.zeros((s, k, self.d * self.d))
        elif self.ct == "tied":
            second = None
        else:
            second = np.zeros((s, k, self.d))
        return np.zeros((s, k)), np.zeros((s, k, self.d)), second

    def _accumulate(self, resp, r, nk, sx, second):
        """Add a block's soft counts and moments (about the data mean)."""
        s, k, n = resp.shape
        flat = resp.reshape(s * k, n)
        nk += flat.sum(axis=1).reshape(s, k)
        sx += (flat @ self.X[r]).reshape(s, k, -1)
        if self.ct == "full":
            second += (flat @ self._xx(r)).reshape(s, k, -1)
        elif self.ct != "tied":
            second += (flat @ self.X2[r]).reshape(s, k, -1)

    def _from_moments(self, nk, sx, second):
        """M-step: parameters from soft counts and moments."""
        s, k = nk.shape
        d = self.d
        nk = nk + 10.0 * _EPS  # empty components stay defined, as sklearn
        means = sx / nk[..., None]
        if self.ct == "full":
            # Sigma_k = E_k[x x^T] - mu_k mu_k^T + reg I  (x centred).
            cov = second.reshape(s, k, d, d) / nk[..., None, None]
            cov -= means[..., :, None] * means[..., None, :]
            cov = 0.5 * (cov + np.swapaxes(cov, -1, -2)) + self.reg * np.eye(d)
        elif self.ct == "tied":
            # Sigma = (X^T X - sum_k n_k mu_k mu_k^T) / n + reg I.
            mm = np.einsum("sk,skd,ske->sde", nk, means, means)
            cov = ((self.xtx - mm) / nk.sum(axis=1)[:, None, None])[:, None]
            cov = 0.5 * (cov + np.swapaxes(cov, -1, -2)) + self.reg * np.eye(d)
        else:
            cov = second / nk[..., None] - means * means
            if self.ct == "spherical":
                cov = cov.mean(axis=-1, keepdims=True)
            cov = cov + self.reg
        return _Mixtures(nk / nk.sum(axis=1, keepdims=True), means, cov)

    def m_step(self, resp):
        """Mixtures from responsibilities of shape (S, K, n)."""
        s, k, _ = resp.shape
        nk, sx, second = self._stats(s, k)
        groups, rows = self._blocks(s, k)
        for g in groups:
            for r in rows:
                sec = None if second is None else second[g]
                self._accumulate(resp[g, :, r], r, nk[g], sx[g], sec)
        return self._from_moments(nk, sx, second)

    # --------------------------------------------------------- iteration
    def _factor(self, mix):
        """Usable candidates, precisions and log-determinants of the covariances."""
        cov = mix.cov
        if self.square:
            ok = np.all(np.isfinite(cov), axis=(1, 2, 3))
            eye = np.eye(self.d)
            cov = np.where(ok[:, None, None, None], cov, eye)
            try:
                chol = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                ok &= np.array([_is_pd(c) for c in cov])
                chol = np.linalg.cholesky(np.where(ok[:, None, None, None], cov, eye))
            # log det Sigma = 2 sum log diag L; P = L^-T L^-1 from the factor.
            logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
            inv = np.linalg.solve(chol, np.broadcast_to(eye, chol.shape))
            return ok, np.swapaxes(inv, -1, -2) @ inv, logdet
        ok = np.all(cov > 0.0, axis=(1, 2)) & np.all(np.isfinite(cov), axis=(1, 2))
        safe = np.where(ok[:, None, None], cov, 1.0)
        logdet = np.log(safe).sum(axis=-1) * (self.d if self.ct == "spherical" else 1)
        return ok, 1.0 / safe, logdet

    def _log_prob(self, mix, prec, logdet, log_w, g, r):
        """``log w_k N(x_n | mu_k, Sigma_k)`` of a block, shape (S, K, rows)."""
        mu = mix.means[g]
        s, k, d = mu.shape
        p = prec[g]
        x = self.X[r]
        if self.square:
            # (x - mu)^T P (x - mu) = <P, x x^T> - 2 x^T (P mu) + mu^T P mu
            pm = np.einsum("skde,ske->skd", np.broadcast_to(p, (s, k, d, d)), mu)
            kp = p.shape[1]
            xx = self._xx(r).T if self._outer is None else self._outer[r].T
            quad = (p.reshape(s * kp, d * d) @ xx).reshape(s, kp, -1)
            maha = quad - 2.0 * (pm.reshape(s * k, d) @ x.T).reshape(s, k, -1)
            maha += np.einsum("skd,skd->sk", pm, mu)[..., None]
        elif self.ct == "diag":
            # sum_d (x_d - mu_d)^2 / s_d, expanded the same way.
            pm = (mu * p).reshape(s * k, d)
            maha = p.reshape(s * k, d) @ self.X2t[:, r] - 2.0 * (pm @ self.Xt[:, r])
            maha += np.einsum("cd,cd->c", mu.reshape(s * k, d), pm)[:, None]
            maha = maha.reshape(s, k, -1)
        else:
            m2 = mu.reshape(s * k, d)
            maha = self.sq[r] - 2.0 * (m2 @ self.Xt[:, r])
            maha += np.einsum("cd,cd->c", m2, m2)[:, None]
            maha = maha.reshape(s, k, -1) * p
        np.maximum(maha, 0.0, out=maha)
        maha += self.d * _LOG_2PI + logdet[g][..., None]
        maha *= -0.5
        maha += log_w[g][..., None]
        return maha

    @staticmethod
    def _normalise(lp):
        """Responsibilities in place of ``lp`` (S, K, rows); log sum_k exp."""
        top = lp.max(axis=1, keepdims=True)
        top[~np.isfinite(top)] = 0.0
        np.subtract(lp, top, out=lp)
        # Below 1e-200 a responsibility is 0: subnormal numbers would slow
        # every later product (as in bayes_gmm.em).
        lp[lp < _LOG_TINY] = -np.inf
        np.exp(lp, out=lp)
        total = lp.sum(axis=1, keepdims=True)
        lp /= total
        with np.errstate(divide="ignore"):
            return (np.log(total) + top)[:, 0]

    def iterate(self, mix):
        """One EM iteration of every candidate: (mean log-likelihood, new)."""
        s, k = mix.weights.shape
        ok, prec, logdet = self._factor(mix)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_w = np.log(mix.weights)
        ll = np.zeros(s)
        nk, sx, second = self._stats(s, k)
        groups, rows = self._blocks(s, k)
        for g in groups:
            for r in rows:
                lp = self._log_prob(mix, prec, logdet, log_w, g, r)
                ll[g] += self._normalise(lp).sum(axis=-1)
                sec = None if second is None else second[g]
                self._accumulate(lp, r, nk[g], sx[g], sec)
        self.n_iter += s
        self.work += self.cost(s, k)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            new = self._from_moments(nk, sx, second)
        ok &= np.isfinite(ll)
        ll = np.where(ok, ll / self.n, -np.inf)
        return ll, _where(ok, new, mix)

    def cost(self, s, k, n_iter=1):
        """Work of ``n_iter`` EM iterations of ``s`` candidates of ``k`` components."""
        return n_iter * (s * self.n * k * self.row_cost + _CALL_WORK)

    def resp(self, mix):
        """Responsibilities (K, n) of the first candidate of ``mix``."""
        one = mix.take(slice(0, 1))
        _, prec, logdet = self._factor(one)
        log_w = np.log(one.weights)
        out = np.empty((one.weights.shape[1], self.n))
        for r in self._blocks(1, out.shape[0])[1]:
            lp = self._log_prob(one, prec, logdet, log_w, slice(0, 1), r)
            self._normalise(lp)
            out[:, r] = lp[0]
        return out

    def run(self, mix, n_iter):
        """``n_iter`` EM iterations of every candidate."""
        ll = np.full(len(mix), -np.inf)
        for _ in range(n_iter):
            ll, mix = self.iterate(mix)
        return ll, mix

    # ------------------------------------------------------ acceleration
    def _vec(self, mix):
        """Every candidate's parameters as one row, in standardised units."""
        s = len(mix)
        parts = (mix.weights, mix.means / self.sd, mix.cov / self.cov_unit)
        return np.concatenate([x.reshape(s, -1) for x in parts], axis=1)

    def _unvec(self, v, like):
        """Mixtures shaped like ``like`` from rows of :meth:`_vec`."""
        k = like.weights.shape[1]
        km = k + like.means[0].size
        means = v[:, k:km].reshape(like.means.shape) * self.sd
        cov = v[:, km:].reshape(like.cov.shape) * self.cov_unit
        return _Mixtures(v[:, :k], means, cov)

    def _cycle(self, theta, bound):
        """One SQUAREM cycle of every candidate (see :meth:`converge`).

        Returns the mean log-likelihood at ``theta``, the one the cycle
        reached (that of the point the last EM step started from), the new
        parameters, and whether the extrapolated step was taken.
        """
        ll0, theta1 = self.iterate(theta)
        ll1, theta2 = self.iterate(theta1)
        v0, v1, v2 = self._vec(theta), self._vec(theta1), self._vec(theta2)
        r, v = v1 - v0, v2 - 2.0 * v1 + v0
        nr, nv = np.linalg.norm(r, axis=1), np.linalg.norm(v, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.clip(np.where(nv > 0, nr / nv, 1.0), 1.0, bound)
        step = self._unvec(v0 + (2.0 * a)[:, None] * r + (a * a)[:, None] * v, theta)
        usable = (a > 1.0) & np.all(step.weights > 0, axis=1)
        ll_step, after = self.iterate(_where(usable, step, theta2))
        taken = ll_step >= ll1
        new = _where(taken, after, theta2)
        return ll0, np.where(taken, ll_step, ll1), new, taken & (a >= bound), taken

    def converge(self, mix, tol=_CONVERGE_TOL, max_iter=_CONVERGE_ITER):
        """EM to convergence, accelerated by SQUAREM (Varadhan and Roland 2008).

        A cycle takes two EM steps from ``theta``, extrapolates along them to
        ``theta + 2 a r + a^2 v`` (``r`` the first step, ``v`` the change
        between the two, ``a = |r| / |v|`` at least 1 and capped by a bound
        of each candidate, which grows 4-fold when the cap is reached and
        shrinks 4-fold when a step is refused) and takes an EM step from
        there; a step that ends below the second EM iterate is refused, and
        the cycle goes on from that iterate instead. Plain EM crawls for
        hundreds of iterations along the flat ridges of the likelihood, so
        that a tolerance on its steps stops it far from the optimum it is
        heading to; the extrapolated steps cross such ridges in a few
        cycles. A candidate stops when a cycle gains less than ``tol``, or
        after ``max_iter`` EM iterations; one that has met another on the
        same value while both barely move stops too.
        """
        out = _Mixtures(mix.weights.copy(), mix.means.copy(), mix.cov.copy())
        ll_out = np.full(len(mix), -np.inf)
        active = np.arange(len(mix))
        bound = np.ones(len(mix))
        spent = 0
        while active.size:
            ll0, ll, mix, grow, taken = self._cycle(mix, bound[active])
            b = bound[active]
            bound[active] = np.where(
                grow, 4.0 * b, np.where(taken, b, np.maximum(1.0, b / 4.0))
            )
            spent += 3
            with np.errstate(invalid="ignore"):
                gain = ll - ll0
            done = ~(gain >= tol) | (spent >= max_iter)
            slow = np.flatnonzero(~done & (gain < _SLOW))
            if slow.size > 1:  # met: the same value while both barely move
                o = slow[np.argsort(ll[slow])]
                done[o[:-1][np.diff(ll[o]) < _MET]] = True
            idx = active[done]
            ll_out[idx] = np.where(np.isfinite(ll0[done]), ll[done], -np.inf)
            out.weights[idx] = mix.weights[done]
            out.means[idx] = mix.means[done]
            out.cov[idx] = mix.cov[done]
            active, mix = active[~done], mix.take(~done)
        return ll_out, out

    # ---------------------------------------------------------- results
    def params(self, mix, i):
        """Candidate ``i`` as a ``MixtureParams`` in the data's frame.

        Its components are ordered by decreasing weight, so that the order
        of a fit's components does not depend on which candidate found it.
        """
        from bayes_gmm._covariance import get_covariance_type
        from bayes_gmm.em import MixtureParams

        order = np.argsort(-mix.weights[i], kind="stable")
        cov = mix.cov[i] if self.ct == "tied" else mix.cov[i][order]
        if self.ct == "tied":
            cov = cov[0]
        elif self.ct == "spherical":
            cov = cov[:, 0]
        pc = get_covariance_type(self.ct).precision_cholesky(cov, self.reg)
        means = mix.means[i][order] + self.center
        return MixtureParams(mix.weights[i][order], means, cov.copy(), pc, self.ct)

    def full_covariances(self, mix):
        """(S, K, D, D) covariance matrices whatever the type."""
        s, k = mix.weights.shape
        if self.ct in ("full", "tied"):
            return np.broadcast_to(mix.cov, (s, k, self.d, self.d))
        var = np.broadcast_to(mix.cov, (s, k, self.d))
        return var[..., :, None] * np.eye(self.d)


# ------------------------------------------------------------------ collapse
class _Collapse:
    """Tells which mixtures have a component collapsing onto a few points.

    The likelihood of a mixture is unbounded: a component can shrink onto
    points that share a value (rounded or duplicated data) or lie on a line,
    and its density grows until ``reg_covar`` stops it. Such a spurious
    optimum is recognised by a component

    * whose smallest variance is at most ``10 reg_covar`` (it sits on a
      lower-dimensional set of points, held up by the regularisation
      alone), or
    * that holds fewer than 10 points and whose smallest variance in
      standardised units (the eigenvalues of ``S^-1/2 Sigma_k S^-1/2``,
      ``S`` the diagonal of the data variances) is below ``5e-4``: a
      handful of close points, narrower than ~2% of the data's spread, or
    * (``full``) that holds fewer points than ``D + 1`` (``D`` the number
      of non-constant columns), too few for a covariance of full rank.

    Real clusters that thin hold more points (well-separated clusters are
    often that narrow relative to the whole data). ``benchmarks/optima.py``
    calls every component below ``1e-3`` degenerate, a convention: between
    the fully spurious optima (``~1e-8`` to ``1e-5``, a component on tied
    values) and the regular ones there is no clean gap on its data sets
    (thin components of 10 to 20 points on measurement-rounding grids).
    The floor here is half of that one, because an optimum that the search
    stopped near the floor can cross it when EM goes on: with the
    benchmark's floor, a regular optimum of a small component was set aside
    (Old Faithful, full, K = 6), and the fit ended below scikit-learn's.
    Constant columns are left out, and data that are themselves flat
    (collinear columns) are not tested by the first rule. With fewer than
    10 rows per component nothing is tested: every component of such
    small data is thin by chance, and a tight cluster on tied values (say,
    two groups with a constant coordinate each) is as likely structure as
    artefact.
    """

    def __init__(self, S, reg_covar, n_components):
        sd = S.std(axis=0)
        self.active = S.shape[0] >= _FEW_POINTS * n_components
        self.keep = sd > 0
        self.sd = sd[self.keep]
        self.n = S.shape[0]
        self.floor = 10.0 * reg_covar
        cov = np.atleast_2d(np.cov(S[:, self.keep], rowvar=False, bias=True))
        self.flat_data = not self.keep.any() or np.linalg.eigvalsh(cov)[0] <= self.floor

    def __call__(self, params):
        """Whether a ``MixtureParams`` has a collapsing component."""
        from bayes_gmm._covariance import get_covariance_type

        k, d = params.means.shape
        try:
            chol = get_covariance_type(params.covariance_type).to_cholesky(
                params.covariances, k, d
            )
        except ValueError:
            return True
        cov = chol @ np.swapaxes(chol, -1, -2)
        return bool(
            self.batch(params.weights[None], cov[None], params.covariance_type)[0]
        )

    def batch(self, weights, cov, covariance_type):
        """Per mixture: weights (S, K), covariance matrices (S, K, D, D)."""
        bad = np.zeros(weights.shape[0], dtype=bool)
        if not (self.active and self.keep.any()):
            return bad
        cov = cov[:, :, self.keep][:, :, :, self.keep]
        finite = np.all(np.isfinite(cov), axis=(1, 2, 3))
        bad |= ~finite
        cov = cov[finite]
        scaled = cov / self.sd[:, None] / self.sd[None, :]
        try:
            lam = np.linalg.eigvalsh(cov)[..., 0]
            lam_std = np.linalg.eigvalsh(scaled)[..., 0]
        except np.linalg.LinAlgError:
            return np.ones(weights.shape[0], dtype=bool)
        points = weights[finite] * self.n
        # Thin and holding a few points, or very thin and not a large cluster
        # (less than a share of an average one).
        few = (points < _FEW_POINTS) & (lam_std < _EIG_FLOOR)
        small = points < _LARGE_SHARE * self.n / weights.shape[1]
        flag = np.any(few | (small & (lam_std < _THIN_FLOOR)), axis=1)
        # Too few points for the covariance (a full-rank matrix, a variance).
        need = self.sd.size + 1 if covariance_type == "full" else 2
        flag |= np.any(points < need, axis=1)
        if not self.flat_data:
            flag |= np.any(lam <= self.floor, axis=1)
        bad[finite] = flag
        return bad


# ------------------------------------------------------------------- the plan
class StartPlan:
    """The starting points of one fit found by the default search.

    All ``n_init`` starts are computed when the plan is made (see the module
    docstring); :meth:`next` hands them out in order, the best first, and
    starts over when there are fewer distinct optima than ``n_init``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    n_components : int
        Number of components ``K``.
    covariance_type : str
        The covariance type.
    n_init : int
        Number of starts to hand out.
    reg_covar : float
        Covariance regularisation of the EM runs.
    rng : numpy.random.Generator
        Source of randomness.
    chunk_size : int, optional
        Most rows the search's EM processes at once (by default as many as
        keep its temporaries near 4 MB).
    kmeans_seed : int, optional
        The ``random_state`` of scikit-learn's starts (the ``raw``
        candidates): given the user's int seed, they are the successive
        k-means starts of ``sklearn.mixture.GaussianMixture(n_init=...,
        random_state=seed)`` (k-means on all rows, in their units, on one
        ``RandomState(seed)``), and the first, the start of its default
        ``n_init=1`` fit, always runs to convergence, so that the default
        fit never ends below scikit-learn's from the same seed (unless that
        optimum collapses). By default seeds drawn from ``rng``.

    Attributes
    ----------
    starts : list of MixtureParams
        The starts, best first (at most ``n_init``).
    n_em_iterations : int
        EM iterations the search spent, summed over candidates (on its
        sample of rows).
    """

    def __init__(
        self,
        X,
        n_components,
        covariance_type,
        n_init,
        reg_covar,
        rng,
        *,
        chunk_size=None,
        budget=None,
        partitions=None,
        kmeans_seed=None,
    ):
        self.X = X
        # (a grid's shared partitions have no scikit-learn start of their own)
        self._kmeans_seed = kmeans_seed if partitions is None else None
        self._rows = None  # the rows of X the search works on (None: all)
        self.k = int(n_components)
        self.covariance_type = covariance_type
        self.n_init = int(n_init)
        self.reg_covar = float(reg_covar)
        self.rng = rng
        self.chunk_size = chunk_size
        self.n_em_iterations = 0
        n, d = X.shape
        w = d * d if covariance_type == "full" else d
        # What the search may spend (in _BatchEM.work's units): about what
        # scikit-learn spends on n_init starts, and the allowance.
        self._sk_iteration = n * self.k * (w + _ROW_WORK) + _SK_CALL_WORK
        one_run = _SK_START_WORK + _BUDGET_ITER * self._sk_iteration
        self._own_budget = budget is None
        self.budget = (
            self.n_init * one_run + _BUDGET_ALLOWANCE if budget is None else budget
        )
        self.work = 0.0
        self._partitions = partitions
        self._given = 0
        self.starts = self._search()

    def next(self):
        """The parameters of the next start (a ``MixtureParams``)."""
        start = self.starts[self._given % len(self.starts)]
        self._given += 1
        return start

    def _sample(self):
        """The rows the search works on (all of them for small data)."""
        n, d = self.X.shape
        size = max(_MIN_SCREEN_SAMPLES, 20 * self.k * (d + 1))
        if self._partitions is not None:
            return self._partitions.S
        if n <= size:
            return self.X
        idx = np.sort(self.rng.choice(n, size=size, replace=False))
        self._rows = idx
        return self.X[idx]

    def _candidates(self, S, Z, n_cand):
        """(n_cand, K, rows) one-hot responsibilities of candidate partitions."""
        if self._partitions is not None:
            labels = self._partitions.labels(self.k, n_cand)
        else:
            labels = [_candidate(S, Z, self.k, c, self.rng) for c in range(n_cand)]
            if self._kmeans_seed is not None:
                # the raw candidates become scikit-learn's starts, in its order
                raw = [c for c in range(n_cand) if _KINDS[c % len(_KINDS)][0] == "raw"]
                for c, lab in zip(raw, self._sklearn_labels(len(raw)), strict=True):
                    labels[c] = lab
        resp = np.zeros((len(labels), self.k, S.shape[0]))
        for c, lab in enumerate(labels):
            resp[c, lab, np.arange(S.shape[0])] = 1.0
        return resp

    def _sklearn_labels(self, n):
        """scikit-learn's first ``n`` starts for ``kmeans_seed`` (search's rows).

        ``GaussianMixture(n_init=m, random_state=seed)`` runs ``m`` k-means
        fits on all rows, one after the other on one ``RandomState(seed)``.
        """
        from sklearn.cluster import KMeans

        state = np.random.RandomState(self._kmeans_seed)
        out = []
        for _ in range(n):
            km = KMeans(self.k, n_init=1, random_state=state).fit(self.X)
            out.append(km.labels_ if self._rows is None else km.labels_[self._rows])
        return out

    # ------------------------------------------------------------- search
    def _search(self):
        S = self._sample()
        if self.k == 1:
            from bayes_gmm.em import m_step

            return [
                m_step(
                    S, np.ones((S.shape[0], 1)), self.covariance_type, self.reg_covar
                )
            ]
        em = _BatchEM(S, self.covariance_type, self.reg_covar, self.chunk_size)
        collapse = _Collapse(S, self.reg_covar, self.k)
        self._em = em

        def flagged(ll, mix):
            cov = em.full_covariances(mix)
            return ~np.isfinite(ll) | collapse.batch(mix.weights, cov, em.ct)

        Z = standardise(S)
        m, k = self.n_init, self.k
        # 1. Screen: a short EM from every candidate partition (fewer
        # candidates, at least n_init, or fewer iterations when the budget
        # is short).
        n_cand = max(_CANDIDATES_PER_START * m, len(_KINDS))
        screen = _SCREEN_SHARE * self.budget
        n_screen = _SCREEN_ITER
        if em.cost(n_cand, k, n_screen + 1) > screen:
            n_cand = max(
                m, 2, int((screen / (n_screen + 1) - _CALL_WORK) / em.cost(1, k, 1))
            )
        while n_screen > 1 and em.cost(n_cand, k, n_screen + 1) > screen:
            n_screen -= 1
        resp = self._candidates(S, Z, n_cand)
        em.work += em.cost(len(resp), k)  # the M-step
        mix, trace = em.m_step(resp), []
        for _ in range(n_screen):
            ll, mix = em.iterate(mix)
            trace.append(ll[0])
        del resp
        self._fit_budget_to_sklearn(trace)
        # Identical partitions give identical values: keep one of each.
        order = np.argsort(-ll, kind="stable")
        order = order[_distinct(ll[order], tol=1e-12 * np.abs(ll[order]))]
        # 2. Converge the best of them (all of them when the budget allows
        # _MIN_CONVERGE iterations each).
        share = self._left(em) * (_CONVERGE_SHARE if k > 1 else 1.0)
        n_conv = order.size
        if em.cost(n_conv, k, _MIN_CONVERGE) > share:
            n_conv = min(n_conv, max(m, int(share / em.cost(1, k, _MIN_CONVERGE))))
        if self._kmeans_seed is not None:
            # scikit-learn's default start (candidate 0) always converges
            # (see kmeans_seed); the best of the others fill the rest.
            first = order == 0
            order = np.concatenate([order[first], order[~first]])
        self._max_iter = self._iterations(em, n_conv, share)
        if self._max_iter >= 3:
            ll, mix = em.converge(mix.take(order[:n_conv]), max_iter=self._max_iter)
        else:  # no budget left to converge: rank by the screening
            ll, mix = ll[order[:n_conv]], mix.take(order[:n_conv])
        pool = _Pool(ll, mix, flagged(ll, mix))
        # 3. Split and merge from the best few optima (from a collapsed one
        # when there is no other: moves can lead away from it), while the
        # budget lasts.
        origins = pool.best(_REFINE_FROM) or pool.best(1, flagged=True)
        for best_ll, best in origins:
            if not self._refine(em, Z, pool, flagged, best_ll, best):
                break
        self.n_em_iterations = em.n_iter
        self.work = em.work
        starts = [em.params(mix_, i) for mix_, i in pool.starts(m)]
        if not starts:  # nothing converged to a usable mixture: let EM say why
            starts = [em.params(mix, i) for i in range(min(m, len(mix)))]
        logger.debug(
            "start search: %d candidates on %d rows, %d regular optima, "
            "%d EM iterations, %.3g of a budget of %.3g",
            n_cand,
            S.shape[0],
            pool.n_regular,
            self.n_em_iterations,
            em.work,
            self.budget,
        )
        return starts

    def _fit_budget_to_sklearn(self, trace):
        """Scale the budget down where scikit-learn's own fit would be short.

        ``trace`` is the screening's mean log-likelihood, per iteration, of
        candidate 0 (scikit-learn's k-means start). When it settles within
        scikit-learn's default ``tol`` (1e-3) during the screening,
        scikit-learn's fit would stop after that many iterations rather
        than the budget's model of 15, and the budget assumes as many.
        """
        if not self._own_budget or len(trace) < 2:
            return
        gains = np.abs(np.diff(np.asarray(trace)))
        settled = np.flatnonzero(gains < _SK_TOL)
        if settled.size == 0:
            return
        n_iter = max(int(settled[0]) + 2, _MIN_SK_ITER)
        one_run = _SK_START_WORK + min(_BUDGET_ITER, n_iter) * self._sk_iteration
        self.budget = min(self.budget, self.n_init * one_run + _BUDGET_ALLOWANCE)

    def _left(self, em):
        return max(0.0, self.budget - em.work)

    def _iterations(self, em, n, work, cap=_CONVERGE_ITER):
        """EM iterations of ``n`` candidates that ``work`` pays for (<= ``cap``)."""
        return int(min(cap, work // em.cost(n, self.k, 1)))

    def _refine(self, em, Z, pool, flagged, best_ll, best):
        """Split-and-merge search (Ueda et al. 2000) from one optimum.

        Each round spends at most half of what is left of the budget on as
        many moves (most promising first) as it pays for: every move gets 2
        EM iterations, the best quarter (at least 12) 8 more, the best three
        run to convergence. Returns whether there was budget left for a
        round.
        """
        k = self.k
        n_all = k * (k - 1) * (k - 1)  # 2 cuts x (pairs + pairs x thirds)
        n_all = min(n_all, max(2, _MOVE_FLOATS // (k * em.n)))

        def cost(n, conv):
            keep = min(n, max(_MOVE_KEEP, n // 4))
            return (
                em.cost(n, k, _MOVE_ITER_FIRST + 1)
                + em.cost(keep, k, _MOVE_ITER - _MOVE_ITER_FIRST)
                + em.cost(min(n, _MOVE_CONVERGE), k, conv)
            )

        for _ in range(_MAX_ROUNDS):
            round_work = 0.5 * self._left(em)
            conv = min(
                self._max_iter, self._iterations(em, _MOVE_CONVERGE, 0.4 * round_work)
            )
            if conv < 3 or cost(2, conv) > round_work:
                return False
            lo, hi = 2, n_all  # the most moves the round pays for
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if cost(mid, conv) <= round_work else (lo, mid - 1)
            n_moves = lo
            moves = _moves(em.resp(best), Z, n_moves)
            # Successive halving: every move a few iterations, the best
            # quarter some more, the best few of those to convergence.
            em.work += em.cost(len(moves), k)
            ll, mix = em.run(em.m_step(moves), _MOVE_ITER_FIRST)
            del moves
            keep = np.argsort(-ll, kind="stable")[: max(_MOVE_KEEP, len(ll) // 4)]
            ll, mix = em.run(mix.take(keep), _MOVE_ITER - _MOVE_ITER_FIRST)
            ll = np.where(flagged(ll, mix), -np.inf, ll)
            order = np.argsort(-ll, kind="stable")
            order = order[np.isfinite(ll[order])]
            top = order[_distinct(ll[order], _MOVE_CONVERGE)]
            if top.size == 0:
                break
            ll, mix = em.converge(mix.take(top), max_iter=conv)
            bad = flagged(ll, mix)
            pool.add(ll, mix, bad)
            ll = np.where(bad, -np.inf, ll)
            i = int(np.argmax(ll))
            if not ll[i] > best_ll + _SAME:
                break
            best_ll, best = ll[i], mix.take(slice(i, i + 1))
        return True


class GridStarts:
    """Candidate partitions shared by every model of a grid (mclust's idea).

    The candidates of one ``K`` do not depend on the covariance type, so a
    grid over types and ``K`` draws them once: the ``K``-cluster cut of one
    Ward hierarchy of the standardised data (mclust takes the starts of
    every ``K`` from one hierarchical clustering), then the generators of
    :data:`_KINDS`, each computed once per ``K`` and cached. All of it on
    one sample of the rows (the search's sample size for the largest
    ``K``), so that the grid's searches see the same rows. Each model of
    the grid gets a search of :meth:`budget`, without the allowance of a
    single fit, and its final EM runs from the best optimum found.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data.
    max_components : int
        Largest ``K`` of the grid.
    rng : numpy.random.Generator
        Source of randomness (the draws of each ``K`` have their own stream).
    """

    def __init__(self, X, max_components, rng):
        n, d = X.shape
        size = max(_MIN_SCREEN_SAMPLES, 20 * max_components * (d + 1))
        if n > size:
            X = X[np.sort(rng.choice(n, size=size, replace=False))]
        self.S = X
        self.n_rows = n
        self.Z = standardise(X)
        self._seed = int(rng.integers(2**31 - 1))
        self._tree = None
        self._cache = {}

    def _ward(self, k):
        from scipy.cluster.hierarchy import fcluster, linkage

        if self._tree is None:
            m = min(self.S.shape[0], _GRID_WARD_SAMPLES)
            rng = np.random.default_rng(self._seed)
            self._sub = np.sort(rng.choice(self.S.shape[0], size=m, replace=False))
            self._tree = linkage(self.Z[self._sub], "ward")
        sub = self.Z[self._sub]
        labels = fcluster(self._tree, k, "maxclust") - 1
        centres = np.stack(
            [sub[labels == j].mean(axis=0) for j in range(labels.max() + 1)]
        )
        if centres.shape[0] < k:  # ties: fewer clusters than asked
            return None
        return _nearest(self.Z, centres)

    def labels(self, k, n_cand):
        """At least ``n_cand`` candidate partitions for ``K = k`` (labels)."""
        cache = self._cache.setdefault(k, {"labels": [], "c": 0})
        if not cache["labels"]:
            ward = self._ward(k)
            if ward is not None:
                cache["labels"].append(ward)
            cache["rng"] = np.random.default_rng([self._seed, k])
        while len(cache["labels"]) < n_cand:
            cache["labels"].append(
                _candidate(self.S, self.Z, k, cache["c"], cache["rng"])
            )
            cache["c"] += 1
        return cache["labels"][:n_cand]

    def budget(self, n_components, covariance_type, n_init):
        """Search budget of one model of the grid (see _GRID_ITER)."""
        d = self.S.shape[1]
        w = d * d if covariance_type == "full" else d
        one = self.S.shape[0] * n_components * (w + _ROW_WORK) + _CALL_WORK
        return _GRID_ITER * n_init * one


def _candidate(S, Z, k, c, rng):
    """Labels of the ``c``-th candidate partition (see _KINDS)."""
    kind, spread = _KINDS[c % len(_KINDS)]
    if kind == "raw":
        from sklearn.cluster import KMeans

        seed = int(rng.integers(2**31 - 1))
        km = KMeans(k, n_init=1, random_state=seed).fit(S)
        return km.labels_
    view = Z * np.exp(spread * rng.standard_normal(Z.shape[1])) if spread else Z
    return _labels(view, k, kind, rng)


class _Pool:
    """The converged optima met by the search."""

    def __init__(self, ll, mix, bad):
        self.items = []  # (mean log-likelihood, flagged, batch, index)
        self.add(ll, mix, bad)

    def add(self, ll, mix, bad):
        for i in np.flatnonzero(np.isfinite(ll)):
            self.items.append((float(ll[i]), bool(bad[i]), mix, int(i)))

    def _sorted(self, flagged):
        items = sorted((t for t in self.items if t[1] == flagged), key=lambda t: -t[0])
        return [items[i] for i in _distinct(np.array([t[0] for t in items]))]

    @property
    def n_regular(self):
        return len(self._sorted(False))

    def best(self, n, flagged=False):
        """The best ``n`` distinct regular (or flagged) optima: (ll, batch of one)."""
        return [
            (ll, mix.take(slice(i, i + 1)))
            for ll, _, mix, i in self._sorted(flagged)[:n]
        ]

    def starts(self, m):
        """Distinct regular optima, best first; without any, the flagged ones.

        Flagged optima below the best regular one top the list up to ``m``
        (EM from an optimum stays there, so none of them can win).
        """
        regular, flagged = self._sorted(False), self._sorted(True)
        if regular:
            flagged = [t for t in flagged if t[0] < regular[0][0]]
            chosen = (regular + flagged)[:m]
        else:
            chosen = flagged[:m]
        return [(mix, i) for _, _, mix, i in chosen]


def _distinct(values, m=None, tol=_SAME):
    """Indices of the first ``m`` values farther than ``tol`` from those kept."""
    out = []
    tol = np.broadcast_to(tol, np.shape(values))
    for i, v in enumerate(values):
        if m is not None and len(out) >= m:
            break
        if not any(v == values[j] or abs(v - values[j]) <= tol[i] for j in out):
            out.append(i)
    return np.array(out, dtype=int)


def _moves(resp, Z, n_moves=None):
    """Responsibilities (moves, K, n) after split-and-merge moves.

    For each pair of components, most overlapping first (the cosine between
    their responsibility vectors, Ueda's merge criterion): cut their union
    in two anew; then, for each pair in the same order, merge them while
    cutting a third component in two. Each cut is made twice: by the
    hyperplane through the points' mean orthogonal to their principal axis,
    and into a core and a shell at the median Mahalanobis distance (a
    narrow component inside a wide one). The first ``n_moves`` of them.
    """
    k = resp.shape[0]
    norm = np.sqrt(np.einsum("kn,kn->k", resp, resp)) + 1e-300
    overlap = (resp @ resp.T) / norm[:, None] / norm[None, :]
    pairs = sorted(
        ((i, j) for i in range(k) for j in range(i + 1, k)), key=lambda p: -overlap[p]
    )

    def all_moves():  # lazily: there are K (K - 1)^2 of them
        for i, j in pairs:
            for mode in _CUTS:
                yield i, j, None, mode
        for i, j in pairs:
            for s in range(k):
                if s not in (i, j):
                    for mode in _CUTS:
                        yield i, j, s, mode

    moves = list(itertools.islice(all_moves(), n_moves))
    out = np.empty((len(moves),) + resp.shape)
    halves = {}
    for m, (i, j, s, mode) in enumerate(moves):
        new = out[m]
        new[:] = resp
        if s is None:
            new[i], new[j] = _halves(resp[i] + resp[j], Z, mode)
        else:
            if (s, mode) not in halves:
                halves[(s, mode)] = _halves(resp[s], Z, mode)
            new[i] = resp[i] + resp[j]
            new[j], new[s] = halves[(s, mode)]
    return out


_CUTS = ("axis", "core")


def _halves(r, Z, mode):
    """The two halves of the points weighted by ``r`` (standardised units)."""
    nk = r.sum() + 1e-300
    dz = Z - r @ Z / nk
    scatter = (r[:, None] * dz).T @ dz / nk
    lam, vec = np.linalg.eigh(scatter)
    if mode == "axis":
        side = (dz @ vec[:, -1]) > 0.0
    else:
        # Mahalanobis distances in the points' own metric (a collapsed
        # direction makes them infinite: such points go to the shell).
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            m2 = ((dz @ vec) ** 2 / np.maximum(lam, 1e-12 * lam[-1])).sum(axis=1)
        m2[np.isnan(m2)] = np.inf
        order = np.argsort(m2)
        cum = np.cumsum(r[order])
        side = np.zeros(r.shape[0], dtype=bool)
        side[order[cum <= 0.5 * cum[-1]]] = True
    return r * side, r * ~side
