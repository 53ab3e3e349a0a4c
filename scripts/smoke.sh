#!/usr/bin/env bash
# A quick look that the running dev stack answers, through independent clients:
# kubectl (the fake node is Ready), kcat (broker metadata), redis-cli (PING).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-default}"
eval "$(.venv/bin/tailor dev --name "$name" env)"
.venv/bin/kubectl wait --for=condition=Ready node --all --timeout=60s
metadata="$(kcat -b "$TAILOR_KAFKA_BOOTSTRAP" -L -m 10)"  # captured: `| head` would SIGPIPE kcat
grep -m1 "brokers:" <<<"$metadata"
redis-cli -u "$TAILOR_REDIS_URL" ping
echo "smoke: kube, kafka and redis answer"
