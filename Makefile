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

# The capacity pipeline (dvc.yaml, up to its last stage `plot`) on the embedded default grid in
# params.yaml; the stages call `python` and `rnncap`, so the venv goes first on PATH. It ends with the
# results: where the figures and tables are, and the bits per parameter of results/capacity.json
# (the DVC metrics) one row per cell; `dvc metrics show` prints them as a single wide row.
run: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro plot
	@echo
	@echo "Figures in results/figures/: $$(cd results/figures && echo *.png)"
	@echo "Tables in results/capacity/: $$(cd results/capacity && echo *.csv)"
	@$(PY) -c "$$BITS_TABLE"

define BITS_TABLE
import json

cells = json.load(open("results/capacity.json"))["capacity"]
num = lambda v: "-" if v is None else f"{v:.2f}"
print("\nBits per parameter (results/capacity.json; fit over all sizes, 95% interval, per depth):")
print(f"  {'cell':<13}{'bits/param':>10}  {'interval':<14}{'depth 1':>8}{'depth 2':>8}")
for cell, m in sorted(cells.items(), key=lambda c: -(c[1].get("bits_per_param") or 0)):
    interval = f"[{num(m.get('slope_lo'))}, {num(m.get('slope_hi'))}]"
    row = [num(m.get(k)) for k in ("bits_per_param", "depth1", "depth2")]
    print(f"  {cell:<13}{row[0]:>10}  {interval:<14}{row[1]:>8}{row[2]:>8}")
endef
export BITS_TABLE

test: setup
	$(PY) -m pytest

# Several train.py workers on one study (PostgreSQL from $$RNNCAP_TEST_POSTGRES, or a server the
# tests start; a journal file), one killed mid-trial: slow tests (2-4 min) that CI runs too
test-shared: setup
	$(PY) -m pytest -m slow tests/test_shared_studies.py

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
