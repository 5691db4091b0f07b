# Two commands matter: `make demo` and `make test`. Both bootstrap .venv when it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeship-installed

.PHONY: demo demo-int8 demo-sweep test docs bench bench-scale clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m edgeship demo --out runs/demo

# When int8 really loses accuracy: the demo model with an outlier channel, plain int8 (the gate fails), then
# `export --max-drop 0.5` (the gate passes). Uses runs/demo (made first when missing).
INT8_FORMATS := tflite,tflite_int8,onnx,onnx_int8
demo-int8: $(STAMP)
	@test -d runs/demo/bundle || $(PY) -m edgeship demo --out runs/demo
	rm -rf runs/demo-outlier
	$(PY) -m edgeship outlier runs/demo --out runs/demo-outlier --factor 100
	$(PY) -m edgeship export runs/demo-outlier --formats $(INT8_FORMATS)
	-$(PY) -m edgeship gate runs/demo-outlier
	$(PY) -m edgeship export runs/demo-outlier --formats $(INT8_FORMATS) --max-drop 0.5
	$(PY) -m edgeship gate runs/demo-outlier
	@echo "report: runs/demo-outlier/report.md"

# The device-budgeted search on the demo's digits (README: "Picking the model for the device"); uses runs/demo/data
demo-sweep: $(STAMP)
	@test -d runs/demo/data || $(PY) -m edgeship demo --out runs/demo
	$(PY) -m edgeship sweep runs/demo/data --out runs/sweep --space tiny --max-latency 0.1ms --max-size 1MB --max-drop 1

# Two workers, one test file each at a time (--dist loadfile keeps a file's module fixtures in one process):
# half the suite waits on subprocesses, imports and sleeps, not on both cores.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# The documentation site in site/: the reference pages are generated from the CLI parser and the JSON Schemas first,
# and any warning (a broken link, a page missing from the nav) fails the build. `make test` builds it too.
docs: $(STAMP)
	$(PY) docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

bench: $(STAMP)
	EDGESHIP_BENCH=1 $(PY) -m pytest tests/benchmarks --benchmark-enable --benchmark-columns=median,iqr,ops -s

# The scale benchmark on Food-101-shaped trees drawn outside the repo (101,000 images: ~4 GB, ~1 h here)
SIZES ?= 1010,10100
bench-scale: $(STAMP)
	$(PY) -m edgeship.bench.scale --sizes $(SIZES)

clean:
	rm -rf runs site .pytest_cache
