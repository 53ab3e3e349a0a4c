#!/usr/bin/env bash
# Set up a machine for Tailor's tests and demo; every step is skipped when already done.
#
#   1. Debian packages (redis-server, kcat, prometheus, chromium) when one is missing;
#   2. .venv with `pip install -e '.[dev]'`, at the versions in constraints.txt, when either file
#      changed since the last install;
#   3. the compiled worker hot path (native/, Rust via maturin) when its sources changed;
#   4. `npm ci` in each directory with a package-lock.json listed in NPM_DIRS (the SDK's package and
#      the browser tests' npm packages), when its lock file changed; npm's cache is under
#      ${TAILOR_CACHE:-~/.cache/tailor}/npm, node_modules stay git-ignored;
#   5. `tailor dev build`: Kubernetes, etcd, kwok, helm, the real node's kubelet, kube-proxy, CNI
#      plugins, registry and crictl (Go) and Kafka (Maven), cached by version under
#      ${TAILOR_CACHE:-~/.cache/tailor}, so a second run builds nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/apt-packages.sh

stamp=.venv/.tailor-installed
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  echo "setup: pip install -e '.[dev]' -c constraints.txt"
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' -c constraints.txt
  touch "$stamp"
else
  echo "setup: .venv up to date"
fi

# Go's and rustup's installs live outside the default PATH of non-login shells.
export PATH="$PATH:/usr/local/go/bin:$HOME/.cargo/bin"

# The worker's hot path in Rust (tailor.core falls back to its Python reference without it, slower).
# Cargo's build output is cached outside the checkout, so a change rebuilds only this crate.
native_stamp=.venv/.tailor-native
native_hash=$(cat native/Cargo.toml native/Cargo.lock native/pyproject.toml native/*.pyi \
  $(find native/src -name '*.rs' | sort) | sha256sum | cut -c1-16)
if [ "$(cat "$native_stamp" 2>/dev/null)" != "$native_hash" ]; then
  if ! command -v cargo > /dev/null; then
    echo "setup: cargo is missing: install Rust (rustup, or Debian's cargo package)" >&2
    exit 1
  fi
  echo "setup: building native/ (Rust)"
  CARGO_TARGET_DIR="${TAILOR_CACHE:-$HOME/.cache/tailor}/native-target" \
    .venv/bin/pip install --quiet --disable-pip-version-check ./native
  echo "$native_hash" > "$native_stamp"
else
  echo "setup: native/ up to date"
fi

# npm packages, exactly as each package-lock.json says (`npm ci`), skipped while the lock is unchanged.
# Install scripts stay off (npm's default here): the packages we use work without them.
NPM_DIRS=(sdk tests/browser/openfeature)
npm_ci() {
  local dir=$1 lock_hash
  if ! command -v npm > /dev/null; then
    echo "setup: npm is missing: install Node.js with npm (scripts/apt-packages.sh installs nodejs)" >&2
    exit 1
  fi
  lock_hash=$(sha256sum "$dir/package-lock.json" | cut -c1-16)
  if [ "$(cat "$dir/node_modules/.tailor-npm-ci" 2>/dev/null)" = "$lock_hash" ]; then
    echo "setup: $dir/node_modules up to date"
    return
  fi
  echo "setup: npm ci in $dir"
  (cd "$dir" && npm ci --cache "${TAILOR_CACHE:-$HOME/.cache/tailor}/npm" --prefer-offline \
    --no-audit --no-fund --loglevel=error)
  echo "$lock_hash" > "$dir/node_modules/.tailor-npm-ci"
}
for dir in "${NPM_DIRS[@]}"; do npm_ci "$dir"; done

.venv/bin/tailor dev build
