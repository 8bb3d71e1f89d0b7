# Attention, from the inside: every target creates .venv first when it is missing or
# when requirements.txt / pyproject.toml changed since it was built.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# On Linux without an NVIDIA GPU, `make install TORCH_INDEX=https://download.pytorch.org/whl/cpu`
# takes the small CPU wheel of the same pinned torch.
TORCH_INDEX ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: help install lab test execute student lint bench clean test-browser html hub test-hub

help:
	@echo "make lab      start JupyterLab on notebooks/ (http://127.0.0.1:8888, token login)"
	@echo "make test     unit tests + every notebook under nbval (strict)"
	@echo "make install  create .venv with the pinned environment"
	@echo "make execute  re-run every notebook in place in a fresh kernel"
	@echo "make student  write the student edition to build/student/"
	@echo "make html     offline HTML handouts, both editions, in build/html/ (open index.html)"
	@echo "make test-browser  every notebook run in JupyterLab in headless Chromium (apt-get install chromium)"
	@echo "make hub      a workshop's JupyterHub on this machine (http://127.0.0.1:8000; prints how to log in)"
	@echo "make test-hub the hub end to end: learners, their kernels, the progress board, load (needs npm)"
	@echo "make bench    time the course modules against PyTorch's own"
	@echo "make lint     ruff over course_utils, tests and notebooks"
	@echo "make clean    remove build/ and caches (keeps .venv)"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The workshop's hub (workshop/): JupyterHub and its npm proxy, on top of the course environment.
WORKSHOP_STAMP := $(VENV)/.workshop-installed
$(WORKSHOP_STAMP): $(STAMP) workshop/requirements.txt workshop/package-lock.json
	$(PY) -m pip install --quiet -r workshop/requirements.txt
	@command -v npm >/dev/null || { echo "the hub's proxy needs Node.js and npm: apt-get install nodejs npm"; exit 1; }
	cd workshop && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WORKSHOP_STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(ROOT_FLAG)

test: $(STAMP)
	$(PY) -m pytest

execute: $(STAMP)
	$(PY) -m course_utils.tooling.notebooks $(NOTEBOOKS)

student: $(STAMP)
	$(PY) -m course_utils.tooling.student build/student

html: $(STAMP)
	$(PY) -m course_utils.tooling.html build/html

test-browser: $(STAMP)
	$(PY) -m pytest tests/browser --durations=10

hub: $(WORKSHOP_STAMP) student
	$(PY) workshop/hub.py

test-hub: $(WORKSHOP_STAMP)
	$(PY) -m pytest tests/hub --durations=10

bench: $(STAMP)
	$(PY) -m course_utils.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check course_utils tests notebooks

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
