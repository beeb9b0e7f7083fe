# bayes_gmm: every target sets up .venv itself (Python >= 3.12 is looked for by
# scripts/find_python.sh). The venv is rebuilt only when pyproject.toml changes.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest
# One BLAS thread: on a busy 2-core machine two OpenBLAS threads are much slower.
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: venv demo test test-all bench lint docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@set -e; \
	if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  echo "removing $(VENV): its Python is older than 3.12"; rm -rf $(VENV); fi; \
	if [ ! -x $(PY) ]; then \
	  base=$$(scripts/find_python.sh); \
	  echo "creating $(VENV) with $$base"; \
	  $$base -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bayes-gmm demo --out report

test: $(STAMP)
	$(PYTEST) -m "not slow"

test-all: $(STAMP)
	$(PYTEST)

# Warnings are errors; notebooks are rendered from their saved outputs.
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

bench: $(STAMP)
	$(PY) benchmarks/em_vs_sklearn.py
	$(PY) benchmarks/bayes_sampling.py

lint: $(STAMP)
	$(VENV)/bin/ruff check bayes_gmm tests benchmarks
	$(VENV)/bin/ruff format --check bayes_gmm tests benchmarks

clean:
	rm -rf $(VENV) report build *.egg-info .pytest_cache
