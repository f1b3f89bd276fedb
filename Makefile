# bestie_d2 — the two commands: `make demo` (whole pipeline on the toy set, CPU) and `make test`.
PY := .venv/bin/python
DEMO_ARGS ?=

.PHONY: install test test-slow demo demo-point bench clean-demo

install:
	@bash scripts/install.sh

test: install
	$(PY) -m pytest -q tests

test-slow: install
	BESTIE_TEST_MULTIPROCESS=1 $(PY) -m pytest -q tests

demo: install
	$(PY) -m bestie_d2.tools.demo $(DEMO_ARGS)

demo-point: install
	$(PY) -m bestie_d2.tools.demo --supervision point $(DEMO_ARGS)

bench: install
	$(PY) benchmarks/run_all.py

clean-demo:
	rm -rf output/demo
