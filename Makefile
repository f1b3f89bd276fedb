# bestie_d2 — the two commands: `make demo` (bestie-pipeline's toy preset: the whole pipeline on the
# toy set, CPU) and `make test`.
# D2_SOURCE=<git URL | tarball | folder> builds detectron2 from that source into .venv-d2src and
# runs there instead of the default .venv (detectron2 0.6 Python files), e.g.
#   make test D2_SOURCE=../shared/vendor/detectron2-main-02b5c4e2.tar.gz
D2_SOURCE ?=
VENV := $(if $(D2_SOURCE),.venv-d2src,.venv)
PY := $(VENV)/bin/python
DEMO_ARGS ?=
PYTEST_ARGS ?=
export D2_SOURCE

.PHONY: install test test-slow demo demo-point bench clean-demo

install:
	@BESTIE_VENV=$(VENV) bash scripts/install.sh

test: install
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-slow: install
	BESTIE_TEST_MULTIPROCESS=1 $(PY) -m pytest -q tests

demo: install
	$(PY) -m bestie_d2.tools.pipeline --preset toy $(DEMO_ARGS)

demo-point: install
	$(PY) -m bestie_d2.tools.pipeline --preset toy --supervision point $(DEMO_ARGS)

bench: install
	$(PY) benchmarks/run_all.py

clean-demo:
	rm -rf output/demo
