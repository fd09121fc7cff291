# Every target installs what it needs first and is safe to run again.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
CDK_CLI_VERSION := 2.1148.1
# jsii prints an end-of-life banner on Node 20 (Debian's); a local Node 22 keeps synth output clean.
NODE_VERSION := 22.23.3
NODE_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)

export PATH := $(CURDIR)/$(TOOLS)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export PYTHONDONTWRITEBYTECODE := 1

PYTHON_SOURCES := app.py stacks constructs cluster_config userdata failover_lambda node_agent efs_ha_cli drill tests

.PHONY: synth test lint drill deploy destroy clean

synth: $(VENV)/.installed $(TOOLS)/.installed
	cdk synth --quiet --no-notices
	@echo "Templates written to cdk.out/: $$(cd cdk.out && ls *.template.json | tr '\n' ' ')"

test: $(VENV)/.installed $(TOOLS)/.installed lint
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check $(PYTHON_SOURCES)
	$(PY) -m mypy

drill: $(VENV)/.installed
	$(PY) -m drill

deploy: $(VENV)/.installed $(TOOLS)/.installed
	cdk deploy --all --no-notices

destroy: $(VENV)/.installed $(TOOLS)/.installed
	cdk destroy --all --no-notices

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

$(TOOLS)/.installed: Makefile
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --loglevel=error \
		aws-cdk@$(CDK_CLI_VERSION) node-linux-$(NODE_ARCH)@$(NODE_VERSION)
	touch $@

clean:
	rm -rf cdk.out drill-results.json .pytest_cache .mypy_cache .ruff_cache
