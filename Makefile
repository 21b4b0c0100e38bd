# Two commands do all the set-up: `make serve` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PORTS := --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)
# Triton's native onnxruntime backend where this machine has one (the shared tools; in a Triton
# container tritonserver has its own): `maas serve` then runs the core models natively.
MAAS_BACKEND_DIR ?= $(wildcard $(abspath ../shared/tools/triton_backends))
export MAAS_BACKEND_DIR
# Exact pins (torch==2.13.0 is the local CPU wheel; anything looser pulls a CUDA build).
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install serve demo test lint clean perf-analyzer bench bench-families bench-scarce tune trace analyze soak

install: $(VENV)/.installed

# The image steps ship Pillow in their own environment (build/environment.py), built for each
# Python a stub may run: this one's comes from the venv, the container's (Triton 24.10: Python
# 3.10, whose newest Pillow is 12.3) from this wheelhouse. Downloaded here, never at build time.
CONTAINER_WHEELS := --python-version 3.10 --implementation cp --platform manylinux_2_28_x86_64 pillow==12.3.0

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -e '.[server,dev,bench,ops]'
	$(BIN)/python -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
		-d $(VENV)/maas-wheelhouse $(CONTAINER_WHEELS)
	touch $@

serve: install  ## train/export/build whatever is missing, then run tritonserver in the foreground
	$(BIN)/maas serve $(PORTS)

demo: install  ## the same pipeline, then classify samples over HTTP and gRPC and stop
	$(BIN)/maas demo $(PORTS)

test: install  ## the whole suite against a real tritonserver
	$(BIN)/python -m pytest $(PYTEST_ARGS)

perf-analyzer: install  ## perf_analyzer sweeps (needs perf_analyzer: Triton SDK container)
	$(BIN)/python -m maas.benchmarks.perf_analyzer_inputs
	PATH="$(abspath ../shared/tools/perf_analyzer/bin):$$PATH" bash benchmarks/perf_analyzer.sh

bench: install  ## the side-by-side comparison -> benchmarks/results/
	$(BIN)/python -m maas.benchmarks.compare

trace: install  ## where one request's time goes, per step, from Triton's traces -> benchmarks/results/trace.*
	$(BIN)/maas build
	$(BIN)/python -m maas.benchmarks.trace

# Model Analyzer in its own venv: its pins clash with ours (1.46.0 matches this tritonserver).
ANALYZER := .venv-analyzer/bin/model-analyzer
$(ANALYZER):
	$(PYTHON) -m venv .venv-analyzer
	.venv-analyzer/bin/python -m pip install --disable-pip-version-check -q triton-model-analyzer==1.46.0

analyze: install $(ANALYZER)  ## Model Analyzer's quick search vs maas tune's -> benchmarks/results/analyze.*
	$(BIN)/maas build
	PATH="$(abspath ../shared/tools/perf_analyzer/bin):$$PATH" $(BIN)/python -m maas.benchmarks.analyze --analyzer $(ANALYZER) $(ANALYZE_ARGS)

soak: install  ## 3 replicas at 70% of capacity for 10 minutes, watched -> benchmarks/results/soak.*
	$(BIN)/maas build
	$(BIN)/python -m maas.benchmarks.soak $(SOAK_ARGS)

bench-families: install  ## each family served vs in-process -> benchmarks/results/families.*
	$(BIN)/maas build
	$(BIN)/python -m maas.benchmarks.families

bench-scarce: install  ## overload, cache, two tenants -> benchmarks/results/{admission,tenants}.*
	$(BIN)/maas build
	$(BIN)/python -m maas.benchmarks.admission
	$(BIN)/python -m maas.benchmarks.tenants

tune: install  ## search serving configs on this machine -> benchmarks/results/tuning.*
	$(BIN)/maas tune

CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):  ## Kubernetes/Dockerfile scanner, in its own venv (its pins clash with ours)
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --disable-pip-version-check -q checkov==3.3.30

lint: install $(CHECKOV)  ## ruff, and checkov over deploy/ (each finding fixed or justified)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(CHECKOV) -d deploy --framework kubernetes dockerfile --quiet --compact --skip-download

clean:  ## everything built; the venv stays
	rm -rf artifacts .setuptools-build *.egg-info .pytest_cache
	git clean -fdX model_repository
