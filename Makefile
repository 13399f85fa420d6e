# btcfut: every target sets up what it needs; re-running is a no-op when nothing changed.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PIP   := $(PY) -m pip
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
APT_PACKAGES := chromium prometheus postgresql
TORCH := torch==2.13.0

.PHONY: venv sysdeps demo test docs bench lab clean-docs

venv: $(STAMP) sysdeps

# The venv is rebuilt only when pyproject.toml changes. torch goes first so pip takes the local CPU
# wheel (a bare `torch` requirement would pull a CUDA build of several GB).
$(STAMP): pyproject.toml
	@echo "==> setting up $(VENV) (torch CPU + btcfut[dev,models], editable)"
	@start=$$(date +%s); \
	test -x $(PY) || python3 -m venv $(VENV); \
	$(PIP) install -q --upgrade pip >/dev/null; \
	$(PIP) install -q $(TORCH) && \
	$(PIP) install -q -e '.[dev,models]' && \
	touch $@ && echo "==> venv ready in $$(( $$(date +%s) - start ))s"

# Debian packages the tests use (headless Chromium for docs/report checks, Prometheus for monitoring,
# PostgreSQL for the execution journal against a real server).
sysdeps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The one-command tour: the rules swept per fold and the long forecaster trained per fold (small sizes from
# research.demo), both beside buy-and-hold in reports/demo.html; prints the metrics and each stage's time.
demo: venv
	$(VENV)/bin/btcfut demo --models

# `make test TESTS=tests/test_x.py` runs a subset. Every run gets fresh, empty numba and IPython caches (removed
# afterwards): numba keys a cached function by its own source only, so an unchanged caller's cached machine code keeps
# running the old version of an edited helper (also across modules); notebook cells cache under
# $$XDG_CACHE_HOME/ipython, which NUMBA_CACHE_DIR does not redirect. The tests must test the code as written.
TESTS ?= tests
test: venv
	@cache=$$(mktemp -d "$${TMPDIR:-/tmp}/btcfut-test-cache.XXXXXX"); trap 'rm -rf "$$cache"' EXIT; \
	echo "==> fresh numba/IPython caches in $$cache"; \
	NUMBA_CACHE_DIR="$$cache/numba" XDG_CACHE_HOME="$$cache/xdg" $(VENV)/bin/pytest -q --durations=25 $(TESTS)

docs: venv
	$(PY) tools/build_docs.py --execute

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -q -e '.[dev,models,bench]' && touch $@

bench: venv $(BENCH_STAMP)
	@for b in bench/*.py; do echo "==> $$b"; $(PY) $$b || exit 1; done

lab: venv
	$(PY) -m ipykernel install --user --name btcfut --display-name "btcfut (.venv)" >/dev/null
	$(VENV)/bin/jupyter lab --notebook-dir=nbs

clean-docs:
	rm -rf _proc _docs
