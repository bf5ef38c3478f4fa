# liftoff: the two commands a newcomer needs are `make deploy` and `make test`.
SHELL := /bin/bash
VENV := .venv
PYTHON := $(VENV)/bin/python
TARGET ?= local
# Locally the ec2 stage, where real hosts serve real requests; on AWS name the stage you mean.
ifeq ($(TARGET),local)
STAGE ?= production
else
STAGE ?= staging
endif
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup synth test check report snapshots deploy local-up local-down bench-rollout

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt $(wildcard service/requirements*.txt)
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The CLI's usage telemetry stays off for a synth, as in the local harness (local/deploy.py QUIET_CDK_CLI).
synth: export CDK_DISABLE_CLI_TELEMETRY := true
synth: setup
	npx cdk synth --quiet

# Five pytest-xdist workers on one Docker daemon (one build of each image): each Docker module's world is its own
# (names, ports, networks), so three workers run the worlds side by side, the costliest first, while the other two run
# the short CPU-bound tests in the time the worlds spend waiting (with one, both cores still sat idle for about a
# minute of a run: README's Tests); all five share what is left (tests/conftest.py makes the units and schedules them).
# PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 5
# `make check` waits on nothing, so a worker more than the cores only adds its own start (collection, a jsii kernel,
# the fixtures each worker makes for itself): two.
CHECK_WORKERS ?= 2
xdist = $(if $(filter 0,$(1)),,-n $(1) --dist loadgroup --no-loadscope-reorder)
# Bytecode is written for the checkout's own modules even where the environment says not to (PYTHONDONTWRITEBYTECODE=1
# on this project's machines): a run starts hundreds of Python processes (workers, liftoff, app.py, `python -m local`),
# each of which would otherwise compile release/, local/ and the tests afresh (a worker's collection: 8.5 CPU-s
# without, 4.1 with; measured). service/.dockerignore and the image digests leave __pycache__ out.
test check: export PYTHONDONTWRITEBYTECODE :=

test: setup
	$(PYTHON) -m pytest $(call xdist,$(PYTEST_WORKERS))

# The fast lane while you work: unit, synth and decision tests (no Docker, no emulator: marked in tests/conftest.py;
# no install into a fresh virtualenv: marked `installs`).
check: setup
	$(PYTHON) -m pytest $(call xdist,$(CHECK_WORKERS)) -m "not docker and not emulator and not installs"

report: synth
	$(PYTHON) -m tools.report

snapshots: setup
	UPDATE_SNAPSHOTS=1 $(PYTHON) -m pytest -q tests/test_snapshots.py

# TARGET=local (the default): a local AWS emulator (moto on loopback, fake credentials) gets the real
# stacks from the real CDK CLI, then a release walk with liftoff (stage, activate, rollback, ledger);
# see docs/local-emulator.md. Nothing stays running.
# TARGET=aws: a real account. tools/preflight checks the stage, the credentials (and account), the
# region, and that a first deploy names IMAGE_TAG (later ones may omit it: the CLI keeps the running
# version); it prints the stage's warnings, so the synth inside `cdk deploy` does not repeat them.
deploy: setup
ifeq ($(TARGET),local)
	$(PYTHON) -m local deploy --stage $(STAGE) $(if $(LOCAL_PORT),--port $(LOCAL_PORT))
else ifeq ($(TARGET),aws)
	$(PYTHON) -m tools.preflight --stage $(STAGE) $(if $(IMAGE_TAG),--image-tag $(IMAGE_TAG))
	LIFTOFF_WARNINGS_SHOWN=1 npx cdk deploy --require-approval never $(if $(IMAGE_TAG),--parameters $(STAGE)-service:ImageTag=$(IMAGE_TAG) --parameters $(STAGE)-service:StagedImageTag=$(or $(STAGED_IMAGE_TAG),$(IMAGE_TAG))) "$(STAGE)-*"
else
	@echo "make deploy: TARGET=$(TARGET) is not supported; use TARGET=local (the default) or TARGET=aws" >&2; exit 2
endif

# An emulator with the stage deployed, left running for you to explore; on the ec2 stage its hosts too, kept by a
# supervisor (the load balancer, State Manager, alarms, the Auto Scaling group). Run again while it runs: the stacks
# are updated in place from cdk.json (e.g. a new desired_count). local-down stops all of it, each by its pid.
local-up: setup
	$(PYTHON) -m local up --stage $(STAGE) $(if $(LOCAL_PORT),--port $(LOCAL_PORT))

local-down:
	$(PYTHON) -m local down

# What clients see while liftoff switches versions on real hosts (Docker needed): one row per scenario
# and action, median of runs; BENCH_ARGS="--runs 1 --scenario ec2-2-hosts --json" narrows it.
bench-rollout: setup
	$(PYTHON) -m bench.rollout $(BENCH_ARGS)
