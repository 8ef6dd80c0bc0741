# ray_slt: `make test` and `make demo` work on a fresh machine; everything else is in the README.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev,mediapipe
PYTEST_ARGS ?=
DATA ?=

.PHONY: install test test-contention demo lint clean

# The environment is rebuilt only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned, so nothing later pulls a different (CUDA) build.
	$(PIP) install --quiet "torch==$(TORCH_VERSION)"
	$(PIP) install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-contention: install
	$(PY) -m pytest -m contention tests/training/test_contention.py

demo: install
	$(PY) -m ray_slt demo $(if $(DATA),--data $(DATA),)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache demo_out
