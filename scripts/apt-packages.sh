#!/usr/bin/env bash
# Install the Debian packages the local real stack needs, only when one is missing.
#
# redis-server: the stack's Redis; kcat: an independent Kafka client for tests;
# prometheus: for promtool (alert-rule checks); chromium: browser tests; nodejs: the SDK's tests
# (and npm, below);
# wrk: the HTTP load generator of bench/decide.py and bench/collector.py;
# containerd, runc, iptables, nftables: the real node (`tailor dev up --node real`).
# A warm machine has them all and so never runs apt (fast, and works offline).
set -euo pipefail

packages=(redis-server kcat prometheus chromium nodejs wrk containerd runc iptables nftables)

missing=()
for pkg in "${packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# npm (the SDK's package and the browser tests' npm packages): NodeSource's nodejs ships it, Debian's
# does not, so Debian's npm package is added only when no npm is on the PATH.
if ! command -v npm > /dev/null; then
  missing+=(npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "apt: all stack packages present (${packages[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
else
  sudo=()
fi

echo "apt: installing ${missing[*]}"
# Debian starts services on install (redis-server, prometheus, containerd). The stack runs its
# own Redis on a free port and its own containerd on its own socket, so a policy-rc.d that
# answers 101 ("action forbidden") keeps invoke-rc.d from starting the system services; we
# remove it again afterwards.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  created_policy=1
fi
cleanup() {
  if [ "$created_policy" -eq 1 ]; then "${sudo[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
