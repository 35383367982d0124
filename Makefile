# The two commands of the quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# PYTHONWARNINGS: setuptools' notices about editable installs (UserWarnings
# printed by the build backend) are not the user's business: a quiet install
PIP    := PYTHONWARNINGS=ignore::UserWarning $(VENV)/bin/pip

.PHONY: demo test test-slow test-security test-crosshost test-multiuser lint venv clean

$(VENV)/.stamp-base: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q -e .
	@touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-base
	@$(PIP) install -q -e '.[test]'
	@touch $@

venv: $(VENV)/.stamp-base

## Start the embedded service and a local endpoint, run a function, print the result.
demo: $(VENV)/.stamp-base
	@$(VENV)/bin/funcx demo $(ARGS)

## Run the test suite (slow tests are in test-slow, attack tests in test-security).
test: $(VENV)/.stamp-test
	@$(PY) -m pytest --ignore=tests/security $(ARGS)

## The slow/stress tests, run by CI in a separate bounded step.
test-slow: $(VENV)/.stamp-test
	@$(PY) -m pytest -m slow $(ARGS)

## ruff and mypy, as configured in pyproject.toml (CI holds both at zero findings).
lint: $(VENV)/.stamp-test
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

## The attack suite (tests/security), run by CI in its own bounded step.
test-security: $(VENV)/.stamp-test
	@$(PY) -m pytest tests/security -m "security and not slow" $(ARGS)

## The cross-host suite (tests/crosshost): hosts in network namespaces; needs root,
## tcpdump and a TLS-capable redis-server (CI installs them).
test-crosshost: $(VENV)/.stamp-test
	@$(PY) -m pytest tests/crosshost -m crosshost $(ARGS)

## The multi-user endpoint suite (tests/multiuser): creates local Unix users; needs root.
test-multiuser: $(VENV)/.stamp-test
	@$(PY) -m pytest tests/multiuser -m multiuser $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
