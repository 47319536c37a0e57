# S2V Studio. `make run` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ADDR ?= 127.0.0.1:8000

.PHONY: install run test lint bench chromium clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# seed_demo prints the address with the demo password: random, made on the first
# run and kept in var/demo-password so later runs print the same one.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --url http://$(ADDR)/
	$(PY) manage.py runstudio $(ADDR)

# Browser tests drive Debian's chromium; install it when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

# The whole suite twice: on the embedded default, then on PostgreSQL + Redis +
# S3 (moto's server on loopback). tests/infra.py starts PostgreSQL and Redis
# when they are down and sets the S2V_* variables of each run. Fails if either
# run fails. PYTEST_ARGS="-k healthz" narrows both runs. The type check (mypy,
# configured in pyproject.toml) runs first and fails the target on its own.
PYTEST_ARGS ?=
test: install chromium
	$(VENV)/bin/mypy
	$(PY) -m tests.infra ensure
	@one=passed; two=passed; \
	$(PY) -m tests.infra run embedded --label "make test, run 1 of 2" -- \
	  $(PY) -m pytest -q $(PYTEST_ARGS) || one=FAILED; \
	$(PY) -m tests.infra run services --label "make test, run 2 of 2" -- \
	  $(PY) -m pytest -q $(PYTEST_ARGS) || two=FAILED; \
	echo "make test: embedded default $$one; PostgreSQL + Redis + S3 $$two"; \
	[ $$one = passed ] && [ $$two = passed ]

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/render_benchmark.py

clean:
	rm -rf $(VENV) var staticfiles
