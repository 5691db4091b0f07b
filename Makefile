# Two commands matter: `make demo` and `make test`. Both bootstrap .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeship-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m edgeship demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	EDGESHIP_BENCH=1 $(PY) -m pytest tests/benchmarks --benchmark-enable --benchmark-columns=median,iqr,ops -s

clean:
	rm -rf runs .pytest_cache
