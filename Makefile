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

# The capacity pipeline (dvc.yaml, up to its last stage `plot`) on the embedded default grid in
# params.yaml; the stages call `python`, so the venv goes first on PATH.
run: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro plot

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
