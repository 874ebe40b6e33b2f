# Janitor: `make run` to try it, `make test` to check it. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests use the local PostgreSQL and Redis unless told otherwise.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/janitor
TEST_REDIS_URL ?= redis://127.0.0.1:6379/14
PYTEST_ARGS ?=

.PHONY: run simulate test test-embedded lint audit install install-dev clean

$(VENV)/.installed: requirements.txt
	./scripts/system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	./scripts/system-deps --tests
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The demo signs in with the password alone; set JANITOR_STAFF_2FA=admins to try two-factor.
run: export JANITOR_STAFF_2FA ?= off
# The demo runs in development mode; DJANGO_DEBUG is false unless set (production's default).
run: export DJANGO_DEBUG ?= true
run: install
	PY=$(PY) HOST=$(HOST) PORT=$(PORT) ./scripts/run

# Provider-side changes in the running sandbox (make run started it), some webhooks dropped.
MINUTES ?= 10
DROP ?= 0.3
simulate: export DJANGO_DEBUG ?= true
simulate:
	eval "$$($(PY) -m sandbox.wiring $${JANITOR_SANDBOX_PORT:-12111})"; \
	  $(PY) manage.py sandbox simulate --minutes $(MINUTES) --drop-webhooks $(DROP)

# mypy (pyproject.toml) loads janitor.settings_test through django-stubs and connects to nothing;
# DJANGO_DEBUG=true so the settings need no production secret.
lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	env -u DATABASE_URL -u REDIS_URL DJANGO_DEBUG=true $(PY) -m mypy .
	env -u DATABASE_URL -u REDIS_URL DJANGO_DEBUG=true $(PY) manage.py makemigrations --check --dry-run

test: install-dev lint
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
	  $(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# The smoke part of the suite on the embedded default: SQLite, ORM broker, database sessions.
test-embedded: install-dev
	env -u DATABASE_URL -u REDIS_URL -u JANITOR_QUEUE_BROKER \
	  $(PY) -m pytest -p no:cacheprovider -m smoke $(PYTEST_ARGS)

# pip-audit over the pinned requirements, in a venv of its own. --strict: a package it could not
# look up fails the audit instead of passing it unaudited. It needs PyPI's JSON API or OSV, which
# these machines cannot reach; so it is not part of `make test` (see docs/operations.md).
AUDIT_VENV := .venv-audit
PIP_AUDIT_VERSION := 2.10.1
$(AUDIT_VENV)/.pip-audit-$(PIP_AUDIT_VERSION):
	test -x $(AUDIT_VENV)/bin/python || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install -q pip-audit==$(PIP_AUDIT_VERSION)
	touch $@

audit: $(AUDIT_VENV)/.pip-audit-$(PIP_AUDIT_VERSION)
	$(AUDIT_VENV)/bin/pip-audit --strict --no-deps --disable-pip -r requirements-dev.txt

clean:
	rm -rf $(VENV) $(AUDIT_VENV) janitor.sqlite3 sandbox-state.json staticfiles
