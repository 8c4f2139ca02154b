# Two commands on a fresh machine:  make run  (set up + the main job)   make test  (the tests)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet

.PHONY: setup run test lint
setup: $(VENV)/.installed

# The pinned CPU torch goes in first (constraints-cpu.txt): a bare range would pull a CUDA build.
$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	python3 -m venv $(VENV)
	$(PIP) -c constraints-cpu.txt torch
	$(PIP) -c constraints-cpu.txt -e ".[dev]"
	touch $@

run: setup
	$(PY) train.py

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
