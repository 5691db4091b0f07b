# Two commands matter: `make demo` and `make test`. Both bootstrap .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeship-installed

.PHONY: demo test bench bench-scale clean

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

# The scale benchmark on Food-101-shaped trees drawn outside the repo (101,000 images: ~4 GB, ~1 h here)
SIZES ?= 1010,10100
bench-scale: $(STAMP)
	$(PY) -m edgeship.bench.scale --sizes $(SIZES)

clean:
	rm -rf runs .pytest_cache
