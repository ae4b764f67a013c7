# The two commands of the README: `make demo` and `make test`. Each sets itself up.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pgsift-installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup tests/e2e/js/package-lock.json
	VENV=$(VENV) .ci/setup
	touch $(STAMP)

demo: setup
	$(BIN)/pgsift demo $(ARGS)

# The README's `make test` (and CI, `.ci/run`) lints first, then runs the whole
# suite; narrowed with ARGS ("tests/some/path -x") it only runs those tests.
test: setup
	@if [ -z "$(ARGS)" ]; then $(MAKE) --no-print-directory lint; fi
	$(BIN)/python -m pytest $(ARGS)

# mypy cannot follow the folder -> `pgsift.*` mapping of the install, so it
# checks a tree of symlinks with the package layout (build/typeroot/pgsift/...).
TYPEROOT := build/typeroot

lint: setup
	$(BIN)/ruff check middleware subscriptions workers tests bench examples
	mkdir -p $(TYPEROOT)/pgsift
	for d in middleware subscriptions workers; do ln -sfn $(CURDIR)/$$d $(TYPEROOT)/pgsift/$$d; done
	cd $(TYPEROOT) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p pgsift.subscriptions -p pgsift.middleware -p pgsift.workers

bench: setup
	@for b in bench/*/run.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
