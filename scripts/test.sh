#!/usr/bin/env bash
# Runs Portico's checks and tests: vet, then the concurrent packages under the race
# detector, then the end-to-end tests that start the real binary with real peers.
# bench/ is its own Go module (so the engine's go.mod carries none of the benchmark peers'
# dependencies); it is vetted and tested from inside it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The e2e tests open hundreds of sockets per process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== gofmt, go vet, staticcheck"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt: these files need formatting:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
(cd bench && go vet ./...)
STATICCHECK=$(command -v staticcheck || echo "$(go env GOPATH)/bin/staticcheck")
if [ -x "$STATICCHECK" ]; then
  "$STATICCHECK" ./...
  (cd bench && "$STATICCHECK" ./...)
elif [ "${CI:-}" = true ]; then
  echo "staticcheck is missing (scripts/install-deps.sh installs it)" >&2
  exit 1
else
  echo "staticcheck not installed; skipped (scripts/install-deps.sh installs it)"
fi
echo "== unit and integration tests (-race)"
go test -race -count=1 ./poller/... ./engine/... ./http/... ./transport/... ./filters/... ./upstream/... ./config/... ./admin/... ./manager/... ./hotrestart/...
echo "== the engine's tcp_proxy tests again, every pair on the kernel path (BPF sockmap)"
if [ "$(id -u)" = 0 ]; then
  # As root the map must load: PORTICO_TEST_SOCKMAP makes a load failure a test failure.
  PORTICO_TEST_SOCKMAP=1 go test -count=1 ./engine/... ./filters/network/tcpproxy/...
elif [ "${CI:-}" = true ]; then
  echo "CI must run as root: the sockmap path needs it" >&2
  exit 1
else
  echo "not root: skipped (the kernel path needs root or CAP_BPF)"
fi
echo "== end-to-end tests (portico binary with nginx, HAProxy, curl, openssl)"
go test -count=1 -timeout 15m ./cmd/...
echo "== benchmark tools (bench module)"
(cd bench && go test -count=1 -timeout 15m ./...)
