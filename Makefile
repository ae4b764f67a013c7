# The two commands of the README: `make demo` and `make test`. Each sets itself up.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pgsift-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup
	VENV=$(VENV) .ci/setup
	touch $(STAMP)

demo: setup
	$(BIN)/pgsift demo $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

lint: setup
	$(BIN)/ruff check middleware subscriptions workers tests bench examples
	$(BIN)/mypy middleware subscriptions workers

bench: setup
	@for b in bench/*/run.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
