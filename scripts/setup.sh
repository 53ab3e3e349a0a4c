#!/usr/bin/env bash
# Set up a machine for Tailor's tests and demo; every step is skipped when already done.
#
#   1. Debian packages (redis-server, kcat, prometheus, chromium) when one is missing;
#   2. .venv with `pip install -e '.[dev]'` when pyproject.toml changed since the last install;
#   3. `tailor dev build`: Kubernetes, etcd, kwok, helm (Go) and Kafka (Maven), cached by
#      version under ${TAILOR_CACHE:-~/.cache/tailor}, so a second run builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/apt-packages.sh

stamp=.venv/.tailor-installed
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: pip install -e '.[dev]'"
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
else
  echo "setup: .venv up to date"
fi

# Go's official install lives outside the default PATH of non-login shells.
export PATH="$PATH:/usr/local/go/bin"
.venv/bin/tailor dev build
