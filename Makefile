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
# `make lab COURSE_LANG=zh` (or COURSE_LANG=zh in the environment): the Chinese edition.
COURSE_LANG ?= en
ZH := $(filter zh zh_CN zh-CN zh_cn zh-cn zh-Hans zh_Hans,$(COURSE_LANG))
# JupyterLab's own settings for the Chinese launch live here, apart from the learner's
# (~/.jupyter/lab), which it never reads or writes; the interface language is rewritten at each launch.
LAB_ZH := build/lab-zh
LAB_ZH_LOCALE := $(LAB_ZH)/user-settings/@jupyterlab/translation-extension/plugin.jupyterlab-settings

.PHONY: help install lab lab-zh-settings test test-full execute student lint bench clean test-browser html hub test-hub translations zh

help:
	@echo "make lab      start JupyterLab on notebooks/ (http://127.0.0.1:8888, token login)"
	@echo "make lab COURSE_LANG=zh   the Chinese edition: JupyterLab in Chinese on notebooks/zh/, checks in Chinese"
	@echo "make test     unit tests, every English notebook under strict nbval, the student edition in a second numeric setting (about 5 min)"
	@echo "make test-full  what make test leaves out: the Chinese notebooks under strict nbval, the Chinese student edition run, slow tests"
	@echo "make install  create .venv with the pinned environment"
	@echo "make execute  re-run every notebook in place in a fresh kernel"
	@echo "make student  write the student edition to build/student/ (Chinese: build/student/zh/)"
	@echo "make html     offline HTML handouts, both editions, English and Chinese, in build/html/ (open index.html)"
	@echo "make translations  update the Chinese PO catalogues from the English notebooks and the package"
	@echo "make zh       build notebooks/zh/ from the English notebooks and the catalogues, then execute them"
	@echo "make test-browser  every notebook run in JupyterLab in headless Chromium (apt-get install chromium)"
	@echo "make hub      a workshop's JupyterHub on this machine, as root: a Unix user per learner (http://127.0.0.1:8000; prints how to log in)"
	@echo "make test-hub the hub end to end, as root: learners, their kernels, attacks from a kernel, the board in Chromium, load (needs npm)"
	@echo "make bench    time the course modules against PyTorch's own"
	@echo "make lint     ruff over course_utils, tests and notebooks"
	@echo "make clean    remove build/ and caches (keeps .venv)"

# pip compiles the installed modules to bytecode one file at a time (half of the install's time);
# compileall does it on every core. Compiled at install, because Python may be told not to write
# bytecode when it imports (PYTHONDONTWRITEBYTECODE) and a hub's learners may not write to the
# environment: without it, every kernel would compile torch again as it starts. (A few files are
# written for a newer Python, e.g. torch's py312_intrinsics.py: they do not compile, as under pip.)
PIP := $(PY) -m pip install --quiet --no-compile
COMPILE := $(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PIP) torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .
	$(COMPILE)
	@touch $(STAMP)

install: $(STAMP)

# The tests' extra packages (Hugging Face's GPT-2 as a reference), never the learner's: `make lab`
# does not install them. The constraint keeps every pin of requirements.txt, torch included.
TEST_STAMP := $(VENV)/.test-installed
$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PIP) -r requirements-test.txt -c requirements.txt
	$(COMPILE)
	@touch $(TEST_STAMP)

# The workshop's hub (workshop/): JupyterHub and its npm proxy, on top of the course environment.
WORKSHOP_STAMP := $(VENV)/.workshop-installed
$(WORKSHOP_STAMP): $(STAMP) workshop/requirements.txt workshop/package-lock.json
	$(PIP) -r workshop/requirements.txt
	$(COMPILE)
	@command -v npm >/dev/null || { echo "the hub's proxy needs Node.js and npm: apt-get install nodejs npm"; exit 1; }
	cd workshop && npm ci --no-audit --no-fund --loglevel=error
	@touch $(WORKSHOP_STAMP)

ifeq ($(ZH),)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks $(ROOT_FLAG)
else
lab: $(STAMP) lab-zh-settings
	COURSE_LANG=zh $(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks/zh \
		--LabApp.user_settings_dir=$(LAB_ZH)/user-settings --LabApp.workspaces_dir=$(LAB_ZH)/workspaces $(ROOT_FLAG)
endif

# JupyterLab's interface in Chinese (the pinned jupyterlab-language-pack-zh-CN). The browser
# tests start their Chinese JupyterLab with this rule too (make LAB_ZH=<their state> lab-zh-settings).
lab-zh-settings:
	@mkdir -p $(dir $(LAB_ZH_LOCALE))
	@printf '{\n  "locale": "zh_CN"\n}\n' > $(LAB_ZH_LOCALE)

# The suite on every core: each notebook's cells stay together on one worker, one thread per kernel.
# `make test` leaves out the layer marked full_layer (the Chinese notebooks re-executed, the slow
# tests), which `make test-full` runs and .ci/run calls; `make test` keeps a fast guard over it.
XDIST := -n $(or $(TEST_WORKERS),2) --dist loadgroup
test: $(TEST_STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest $(XDIST) -m "not full_layer"

test-full: $(TEST_STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest $(XDIST) -m full_layer

execute: $(STAMP)
	$(PY) -m course_utils.tooling.notebooks $(NOTEBOOKS)

student: $(STAMP)
	$(PY) -m course_utils.tooling.student build/student

translations: $(STAMP)
	$(PY) -m course_utils.tooling.translate extract

# the shell expands the glob after the build, so new Chinese notebooks are executed too
# The plots' CJK font subset is rewritten first when Debian's fonts-noto-cjk is there to cut it from.
CJK_SOURCE := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
zh: $(STAMP)
	$(PY) -m course_utils.tooling.translate build
	@if [ -f $(CJK_SOURCE) ]; then $(PY) -m course_utils.tooling.translate font --source $(CJK_SOURCE); \
	 else echo "note: no $(CJK_SOURCE) (apt-get install fonts-noto-cjk): the CJK font subset was not rewritten"; fi
	$(PY) -m course_utils.tooling.notebooks notebooks/zh/[0-9][0-9]_*.ipynb

html: $(STAMP)
	$(PY) -m course_utils.tooling.html build/html

test-browser: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest tests/browser $(XDIST) --durations=10

hub: hub-as-root $(WORKSHOP_STAMP) student
	$(PY) workshop/hub.py

# the hub makes a Unix user per learner: say so before installing anything
.PHONY: hub-as-root
hub-as-root:
	@if [ "$$(id -u)" -ne 0 ]; then echo "make hub must run as root (sudo make hub): each learner gets a Unix user of their own, and the hub never falls back to one shared user"; exit 1; fi

test-hub: $(WORKSHOP_STAMP)
	$(PY) -m pytest tests/hub --durations=10

bench: $(STAMP)
	$(PY) -m course_utils.bench

lint: $(STAMP)
	$(VENV)/bin/ruff check course_utils tests notebooks

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
