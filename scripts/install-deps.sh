#!/usr/bin/env bash
# Installs what Portico's tests, examples and benchmarks use on Debian/Ubuntu: real peers
# (nginx with its stream module, HAProxy, curl, openssl, wrk) and the tools for the
# original_dst tests (iptables, iproute2). Then fetches the Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

pkgs=(curl openssl ca-certificates netcat-openbsd nginx libnginx-mod-stream haproxy wrk iptables iproute2 procps strace)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian starts a packaged nginx/haproxy service on install; the tests start their own.
for svc in nginx haproxy; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
go mod download
# staticcheck, pinned, for scripts/test.sh's lint step.
command -v staticcheck >/dev/null 2>&1 || [ -x "$(go env GOPATH)/bin/staticcheck" ] ||
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 # 2026.2.2
# The benchmark harness (scripts/bench.sh) builds bench/, a module of its own.
(cd bench && go mod download)
echo "dependencies ready"
