# Two commands matter: `make run` (serve the platform on the embedded
# default) and `make test`. Everything else is what those two need.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CC     ?= gcc
CFLAGS ?= -O2 -g -Wall -Wextra -std=c11 -fPIC -fvisibility=hidden
BUILD  := build
PLUGIN_DIR := $(BUILD)/plugins

# Each plugin and example contributes its own rules and appends its outputs
# to PLUGINS / EXAMPLES (see plugins/*/plugin.mk, examples/*/example.mk).
PLUGINS  :=
EXAMPLES :=

# `make sanitize` (tests/conformance/conformance.mk): C plugins build an
# instrumented copy into $(SANITIZE_DIR)/plugins with $(SANITIZE_FLAGS) and
# append "PLUGIN.so=CONFIG.json" pairs (both make targets or files) here.
SANITIZE_DIR   := $(BUILD)/asan
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SANITIZE_PLUGINS :=

.PHONY: all setup sysdeps venv plugins examples run test bench clean sanitize
all: setup

setup: sysdeps venv plugins examples

# System packages the tests and plugins need (Debian). Installed only when missing.
SYSDEPS_CMDS := softhsm2-util:softhsm2 pkcs11-tool:opensc go:golang-go wrk:wrk
sysdeps:
	@missing=""; for pair in $(SYSDEPS_CMDS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	[ -f /usr/include/openssl/evp.h ] || missing="$$missing libssl-dev"; \
	[ -f /usr/include/p11-kit-1/p11-kit/pkcs11.h ] || missing="$$missing libp11-kit-dev"; \
	if [ -n "$$missing" ]; then echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q $$missing >/dev/null || { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q $$missing >/dev/null; }; fi

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(BUILD) $(PLUGIN_DIR):
	mkdir -p $@

include $(sort $(wildcard plugins/*/plugin.mk))
include $(sort $(wildcard examples/*/example.mk))
include $(wildcard tests/conformance/conformance.mk)
include $(wildcard runner/runner.mk)

plugins: $(PLUGINS)
examples: $(EXAMPLES)

run: setup
	$(PY) -m host.devrun

# Two processes, whole files to each (a file's module fixtures, e.g. its served platform, start
# once): the suite is mostly waiting on servers and subprocesses. PYTEST_WORKERS=0 runs it in one.
PYTEST_WORKERS ?= 2
test: setup
	$(VENV)/bin/pytest -q $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

bench: setup $(VENV)/.bench-installed
	$(PY) -m bench

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[bench]'
	touch $@

clean:
	rm -rf $(BUILD) .platform .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
