# Tailor: `make demo` (set up, then show the product) and `make test` (set up, lint, test).
# Set-up installs what is missing and is a no-op on a warm machine (see scripts/setup.sh).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := .venv
BIN := $(VENV)/bin
TAILOR := $(BIN)/tailor
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/.cargo/bin
# Cargo's output (native/) outside the checkout, shared with scripts/setup.sh's build.
export CARGO_TARGET_DIR ?= $(or $(TAILOR_CACHE),$(HOME)/.cache/tailor)/native-target

.PHONY: help setup build lint unit test demo up down status env image image-push

help:
	@echo "make setup   apt packages, .venv, cached builds (tailor dev build)"
	@echo "make lint    ruff check, ruff format --check, mypy, lint-imports; cargo fmt, clippy, test"
	@echo "make unit    fast tests (tests/unit)"
	@echo "make test    setup + lint + the whole test suite (starts its own stack)"
	@echo "make demo    setup + tailor demo (DEMO_ARGS=\"--traffic 50\" or \"--check\")"
	@echo "make up | down | status | env   the default dev stack"
	@echo "make image   the container image IMAGE:TAG with buildah (bases from Debian's packages; BASES=public)"
	@echo "make image-push REGISTRY=127.0.0.1:5000   build, then push to REGISTRY/<IMAGE's path>:TAG"

setup:
	bash scripts/setup.sh

build: setup

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd native && cargo fmt --check && cargo clippy --release --quiet -- -D warnings && cargo test --release --quiet

unit:
	$(BIN)/pytest tests/unit

# Lint and the unit tests (CPU only, no stack; ~75 s alone) side by side on the machine's two cores,
# each one's output printed whole when it ends; then the tests on the stack.
test: setup
	$(MAKE) --no-print-directory -j2 --output-sync=target lint unit
	$(BIN)/pytest --ignore=tests/unit

# The README's main command: set-up (a no-op when warm), then `tailor demo` until Ctrl-C.
# Flags go in DEMO_ARGS: `make demo DEMO_ARGS="--traffic 50"`, or "--check" to check and exit.
demo: setup
	$(TAILOR) demo $(DEMO_ARGS)

up:
	$(TAILOR) dev up

down:
	$(TAILOR) dev down

status:
	$(TAILOR) dev status

env:
	@$(TAILOR) dev env

# The image from the Dockerfile, built with buildah (scripts/image.sh says how and why). IMAGE is
# the repository, TAG defaults to Chart.yaml's appVersion (what the chart and the CRD deploy).
IMAGE ?= ghcr.io/tailor-dev/tailor
TAG ?=
BASES ?= debian
image:
	IMAGE="$(IMAGE)" TAG="$(TAG)" BASES="$(BASES)" bash scripts/image.sh build

# REGISTRY replaces IMAGE's registry: `make image-push REGISTRY=127.0.0.1:5000` pushes
# 127.0.0.1:5000/tailor-dev/tailor:TAG (plain http for localhost and 127.0.0.1; TLS_VERIFY overrides).
image-push: image
	IMAGE="$(IMAGE)" TAG="$(TAG)" REGISTRY="$(REGISTRY)" TLS_VERIFY="$(TLS_VERIFY)" bash scripts/image.sh push
