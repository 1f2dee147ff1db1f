# `make book`   execute the notebooks with papermill (then their exercise variants), build the static site into _build/html
# `make test`   run the test suite (pytest), including a headless-browser check of the built site
# Each target creates .venv (python3.11) and installs requirements.txt and memlib when needed.
#
#   make book PARAMS=notebooks/params/full-var-d30.yaml   re-execute with another parameter set
#   make book TIMEOUT=7200                                  per-notebook time limit in seconds
#   make book JOBS=1                                        notebooks executed at once (default 2)
#   make test TEST_JOBS=0                                   pytest in one process (default: 2 xdist workers)

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Written after a successful install; requirements.txt or pyproject.toml newer than it triggers a reinstall.
STAMP := $(VENV)/.installed
PARAMS ?= notebooks/params/testbed.yaml
TIMEOUT ?= 3600
# Notebooks executed at once, each kernel with CPUs/JOBS threads: on 2 cores, two single-threaded
# kernels do about twice the work of one kernel with two threads (benchmarks/bench_contention.py).
JOBS ?= 2
# pytest-xdist workers of `make test` (0: one process); tests/conftest.py sends each test file to
# one worker, and the files that read the smoke book to the same one, so that each is built once.
TEST_JOBS ?= 2

.PHONY: book exercises test checkpoints venv chromium clean

venv: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The kernelspec `python3` is installed into the venv so that papermill's kernel is the venv's python.
$(STAMP): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (memlib)"
	touch $(STAMP)

book: $(STAMP)
	$(PY) scripts/run_notebooks.py --params $(PARAMS) --timeout $(TIMEOUT) --jobs $(JOBS)
	$(PY) scripts/run_notebooks.py --params $(PARAMS) --timeout $(TIMEOUT) --jobs $(JOBS) --exercises
	$(PY) scripts/write_provenance.py
	rm -rf _build/html    # no stale pages of removed notebooks in the site
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going
	@echo "The book is in _build/html/index.html"

# Only the exercise variants (notebooks/exercises.yaml), after the pages: their solutions
# paste these runs' numbers, and each reads the stages it leaves unchanged from the pages' cache.
exercises: $(STAMP)
	$(PY) scripts/run_notebooks.py --params $(PARAMS) --timeout $(TIMEOUT) --jobs $(JOBS) --exercises

test: $(STAMP) chromium
	$(PY) -m pytest -n $(TEST_JOBS)

# Debian's chromium for tests/test_browser.py; without root and apt the test skips and says why.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium) \
	      || echo "warning: installing chromium failed; the browser test will skip"; \
	  else \
	    echo "warning: /usr/bin/chromium is missing and apt-get as root is unavailable; the browser test will skip"; \
	  fi; \
	fi

# Train the testbed tokenizers and generators (CPU) into data/checkpoints and the testbed FID's
# classifier, then write the evidence that they memorize the planted set
# (data/testbed_evidence.json, data/evidence/).
checkpoints: $(STAMP)
	$(PY) -m memlib train all --out data/checkpoints
	$(PY) -m memlib.classifier --out data/checkpoints/classifier.safetensors
	$(PY) scripts/testbed_evidence.py

clean:
	rm -rf _build executed book/provenance.md
