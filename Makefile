# Two commands on a fresh machine:  make run  (set up + the main job)   make test  (the tests)
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet

.PHONY: setup run test test-shared lint
setup: $(VENV)/.installed

# The pinned CPU torch goes in first (constraints-cpu.txt): a bare range would pull a CUDA build.
$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	python3 -m venv $(VENV)
	$(PIP) -c constraints-cpu.txt torch
	$(PIP) -c constraints-cpu.txt -e ".[dev]"
	touch $@

# The default grid of params.yaml (`grids.capacity`), trained and analysed by `dvc repro plot`; the
# stages call `python` and `rnncap`, so the venv goes first on PATH. It ends with where the results
# are and bits per parameter per cell (`rnncap summary capacity`; `dvc metrics show` prints them too).
run: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro plot
	@echo
	@echo "Figures and tables in results/capacity/report/: $$(cd results/capacity/report && echo *.png *.csv)"
	@$(VENV)/bin/rnncap summary capacity

test: setup
	$(PY) -m pytest

# Several train.py workers on one study (PostgreSQL from $$RNNCAP_TEST_POSTGRES, or a server the
# tests start; a journal file), one killed mid-trial: slow tests (2-4 min) that CI runs too
test-shared: setup
	$(PY) -m pytest -m slow tests/test_shared_studies.py

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
