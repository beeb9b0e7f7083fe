"""The docstring examples of every module of bayes_gmm run and give their output.

Every docstring with ``>>>`` examples in any module of the package becomes one
test, run by :mod:`doctest` against the output written in the docstring (the
oracle is the documented output itself). A second group checks that every
public function and class of ``bayes_gmm.__all__`` has an example at all.
"""

import doctest
import importlib
import pkgutil
import time

import pytest

import bayes_gmm

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Docstring examples that fit a Bayesian model: compiling it costs tens of
# seconds on a 2-core machine, so they run with the slow tests.
SLOW_DOCTESTS = {
    "bayes_gmm.bayes.GaussianMixtureBayes",
}

# Public names whose docstring has no Examples section yet (reported to the
# owners of the modules). Remove a name once its example exists.
MISSING_EXAMPLES: set[str] = set()

# Examples whose documented output is wrong (bugs reported to the owners):
# docstring name -> reason. The mark is strict: remove the entry once fixed.
KNOWN_WRONG: dict[str, str] = {}


def _modules():
    names = ["bayes_gmm"]
    for info in pkgutil.walk_packages(bayes_gmm.__path__, prefix="bayes_gmm."):
        names.append(info.name)
    return sorted(names)


def _collect():
    finder = doctest.DocTestFinder(exclude_empty=True)
    params = []
    for modname in _modules():
        module = importlib.import_module(modname)
        for test in finder.find(module, modname):
            if not test.examples:
                continue
            marks = [pytest.mark.slow] if test.name in SLOW_DOCTESTS else []
            if test.name in KNOWN_WRONG:
                marks.append(
                    pytest.mark.xfail(reason=KNOWN_WRONG[test.name], strict=True)
                )
            params.append(pytest.param(test, id=test.name, marks=marks))
    return sorted(params, key=lambda p: p.id)


DOCTESTS = _collect()


@pytest.mark.parametrize("test", DOCTESTS)
def test_docstring_example(test):
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS, verbose=False)
    # Each example runs in a fresh copy of its module's namespace.
    test.globs = dict(test.globs)
    report = []
    t0 = time.perf_counter()
    runner.run(test, out=report.append, clear_globs=True)
    elapsed = time.perf_counter() - t0
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{test.name} ({test.filename}:{test.lineno}) failed "
        f"{result.failed} of {result.attempted} examples:\n" + "".join(report)
    )
    if test.name not in SLOW_DOCTESTS:
        assert elapsed < 60, f"{test.name} took {elapsed:.0f} s: mark it slow"


def test_doctests_were_collected():
    # The package has examples in every public module that has functions.
    modules = {p.id.rsplit(".", 1)[0] for p in DOCTESTS}
    for name in ("bayes_gmm.em", "bayes_gmm.datasets", "bayes_gmm.selection"):
        assert any(m.startswith(name) for m in modules), name


# ------------------------------------------------------------------ coverage
def _exported():
    """Every public function and non-warning class of ``__all__``."""
    lazy = getattr(bayes_gmm, "_LAZY", {})
    out = []
    for name in sorted(bayes_gmm.__all__):
        if name in lazy:
            obj = getattr(importlib.import_module(lazy[name]), name)
        else:
            obj = getattr(bayes_gmm, name)
        if isinstance(obj, type) and issubclass(obj, Warning):
            continue  # warning categories need no example
        if not callable(obj):
            continue
        marks = (
            [pytest.mark.xfail(reason="no Examples section yet", strict=False)]
            if name in MISSING_EXAMPLES
            else []
        )
        out.append(pytest.param(name, obj, id=name, marks=marks))
    return out


@pytest.mark.parametrize(("name", "obj"), _exported())
def test_public_name_has_example(name, obj):
    doc = obj.__doc__ or ""
    assert "Examples\n" in doc and ">>>" in doc.split("Examples\n", 1)[1], (
        f"bayes_gmm.{name} has no Examples section with a >>> example"
    )
