# Benchmarks and load tests (see benchmarks/REPORT.md and README "Tests, crash matrix and benchmarks").
PYTHON ?= python

.PHONY: bench bench-quick bench-report load-test load-test-full

# every benchmark, full sizes (~10-15 min on 2 cores): writes benchmarks/REPORT.md and benchmarks/results/
bench:
	$(PYTHON) benchmarks/report.py

# the same at small sizes (~3 min): writes bench_out/REPORT-quick.md
bench-quick:
	$(PYTHON) benchmarks/report.py --quick

# rewrite benchmarks/REPORT.md from the stored results without rerunning
bench-report:
	$(PYTHON) benchmarks/report.py --render-only

# load tests: the bounded CI versions, and the full sizes of issue 9 (slow)
load-test:
	$(PYTHON) -m pytest -q tests/load

load-test-full:
	$(PYTHON) -m pytest -q -m slow tests/load
