#!/usr/bin/env bash
# Portico benchmark harness. See BENCHMARKS.md for the method.
#
#   scripts/bench.sh [--quick] [SCENARIO...]
#       scenarios: echo idle-mem l4-proxy l7-proxy syscalls sni drip balance tls reload xds
#       (default: all; in --quick's default, l7-proxy runs only when the
#       Portico binary accepts the HTTP bootstrap, see scenario_l7_proxy, and
#       reload and xds not at all: `--quick reload` takes ~30 s, one event per
#       cell, `--quick xds` ~15 s)
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
# LG_CPU; proxy scenarios: BENCH_WRK_CONNS (50), BENCH_L4_SERVERS
# ("portico portico-sockmap haproxy nginx net"; portico-sockmap is the same
# binary and config as portico on the kernel path, root only, see
# scenario_l4_proxy), BENCH_SNI_SERVERS, BENCH_BULK_BYTES,
# BENCH_BAL_WORKERS ("2 4"), BENCH_BAL_CELLS, BENCH_BAL_TOTAL; drip:
# BENCH_DRIP_SERVERS (default: the SNI servers), BENCH_DRIP_CONNS (4; --quick
# 2), BENCH_DRIP_DURATION (seconds, 15; --quick 3); l7-proxy:
# BENCH_L7_SERVERS ("portico haproxy nginx"), BENCH_L7_CELLS ("keepalive
# close headers40 body1m"), BENCH_L7_BODY_CONNS (wrk connections of the
# body1m cell, 10), BENCH_L7_NGINX_KEEPALIVE (nginx's upstream keepalive;
# default: the wrk connections, at least 32), BENCH_L7_REQUEST_ID (false:
# Portico generates no x-request-id); tls (scripts/lib-bench-tls.sh):
# BENCH_TLS_SERVERS ("portico haproxy nginx"), BENCH_TLS_IDLE_CONNS (8000;
# --quick 500), BENCH_TLS_HS_CONC (32), BENCH_TLS_PROBE_CONNS (10),
# BENCH_TLS_PROBE_INTERVAL (10ms), BENCH_TLS_PROBE_NICE (BENCH_NICE - 5), BENCH_TLS_FLOOD_NICE (BENCH_NICE);
# reload (scripts/lib-bench-reload.sh): BENCH_RELOAD_CELLS ("portico-cold portico-overlap
# portico-hot portico-hotwrap portico-lds portico-lds-full haproxy-mw haproxy-sf"), BENCH_RELOAD_RATE
# (13500 new connections/s), BENCH_RELOAD_CONC (64), BENCH_RELOAD_STREAMS (100),
# BENCH_RELOAD_EVENTS (20; --quick 1), BENCH_RELOAD_COLD_EVENTS (5),
# BENCH_RELOAD_HOT_EVENTS (10), BENCH_RELOAD_DRAIN_S (1), BENCH_RELOAD_PARENT_SHUTDOWN_S (2);
# xds (scripts/lib-bench-xds.sh): BENCH_XDS_FLEETS ("3:1 3:1:delta 1:1 1":
# PROXIES[:DRAIN_S[:delta]] per run; --quick "3:1 1:1:delta"), BENCH_XDS_SIZES ("10,100,1000";
# --quick "10,100"), BENCH_XDS_UPDATES (12 per size and rep; --quick 3), BENCH_XDS_MAX_S (900).
#
# Before/after in one run: BENCH_BASE_BIN=/path/to/an/older/portico adds the
# contender "portico-base", started exactly like portico (same config
# generator, its own ports: echo 10004, l4 10014, sni 10023, admin 19902;
# l7-proxy picks free ports for every run), to every list that has portico
# (echo, idle-mem, l4-proxy, l7-proxy, sni, syscalls, drip), interleaved
# with the others; PORTICO_BIN is then the "after" build.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib-bench.sh
source "$ROOT/scripts/lib-bench.sh"
# shellcheck source=scripts/lib-bench-tls.sh
source "$ROOT/scripts/lib-bench-tls.sh"
# shellcheck source=scripts/lib-bench-reload.sh
source "$ROOT/scripts/lib-bench-reload.sh"
# shellcheck source=scripts/lib-bench-xds.sh
source "$ROOT/scripts/lib-bench-xds.sh"

QUICK=false
SCENARIOS=()
for a in "$@"; do
	case $a in
	--quick) QUICK=true ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	echo | idle-mem | l4-proxy | l7-proxy | sni | balance | syscalls | drip | tls | reload | xds) SCENARIOS+=("$a") ;;
	*) echo "unknown argument: $a" >&2; exit 2 ;;
	esac
done
# In the --quick smoke's default list, l7-proxy runs only once Portico
# takes the HTTP bootstrap (L7_IF_PORTICO_HTTP): before, its Portico cells
# would fail, and a quick run with a failed run fails.
L7_IF_PORTICO_HTTP=false
if ((${#SCENARIOS[@]} == 0)); then
	SCENARIOS=(echo idle-mem l4-proxy l7-proxy syscalls sni drip balance tls)
	# reload's cells are seconds long each (events seconds apart), xds starts a fleet:
	# not in the smoke.
	$QUICK || SCENARIOS+=(reload xds)
	L7_IF_PORTICO_HTTP=$QUICK
fi

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
# shellcheck disable=SC2086 # the lists are split on blanks on purpose
mapfile -t SERVERS < <(with_base ${BENCH_SERVERS:-portico gnet netpoll net})
if $QUICK; then
	REPS=${BENCH_REPS:-1}
	WARMUP=${BENCH_WARMUP:-500ms}
	DURATION=${BENCH_DURATION:-1s}
	ECHO_CELLS=${BENCH_ECHO_CELLS:-64:100 4096:1000 64:10000}
	IDLE_CONNS=${BENCH_IDLE_CONNS:-2000}
	PX_WARMUP=1 PX_DURATION=1 STRACE_DURATION=1
	BULK_BYTES=${BENCH_BULK_BYTES:-64M}
	BAL_WORKERS=${BENCH_BAL_WORKERS:-2}
	BAL_CELLS=${BENCH_BAL_CELLS:-hold:100 churn:100}
	BAL_TOTAL=${BENCH_BAL_TOTAL:-1000}
	DRIP_CONNS=${BENCH_DRIP_CONNS:-2}
	DRIP_DURATION=${BENCH_DRIP_DURATION:-3}
	RESULTS_DIR=$ROOT/bench/results/quick
else
	REPS=${BENCH_REPS:-3}
	WARMUP=${BENCH_WARMUP:-2s}
	DURATION=${BENCH_DURATION:-5s}
	ECHO_CELLS=${BENCH_ECHO_CELLS:-64:100 64:1000 64:10000 4096:100 4096:1000 4096:10000}
	# 50,000 would need a 50k fd limit; see the idle-mem note in BENCHMARKS.md.
	IDLE_CONNS=${BENCH_IDLE_CONNS:-10000 19000}
	PX_WARMUP=1 PX_DURATION=5 STRACE_DURATION=3
	BULK_BYTES=${BENCH_BULK_BYTES:-1G}
	BAL_WORKERS=${BENCH_BAL_WORKERS:-2 4}
	BAL_CELLS=${BENCH_BAL_CELLS:-hold:100 hold:1000 hold:10000 churn:100 churn:1000}
	BAL_TOTAL=${BENCH_BAL_TOTAL:-10000}
	DRIP_CONNS=${BENCH_DRIP_CONNS:-4}
	DRIP_DURATION=${BENCH_DRIP_DURATION:-15}
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
	have_bin "$s" && AVAILABLE+=("$s")
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

# ---------------------------------------------------------------------------
# Proxy scenarios. The proxy under test runs on CPU $SUT_CPU with one worker;
# wrk / curl / connload and the nginx backend share CPU $LG_CPU.

WRK_CONNS=${BENCH_WRK_CONNS:-50}
# shellcheck disable=SC2086 # the lists are split on blanks on purpose
{
	mapfile -t L4_SERVERS < <(with_base ${BENCH_L4_SERVERS:-portico portico-sockmap haproxy nginx net})
	mapfile -t SNI_SERVERS < <(with_base ${BENCH_SNI_SERVERS:-portico haproxy nginx})
	mapfile -t DRIP_SERVERS < <(with_base ${BENCH_DRIP_SERVERS:-${SNI_SERVERS[*]}})
	mapfile -t L7_SERVERS < <(with_base ${BENCH_L7_SERVERS:-portico haproxy nginx})
}
PROXY_READY=false

# rotate_list REP ITEM...: ITEMs rotated by REP-1 (interleaving).
rotate_list() {
	local r=$1 n i
	shift
	n=$#
	local a=("$@")
	for ((i = 0; i < n; i++)); do echo "${a[(i + r - 1) % n]}"; done
}

proxy_init() {
	$PROXY_READY && return 0
	backend_setup "$BENCH_TMP" || return 1
	PROXY_READY=true
	PX_MACHINE=${MACHINE%\}},\"tools\":$(proxy_versions_json)\}
	# A Portico that did not build (or no BENCH_BASE_BIN) is left out.
	mapfile -t L4_SERVERS < <(only_built "${L4_SERVERS[@]}")
	mapfile -t SNI_SERVERS < <(only_built "${SNI_SERVERS[@]}")
	mapfile -t DRIP_SERVERS < <(only_built "${DRIP_SERVERS[@]}")
	mapfile -t L7_SERVERS < <(only_built "${L7_SERVERS[@]}")
	# The kernel path needs BPF (CAP_BPF and CAP_NET_ADMIN): as anyone else
	# Portico would fall back to userspace, and the row would be a second
	# "portico" under a wrong name.
	if [[ $(id -u) != 0 && " ${L4_SERVERS[*]} " == *" portico-sockmap "* ]]; then
		log "portico-sockmap left out: not root, and the BPF sockmap path needs root"
		mapfile -t L4_SERVERS < <(printf '%s\n' "${L4_SERVERS[@]}" | grep -vx portico-sockmap)
	fi
}

only_built() {
	local s
	for s in "$@"; do have_bin "$s" && echo "$s"; done
}

# write_px_results SCEN RUNS PARAMS: like write_results, with tool versions.
write_px_results() {
	local save=$MACHINE
	MACHINE=$PX_MACHINE
	write_results "$@"
	MACHINE=$save
}

# sut_dead: did the SUT exit during the run?
sut_dead() { ! kill -0 "$1" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]; }

# wrk_cell SCEN SRV REP TEST URL PID RUNS [wrk args]: warm-up (none if
# PX_WARMUP is 0), then the measured wrk run of PX_DURATION seconds with the
# SUT's CPU ticks read around it. When WRK_HOOK names a function, it is
# called as "HOOK start" before the warm-up and as "HOOK end REQUESTS
# WARMUP_REQUESTS" after the measured run; what the latter prints (JSON
# members, each with a leading comma) joins the metrics.
wrk_cell() {
	local scen=$1 srv=$2 rep=$3 test=$4 url=$5 pid=$6 runs=$7 t0 t1 w warm=0 extra=""
	shift 7
	[[ -n ${WRK_HOOK:-} ]] && "$WRK_HOOK" start
	if ((PX_WARMUP > 0)); then
		wrk_run "$BENCH_TMP/wrk-warm" "$url" "${PX_WARMUP}s" "$WRK_CONNS" "$@"
		read -r _ _ _ warm _ _ <"$BENCH_TMP/wrk-warm" || warm=0
	fi
	# Who else used the machine in the window: all CPUs' busy time less the
	# SUT's, the backend's, our children's (wrk) and the kernel threads'
	# (kworker, ksoftirqd: on the sockmap path they do the proxy's work).
	local m0 m1 b0=0 b1=0 c0 be=${BACKEND_PID:-} k0 k1
	[[ $be == "$pid" ]] && be=""
	k0=$(kthread_ticks)
	children_ticks
	c0=$CHILD_TICKS m0=$(machine_busy)
	machine_work_start
	[[ -n $be ]] && b0=$(cpu_ticks "$be")
	t0=$(cpu_ticks "$pid")
	wrk_run "$BENCH_TMP/wrk" "$url" "${PX_DURATION}s" "$WRK_CONNS" "$@"
	t1=$(cpu_ticks "$pid")
	[[ -n $be ]] && b1=$(cpu_ticks "$be")
	machine_work_end
	m1=$(machine_busy)
	children_ticks
	k1=$(kthread_ticks)
	extra=$(awk -v hz="$CLK_TCK" -v d="$PX_DURATION" -v m="$((m1 - m0))" -v s="$((t1 - t0))" -v b="$((b1 - b0))" -v c="$((CHILD_TICKS - c0))" -v k="$(kthread_delta "$k0" "$k1")" 'BEGIN {
		o = m - s - b - c - k; if (o < 0) o = 0
		printf ",\"load_cpu_util\":%.3f,\"other_cpu_util\":%.3f", (b + c) / hz / d, o / hz / d }')
	read -r rps p50 p99 req err n2 <"$BENCH_TMP/wrk" || { rps=0 req=0; }
	extra+=$(machine_cpu_json req "$req" 1 "$PX_DURATION" "$k0" "$k1")
	extra+=$(bench_cpu_json req "$req" 1 $((t1 - t0 + b1 - b0 + CHILD_TICKS - c0)) "$k0" "$k1")
	local fail=""
	((req > 0)) || fail="wrk made no requests: $(tail -3 "$BENCH_TMP/wrk.txt" | tr '\n' ' ')"
	if [[ $srv != none ]] && sut_dead "$pid"; then fail="$srv exited during the run"; fi
	w=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v r="$req" -v d="$PX_DURATION" -v rps="$rps" -v p50="$p50" -v p99="$p99" -v e="$err" -v n2="$n2" -v none="$([[ $srv == none ]] && echo 1)" 'BEGIN {
		cpu = (b - a) / hz
		printf "{\"rps\":%s,\"p50_us\":%s,\"p99_us\":%s,\"requests\":%s,\"errors\":%d,\"non2xx\":%d", rps, p50, p99, r, e, n2
		if (!none && r > 0) printf ",\"cpu_s\":%.3f,\"cpu_us_per_req\":%.3f,\"sut_util\":%.3f", cpu, cpu / r * 1e6, cpu / d
		printf "}" }')
	[[ -n ${WRK_HOOK:-} ]] && extra+=$("$WRK_HOOK" end "$req" "$warm")
	w=${w%\}}$extra\}
	metrics_line "$scen" "$srv" "$rep" "$test" "c$WRK_CONNS" "$w" "$fail" >>"$runs"
	log "  $test $srv: $w${fail:+ !! $fail}"
}

# bulk_cell SRV REP URL PID RUNS [CURL_CPU]: one download of the big file
# with curl (on CURL_CPU, default $LG_CPU).
bulk_cell() {
	local srv=$1 rep=$2 url=$3 pid=$4 runs=$5 ccpu=${6:-$LG_CPU} t0 t1 out fail="" k0 k1
	# As in wrk_cell: who else used the machine (all CPUs less the SUT, the
	# backend, curl and the kernel threads), over the wall-clock window
	# (curl's own time_total leaves out its start).
	local m0 m1 b0=0 b1=0 c0 be=${BACKEND_PID:-} r0 r1 other
	[[ $be == "$pid" ]] && be=""
	[[ -n ${WRK_HOOK:-} ]] && "$WRK_HOOK" start
	k0=$(kthread_ticks)
	children_ticks
	c0=$CHILD_TICKS m0=$(machine_busy)
	machine_work_start
	[[ -n $be ]] && b0=$(cpu_ticks "$be")
	r0=$EPOCHREALTIME
	t0=$(cpu_ticks "$pid")
	out=$(timeout --kill-after=5 120 "${BOOSTED[@]}" taskset -c "$ccpu" curl -s -o /dev/null --max-time 110 \
		-w '%{speed_download} %{size_download} %{http_code} %{time_total}' "$url")
	t1=$(cpu_ticks "$pid")
	r1=$EPOCHREALTIME
	[[ -n $be ]] && b1=$(cpu_ticks "$be")
	machine_work_end
	m1=$(machine_busy)
	children_ticks
	k1=$(kthread_ticks)
	read -r speed size code tt <<<"$out"
	[[ ${code:-0} == 200 ]] || fail="curl: http ${code:-none} size ${size:-0}"
	if [[ $srv != none* ]] && sut_dead "$pid"; then fail="$srv exited during the run"; fi
	local w
	w=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v s="${speed:-0}" -v n="${size:-0}" -v t="${tt:-0}" -v none="$([[ $srv == none* ]] && echo 1)" 'BEGIN {
		printf "{\"mb_per_s\":%.1f,\"bytes\":%s,\"seconds\":%s", s / 1e6, n, t
		if (!none && n > 0) printf ",\"cpu_s\":%.3f,\"cpu_us_per_mb\":%.2f", (b - a) / hz, (b - a) / hz / (n / 1e6) * 1e6
		printf "}" }')
	other=$(awk -v hz="$CLK_TCK" -v d="$(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }')" -v m="$((m1 - m0))" -v s="$((t1 - t0))" -v b="$((b1 - b0))" -v c="$((CHILD_TICKS - c0))" -v k="$(kthread_delta "$k0" "$k1")" 'BEGIN {
		o = m - s - b - c - k; if (o < 0) o = 0
		if (d > 0) printf ",\"wall_s\":%.3f,\"other_cpu_util\":%.3f", d, o / hz / d }')
	# Per MB (1e6 bytes) like cpu_us_per_mb, over the same window.
	w=${w%\}}$other$(machine_cpu_json mb "${size:-0}" 1e6 "$(awk -v a="$r0" -v b="$r1" 'BEGIN { print b - a }')" "$k0" "$k1")
	w+=$(bench_cpu_json mb "${size:-0}" 1e6 $((t1 - t0 + b1 - b0 + CHILD_TICKS - c0)) "$k0" "$k1")
	[[ -n ${WRK_HOOK:-} ]] && w+=$("$WRK_HOOK" end 0 0)
	w+="}"
	metrics_line l4-proxy "$srv" "$rep" bulk "$BULK_BYTES" "$w" "$fail" >>"$runs"
	log "  bulk $srv: $w${fail:+ !! $fail}"
}

# machine_work_start / machine_work_end: machine_work around a window, into
# MW0 and MW1 (not $(...) callers: two reads per window, one fork each).
machine_work_start() { MW0=$(machine_work); }
machine_work_end() { MW1=$(machine_work); }

# machine_cpu_json UNIT COUNT SCALE SECONDS KT0 KT1: the machine's CPU over
# the window MW0..MW1 per UNIT (COUNT/SCALE of them: requests, or bytes/1e6
# for MB), as JSON members with a leading comma: machine_cpu_us_per_UNIT
# (all CPUs' work, see machine_work), softirq_us_per_UNIT (its softirq
# part), kworker_cpu_us_per_UNIT and ksoftirqd_cpu_us_per_UNIT (KT0..KT1,
# kthread_ticks) and machine_cpu_util (CPUs busy over SECONDS). Nothing when
# COUNT is 0. Everything on the machine counts, other users included: see
# other_cpu_util for how much of that there was.
machine_cpu_json() {
	local w0 q0 w1 q1 k0 s0 k1 s1
	read -r w0 q0 <<<"$MW0"
	read -r w1 q1 <<<"$MW1"
	read -r k0 s0 <<<"$5"
	read -r k1 s1 <<<"$6"
	awk -v u="$1" -v n="$2" -v sc="$3" -v d="$4" -v hz="$CLK_TCK" -v w="$((w1 - w0))" -v q="$((q1 - q0))" -v k="$((k1 - k0))" -v s="$((s1 - s0))" 'BEGIN {
		if (n <= 0) exit
		per = 1e6 / hz / (n / sc)
		printf ",\"machine_cpu_us_per_%s\":%.3f,\"softirq_us_per_%s\":%.3f,\"kworker_cpu_us_per_%s\":%.3f,\"ksoftirqd_cpu_us_per_%s\":%.3f", u, w * per, u, q * per, u, (k > 0 ? k : 0) * per, u, (s > 0 ? s : 0) * per
		if (d > 0) printf ",\"machine_cpu_util\":%.3f", w / hz / d }'
}

# bench_cpu_json UNIT COUNT SCALE TICKS KT0 KT1: bench_cpu_us_per_UNIT, the
# CPU of the run's own processes (TICKS: the SUT, the backend, the client)
# and of the kernel threads (KT0..KT1) per UNIT. With tick-based accounting
# (no CONFIG_IRQ_TIME_ACCOUNTING) the softirq work a process's sends and
# receives trigger is in its own stime, so this is the machine figure
# without other users' processes, less noisy on a shared box; with IRQ
# time accounting it would miss the softirq time (compare the two).
bench_cpu_json() {
	awk -v u="$1" -v n="$2" -v sc="$3" -v t="$4" -v k="$(kthread_delta "$5" "$6")" -v hz="$CLK_TCK" 'BEGIN {
		if (n <= 0) exit
		printf ",\"bench_cpu_us_per_%s\":%.3f", u, (t + (k > 0 ? k : 0)) * 1e6 / hz / (n / sc) }'
}

# path_hook start | end REQUESTS WARMUP_REQUESTS: the WRK_HOOK of the l4
# cells of a Portico contender (its admin on L4_ADMIN). Prints the
# connections tcp_proxy closed on each path over the cell (warm-up
# included) as downstream_cx_sockmap_total and downstream_cx_userspace_total.
# The counters move when a pair closes, a little after the client's last
# close: it reads until two reads 200 ms apart agree (at most ~2 s). A
# portico-sockmap cell none of whose connections took the kernel path is
# logged and, for --quick, noted in $BENCH_TMP/path-problems.
path_hook() {
	if [[ $1 == start ]]; then
		PATH0=$(portico_path_counts "$L4_ADMIN")
		return
	fi
	local a b i
	b=$(portico_path_counts "$L4_ADMIN")
	for ((i = 0; i < 10; i++)); do
		sleep 0.2
		a=$b
		b=$(portico_path_counts "$L4_ADMIN")
		[[ $a == "$b" ]] && break
	done
	[[ -n $PATH0 && -n $b ]] || { log "  $L4_SRV admin /stats did not answer; no path counts"; return 0; }
	local s0 u0 s1 u1
	read -r s0 u0 <<<"$PATH0"
	read -r s1 u1 <<<"$b"
	printf ',"downstream_cx_sockmap_total":%d,"downstream_cx_userspace_total":%d' $((s1 - s0)) $((u1 - u0))
	if [[ $L4_SRV == portico-sockmap ]] && ((s1 - s0 == 0)); then
		log "  !! $L4_SRV: no connection took the sockmap path ($((u1 - u0)) on userspace); see $LOGDIR/l4-proxy-$L4_SRV.log"
		echo "$L4_SRV: 0 sockmap connections" >>"$BENCH_TMP/path-problems"
	fi
}

# L4 proxy: per repetition, no proxy and each contender in rotated order on
# a fresh proxy: keep-alive, connection per request, one bulk download.
# portico is Portico's userspace path (--disable-sockmap when its binary has
# the flag), portico-sockmap the same binary and config on the BPF sockmap
# path (--enable-sockmap, the opt-in; root only,
# see proxy_init); both count their connections per path (path_hook). On
# the kernel path the proxy's own CPU is near zero and the work moves to
# softirq and kworkers, charged to whoever runs: every cell also records the
# whole machine's CPU (machine_cpu_json) and the run's own (bench_cpu_json).
scenario_l4_proxy() {
	local runs=$BENCH_TMP/l4.jsonl rep srv port pid WRK_HOOK L4_ADMIN L4_SRV b
	: >"$runs"
	proxy_init || return
	start_backend || { log "nginx backend did not start"; return; }
	for ((rep = 1; rep <= REPS; rep++)); do
		for srv in $(rotate_list "$rep" none "${L4_SERVERS[@]}"); do
			log "l4-proxy rep $rep/$REPS: $srv"
			port=$(proxy_port l4 "$srv") pid=$BACKEND_PID WRK_HOOK="" L4_SRV=$srv
			# Portico's cells also count the connections on each path.
			[[ $srv == portico* ]] && WRK_HOOK=path_hook L4_ADMIN=$(admin_port "$srv")
			if [[ $srv != none ]]; then
				if ! start_proxy l4 "$srv"; then
					metrics_line l4-proxy "$srv" "$rep" keepalive "c$WRK_CONNS" '{}' "proxy did not start" >>"$runs"
					continue
				fi
				pid=$SRV_PID
			fi
			wrk_cell l4-proxy "$srv" "$rep" keepalive "http://127.0.0.1:$port/" "$pid" "$runs"
			wrk_cell l4-proxy "$srv" "$rep" close "http://127.0.0.1:$port/" "$pid" "$runs" -H "Connection: close"
			bulk_cell "$srv" "$rep" "http://127.0.0.1:$port/big" "$pid" "$runs"
			# With curl and nginx on one CPU the direct path has half the
			# CPUs a proxied path has; also measure it with curl on the
			# SUT's CPU (two CPUs, like the proxied paths).
			WRK_HOOK=""
			[[ $srv == none ]] && bulk_cell none-2cpu "$rep" "http://127.0.0.1:$port/big" "$pid" "$runs" "$SUT_CPU"
			[[ $srv != none ]] && stop_pid "$pid"
			sleep 0.3
		done
	done
	stop_pid "$BACKEND_PID"
	# The flags start_proxy gave each Portico contender to pick its path.
	local pflags="" s f
	for s in "${L4_SERVERS[@]}"; do
		case $s in
		portico-sockmap) f=enable-sockmap b=portico ;;
		portico*) f=disable-sockmap b=$s ;;
		*) continue ;;
		esac
		if portico_has_flag "$BIN/$b" "$f"; then pflags+="$s: --$f; "; else pflags+="$s: (no flag); "; fi
	done
	write_px_results l4-proxy "$runs" "$(printf '{"reps":%s,"warmup_s":%s,"duration_s":%s,"wrk_conns":%s,"wrk_threads":1,"bulk_bytes":"%s","servers":"%s","portico_path_flags":"%s","machine_cpu":"%s","irq_time_accounting":"%s","reference":"haproxy"}' \
		"$REPS" "$PX_WARMUP" "$PX_DURATION" "$WRK_CONNS" "$BULK_BYTES" "none ${L4_SERVERS[*]}" "${pflags%; }" \
		"/proc/stat user+nice+system+irq+softirq of all CPUs (no steal, idle, iowait) over the measured window" "$(irq_time_accounting)")"
}

# connload_tls OUT PORT PID FENCE_S [connload args]: connload -mode tls on
# $LG_CPU (32 goroutines, both server names in turn), bounded by FENCE_S.
connload_tls() {
	local out=$1 port=$2 pid=$3 fence=$4
	shift 4
	rm -f "$out"
	timeout --foreground --kill-after=5 "$fence" "${BOOSTED[@]}" taskset -c "$LG_CPU" "$BIN/connload" -mode tls \
		-addr "127.0.0.1:$port" -names "$SNI_A,$SNI_B" -conc 32 -pid "$pid" -clk-tck "$CLK_TCK" \
		-out "$out" "$@" 2>>"$BENCH_TMP/connload.log" &
	local p=$!
	track "$p"
	wait "$p"
	untrack "$p"
}

# json_num FILE KEY: the first number called KEY in a one-line JSON file
# (our tools' output; keys used here are unique in it), 0 if absent.
json_num() {
	local v
	v=$(grep -oE "\"$2\":-?[0-9.eE+]+" "$1" 2>/dev/null | head -1 | cut -d: -f2)
	echo "${v:-0}"
}

# tls_cell SRV REP PORT PID RUNS: connload -mode tls (one full handshake +
# one request per connection).
tls_cell() {
	local srv=$1 rep=$2 port=$3 pid=$4 runs=$5 out=$BENCH_TMP/tls.json
	connload_tls "$out" "$port" "$([[ $srv == none ]] && echo 0 || echo "$pid")" $((PX_DURATION + 60)) \
		-warmup "${PX_WARMUP}s" -duration "${PX_DURATION}s" \
		-label scenario=sni -label "server=$srv" -label "rep=$rep" -label test=handshake -label cell=c32
	if [[ -s $out ]]; then
		cat "$out" >>"$runs"
		log "  handshake $srv: $(cat "$out")"
	else
		metrics_line sni "$srv" "$rep" handshake c32 '{}' "connload produced no output" >>"$runs"
	fi
}

scenario_sni() {
	local runs=$BENCH_TMP/sni.jsonl rep srv port pid
	: >"$runs"
	proxy_init || return
	start_backend || { log "nginx backend did not start"; return; }
	for ((rep = 1; rep <= REPS; rep++)); do
		for srv in $(rotate_list "$rep" none "${SNI_SERVERS[@]}"); do
			log "sni rep $rep/$REPS: $srv"
			if [[ $srv == none ]]; then
				port=18443 pid=$BACKEND_PID
			else
				port=$(proxy_port sni "$srv")
				if ! start_proxy sni "$srv"; then
					metrics_line sni "$srv" "$rep" handshake c32 '{}' "proxy did not start" >>"$runs"
					continue
				fi
				pid=$SRV_PID
			fi
			tls_cell "$srv" "$rep" "$port" "$pid" "$runs"
			wrk_cell sni "$srv" "$rep" keepalive "https://$SNI_A:$port/" "$pid" "$runs"
			[[ $srv != none ]] && stop_pid "$pid"
			sleep 0.3
		done
	done
	stop_pid "$BACKEND_PID"
	write_px_results sni "$runs" "$(printf '{"reps":%s,"warmup_s":%s,"duration_s":%s,"wrk_conns":%s,"handshake_conc":32,"names":"%s %s","servers":"%s","reference":"haproxy"}' \
		"$REPS" "$PX_WARMUP" "$PX_DURATION" "$WRK_CONNS" "$SNI_A" "$SNI_B" "none ${SNI_SERVERS[*]}")"
}

# strace_start PID: strace -c -f attached to the SUT (STRACE_PID), given
# 0.5 s to attach to every thread; strace_stop detaches it, which writes
# the counts to $BENCH_TMP/strace.txt.
strace_start() {
	rm -f "$BENCH_TMP/strace.txt"
	strace -c -f -p "$1" -o "$BENCH_TMP/strace.txt" 2>>"$BENCH_TMP/strace.log" &
	STRACE_PID=$!
	track "$STRACE_PID"
	sleep 0.5
}
strace_stop() {
	kill -INT "$STRACE_PID" 2>/dev/null
	wait "$STRACE_PID"
	untrack "$STRACE_PID"
}

# strace_metrics N KEY: {"KEY":N,"sys_total":…,"sys_NAME":…} from
# $BENCH_TMP/strace.txt, every count divided by N.
strace_metrics() {
	local w
	# strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
	w=$(awk -v r="$1" -v key="$2" '
		$1 ~ /^[0-9.]+$/ && NF >= 5 { n = $NF; c = $4; if (n == "total") tot = c; else s = s sprintf(",\"sys_%s\":%.3f", n, (r > 0 ? c / r : 0)) }
		END { printf "{\"%s\":%d,\"sys_total\":%.3f%s}", key, r, (r > 0 ? tot / r : 0), s }' "$BENCH_TMP/strace.txt" 2>/dev/null)
	[[ -n $w ]] || w='{}'
	echo "$w"
}

# strace_cell SRV REP TEST PID RUNS URL [wrk args]: wrk for
# $STRACE_DURATION s while strace -c -f counts the SUT's system calls.
strace_cell() {
	local srv=$1 rep=$2 test=$3 pid=$4 runs=$5 url=$6 req fail="" w
	shift 6
	wrk_run "$BENCH_TMP/wrk-warm" "$url" "${PX_WARMUP}s" "$WRK_CONNS" "$@"
	strace_start "$pid"
	wrk_run "$BENCH_TMP/wrk" "$url" "${STRACE_DURATION}s" "$WRK_CONNS" "$@"
	strace_stop
	read -r _ _ _ req _ _ <"$BENCH_TMP/wrk" || req=0
	((req > 0)) || fail="wrk made no requests"
	sut_dead "$pid" && fail="$srv exited during the run"
	w=$(strace_metrics "$req" requests)
	metrics_line syscalls "$srv" "$rep" "$test" "c$WRK_CONNS" "$w" "$fail" >>"$runs"
	log "  $test $srv: $w${fail:+ !! $fail}"
}

# strace_tls_cell SRV REP PID RUNS PORT: full TLS handshakes through the SNI
# proxy (connload -mode tls, as the sni scenario makes them) for
# $STRACE_DURATION s while strace counts the SUT's system calls; counts per
# handshake. connload -drain lets the connections in flight at the end
# finish and counts them, so every handshake the SUT worked on while traced
# is in the count.
strace_tls_cell() {
	local srv=$1 rep=$2 pid=$3 runs=$4 port=$5 out=$BENCH_TMP/tls-strace.json n errs fail="" w
	connload_tls "$BENCH_TMP/tls-warm.json" "$port" 0 $((PX_WARMUP + 30)) -warmup 0s -duration "${PX_WARMUP}s"
	strace_start "$pid"
	connload_tls "$out" "$port" 0 $((STRACE_DURATION + 60)) -warmup 0s -duration "${STRACE_DURATION}s" -drain
	strace_stop
	n=$(json_num "$out" ops)
	n=${n%.*}
	errs=$(( $(json_num "$out" dial) + $(json_num "$out" io) ))
	((n > 0)) || fail="connload made no handshakes: $(tail -c 300 "$out" 2>/dev/null)"
	sut_dead "$pid" && fail="$srv exited during the run"
	w=$(strace_metrics "$n" handshakes)
	w="${w%\}},\"errors\":$errs}"
	metrics_line syscalls "$srv" "$rep" handshake c32 "$w" "$fail" >>"$runs"
	log "  handshake $srv: $w${fail:+ !! $fail}"
}

scenario_syscalls() {
	local runs=$BENCH_TMP/sys.jsonl rep srv port
	: >"$runs"
	command -v strace >/dev/null || { log "strace missing; syscalls skipped"; return; }
	proxy_init || return
	start_backend || { log "nginx backend did not start"; return; }
	local reps=$(( REPS > 1 ? 1 : REPS )) # counts barely vary; one pass is enough
	for ((rep = 1; rep <= reps; rep++)); do
		for srv in $(rotate_list "$rep" "${L4_SERVERS[@]}"); do
			log "syscalls rep $rep/$reps: $srv"
			port=$(proxy_port l4 "$srv")
			if ! start_proxy l4 "$srv"; then
				metrics_line syscalls "$srv" "$rep" keepalive "c$WRK_CONNS" '{}' "proxy did not start" >>"$runs"
				continue
			fi
			strace_cell "$srv" "$rep" keepalive "$SRV_PID" "$runs" "http://127.0.0.1:$port/"
			strace_cell "$srv" "$rep" close "$SRV_PID" "$runs" "http://127.0.0.1:$port/" -H "Connection: close"
			stop_pid "$SRV_PID"
			sleep 0.3
		done
		# SNI-routed TLS handshakes (listener filter / ssl_preread / inspect-delay path).
		for srv in $(rotate_list "$rep" "${SNI_SERVERS[@]}"); do
			log "syscalls rep $rep/$reps: $srv, SNI handshakes"
			if ! start_proxy sni "$srv"; then
				metrics_line syscalls "$srv" "$rep" handshake c32 '{}' "proxy did not start" >>"$runs"
				continue
			fi
			strace_tls_cell "$srv" "$rep" "$SRV_PID" "$runs" "$(proxy_port sni "$srv")"
			stop_pid "$SRV_PID"
			sleep 0.3
		done
	done
	stop_pid "$BACKEND_PID"
	write_px_results syscalls "$runs" "$(printf '{"reps":%s,"duration_s":%s,"wrk_conns":%s,"handshake_conc":32,"servers":"%s","sni_servers":"%s"}' \
		"$reps" "$STRACE_DURATION" "$WRK_CONNS" "${L4_SERVERS[*]}" "${SNI_SERVERS[*]}")"
}

# ---------------------------------------------------------------------------
# L7 proxy: HTTP/1.1 through Portico's HTTP connection manager and router,
# HAProxy mode http and nginx proxy_pass, to the nginx backend, which counts
# the connections the proxy opens to it (stub_status).

L7_CELLS=${BENCH_L7_CELLS:-keepalive close headers40 body1m}
L7_BODY_CONNS=${BENCH_L7_BODY_CONNS:-10}
# nginx's upstream keepalive (idle connections cached): at least the wrk
# connections, else nginx closes and redials upstream connections under
# this load (see the L7 section of BENCHMARKS.md); 32 is the usual value.
L7_NGINX_KEEPALIVE=${BENCH_L7_NGINX_KEEPALIVE:-$((WRK_CONNS > 32 ? WRK_CONNS : 32))}
L7_REQUEST_ID=${BENCH_L7_REQUEST_ID:-true}
# headers40: 40 request headers of 100 bytes each with their CRLF (4000
# bytes; the whole request head is ~4.1 KB with wrk's request line and Host).
L7_HDRS=()
L7_HDR_VALUE=$(printf '%086d' 0 | tr 0 v)
for ((i = 1; i <= 40; i++)); do
	L7_HDRS+=(-H "$(printf 'X-Bench-%02d: %s' "$i" "$L7_HDR_VALUE")")
done

# backend_counts: "ACCEPTS REQUESTS" from the backend's stub_status (each
# read is one connection and one request of its own); empty if no answer.
backend_counts() {
	curl -s --max-time 2 http://127.0.0.1:18080/status | awk 'NR == 3 && NF >= 3 { print $1, $3 }'
}

# upstream_hook start | end REQUESTS WARMUP_REQUESTS: the WRK_HOOK of the
# l7 cells. Reads the backend's counters before the warm-up and after the
# measured run, and prints the connections and requests the proxy sent
# upstream in between (less the second read's own), the requests wrk
# completed, and the response body size (L7_RESP_BYTES).
upstream_hook() {
	if [[ $1 == start ]]; then
		UP0=$(backend_counts)
		return
	fi
	local up1
	up1=$(backend_counts)
	[[ -n $UP0 && -n $up1 ]] || { log "  backend stub_status did not answer; no upstream counts"; return 0; }
	awk -v a="$UP0" -v b="$up1" -v r="$2" -v w="$3" -v body="$L7_RESP_BYTES" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		printf ",\"upstream_conns\":%d,\"upstream_requests\":%d,\"client_requests\":%d,\"body_bytes\":%d", y[1] - x[1] - 1, y[2] - x[2] - 1, r + w, body }'
}

l7_conns() { [[ $1 == body1m ]] && echo "$L7_BODY_CONNS" || echo "$WRK_CONNS"; }

# l7_cell CELL SRV REP PORT PID RUNS: one variant through a fresh proxy.
l7_cell() {
	local cell=$1 srv=$2 rep=$3 url=http://127.0.0.1:$4 pid=$5 runs=$6
	local WRK_HOOK=upstream_hook WRK_CONNS=$WRK_CONNS L7_RESP_BYTES=$((${#BODY} + 1))
	WRK_CONNS=$(l7_conns "$cell")
	case $cell in
	keepalive) wrk_cell l7-proxy "$srv" "$rep" "$cell" "$url/" "$pid" "$runs" ;;
	close) wrk_cell l7-proxy "$srv" "$rep" "$cell" "$url/" "$pid" "$runs" -H "Connection: close" ;;
	headers40) wrk_cell l7-proxy "$srv" "$rep" "$cell" "$url/" "$pid" "$runs" "${L7_HDRS[@]}" ;;
	body1m) L7_RESP_BYTES=1048576 wrk_cell l7-proxy "$srv" "$rep" "$cell" "$url/1m" "$pid" "$runs" ;;
	*) log "unknown l7 cell $cell" ;;
	esac
}

# start_failure LOG: the last line a proxy that did not start wrote,
# shortened (no config path or field path, no "(supported: ...)" list,
# type URLs by their last name).
start_failure() {
	tail -1 "$1" 2>/dev/null | sed -E 's#^[^ ]*\.(yaml|cfg|conf): ##; s#^[][a-z_.0-9]+: ##; s# \(supported: [^)]*\)##; s#type\.googleapis\.com/[A-Za-z0-9_.]*\.([A-Za-z0-9]+)#\1#g' | cut -c1-160
}

# l7_http_portico_only: drops every Portico contender whose binary does not
# validate the L7 bootstrap (portico validate); false if that leaves no
# Portico at all.
l7_http_portico_only() {
	local keep=() s ok=false
	for s in "${L7_SERVERS[@]}"; do
		if [[ $s == portico* ]]; then
			l7_pick_ports "$s" || return 1
			portico_proxy_config l7 "$s" >"$BENCH_TMP/$s-l7-validate.yaml"
			if ! "$BIN/$s" validate -c "$BENCH_TMP/$s-l7-validate.yaml" >/dev/null 2>&1; then
				log "l7-proxy: $s does not take the HTTP bootstrap; left out of the quick smoke"
				continue
			fi
			ok=true
		fi
		keep+=("$s")
	done
	$ok || { log "l7-proxy skipped in the quick smoke: no Portico that proxies HTTP"; return 1; }
	L7_SERVERS=("${keep[@]}")
}

# Per repetition and cell, each contender in rotated order on a fresh
# proxy (so its upstream pool starts empty and the connections it opens
# are the cell's own): warm-up, measured wrk run, backend counters around
# both.
scenario_l7_proxy() {
	local runs=$BENCH_TMP/l7.jsonl rep cell srv
	: >"$runs"
	proxy_init || return
	if $L7_IF_PORTICO_HTTP; then
		l7_http_portico_only || return 0
	fi
	# The smoke skips the warm-ups (12 runs of 1 s): it stays under 30 s.
	local PX_WARMUP=$PX_WARMUP
	$QUICK && PX_WARMUP=0
	start_backend || { log "nginx backend did not start"; return; }
	if [[ -z $(backend_counts) ]]; then
		log "the backend's stub_status does not answer; l7-proxy skipped"
		stop_pid "$BACKEND_PID"
		return
	fi
	for ((rep = 1; rep <= REPS; rep++)); do
		for cell in $L7_CELLS; do
			for srv in $(rotate_list "$rep" "${L7_SERVERS[@]}"); do
				log "l7-proxy rep $rep/$REPS $cell: $srv"
				if ! l7_pick_ports "$srv" || ! start_proxy l7 "$srv"; then
					metrics_line l7-proxy "$srv" "$rep" "$cell" "c$(l7_conns "$cell")" '{}' \
						"did not start: $(start_failure "$LOGDIR/l7-proxy-$srv.log")" >>"$runs"
					continue
				fi
				l7_cell "$cell" "$srv" "$rep" "$(proxy_port l7 "$srv")" "$SRV_PID" "$runs"
				stop_pid "$SRV_PID"
				sleep 0.3
			done
		done
	done
	stop_pid "$BACKEND_PID"
	write_px_results l7-proxy "$runs" "$(printf '{"reps":%s,"warmup_s":%s,"duration_s":%s,"wrk_conns":%s,"wrk_threads":1,"body1m_conns":%s,"cells":"%s","headers40":"40 x 100 B","nginx_upstream_keepalive":%s,"portico_generate_request_id":%s,"servers":"%s","reference":"haproxy"}' \
		"$REPS" "$PX_WARMUP" "$PX_DURATION" "$WRK_CONNS" "$L7_BODY_CONNS" "$L7_CELLS" "$L7_NGINX_KEEPALIVE" "$L7_REQUEST_ID" "${L7_SERVERS[*]}")"
}

# ---------------------------------------------------------------------------
# Drip: slow clients against the pre-connection phase (Portico's
# tls_inspector, nginx's ssl_preread, HAProxy's tcp-request inspect-delay),
# through the SNI proxy configs. bench/cmd/drip writes a real ClientHello one
# byte per TCP segment, spread over $DRIP_DURATION s.

# drip_start OUT PORT PID CONNS DURATION_S [drip args]: bench/cmd/drip on
# $LG_CPU in the background (DRIP_PID), bounded by a fence; drip_wait reaps it.
drip_start() {
	local out=$1 port=$2 pid=$3 n=$4 d=$5
	shift 5
	rm -f "$out"
	timeout --foreground --kill-after=5 $((d + 30)) "${BOOSTED[@]}" taskset -c "$LG_CPU" "$BIN/drip" -mode tls -sni "$SNI_A" \
		-addr "127.0.0.1:$port" -conns "$n" -duration "${d}s" -grace 2s -pid "$pid" -clk-tck "$CLK_TCK" \
		-out "$out" "$@" 2>>"$BENCH_TMP/drip.log" &
	DRIP_PID=$!
	track "$DRIP_PID"
}
drip_wait() {
	wait "$DRIP_PID"
	untrack "$DRIP_PID"
}

# drip_row OUT SRV REP TEST PID RUNS: the drip's JSON as a result row, or a
# failure row.
drip_row() {
	local out=$1 srv=$2 rep=$3 test=$4 pid=$5 runs=$6
	if sut_dead "$pid"; then
		metrics_line drip "$srv" "$rep" "$test" "$DRIP_CONNS drippers" '{}' "$srv exited during the run" >>"$runs"
		log "  $test $srv: !! $srv exited during the run"
	elif [[ -s $out ]]; then
		cat "$out" >>"$runs"
		log "  $test $srv: $(cat "$out")"
	else
		metrics_line drip "$srv" "$rep" "$test" "$DRIP_CONNS drippers" '{}' "drip produced no output" >>"$runs"
		log "  $test $srv: !! drip produced no output"
	fi
}

# Per contender and repetition, on one fresh SNI proxy: (a) $DRIP_CONNS
# drippers alone, the SUT's CPU per dripped connection; (b) wrk keep-alive
# TLS requests through the same listener for $DRIP_DURATION s, once alone
# and once while $DRIP_CONNS drippers run (order alternating by repetition),
# after one warm-up.
scenario_drip() {
	local runs=$BENCH_TMP/drip.jsonl rep srv port pid labels order t
	: >"$runs"
	proxy_init || return
	start_backend || { log "nginx backend did not start"; return; }
	local PX_WARMUP=0 PX_DURATION=$DRIP_DURATION # for wrk_cell: no warm-up of its own, drip-long runs
	for ((rep = 1; rep <= REPS; rep++)); do
		for srv in $(rotate_list "$rep" "${DRIP_SERVERS[@]}"); do
			log "drip rep $rep/$REPS: $srv"
			port=$(proxy_port sni "$srv")
			if ! start_proxy sni "$srv"; then
				metrics_line drip "$srv" "$rep" drip "$DRIP_CONNS drippers" '{}' "proxy did not start" >>"$runs"
				continue
			fi
			pid=$SRV_PID
			labels=(-label scenario=drip -label "server=$srv" -label "rep=$rep")
			drip_start "$BENCH_TMP/drip.json" "$port" "$pid" "$DRIP_CONNS" "$DRIP_DURATION" "${labels[@]}" -label test=drip -label "cell=$DRIP_CONNS drippers"
			drip_wait
			drip_row "$BENCH_TMP/drip.json" "$srv" "$rep" drip "$pid" "$runs"
			wrk_run "$BENCH_TMP/wrk-warm" "https://$SNI_A:$port/" 1s "$WRK_CONNS"
			order="alone with-drip"
			((rep % 2 == 0)) && order="with-drip alone"
			for t in $order; do
				if [[ $t == alone ]]; then
					wrk_cell drip "$srv" "$rep" keepalive "https://$SNI_A:$port/" "$pid" "$runs"
				else
					drip_start "$BENCH_TMP/drip-bg.json" "$port" 0 "$DRIP_CONNS" "$DRIP_DURATION" "${labels[@]}" -label test=drip-bg -label "cell=$DRIP_CONNS drippers"
					sleep 0.2 # connected and dripping before wrk starts
					wrk_cell drip "$srv" "$rep" keepalive-drip "https://$SNI_A:$port/" "$pid" "$runs"
					drip_wait
					drip_row "$BENCH_TMP/drip-bg.json" "$srv" "$rep" drip-bg "$pid" "$runs"
				fi
			done
			stop_pid "$pid"
			sleep 0.3
		done
	done
	stop_pid "$BACKEND_PID"
	write_px_results drip "$runs" "$(printf '{"reps":%s,"drippers":%s,"drip_duration_s":%s,"mode":"tls","sni":"%s","wrk_conns":%s,"wrk_warmup_s":1,"servers":"%s","timeouts":"%s"}' \
		"$REPS" "$DRIP_CONNS" "$DRIP_DURATION" "$SNI_A" "$WRK_CONNS" "${DRIP_SERVERS[*]}" \
		"portico: listener_filters_timeout 15 s (Envoy default, not set); haproxy: tcp-request inspect-delay 5s; nginx: preread_timeout 30 s (default, not set)")"
}

balance_config() { # MODE
	local extra
	case $1 in
	reuse_port) extra="enable_reuse_port: true" ;;
	dup_fd) extra="enable_reuse_port: false" ;;
	exact_balance) extra=$(printf 'enable_reuse_port: false\n    connection_balance_config: { exact_balance: {} }') ;;
	esac
	cat <<-YAML
	admin: { address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN_PORT } } }
	static_resources:
	  listeners:
	  - name: bal
	    address: { socket_address: { address: 127.0.0.1, port_value: 10030 } }
	    $extra
	    filter_chains:
	    - filters:
	      - name: envoy.filters.network.echo
	        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
	YAML
}

# Balance: Portico is NOT pinned (it may use both CPUs), nor is connload.
scenario_balance() {
	[[ -x $BIN/portico ]] || { log "no portico binary; balance skipped"; return; }
	local runs=$BENCH_TMP/bal.jsonl rep mode w cell kind conns out
	: >"$runs"
	proxy_init || return
	for ((rep = 1; rep <= REPS; rep++)); do
		for mode in $(rotate_list "$rep" reuse_port dup_fd exact_balance); do
			balance_config "$mode" >"$BENCH_TMP/bal-$mode.yaml"
			for w in $BAL_WORKERS; do
				for cell in $BAL_CELLS; do
					kind=${cell%%:*} conns=${cell##*:}
					log "balance rep $rep/$REPS $mode workers=$w $kind $conns"
					# A Portico that was just stopped may still hold its ports
					# (see "Worker balance" in BENCHMARKS.md); wait for them.
					wait_ports_free 10030 "$ADMIN_PORT"
					if ! start_proc "" 10030 "$LOGDIR/balance-portico.log" "$BIN/portico" -c "$BENCH_TMP/bal-$mode.yaml" --concurrency "$w"; then
						metrics_line balance portico "$rep" "$mode" "$w workers, $kind, $conns conns" '{}' "portico did not start" >>"$runs"
						continue
					fi
					out=$BENCH_TMP/bal.json
					rm -f "$out"
					timeout --foreground --kill-after=5 150 "${BOOSTED[@]}" "$BIN/connload" -mode "$kind" -addr 127.0.0.1:10030 \
						-conc "$conns" -total "$BAL_TOTAL" -duration "$([[ $kind == churn ]] && echo 60s || echo "${PX_DURATION}s")" -pid "$PROC_PID" -clk-tck "$CLK_TCK" \
						-workers "$w" -admin "127.0.0.1:$ADMIN_PORT" -listener bal \
						-label scenario=balance -label server=portico -label "rep=$rep" -label "test=$mode" \
						-label "cell=$w workers, $kind, $conns conns" -label "workers=$w" -label "kind=$kind" \
						-out "$out" 2>>"$BENCH_TMP/connload.log"
					if [[ -s $out ]]; then
						cat "$out" >>"$runs"
						log "  $(cat "$out")"
					else
						metrics_line balance portico "$rep" "$mode" "$w workers, $kind, $conns conns" '{}' "connload produced no output" >>"$runs"
					fi
					sut_dead "$PROC_PID" && log "  !! portico exited during the run"
					stop_pid "$PROC_PID"
					sleep 0.3
				done
			done
		done
	done
	write_px_results balance "$runs" "$(printf '{"reps":%s,"workers":"%s","cells":"%s","churn_total":%s,"hold_duration_s":%s,"pinned":false}' \
		"$REPS" "$BAL_WORKERS" "$BAL_CELLS" "$BAL_TOTAL" "$PX_DURATION")"
}

START=$SECONDS
RUN_STAMP=$BENCH_TMP/run.stamp
touch "$RUN_STAMP"
for s in "${SCENARIOS[@]}"; do
	case $s in
	echo) scenario_echo ;;
	idle-mem) scenario_idle_mem ;;
	l4-proxy) scenario_l4_proxy ;;
	l7-proxy) scenario_l7_proxy ;;
	sni) scenario_sni ;;
	balance) scenario_balance ;;
	syscalls) scenario_syscalls ;;
	drip) scenario_drip ;;
	tls) scenario_tls ;;
	reload) scenario_reload ;;
	xds) scenario_xds ;;
	esac
done

if $QUICK; then
	# Exercise the report generator too, without touching BENCHMARKS.md. CI runs --quick
	# to know the harness works: a report that fails, or a run whose server died or whose
	# client gave no result, fails the script (speed is never judged here).
	"$BIN/report" -results "$RESULTS_DIR" -print >/dev/null || { log "report generator failed"; exit 1; }
	log "report generator OK"
	mapfile -t fresh < <(find "$RESULTS_DIR" -maxdepth 1 -name '*.json' -newer "$RUN_STAMP")
	failed=$( ((${#fresh[@]})) && grep -hoE '"failure": ?"[^"]+"' "${fresh[@]}" | sort | uniq -c)
	# As root the kernel path must really be taken (see path_hook).
	[[ -s $BENCH_TMP/path-problems ]] && failed+=$(sort "$BENCH_TMP/path-problems" | uniq -c)
	if [[ -n $failed ]]; then
		log "quick run had failed runs:"
		echo "$failed"
		exit 1
	fi
else
	# Only the sections of the scenarios that ran are regenerated.
	"$BIN/report" -results "$RESULTS_DIR" -only "$(IFS=,; echo "${SCENARIOS[*]}")" -md "$ROOT/BENCHMARKS.md" -charts "$ROOT/bench/results" &&
		log "BENCHMARKS.md tables and charts regenerated"
fi
log "done in $((SECONDS - START)) s"
