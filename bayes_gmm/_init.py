"""Starting points for EM (numpy and scipy only).

The likelihood of a Gaussian mixture has many local optima, and EM climbs
to the one whose basin it starts in. scikit-learn starts every run from
k-means on the raw features, so on data whose columns differ in scale (Old
Faithful: eruption minutes vs waiting minutes, a factor of 12 in standard
deviation) its starts see mostly the widest column and often land in poor
optima. The starts here never look at the units of the features: they work
on the *standardised* data (each column centred, unit variance) or on the
*whitened* data (principal component scores with unit variance), so
multiplying a column by a constant changes the fit only by that change of
units (exactly so for the ``full``, ``tied`` and ``diag`` models, which are
themselves equivariant; up to ``reg_covar``).

The default, ``init_params="kmeans"``, is a small search rather than
``n_init`` independent k-means runs (:class:`StartPlan`). For ``n_init = m``:

1. **Candidates.** ``3 m`` (at least 4) partitions of the data, drawn in
   turn from four generators: nearest-centre partitions around ``K`` data
   points drawn at random and around k-means++ seeds, centres of Ward's
   hierarchical clustering of a random subsample (at most 500 rows), all on
   the standardised data, and Lloyd k-means on the whitened data.
2. **Screening** ("short EM", Biernacki, Celeux and Govaert 2003). Each
   candidate runs 5 EM iterations. Candidates with a component collapsing
   onto a few points (held up by ``reg_covar`` alone, or fewer than 10
   points narrower than 3% of the data's spread: the road to a spurious
   optimum of the unbounded likelihood, see :class:`_Collapse`; not tested
   on data with fewer than ``5 (D + 1)`` rows per component) are ranked
   last, the others by mean log-likelihood.
3. **Convergence.** The best candidates, in turn, run to convergence
   (``tol=1e-4``, at most 200 iterations); at most ``m`` of them are run,
   and the distinct optima without a collapsed component are kept.
4. **Split and merge** (Ueda et al. 2000), when ``K >= 2``. From the best
   optimum, up to ``2 m`` moves per round, most overlapping pairs of
   components first: cut the union of two components in two anew along
   its principal axis, or merge them and cut a third component in two.
   Each move runs 5 EM iterations, the best two run to convergence, and an
   improvement is kept; at most two rounds.
5. The starts are the best optimum, then the other optima, topped up with
   the best screened candidates: ``m`` different starts, best first.

EM then runs from every start with the user's ``tol`` and ``max_iter`` and
keeps the best, as usual. As the starts are already converged, these final
runs are short (``n_iter_`` and ``lower_bounds_`` count only them). With
more rows than the search needs (``max(2000, 20 K (D + 1))``) it works on
a random sample of that size, so its cost does not grow with ``N``.

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

import logging

import numpy as np

__all__ = [
    "INIT_PARAMS",
    "StartPlan",
    "initial_resp",
    "standardise",
    "whiten",
]

logger = logging.getLogger("bayes_gmm")

INIT_PARAMS = ("k-means++", "kmeans", "random", "random_from_data")

# A component whose covariance has an eigenvalue below this, in units of the
# data variances, is collapsing onto a few points (a spurious optimum) ...
_EIG_FLOOR = 1e-3
_FEW_POINTS = 10  # ... when the component holds fewer points than this
# Budget of the default search, per start handed out (n_init).
_CANDIDATES_PER_START = 3
_SCREEN_ITER = 5  # EM iterations that screen a candidate
_MOVE_ITER = 5  # EM iterations that screen a split-and-merge move
_MOVES_PER_START = 2  # moves tried per round, per start (at most all moves)
_MAX_ROUNDS = 2  # split-and-merge rounds
_CONVERGE_TOL = 1e-4  # "converged" inside the search
_CONVERGE_ITER = 200
_MAX_CONVERGED = 1  # candidates run to convergence, per start
_SAME = 1e-6  # optima closer than this in mean log-likelihood are one
_MIN_SCREEN_SAMPLES = 2000
_WARD_SAMPLES = 500  # rows of the subsample Ward's clustering sees
# Candidate partitions, in turn: (kind, space), Z standardised, W whitened.
_KINDS = (
    ("random_from_data", "Z"),
    ("k-means++", "Z"),
    ("ward", "Z"),
    ("kmeans", "W"),
)


def standardise(X):
    """Scale-free copy of X (columns centred, unit standard deviation)."""
    sd = X.std(axis=0)
    sd[sd <= 0] = 1.0
    return (X - X.mean(axis=0)) / sd


def whiten(X):
    """PCA-whitened copy of X: principal component scores with unit variance.

    Invariant (up to a rotation, to which the starts drawn from it are
    blind) to any invertible linear map of the features; directions of zero
    variance are dropped.
    """
    xc = X - X.mean(axis=0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    keep = s > s[0] * 1e-8 if s.size and s[0] > 0 else np.zeros(s.size, bool)
    if not keep.any():
        return np.zeros((X.shape[0], 1))
    return u[:, keep] * np.sqrt(X.shape[0])


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


# ------------------------------------------------------------------- the plan
class _Collapse:
    """Tells whether a mixture has a component collapsing onto a few points.

    The likelihood of a mixture is unbounded: a component can shrink onto
    points that share a value (rounded or duplicated data) or lie on a line,
    and its density grows until ``reg_covar`` stops it. Such a spurious
    optimum is recognised by a component

    * whose smallest variance is at most ``10 reg_covar`` (it sits on a
      lower-dimensional set of points, held up by the regularisation
      alone), or
    * that holds fewer than 10 points and whose smallest variance in
      standardised units (the eigenvalues of ``S^-1/2 Sigma_k S^-1/2``,
      ``S`` the diagonal of the data variances) is below ``1e-3``: a
      handful of close points, narrower than ~3% of the data's spread.

    Real clusters that tight hold more points (well-separated clusters are
    often that narrow relative to the whole data). Constant columns are left
    out, and data that are themselves flat (collinear columns) are only
    tested by the second rule. With fewer than ``5 (D + 1)`` rows per
    component nothing is tested: every component of such small data is
    thin by chance, and a tight cluster on tied values (say, two groups
    with a constant coordinate each) is as likely structure as artefact.
    """

    def __init__(self, S, reg_covar, n_components):
        sd = S.std(axis=0)
        self.active = S.shape[0] >= 5 * n_components * (S.shape[1] + 1)
        self.keep = sd > 0
        self.sd = sd[self.keep]
        self.n = S.shape[0]
        self.floor = 10.0 * reg_covar
        cov = np.atleast_2d(np.cov(S[:, self.keep], rowvar=False, bias=True))
        self.flat_data = not self.keep.any() or np.linalg.eigvalsh(cov)[0] <= self.floor

    def __call__(self, params):
        if not (self.active and self.keep.any()):
            return False
        from bayes_gmm._covariance import get_covariance_type

        k, d = params.means.shape
        try:
            chol = get_covariance_type(params.covariance_type).to_cholesky(
                params.covariances, k, d
            )
        except ValueError:
            return True
        # Rows of L for the kept features: L_r L_r^T = Sigma_rr.
        chol = chol[:, self.keep, :]
        cov = chol @ np.swapaxes(chol, -1, -2)
        scaled = cov / self.sd[:, None] / self.sd[None, :]
        try:
            lam = np.linalg.eigvalsh(cov)[:, 0]
            lam_std = np.linalg.eigvalsh(scaled)[:, 0]
        except np.linalg.LinAlgError:
            return True
        if not self.flat_data and np.any(lam <= self.floor):
            return True
        few = params.weights * self.n < _FEW_POINTS
        return bool(np.any(few & (lam_std < _EIG_FLOOR)))


class StartPlan:
    """The starting points of one fit found by the default search.

    All ``n_init`` starts are computed when the plan is made (see the module
    docstring); :meth:`next` hands them out in order, the refined one first.

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
        Passed to the EM functions.

    Attributes
    ----------
    starts : list of MixtureParams
        The starts, best first.
    n_em_iterations : int
        EM iterations the search spent (on its sample of rows).
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
    ):
        self.X = X
        self.k = int(n_components)
        self.covariance_type = covariance_type
        self.n_init = int(n_init)
        self.reg_covar = float(reg_covar)
        self.rng = rng
        self.chunk_size = chunk_size
        self.n_em_iterations = 0
        self._given = 0
        self.starts = self._search()

    def next(self):
        """The parameters of the next start (a ``MixtureParams``)."""
        start = self.starts[self._given % len(self.starts)]
        self._given += 1
        return start

    # ------------------------------------------------------------ helpers
    def _m_step(self, X, resp):
        from bayes_gmm.em import m_step

        return m_step(
            X, resp, self.covariance_type, self.reg_covar, chunk_size=self.chunk_size
        )

    def _run(self, X, params, max_iter, tol=0.0):
        """EM from ``params``; returns (mean log-likelihood, params, ok)."""
        from bayes_gmm.em import run_em

        try:
            run = run_em(
                X,
                params,
                tol=tol,
                max_iter=max_iter,
                reg_covar=self.reg_covar,
                chunk_size=self.chunk_size,
            )
        except ValueError:  # a covariance failed: not a usable start
            return -np.inf, params, False
        self.n_em_iterations += run.n_iter
        ll = run.lower_bound
        if not np.isfinite(ll):
            return -np.inf, run.params, False
        return ll, run.params, not self._collapsing(run.params)

    def _converge(self, X, params):
        return self._run(X, params, _CONVERGE_ITER, _CONVERGE_TOL)

    # ------------------------------------------------------------- search
    def _sample(self):
        """The rows the search works on (all of them for small data)."""
        n, d = self.X.shape
        size = max(_MIN_SCREEN_SAMPLES, 20 * self.k * (d + 1))
        if n <= size:
            return self.X
        idx = np.sort(self.rng.choice(n, size=size, replace=False))
        return self.X[idx]

    def _search(self):
        S = self._sample()
        if self.k == 1:
            return [self._m_step(S, np.ones((S.shape[0], 1)))]
        self._collapsing = _Collapse(S, self.reg_covar, self.k)
        Z, W = standardise(S), whiten(S)
        kinds = tuple((kind, {"Z": Z, "W": W}[space]) for kind, space in _KINDS)
        # 1. Screen: a short EM from every candidate partition.
        n_cand = max(_CANDIDATES_PER_START * self.n_init, len(kinds))
        screened = []
        for c in range(n_cand):
            kind, space = kinds[c % len(kinds)]
            labels = _labels(space, self.k, kind, self.rng)
            start = self._m_step(S, _one_hot(labels, self.k))
            ll, params, ok = self._run(S, start, _SCREEN_ITER)
            screened.append((not ok, -ll, c, params))
        screened.sort(key=lambda t: t[:3])  # regular first, then best first
        unique = []  # identical partitions give identical screened values
        for cand in screened:
            if not any(abs(cand[1] - u[1]) <= 1e-12 * abs(u[1]) for u in unique):
                unique.append(cand)
        # 2. Converge the best, in turn: the distinct regular optima.
        optima, flagged = [], []  # (ll, params)
        n_run = min(len(unique), _MAX_CONVERGED * self.n_init)
        for _, _, _, params in unique[:n_run]:
            ll, params, ok = self._converge(S, params)
            if not ok:
                flagged.append((ll, params))
            elif not any(abs(ll - o[0]) < _SAME for o in optima):
                optima.append((ll, params))
        optima.sort(key=lambda o: -o[0])
        # 3. Split and merge from the best optimum.
        if optima:
            ll, params = self._refine(S, Z, *optima[0])
            if ll > optima[0][0] + _SAME:
                optima.insert(0, (ll, params))
        # 4. The optima, best first, then candidates not run to convergence,
        # then the converged ones that collapsed (all of them for data whose
        # clusters are all that tight).
        flagged.sort(key=lambda o: -o[0])
        starts = [params for _, params in optima][: self.n_init]
        rest = [params for _, _, _, params in unique[n_run:]]
        if not optima:
            rest = [params for _, params in flagged] + rest
        else:
            rest += [params for _, params in flagged]
        starts += rest[: self.n_init - len(starts)]
        logger.debug(
            "start search: %d candidates on %d rows, %d regular optima, "
            "%d EM iterations",
            n_cand,
            S.shape[0],
            len(optima),
            self.n_em_iterations,
        )
        return starts

    def _refine(self, S, Z, best_ll, best):
        """Split-and-merge search from a converged optimum."""
        from bayes_gmm.em import e_step

        n_moves = _MOVES_PER_START * self.n_init
        n_converge = 2 if self.n_init >= 5 else 1
        for _ in range(_MAX_ROUNDS):
            resp = np.exp(e_step(S, best, chunk_size=self.chunk_size)[1])
            trials = []
            for i, j, s in _moves(resp, n_moves):
                new = _merge_split(resp, Z, i, j, s)
                ll, params, ok = self._run(S, self._m_step(S, new), _MOVE_ITER)
                if ok:
                    trials.append((ll, params))
            trials.sort(key=lambda t: -t[0])
            improved = None
            for _, params in trials[:n_converge]:
                ll, params, ok = self._converge(S, params)
                if ok and ll > best_ll + _SAME:
                    improved, best_ll = params, ll
            if improved is None:
                break
            best = improved
        return best_ll, best


def _moves(resp, n_moves):
    """Candidate split-and-merge moves, most overlapping pairs first.

    A move ``(i, j, s)`` merges ``j`` into ``i`` and splits ``s`` in two
    (Ueda et al. 2000); ``(i, j, None)`` cuts the union of ``i`` and ``j``
    in two anew. Pairs are ranked by the overlap of the two components, the
    cosine between their responsibility vectors (Ueda's merge criterion).
    """
    k = resp.shape[1]
    norm = np.sqrt(np.einsum("nk,nk->k", resp, resp)) + 1e-300
    overlap = (resp.T @ resp) / norm[:, None] / norm[None, :]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    pairs.sort(key=lambda p: -overlap[p])
    out = [(i, j, None) for i, j in pairs]
    out += [(i, j, s) for i, j in pairs for s in range(k) if s not in (i, j)]
    return out[:n_moves]


def _halves(r, Z):
    """The two halves of the points weighted by ``r``.

    They are cut by the hyperplane through their mean orthogonal to their
    principal axis (in standardised units).
    """
    nk = r.sum() + 1e-300
    dz = Z - r @ Z / nk
    scatter = (r[:, None] * dz).T @ dz / nk
    axis = np.linalg.eigh(scatter)[1][:, -1]
    side = (dz @ axis) > 0.0
    return r * side, r * ~side


def _merge_split(resp, Z, i, j, s):
    """Responsibilities after the move ``(i, j, s)`` of :func:`_moves`."""
    new = resp.copy()
    if s is None:
        new[:, i], new[:, j] = _halves(resp[:, i] + resp[:, j], Z)
    else:
        new[:, i] += resp[:, j]
        new[:, j], new[:, s] = _halves(resp[:, s], Z)
    return new
