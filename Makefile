# modeldeploy: `make run` serves the demo model, `make test` runs every test tier.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PORT   ?= 8080

.PHONY: venv run test lint typecheck unit server-tests clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
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

## Lint, type-check and run every test tier
test: lint typecheck
	$(BIN)/pytest tests

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
