# Two commands do all set-up: `make run` (service on 127.0.0.1:8080, SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test openapi bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	CAREPATH_API_TOKENS=$${CAREPATH_API_TOKENS:-dev-token} $(BIN)/carepath serve

test: $(STAMP)
	$(BIN)/pytest

openapi: $(STAMP)
	$(BIN)/carepath openapi > openapi.yaml

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench.writeback
	$(BIN)/python -m bench.webhooks

lint: $(STAMP)
	$(BIN)/ruff check service tests bench

clean:
	rm -rf $(VENV) data
