# shellcheck shell=bash
# Helpers for scripts/bench.sh: process bookkeeping, tool installation,
# building, starting/stopping servers. Sourced, not executed.

# Every process we start is recorded here and killed by PID on exit.
BENCH_PIDS=()

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

track() { BENCH_PIDS+=("$1"); }

untrack() {
	local keep=() p
	for p in "${BENCH_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	BENCH_PIDS=("${keep[@]}")
}

# stop_pid PID: SIGTERM, give it 3 s, then SIGKILL; always reaps.
stop_pid() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; untrack "$pid"; return 0; }
	for ((i = 0; i < 30; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		# A zombie still answers kill -0; check the state too.
		[[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	untrack "$pid"
}

cleanup() {
	local p
	for p in "${BENCH_PIDS[@]}"; do stop_pid "$p"; done
	[[ -n ${BENCH_TMP:-} && -d $BENCH_TMP ]] && rm -rf "$BENCH_TMP"
}

# ensure_tools: the proxy scenarios need nginx, haproxy and wrk; echo and
# idle-mem only need taskset and Go. Install what is absent when we can.
ensure_tools() {
	local missing=() t
	for t in nginx haproxy wrk taskset ss; do
		command -v "$t" >/dev/null 2>&1 || [[ -x /usr/sbin/$t ]] || missing+=("$t")
	done
	if ((${#missing[@]})); then
		local pkgs=() m
		for m in "${missing[@]}"; do
			case $m in taskset) pkgs+=(util-linux) ;; ss) pkgs+=(iproute2) ;; *) pkgs+=("$m") ;; esac
		done
		if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
			log "installing ${pkgs[*]}"
			DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >/dev/null ||
				{ apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${pkgs[@]}" >/dev/null; } ||
				log "warning: could not install ${pkgs[*]}"
		else
			log "warning: missing ${missing[*]} and cannot apt-get install them"
		fi
	fi
	command -v taskset >/dev/null || { log "taskset is required"; exit 1; }
	command -v go >/dev/null || { log "go is required"; exit 1; }
}

# build_bins DIR: peers and load generator always; Portico only if it builds
# (it may be mid-edit), or from $PORTICO_BIN when given.
build_bins() {
	local bin=$1
	log "building load generator and peers into $bin"
	(cd "$ROOT" && go build -o "$bin/" ./bench/cmd/loadgen ./bench/cmd/echo-gnet ./bench/cmd/echo-netpoll ./bench/cmd/echo-net ./bench/cmd/report) || exit 1
	if [[ -n ${PORTICO_BIN:-} ]]; then
		cp "$PORTICO_BIN" "$bin/portico"
	elif (cd "$ROOT" && go build -o "$bin/portico" ./cmd/portico) 2>"$BENCH_TMP/portico-build.log"; then
		:
	else
		log "portico does not build; it is skipped (see below)"
		head -5 "$BENCH_TMP/portico-build.log" >&2
		rm -f "$bin/portico"
	fi
}

portico_config() {
	cat <<-YAML
	static_resources:
	  listeners:
	  - name: echo
	    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
	    filter_chains:
	    - filters:
	      - name: envoy.filters.network.echo
	        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo }
	YAML
}

# Fixed ports per contender, so a leftover from one run can never be
# mistaken for the next contender.
server_port() {
	case $1 in portico) echo 10000 ;; gnet) echo 10001 ;; netpoll) echo 10002 ;; net) echo 10003 ;; esac
}

# server_cmd NAME: the command line of one echo contender, one worker each.
server_cmd() {
	local port
	port=$(server_port "$1")
	case $1 in
	portico)
		portico_config "$port" >"$BENCH_TMP/portico-echo.yaml"
		echo "$BIN/portico -c $BENCH_TMP/portico-echo.yaml --concurrency 1"
		;;
	gnet) echo "$BIN/echo-gnet -addr 127.0.0.1:$port -loops 1 -lock-thread" ;;
	netpoll) echo "$BIN/echo-netpoll -addr 127.0.0.1:$port -loops 1" ;;
	net) echo "$BIN/echo-net -addr 127.0.0.1:$port" ;;
	esac
}

# "${BOOSTED[@]}" CMD...: run CMD at priority $BENCH_NICE. With autogroup
# scheduling (sched_autogroup_enabled=1) the CPU is shared fairly between
# *sessions* first, so a plain nice only ranks our processes against each
# other: a compiler in another session still got half of each CPU. setsid
# gives CMD its own autogroup and /proc/self/autogroup sets that group's
# nice. It is an array, not a function, so that "CMD &" forks no subshell:
# setsid, sh, nice and taskset all exec, and $! is the process itself.
# Without autogroup support this degrades to a plain nice.
boosted_init() {
	BOOSTED=(setsid sh -c 'n=$1; shift
		[ -w /proc/self/autogroup ] && echo "$n" >/proc/self/autogroup 2>/dev/null
		exec nice -n "$n" "$@"' sh "$BENCH_NICE")
}

port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; }

# start_server NAME LOG: pinned to CPU $SUT_CPU; sets SRV_PID. Returns 1 if
# it does not listen within 10 s or dies.
start_server() {
	local name=$1 logf=$2 port i
	port=$(server_port "$name")
	if port_listening "$port"; then
		log "port $port already in use; refusing to start $name"
		return 1
	fi
	# shellcheck disable=SC2046
	"${BOOSTED[@]}" taskset -c "$SUT_CPU" $(server_cmd "$name") >>"$logf" 2>&1 &
	SRV_PID=$!
	track "$SRV_PID"
	for ((i = 0; i < 100; i++)); do
		port_listening "$port" && return 0
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "$name did not start listening on :$port (log: $logf)"
	tail -5 "$logf" >&2
	stop_pid "$SRV_PID"
	return 1
}

# run_loadgen OUTFILE ARGS...: pinned to CPU $LG_CPU, in the background so
# that Ctrl-C reaches our trap at once; bounded by timeout as a second fence.
run_loadgen() {
	local out=$1 rc
	shift
	timeout --foreground --kill-after=5 "$LG_TIMEOUT" "${BOOSTED[@]}" taskset -c "$LG_CPU" "$BIN/loadgen" -clk-tck "$CLK_TCK" -out "$out" "$@" 2>>"$BENCH_TMP/loadgen.log" &
	local pid=$!
	track "$pid"
	wait "$pid"
	rc=$?
	untrack "$pid"
	return $rc
}

json_str() { printf '"%s"' "$(printf '%s' "$1" | tr -d '"\\' | tr '\n\t' '  ')"; }

machine_json() {
	local cpu kernel mem virt gover gnetv netpollv commit
	cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
	kernel=$(uname -r)
	mem=$(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)
	virt=$(systemd-detect-virt 2>/dev/null || echo unknown)
	gover=$(go env GOVERSION)
	gnetv=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/panjf2000/gnet/v2)
	netpollv=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/cloudwego/netpoll)
	commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(cd "$ROOT" && git status --porcelain -- engine poller filters config cmd 2>/dev/null) ]]; then
		commit+="+dirty"
	fi
	if [[ -n ${PORTICO_BIN:-} ]]; then
		# The tree's commit says little about a binary built elsewhere.
		commit="prebuilt $(sha256sum "$PORTICO_BIN" | cut -c1-12) (tree $commit)"
	fi
	printf '{"cpu_model":%s,"cores":%s,"kernel":%s,"mem":%s,"virt":%s,"go":%s,"gnet":%s,"netpoll":%s,"portico_commit":%s,"nginx":%s,"haproxy":%s,"ulimit_n":%s,"clk_tck":%s,"sut_cpu":%s,"loadgen_cpu":%s,"nice":%s}' \
		"$(json_str "$cpu")" "$(nproc)" "$(json_str "$kernel")" "$(json_str "$mem")" "$(json_str "$virt")" \
		"$(json_str "$gover")" "$(json_str "$gnetv")" "$(json_str "$netpollv")" "$(json_str "$commit")" \
		"$(json_str "$(nginx -v 2>&1 | head -1)")" "$(json_str "$(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)")" \
		"$(ulimit -n)" "$CLK_TCK" "$SUT_CPU" "$LG_CPU" "$BENCH_NICE"
}

# write_results SCENARIO RUNS_JSONL PARAMS_JSON: one self-describing file.
write_results() {
	local scen=$1 runs=$2 params=$3 dir=$RESULTS_DIR out
	mkdir -p "$dir"
	out="$dir/$scen-$(date -u +%Y%m%d-%H%M%S).json"
	{
		printf '{"scenario":"%s","quick":%s,"date":"%s","machine":%s,"params":%s,"runs":[\n' \
			"$scen" "$QUICK" "$(date -u +%FT%TZ)" "$MACHINE" "$params"
		paste -sd, "$runs"
		printf ']}\n'
	} >"$out"
	log "wrote $out"
}
