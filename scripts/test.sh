#!/usr/bin/env bash
# Runs Portico's checks and tests: vet, then the concurrent packages under the race
# detector, then the end-to-end tests that start the real binary with real peers.
set -euo pipefail
cd "$(dirname "$0")/.."

# The e2e tests open hundreds of sockets per process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== go vet"
go vet ./...
echo "== unit and integration tests (-race)"
go test -race -count=1 ./poller/... ./engine/... ./filters/... ./config/... ./admin/...
echo "== end-to-end tests (portico binary with nginx, HAProxy, curl, openssl)"
go test -count=1 -timeout 15m ./cmd/... ./bench/...
