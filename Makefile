# Two commands for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The demo needs no broker server: message files under var/broker (kombu's filesystem
# transport, written atomically: config/filesystem_broker.py).
# Set CELERY_BROKER_URL=redis://... to use Redis instead.
DEMO_BROKER ?= filesystem://

BROWSER := $(VENV)/.browser

.PHONY: demo test venv browser clean-var

venv: $(STAMP)

# The admin browser tests drive Debian's Chromium; fonts-noto-cjk renders the Chinese titles.
# Installed once as root (CI); elsewhere those tests skip and say how to install it.
browser: $(BROWSER)

$(BROWSER):
	@if command -v chromium >/dev/null && fc-list 2>/dev/null | grep -q "CJK"; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -qq chromium fonts-noto-cjk >/dev/null 2>&1 || \
		 (apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null)) && touch $@; \
	else echo "Chromium is not installed (apt-get install chromium fonts-noto-cjk): the browser tests will be skipped"; fi

# requirements.txt installs the app (pyproject.toml) editable, plus requirements-hosts.txt.
$(STAMP): requirements.txt requirements-hosts.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(DEMO_BROKER)} $(PY) manage.py demo $(if $(CATALOG),--catalog $(CATALOG))

test: $(STAMP) $(BROWSER)
	$(PY) -m pytest -c tests/pytest.ini --rootdir=. $(or $(ARGS),tests)

clean-var:
	rm -rf var
