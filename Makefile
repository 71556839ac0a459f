# Two commands do all set-up: `make run` (service on 127.0.0.1:8080, SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

NODE_STAMP := tests/node/node_modules/.installed-stamp

.PHONY: run test openapi bench lint clean peers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Independent peers the suite tests against: Medplum's validator and FHIR router (Node, pinned by
# tests/node/package-lock.json) and a headless Chromium from Debian's packages.
$(NODE_STAMP): tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

peers: $(NODE_STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing: sudo apt-get install -y chromium" >&2; exit 1; fi; }

run: $(STAMP)
	CAREPATH_API_TOKENS=$${CAREPATH_API_TOKENS:-dev-token} $(BIN)/carepath serve

test: $(STAMP) peers
	$(BIN)/pytest

openapi: $(STAMP)
	$(BIN)/carepath openapi > openapi.yaml

# The goals table comes last. PostgreSQL is measured when BENCH_DATABASE_URL or TEST_DATABASE_URL
# names a server (a fresh database is created and dropped).
bench: $(STAMP)
	$(BIN)/python -m bench.writeback
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.scheduler
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check service tests bench

clean:
	rm -rf $(VENV) data
