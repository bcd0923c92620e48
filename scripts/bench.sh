#!/usr/bin/env bash
# Portico benchmark harness. See BENCHMARKS.md for the method.
#
#   scripts/bench.sh [--quick] [SCENARIO...]     scenarios: echo idle-mem (default: both)
#
# The system under test runs on CPU $SUT_CPU (default 1), the load generator
# on CPU $LG_CPU (default 0). Every contender gets one worker. Repetitions are
# interleaved (A B C D, B C D A, ...) so drift hits everyone alike. Raw
# results go to bench/results/<scenario>-<UTC time>.json (--quick: to
# bench/results/quick/), then BENCHMARKS.md tables and charts are regenerated.
#
# Environment knobs: BENCH_REPS, BENCH_WARMUP, BENCH_DURATION, BENCH_SERVERS
# ("portico gnet netpoll net"), BENCH_ECHO_CELLS ("64:100 4096:1000 ..."),
# BENCH_IDLE_CONNS, BENCH_NICE, PORTICO_BIN (use a prebuilt binary), SUT_CPU,
# LG_CPU.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib-bench.sh
source "$ROOT/scripts/lib-bench.sh"

QUICK=false
SCENARIOS=()
for a in "$@"; do
	case $a in
	--quick) QUICK=true ;;
	-h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	echo | idle-mem) SCENARIOS+=("$a") ;;
	*) echo "unknown argument: $a" >&2; exit 2 ;;
	esac
done
((${#SCENARIOS[@]})) || SCENARIOS=(echo idle-mem)

SUT_CPU=${SUT_CPU:-1}
LG_CPU=${LG_CPU:-0}
CLK_TCK=$(getconf CLK_TCK)
# Both the server and the load generator run at a raised priority (see
# boosted in lib-bench.sh): this box is shared (other engineers compile and
# test on it), and a nice of -15 gives our two processes ~97 % of a contended
# CPU without starving anyone outright. Interference that remains is
# measured per run (other_cpu_util).
BENCH_NICE=${BENCH_NICE:--15}
boosted_init
LG_TIMEOUT=150 # seconds; loadgen bounds itself, this is only a second fence
SERVERS=(${BENCH_SERVERS:-portico gnet netpoll net})
if $QUICK; then
	REPS=${BENCH_REPS:-1}
	WARMUP=${BENCH_WARMUP:-500ms}
	DURATION=${BENCH_DURATION:-1s}
	ECHO_CELLS=${BENCH_ECHO_CELLS:-64:100 4096:1000 64:10000}
	IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
	RESULTS_DIR=$ROOT/bench/results/quick
else
	REPS=${BENCH_REPS:-3}
	WARMUP=${BENCH_WARMUP:-2s}
	DURATION=${BENCH_DURATION:-5s}
	ECHO_CELLS=${BENCH_ECHO_CELLS:-64:100 64:1000 64:10000 4096:100 4096:1000 4096:10000}
	# 50,000 would need a 50k fd limit; see the idle-mem note in BENCHMARKS.md.
	IDLE_CONNS=${BENCH_IDLE_CONNS:-10000 19000}
	RESULTS_DIR=$ROOT/bench/results
fi

# Servers and the load generator both need one fd per connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null

BENCH_TMP=$(mktemp -d /tmp/portico-bench.XXXXXX)
BIN=$BENCH_TMP/bin
LOGDIR=$ROOT/bench/results/logs
mkdir -p "$BIN" "$LOGDIR"
trap cleanup EXIT
trap 'log "interrupted; stopping everything we started"; exit 130' INT TERM

ensure_tools
build_bins "$BIN"
AVAILABLE=()
for s in "${SERVERS[@]}"; do
	if [[ $s == portico && ! -x $BIN/portico ]]; then continue; fi
	AVAILABLE+=("$s")
done
MACHINE=$(machine_json)
log "machine: $MACHINE"
log "contenders: ${AVAILABLE[*]}; reps=$REPS warmup=$WARMUP duration=$DURATION quick=$QUICK"

# rotated REP: the contender order for one repetition.
rotated() {
	local n=${#AVAILABLE[@]} i
	for ((i = 0; i < n; i++)); do echo "${AVAILABLE[(i + $1 - 1) % n]}"; done
}

# failure_line SCEN SERVER REP SIZE CONNS MSG: a result row for a run that
# produced no loadgen output, so the report can show the gap.
failure_line() {
	printf '{"mode":"%s","labels":{"scenario":"%s","server":"%s","rep":"%s"},"size":%s,"conns":%s,"errors":{},"failure":%s}\n' \
		"$([[ $1 == echo ]] && echo pingpong || echo idle)" "$1" "$2" "$3" "$4" "$5" "$(json_str "$6")"
}

# one_run SCEN SERVER REP SIZE CONNS RUNS_FILE LOADGEN_ARGS...
one_run() {
	local scen=$1 srv=$2 rep=$3 size=$4 conns=$5 runs=$6 out
	shift 6
	local slog=$LOGDIR/$scen-$srv.log
	printf '=== %s rep %s size %s conns %s ===\n' "$scen" "$rep" "$size" "$conns" >>"$slog"
	if ! start_server "$srv" "$slog"; then
		failure_line "$scen" "$srv" "$rep" "$size" "$conns" "server did not start" >>"$runs"
		return
	fi
	[[ $scen == idle-mem ]] && sleep 1 # let the baseline RSS settle
	out=$BENCH_TMP/run.json
	rm -f "$out"
	run_loadgen "$out" -addr "127.0.0.1:$(server_port "$srv")" -conns "$conns" -size "$size" \
		-pid "$SRV_PID" -label "scenario=$scen" -label "server=$srv" -label "rep=$rep" "$@"
	local rc=$?
	if [[ -s $out ]]; then
		cat "$out" >>"$runs"
		log "  $("$BIN/report" -summary "$out")"
	else
		failure_line "$scen" "$srv" "$rep" "$size" "$conns" "loadgen exit $rc without output" >>"$runs"
		log "  loadgen exit $rc without output"
	fi
	if ! kill -0 "$SRV_PID" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$SRV_PID/stat" 2>/dev/null) == Z ]]; then
		log "  !! $srv exited during the run; last lines of $slog:"
		tail -20 "$slog" >&2
	fi
	stop_pid "$SRV_PID"
	sleep 0.3
}

scenario_echo() {
	local runs=$BENCH_TMP/echo.jsonl rep cell srv size conns
	: >"$runs"
	for ((rep = 1; rep <= REPS; rep++)); do
		for cell in $ECHO_CELLS; do
			size=${cell%%:*} conns=${cell##*:}
			for srv in $(rotated "$rep"); do
				log "echo rep $rep/$REPS ${size}B x $conns conns: $srv"
				one_run echo "$srv" "$rep" "$size" "$conns" "$runs" -warmup "$WARMUP" -duration "$DURATION"
			done
		done
	done
	write_results echo "$runs" "$(printf '{"reps":%s,"warmup":"%s","duration":"%s","cells":"%s","servers":"%s"}' \
		"$REPS" "$WARMUP" "$DURATION" "$ECHO_CELLS" "${AVAILABLE[*]}")"
}

scenario_idle_mem() {
	local runs=$BENCH_TMP/idle.jsonl rep n srv
	: >"$runs"
	log "idle-mem: fd hard limit is $(ulimit -Hn) per process, so at most ~$(($(ulimit -Hn) - 100)) connections per server"
	for ((rep = 1; rep <= REPS; rep++)); do
		for n in $IDLE_CONNS; do
			for srv in $(rotated "$rep"); do
				log "idle-mem rep $rep/$REPS $n conns: $srv"
				one_run idle-mem "$srv" "$rep" 64 "$n" "$runs" -idle -settle 2s
			done
		done
	done
	write_results idle-mem "$runs" "$(printf '{"reps":%s,"conns":"%s","servers":"%s","fd_hard_limit":%s}' \
		"$REPS" "$IDLE_CONNS" "${AVAILABLE[*]}" "$(ulimit -Hn)")"
}

START=$SECONDS
for s in "${SCENARIOS[@]}"; do
	case $s in
	echo) scenario_echo ;;
	idle-mem) scenario_idle_mem ;;
	esac
done

if $QUICK; then
	# Exercise the report generator too, without touching BENCHMARKS.md.
	"$BIN/report" -results "$RESULTS_DIR" -print >/dev/null && log "report generator OK"
else
	"$BIN/report" -results "$RESULTS_DIR" -md "$ROOT/BENCHMARKS.md" -charts "$ROOT/bench/results" &&
		log "BENCHMARKS.md tables and charts regenerated"
fi
log "done in $((SECONDS - START)) s"
