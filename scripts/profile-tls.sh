#!/usr/bin/env bash
# CPU profile of Portico terminating TLS, in the tls scenario's full-handshake cell
# (ECDSA P-256, TLS 1.3, X25519, 32 concurrent, handshake + one GET each), set up as
# scripts/bench.sh tls sets it up (same certificates, bootstrap, pinning, backend).
#
#   scripts/profile-tls.sh [SECONDS] [CELL]     (default 10 s, ecdsa-tls13; cells:
#                                               ecdsa-tls13 ecdsa-tls12 rsa-tls13 rsa-tls12,
#                                               keepalive: wrk -t1 -c50 on the ECDSA listener)
#
# Portico is built with a net/http/pprof listener added through `go build -overlay`
# (no source file changes); the profile is written to bench/results/logs/ and printed
# with `go tool pprof -top`. Not part of the benchmark: the profiler's own sampling
# and the pprof listener cost the worker a little.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib-bench.sh
source "$ROOT/scripts/lib-bench.sh"
# shellcheck source=scripts/lib-bench-tls.sh
source "$ROOT/scripts/lib-bench-tls.sh"

SECS=${1:-10}
CELL=${2:-ecdsa-tls13}
case $CELL in
ecdsa-tls13) kind=ecdsa ver=1.3 ;; ecdsa-tls12) kind=ecdsa ver=1.2 ;;
rsa-tls13) kind=rsa ver=1.3 ;; rsa-tls12) kind=rsa ver=1.2 ;;
keepalive) kind=ecdsa ver="" ;;
*) echo "unknown cell $CELL" >&2; exit 2 ;;
esac
SUT_CPU=${SUT_CPU:-1}
LG_CPU=${LG_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
BENCH_NICE=${BENCH_NICE:--15}
boosted_init
BULK_BYTES=1M WRK_CONNS=50 QUICK=false
ulimit -n "$(ulimit -Hn)" 2>/dev/null
BENCH_TMP=$(mktemp -d /tmp/portico-prof.XXXXXX)
BIN=$BENCH_TMP/bin
LOGDIR=$ROOT/bench/results/logs
mkdir -p "$BIN" "$LOGDIR"
trap cleanup EXIT

cat >"$BENCH_TMP/zz_pprof.go" <<'GO'
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

// Added by scripts/profile-tls.sh through -overlay: a pprof listener when asked.
func init() {
	if a := os.Getenv("PORTICO_PPROF"); a != "" {
		go http.ListenAndServe(a, nil)
	}
}
GO
printf '{"Replace":{"%s":"%s"}}\n' "$ROOT/cmd/portico/zz_pprof.go" "$BENCH_TMP/zz_pprof.go" >"$BENCH_TMP/overlay.json"
(cd "$ROOT" && go build -overlay "$BENCH_TMP/overlay.json" -o "$BIN/portico" ./cmd/portico) || exit 1
(cd "$ROOT/bench" && go build -o "$BIN/" ./cmd/tlsload) || exit 1

backend_setup "$BENCH_TMP" || exit 1
tlst_certs "$BENCH_TMP/tls" || exit 1
start_backend || { log "backend did not start"; exit 1; }
tlst_pick_ports portico || exit 1
free_port || exit 1
PPROF=127.0.0.1:$FREE_PORT
tlst_portico_config >"$BENCH_TMP/portico-tls.yaml"
export PORTICO_PPROF=$PPROF
start_proc "$SUT_CPU" "${TP[tcp]}" "$LOGDIR/profile-tls-portico.log" \
	"$BIN/portico" -c "$BENCH_TMP/portico-tls.yaml" --concurrency 1 || exit 1
SRV_PID=$PROC_PID
wait_listening "${TP[$kind]}" || exit 1

out=$LOGDIR/portico-$CELL-$(date -u +%Y%m%d-%H%M%S).pprof
if [[ -n $ver ]]; then
	tlst_load "$BENCH_TMP/load.json" $((SECS + 40)) "$BENCH_NICE" -mode handshake -addr "127.0.0.1:${TP[$kind]}" \
		-sni "$SNI_A" -conc 32 -version "$ver" -warmup 1s -duration "$((SECS + 2))s" -pid "$SRV_PID"
	load=$TLSLOAD_PID
else
	timeout --kill-after=5 $((SECS + 30)) "${BOOSTED[@]}" taskset -c "$LG_CPU" wrk -t1 -c50 -d"$((SECS + 3))s" \
		"https://$SNI_A:${TP[$kind]}/" >"$BENCH_TMP/load.json" 2>&1 &
	load=$!
	track "$load"
fi
sleep 1.5
curl -s --max-time $((SECS + 20)) -o "$out" "http://$PPROF/debug/pprof/profile?seconds=$SECS" || log "no profile"
tlst_wait "$load"
if [[ -n $ver ]]; then
	log "load: $(tlst_brief "$(cat "$BENCH_TMP/load.json")")"
else
	log "load: $(grep -E 'Requests/sec|Socket errors' "$BENCH_TMP/load.json" | tr '\n' ' ')"
fi
log "profile: $out"
go tool pprof -top -nodecount="${PPROF_NODES:-15}" "$BIN/portico" "$out" 2>/dev/null
