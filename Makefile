# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The demo needs no broker server: kombu's filesystem transport under var/broker.
# Set CELERY_BROKER_URL=redis://... to use Redis instead.
DEMO_BROKER ?= filesystem://

.PHONY: demo test venv clean-var

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(DEMO_BROKER)} $(PY) manage.py demo $(if $(CATALOG),--catalog $(CATALOG))

test: $(STAMP)
	$(PY) -m pytest -c tests/pytest.ini --rootdir=. $(or $(ARGS),tests)

clean-var:
	rm -rf var
