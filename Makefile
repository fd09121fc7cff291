# Every target installs what it needs first and is safe to run again.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .tools
CHECKOV_VENV := $(TOOLS)/checkov
CDK_CLI_VERSION := 2.1148.1
# jsii prints an end-of-life banner on Node 20 (Debian's); a local Node 22 keeps synth output clean.
NODE_VERSION := 22.23.3
NODE_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x64)

export PATH := $(CURDIR)/$(TOOLS)/node_modules/.bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
# No __pycache__ in the work tree, but byte code is still cached (in the venv): every pytest worker and every
# drill process would otherwise compile the project and re-rewrite every test module's asserts on each run.
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache

PYTHON_SOURCES := app.py stacks constructs cluster_config userdata failover_lambda node_agent efs_ha_cli drill tests
# pytest-xdist workers: three on CI's two cores, because about a quarter of the suite's time is tests waiting
# (agent threads on real timeouts, the drill's processes): measured on 2 cores, -n 3 took 90 s where -n 2 took
# 132 s. tests/conftest.py keeps every in-process CDK test on one worker (one synthesis per configuration per
# run) and the slow gates together on another.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadgroup --durations=10
# The slow gates (listed in tests/conftest.py SLOW_GATES) that `make test-fast` leaves out.
SLOW_GATES := cfn-lint and cdk-nag on the app.py synth, the drill smoke (one real failover)

# $(call timed,NAME,COMMAND): runs COMMAND, then prints NAME's wall time as the last line, pass or fail.
define timed
@start=$$(date +%s%N); status=0; $(2) || status=$$?; \
	ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	printf '%s: %s, %d.%d s wall\n' '$(1)' "$$([ $$status -eq 0 ] && echo passed || echo FAILED)" \
		$$((ms / 1000)) $$((ms % 1000 / 100)); \
	exit $$status
endef

.PHONY: synth test test-fast test-steps test-fast-steps lint drill drill-table deploy destroy clean

synth: $(VENV)/.installed $(TOOLS)/.installed
	cdk synth --quiet --no-notices
	@echo "Templates written to cdk.out/: $$(cd cdk.out && ls *.template.json | tr '\n' ' ')"

# CI's command: ruff + mypy + every test, installing first; its wall time is the last line it prints.
test:
	$(call timed,make test,$(MAKE) --no-print-directory test-steps)

# The edit-run loop: the same minus the slow gates, and it says so.
test-fast:
	@echo "make test-fast: skips the slow gates ($(SLOW_GATES)); make test runs them"
	$(call timed,make test-fast,$(MAKE) --no-print-directory test-fast-steps)

# ruff + mypy run alongside pytest (mypy on a cold cache takes about a minute; warm, a second); their output
# follows pytest's, and either failing fails the target.
test-steps test-fast-steps: $(VENV)/.installed $(TOOLS)/.installed $(CHECKOV_VENV)/.installed
	@lint_log=$$(mktemp); status=0; \
	$(MAKE) --no-print-directory lint > "$$lint_log" 2>&1 & lint_pid=$$!; \
	$(PY) -m pytest $(PYTEST_PARALLEL) $(if $(filter test-fast-steps,$@),-m "not slow_gate") || status=$$?; \
	wait $$lint_pid || status=$$?; \
	echo "--- lint (ran alongside pytest) ---"; cat "$$lint_log"; rm -f "$$lint_log"; \
	exit $$status

lint: $(VENV)/.installed
	$(PY) -m ruff check $(PYTHON_SOURCES)
	$(PY) -m mypy

drill: $(VENV)/.installed
	$(PY) -m drill

# The README's drill table, rendered from the checked-in results (docs/drill-results.json: copy a full run's
# drill-results.json there first); tests/drill/test_readme_table.py fails when README.md differs from it.
drill-table: $(VENV)/.installed
	$(PY) -m drill.readme_table

deploy: $(VENV)/.installed $(TOOLS)/.installed
	cdk deploy --all --no-notices

destroy: $(VENV)/.installed $(TOOLS)/.installed
	cdk destroy --all --no-notices

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	touch $@

# checkov in a venv of its own (its pins clash with the project's boto3); tests/test_review_gates.py runs it.
$(CHECKOV_VENV)/.installed: audit/checkov-requirements.txt
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r audit/checkov-requirements.txt
	touch $@

$(TOOLS)/.installed: Makefile
	mkdir -p $(TOOLS)
	npm install --prefix $(TOOLS) --no-save --no-audit --no-fund --loglevel=error \
		aws-cdk@$(CDK_CLI_VERSION) node-linux-$(NODE_ARCH)@$(NODE_VERSION)
	touch $@

clean:
	rm -rf cdk.out drill-results.json .pytest_cache .mypy_cache .ruff_cache $(VENV)/pycache
