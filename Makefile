# kwik_twisted developer entry points.  Every target sets itself up: on a fresh clone with only
# python3 (and its bundled pip/venv) it creates .venv, installs the project into it in editable
# *compat* mode (so Twisted finds twisted/plugins/ through the checkout on sys.path), and runs.
# The install is redone whenever setup.cfg or pyproject.toml changes (stamp files in .venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
EDITABLE := --config-settings editable_mode=compat
KWIK_FUZZ_EXAMPLES ?= 100000
# Directories that ruff checks (only those that exist yet).
LINT_PATHS := $(wildcard kwik_twisted tests benchmarks twisted fuzz)

.DEFAULT_GOAL := help
.PHONY: help venv test test-trial demo bench lint docs fuzz soak clean distclean

help:
	@echo "make demo        run the two-path demo (DEMO_ARGS=--single-path: one path; sets up .venv)"
	@echo "make test        run the test suite with pytest (sets up .venv first)"
	@echo "make test-trial  run the same suite with twisted.trial"
	@echo "make fuzz        run the fuzz-marked tests (KWIK_FUZZ_EXAMPLES=$(KWIK_FUZZ_EXAMPLES))"
	@echo "make soak        run the slow-marked tests"
	@echo "make bench       run the benchmarks"
	@echo "make lint        ruff check"
	@echo "make docs        build the Sphinx docs with warnings as errors"
	@echo "make clean       remove build artefacts; make distclean also removes .venv"

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(VENV)/.stamp-test

# One stamp per extra; each re-runs when the packaging metadata changes.
$(VENV)/.stamp-%: setup.cfg pyproject.toml | $(PY)
	$(PIP) install -e '.[$*]' $(EDITABLE)
	@# Regenerate twisted/plugins/dropin.cache (ignored by git) so plugin lookups are fresh.
	$(PY) -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
	@touch $@

test: $(VENV)/.stamp-test
	$(PY) -m pytest

test-trial: $(VENV)/.stamp-test
	$(PY) -m twisted.trial tests

fuzz: $(VENV)/.stamp-test
	KWIK_FUZZ_EXAMPLES=$(KWIK_FUZZ_EXAMPLES) $(PY) -m pytest -m fuzz

soak: $(VENV)/.stamp-test
	$(PY) -m pytest -m slow

demo: $(VENV)/.stamp-test
	$(PY) -m kwik_twisted.tools.demo $(DEMO_ARGS)

# bench: the quick set (benchmarks/results/latest.json), one more line in
# benchmarks/results/history.jsonl, and the history plots redrawn (docs/_static/performance)
bench: $(VENV)/.stamp-bench
	@if [ -f benchmarks/run_all.py ]; then \
		$(PY) benchmarks/run_all.py; status=$$?; \
		$(PY) benchmarks/plot_history.py || status=1; exit $$status; \
	else \
		echo "benchmarks/run_all.py does not exist yet: no benchmarks to run" >&2; exit 1; \
	fi

lint: $(VENV)/.stamp-lint
	$(VENV)/bin/ruff check $(LINT_PATHS)

docs: $(VENV)/.stamp-docs
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

clean:
	rm -rf build dist *.egg-info docs/_build .hypothesis .pytest_cache .ruff_cache _trial_temp .coverage
	rm -f twisted/plugins/dropin.cache
	find . -path ./$(VENV) -prune -o -path ./.tox -prune -o \
		-name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .tox
