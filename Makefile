# Everything runs from the project's own virtualenv (.venv), created and synced from uv.lock.
# uv itself is bootstrapped into .tools/ so `uv sync` never uninstalls the tool running it.
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
# The CDK CLI is pinned in package.json (package-lock.json) and run from node_modules, offline.
NPM ?= npm
NPX := npx --no
CDK_ARGS ?=
CDK_OUTPUTS ?= cdk-outputs.json
# jsii (under aws-cdk-lib) prints a banner on end-of-life node majors; this lists those accepted.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION ?= 18,20
export CDK_DISABLE_CLI_TELEMETRY ?= true

.PHONY: install dev test test-fast lint format bench fake-anthropic clean synth deploy destroy

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	touch $@

install: $(VENV)/.synced

node_modules/.installed: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

# The CDK app (infra/) with the Lambda package built without Docker (infra/bundling.py).
synth: install node_modules/.installed
	$(NPX) cdk synth --quiet $(CDK_ARGS)

# Needs AWS credentials for the target account and a bootstrapped environment (docs/deploy.md).
deploy: install node_modules/.installed
	$(NPX) cdk deploy --require-approval never --outputs-file $(CDK_OUTPUTS) $(CDK_ARGS)

destroy: install node_modules/.installed
	$(NPX) cdk destroy --force $(CDK_ARGS)

dev: install
	$(PY) -m shared.cli dev $(DEV_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint node_modules/.installed
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

bench: install
	$(PY) -m benchmarks.run_all

fake-anthropic: install
	$(PY) -m tests.support.fake_anthropic

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
