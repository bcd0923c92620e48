# shellcheck shell=bash
# The reload scenario of scripts/bench.sh (issue 13): connections that fail while the
# proxy is restarted or reconfigured under a steady churn of new connections. Sourced by
# bench.sh after lib-bench.sh; uses its helpers (start_proc, stop_pid, track, free_port,
# BOOSTED, metrics_line, ...).
#
# Every cell is one run of bench/cmd/churn (on $LG_CPU) against one L7 proxy (on
# $SUT_CPU) in front of an nginx backend (on $LG_CPU; every port free-picked): new connections at
# $RELOAD_RATE/s, each one GET with Connection: close, plus $RELOAD_STREAMS keep-alive
# streams, while this file performs K events and writes each one's start and end to the
# churn's events file. Cells:
#
#   portico-cold     SIGTERM, wait for the exit, start again (what users do today)
#   portico-overlap  start a second Portico on the same port (SO_REUSEPORT), then
#                    SIGTERM the old one: what a user can do today without hot restart
#   portico-hot      Envoy-style hot restart by hand: --restart-epoch N+1 (needs the flag)
#   portico-hotwrap  the wrapper, portico restart, and SIGHUP (needs the subcommand)
#   portico-lds      file-based LDS: a new lds.yaml renamed into place (needs LDS); the
#                    new version adds a different x-bench-version response header, so
#                    the churn sees when it took effect (update latency)
#   portico-lds-full the same with a listener-level change too
#                    (per_connection_buffer_limit_bytes): a full listener update, the
#                    socket carried over and the old listener drained
#   haproxy-mw       HAProxy master-worker (-W -S), reload by SIGUSR2 to the master:
#                    the new worker takes the listeners from the old (seamless reload)
#   haproxy-sf       HAProxy's legacy reload: a new process with -sf OLDPID, no socket
#                    transfer (the old one closes its listener and what it queued)
#
# A cell whose feature the Portico binary lacks is a row with "unavailable" (the reason),
# not a failure: the scenario runs before the features land and reports them once they do.

RELOAD_CELLS=${BENCH_RELOAD_CELLS:-portico-cold portico-overlap portico-hot portico-hotwrap portico-lds portico-lds-full haproxy-mw haproxy-sf}
RELOAD_RATE=${BENCH_RELOAD_RATE:-13500}
RELOAD_CONC=${BENCH_RELOAD_CONC:-64}
RELOAD_STREAMS=${BENCH_RELOAD_STREAMS:-100}
# Portico's drain on SIGTERM and, for hot restart, the parent's lifetime after the child
# took over: short, so that the cells stay short; a cold restart's outage grows with them.
RELOAD_DRAIN_S=${BENCH_RELOAD_DRAIN_S:-1}
RELOAD_PARENT_SHUTDOWN_S=${BENCH_RELOAD_PARENT_SHUTDOWN_S:-2}

# rl_cell_events CELL / rl_cell_spacing CELL: K events and the seconds between their
# starts (a hot restart's next epoch waits for the parent to be gone).
rl_cell_events() {
	if $QUICK; then echo "${BENCH_RELOAD_EVENTS:-1}"; return; fi
	case $1 in
	portico-cold | portico-overlap) echo "${BENCH_RELOAD_COLD_EVENTS:-5}" ;;
	portico-hot | portico-hotwrap) echo "${BENCH_RELOAD_HOT_EVENTS:-10}" ;;
	*) echo "${BENCH_RELOAD_EVENTS:-20}" ;;
	esac
}
rl_cell_spacing() {
	case $1 in
	portico-cold) echo 4 ;;
	portico-overlap) echo 3 ;;
	portico-hot | portico-hotwrap) echo $((RELOAD_PARENT_SHUTDOWN_S + 2)) ;;
	*) echo 1 ;;
	esac
}

# now_ns: sets NOW to the Unix time in ns (µs resolution). Not a $(...): a command
# substitution forks, which took 10-20 ms on the busy box and put an event's END after
# effects the churn had already seen.
now_ns() { NOW=${EPOCHREALTIME/./}000; }

# rl_listen_pids PORT: the PIDs whose sockets listen on PORT (several share it with
# SO_REUSEPORT or a passed socket).
rl_listen_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }

# rl_wait_listener PORT PID [SECONDS]: until PID (or one of its children) listens on
# PORT; false at once if PID has died. Bounded by the clock (on a busy box one round of
# ss and awk takes 100 ms and more, so a bound in rounds would stretch).
rl_wait_listener() {
	local port=$1 pid=$2 end=$((${EPOCHREALTIME/./} + ${3:-10} * 1000000)) p
	while ((${EPOCHREALTIME/./} < end)); do
		for p in $(rl_listen_pids "$port"); do
			[[ $p == "$pid" || $(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/$p/stat" 2>/dev/null) == "$pid" ]] && return 0
		done
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# rl_wait_new_listener PORT PID BEFORE [SECONDS]: until a process that is neither PID
# nor in BEFORE (" pid pid ... ") listens on PORT: the new worker or epoch PID forked.
rl_wait_new_listener() {
	local port=$1 pid=$2 before=$3 end=$((${EPOCHREALTIME/./} + ${4:-10} * 1000000)) c
	while ((${EPOCHREALTIME/./} < end)); do
		for c in $(rl_listen_pids "$port"); do
			[[ $before != *" $c "* && $c != "$pid" ]] && return 0
		done
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# rl_wait_exit PID SECONDS: until PID has exited (reaped or zombie); then reaps it.
rl_wait_exit() {
	local pid=$1 end=$((${EPOCHREALTIME/./} + $2 * 1000000))
	while ((${EPOCHREALTIME/./} < end)); do
		if ! kill -0 "$pid" 2>/dev/null || [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]]; then
			wait "$pid" 2>/dev/null
			untrack "$pid"
			return 0
		fi
		sleep 0.05
	done
	return 1
}

# rl_children PID: the PIDs of PID's children.
rl_children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }

# rl_start CPU PORT LOG CMD...: the SUT process in the background, tracked; RL_NEW is
# its PID, appended to the churn's PID file (its CPU is sampled from then on). Does not
# wait: the callers wait for what each cell calls ready.
rl_start() {
	local cpu=$1 logf=$3
	shift 3
	printf '=== %s: %s ===\n' "$(date -u +%FT%TZ)" "$*" >>"$logf"
	"${BOOSTED[@]}" taskset -c "$cpu" "$@" >>"$logf" 2>&1 &
	RL_NEW=$!
	track "$RL_NEW"
	RL_STARTED+=("$RL_NEW")
	echo "$RL_NEW" >>"$RL_PIDS_FILE"
}

# rl_portico_config VERSION [ADMIN]: the L7 bootstrap of the static cells; the route
# adds x-bench-version: VERSION to every response.
rl_portico_config() {
	cat <<-YAML
	admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${2:-$RL_ADMIN} } } }
	static_resources:
	  listeners:
	YAML
	rl_listener "$1" | sed 's/^/  /'
	rl_clusters
}

rl_clusters() {
	cat <<-YAML
	  clusters:
	  - name: backend
	    type: STATIC
	    connect_timeout: 1s
	    load_assignment: { cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $RL_BACKEND_PORT } } } } ] } ] }
	YAML
}

# rl_listener VERSION [full]: the listener (HTTP connection manager, router to
# "backend"); the versions differ only inside the filter chain (stat_prefix and a
# response header), so an LDS update of it is a filter-chain-only change; with "full",
# per_connection_buffer_limit_bytes differs too, which makes it a full listener update.
rl_listener() {
	cat <<-YAML
	- name: reload
	  address: { socket_address: { address: 127.0.0.1, port_value: $RL_PORT } }
	  enable_reuse_port: true
	YAML
	[[ ${2:-} == full ]] && printf '  per_connection_buffer_limit_bytes: %d\n' $((1048576 + $1))
	cat <<-YAML
	  filter_chains:
	  - filters:
	    - name: envoy.filters.network.http_connection_manager
	      typed_config:
	        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
	        stat_prefix: reload_v$1
	        codec_type: AUTO
	        route_config:
	          name: local
	          response_headers_to_add: [ { header: { key: x-bench-version, value: "$1" } } ]
	          virtual_hosts:
	          - name: all
	            domains: [ "*" ]
	            routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ]
	        http_filters:
	        - name: envoy.filters.http.router
	          typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
	YAML
}

# rl_lds_bootstrap / rl_lds_file VERSION: the LDS cell's bootstrap (listeners from
# $RL_DIR/lds.yaml, the cluster static) and one version of its DiscoveryResponse.
rl_lds_bootstrap() {
	cat <<-YAML
	node: { id: bench, cluster: bench }
	admin: { address: { socket_address: { address: 127.0.0.1, port_value: $RL_ADMIN } } }
	dynamic_resources:
	  lds_config:
	    resource_api_version: V3
	    path_config_source: { path: $RL_DIR/lds.yaml }
	static_resources:
	YAML
	rl_clusters
}
rl_lds_file() { # VERSION [full]
	printf 'version_info: "%s"\nresources:\n' "$1"
	rl_listener "$1" "${2:-}" | sed '1s/^- /- "@type": type.googleapis.com\/envoy.config.listener.v3.Listener\n  /'
}

rl_haproxy_config() { # MASTER_WORKER(true|false)
	cat <<-CFG
	global
	  nbthread 1
	  maxconn 9000
	  hard-stop-after 3s
	CFG
	# The seamless reload: the master hands the old worker's listeners to the new one
	# (expose-fd listeners); -sf gets no such socket.
	$1 && echo "  stats socket $RL_DIR/haproxy.sock mode 600 level admin expose-fd listeners"
	cat <<-CFG
	defaults
	  mode http
	  timeout connect 5s
	  timeout client 30s
	  timeout server 30s
	frontend fe
	  bind 127.0.0.1:$RL_PORT
	  default_backend be
	backend be
	  http-reuse always
	  server s1 127.0.0.1:$RL_BACKEND_PORT
	CFG
}

# rl_portico_cmd CONFIG [extra flags]: sets RL_CMD. A build with hot restart binds an
# abstract socket named by its base id (0 unless told) even without --restart-epoch, so
# that two processes at once (the overlap cell), or another engineer's Portico on this
# box, would collide: every process gets a base id of its own unless the flags name one.
rl_portico_cmd() {
	local c=$1
	shift
	RL_CMD=("$BIN/portico" -c "$c" --concurrency 1 --drain-time-s "$RELOAD_DRAIN_S" "$@")
	if $RL_HAS_BASE_ID && [[ " $* " != *" --base-id "* ]]; then
		RL_SOLO_BASE_ID=$((RL_SOLO_BASE_ID + 1))
		RL_CMD+=(--base-id "$RL_SOLO_BASE_ID")
	fi
}

# rl_begin CELL: starts the SUT of CELL (RL_MAIN: the process events act on). Returns 2
# with RL_UNAVAILABLE set when the Portico binary lacks the cell's feature, 1 when the
# SUT did not start.
rl_begin() {
	local cell=$1 logf=$LOGDIR/reload-$1.log help
	RL_EPOCH=0
	case $cell in
	portico-*)
		have_bin portico || { RL_UNAVAILABLE="no portico binary"; return 2; }
		help=$("$BIN/portico" --help 2>&1)
		RL_HAS_BASE_ID=false
		[[ $help == *--base-id* ]] && RL_HAS_BASE_ID=true ;;
	esac
	case $cell in
	portico-cold | portico-overlap)
		rl_portico_config 0 >"$RL_DIR/portico.yaml"
		rl_portico_cmd "$RL_DIR/portico.yaml"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}" ;;
	portico-hot)
		[[ $help == *--restart-epoch* ]] || { RL_UNAVAILABLE="portico has no --restart-epoch"; return 2; }
		rl_portico_config 0 >"$RL_DIR/portico.yaml"
		rl_portico_cmd "$RL_DIR/portico.yaml" --restart-epoch 0 --base-id "$RL_BASE_ID" --parent-shutdown-time-s "$RELOAD_PARENT_SHUTDOWN_S"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}" ;;
	portico-hotwrap)
		[[ $help == *"portico restart"* ]] || { RL_UNAVAILABLE="portico has no restart subcommand"; return 2; }
		rl_portico_config 0 >"$RL_DIR/portico.yaml"
		RL_CMD=("$BIN/portico" restart -c "$RL_DIR/portico.yaml" --concurrency 1 --drain-time-s "$RELOAD_DRAIN_S"
			--base-id "$RL_BASE_ID" --parent-shutdown-time-s "$RELOAD_PARENT_SHUTDOWN_S")
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}" ;;
	portico-lds | portico-lds-full)
		rl_lds_bootstrap >"$RL_DIR/bootstrap.yaml"
		rl_lds_file 0 "${cell#portico-lds-}" >"$RL_DIR/lds.yaml"
		if ! "$BIN/portico" validate -c "$RL_DIR/bootstrap.yaml" >"$RL_DIR/validate.log" 2>&1; then
			RL_UNAVAILABLE="portico rejects the LDS bootstrap: $(start_failure "$RL_DIR/validate.log")"
			return 2
		fi
		rl_portico_cmd "$RL_DIR/bootstrap.yaml"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}" ;;
	haproxy-mw)
		rl_haproxy_config true >"$RL_DIR/haproxy.cfg"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" haproxy -W -db -S "$RL_DIR/master.sock" -f "$RL_DIR/haproxy.cfg" ;;
	haproxy-sf)
		rl_haproxy_config false >"$RL_DIR/haproxy.cfg"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" haproxy -db -f "$RL_DIR/haproxy.cfg" ;;
	*) log "reload: unknown cell $cell"; return 1 ;;
	esac
	RL_MAIN=$RL_NEW
	if ! rl_wait_listener "$RL_PORT" "$RL_MAIN" 10; then
		log "reload: $cell did not listen on :$RL_PORT; last lines of $logf:"
		tail -5 "$logf" >&2
		return 1
	fi
	if [[ $cell == portico-lds* ]]; then
		# LDS is there when the admin counts its updates (Envoy's listener_manager.lds.*).
		if ! curl -s --max-time 2 "http://127.0.0.1:$RL_ADMIN/stats" | grep -q '^listener_manager.lds.update_success'; then
			RL_UNAVAILABLE="portico starts with the LDS bootstrap but has no listener_manager.lds.update_success"
			return 2
		fi
	fi
	return 0
}

# rl_event CELL I: one restart or update; an update sets RL_EV_VERSION to the version
# it installs. Returns 1 when the new process did not come up.
rl_event() {
	local cell=$1 i=$2 logf=$LOGDIR/reload-$1.log old=$RL_MAIN before
	case $cell in
	portico-cold)
		kill -TERM "$old" 2>/dev/null
		rl_wait_exit "$old" $((RELOAD_DRAIN_S + 10)) || { log "  $cell: pid $old still alive; SIGKILL"; stop_pid "$old"; }
		rl_portico_cmd "$RL_DIR/portico.yaml"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}"
		RL_MAIN=$RL_NEW
		rl_wait_listener "$RL_PORT" "$RL_MAIN" 10 ;;
	portico-overlap)
		# A second admin port: both processes run at once.
		free_port || return 1
		rl_portico_config 0 "$FREE_PORT" >"$RL_DIR/portico-$i.yaml"
		rl_portico_cmd "$RL_DIR/portico-$i.yaml"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}"
		RL_MAIN=$RL_NEW
		rl_wait_listener "$RL_PORT" "$RL_MAIN" 10 || return 1
		kill -TERM "$old" 2>/dev/null ;;
	portico-hot)
		RL_EPOCH=$((RL_EPOCH + 1))
		rl_portico_cmd "$RL_DIR/portico.yaml" --restart-epoch "$RL_EPOCH" --base-id "$RL_BASE_ID" --parent-shutdown-time-s "$RELOAD_PARENT_SHUTDOWN_S"
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" "${RL_CMD[@]}"
		RL_MAIN=$RL_NEW
		rl_wait_listener "$RL_PORT" "$RL_MAIN" 10 ;;
	portico-hotwrap)
		before=" $(rl_children "$RL_MAIN" | tr '\n' ' ') "
		kill -HUP "$RL_MAIN"
		rl_wait_new_listener "$RL_PORT" "$RL_MAIN" "$before" ;;
	portico-lds | portico-lds-full)
		# The new file was written to lds.yaml.tmp before the event (reload_cell); the
		# event is the rename.
		now_ns
		RL_EV_START=$NOW
		mv -f "$RL_DIR/lds.yaml.tmp" "$RL_DIR/lds.yaml"
		RL_EV_VERSION=$i ;;
	haproxy-mw)
		before=" $(rl_children "$RL_MAIN" | tr '\n' ' ') "
		kill -USR2 "$RL_MAIN"
		# Ready when a worker the master did not have before listens.
		rl_wait_new_listener "$RL_PORT" "$RL_MAIN" "$before" ;;
	haproxy-sf)
		rl_start "$SUT_CPU" "$RL_PORT" "$logf" haproxy -db -f "$RL_DIR/haproxy.cfg" -sf "$old"
		RL_MAIN=$RL_NEW
		rl_wait_listener "$RL_PORT" "$RL_MAIN" 10 ;;
	esac
}

# rl_end: stops every process the cell started, and their children (HAProxy's workers,
# the wrapper's epochs), by PID.
rl_end() {
	local p kids=()
	for p in "${RL_STARTED[@]}"; do
		mapfile -t -O "${#kids[@]}" kids < <(rl_children "$p")
	done
	for p in "${RL_STARTED[@]}"; do stop_pid "$p"; done
	for p in "${kids[@]}"; do
		kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
	done
	RL_STARTED=()
}

# rl_unavailable_row CELL REP REASON: the row of a cell that cannot run.
rl_unavailable_row() {
	printf '{"mode":"churn","labels":{"scenario":"reload","server":"%s","rep":"%s","test":"%s","cell":"%s"},"metrics":{},"unavailable":%s,"failure":""}\n' \
		"${1%%-*}" "$2" "$1" "$1" "$(json_str "$3")"
}

# reload_cell CELL REP RUNS: one run of churn across K events of CELL.
reload_cell() {
	local cell=$1 rep=$2 runs=$3 k sp lead=1.5 tail=1.5 dur out i t0 t1 due fail="" done_ev=0 rc
	k=$(rl_cell_events "$cell") sp=$(rl_cell_spacing "$cell")
	$QUICK && lead=0.7 tail=0.8
	RL_DIR=$BENCH_TMP/reload-$cell-$rep
	mkdir -p "$RL_DIR"
	RL_PIDS_FILE=$RL_DIR/pids RL_STARTED=() RL_UNAVAILABLE=""
	: >"$RL_PIDS_FILE"
	: >"$RL_DIR/events"
	free_port || return
	RL_PORT=$FREE_PORT
	free_port || return
	RL_ADMIN=$FREE_PORT
	# Base ids for hot restart's abstract sockets: one for the epochs of a hot-restart
	# cell, then one each for processes started alone; random, so that they differ from
	# other runs' on this box.
	RL_BASE_ID=$((RANDOM % 5000 + 1000)) RL_SOLO_BASE_ID=$((RL_BASE_ID * 10 + 50000)) RL_HAS_BASE_ID=false
	rl_begin "$cell"
	rc=$?
	if ((rc == 2)); then
		log "  $cell: not available: $RL_UNAVAILABLE"
		rl_unavailable_row "$cell" "$rep" "$RL_UNAVAILABLE" >>"$runs"
		rl_end
		return
	elif ((rc != 0)); then
		metrics_line reload "${cell%%-*}" "$rep" "$cell" "$cell" '{}' "did not start: $(start_failure "$LOGDIR/reload-$cell.log")" >>"$runs"
		rl_end
		return
	fi
	sleep 0.5 # settled before the churn starts
	dur=$(awk -v l="$lead" -v k="$k" -v s="$sp" -v t="$tail" 'BEGIN { printf "%.1f", l + (k - 1) * s + s + t }')
	out=$RL_DIR/churn.json
	timeout --foreground --kill-after=5 "$(awk -v d="$dur" 'BEGIN { printf "%d", d + 30 }')" "${BOOSTED[@]}" taskset -c "$LG_CPU" \
		"$BIN/churn" -addr "127.0.0.1:$RL_PORT" -rate "$RELOAD_RATE" -conc "$RELOAD_CONC" -streams "$RELOAD_STREAMS" \
		-duration "${dur}s" -events-file "$RL_DIR/events" -pids-file "$RL_PIDS_FILE" -clk-tck "$CLK_TCK" \
		-label scenario=reload -label "server=${cell%%-*}" -label "rep=$rep" -label "test=$cell" -label "cell=$cell" \
		-out "$out" 2>>"$BENCH_TMP/churn.log" &
	local cpid=$!
	track "$cpid"
	local start_ns
	now_ns
	start_ns=$NOW
	for ((i = 1; i <= k; i++)); do
		# Event i is due at lead + (i-1) * spacing; one that overran pushes the next.
		due=$(awk -v s="$start_ns" -v l="$lead" -v i="$i" -v sp="$sp" 'BEGIN { printf "%.0f", s + (l + (i - 1) * sp) * 1e9 }')
		now_ns
		t0=$NOW
		if ((due > t0)); then sleep "$(awk -v d="$((due - t0))" 'BEGIN { printf "%.3f", d / 1e9 }')"; fi
		# Stop issuing events when the run has less than a spacing left.
		now_ns
		((NOW > start_ns + ${dur%.*} * 1000000000 - sp * 1000000000)) && break
		RL_EV_VERSION="" RL_EV_START=""
		[[ $cell == portico-lds* ]] && rl_lds_file "$i" "${cell#portico-lds-}" >"$RL_DIR/lds.yaml.tmp"
		now_ns
		t0=$NOW
		if rl_event "$cell" "$i"; then
			now_ns
			t1=$NOW
			# An update's END is the instant its rename began (RL_EV_START): its latency is
			# then an upper bound by mv's own fork and exec.
			echo "$cell-$i $t0 ${RL_EV_START:-$t1} $RL_EV_VERSION" >>"$RL_DIR/events"
			done_ev=$i
		else
			now_ns
			t1=$NOW
			echo "$cell-$i-failed $t0 $t1" >>"$RL_DIR/events"
			fail="event $i: the new process or version did not come up"
			log "  $cell: $fail"
			break
		fi
	done
	wait "$cpid"
	untrack "$cpid"
	if [[ -z $fail ]] && ((done_ev < k)); then fail="only $done_ev of $k events fit in the run"; fi
	if [[ -z $fail ]] && ! kill -0 "$RL_MAIN" 2>/dev/null; then fail="$cell: the serving process exited"; fi
	if [[ -s $out ]]; then
		local row
		row=$(cat "$out")
		[[ -n $fail ]] && row=${row/\"failure\":\"\"/\"failure\":$(json_str "$fail")}
		echo "$row" >>"$runs"
		log "  $cell: $(rl_brief "$row")"
	else
		metrics_line reload "${cell%%-*}" "$rep" "$cell" "$cell" '{}' "churn produced no output: $(tail -1 "$BENCH_TMP/churn.log" 2>/dev/null)" >>"$runs"
		log "  $cell: !! churn produced no output"
	fi
	rl_end
}

# rl_brief ROW: the figures worth a log line (the run's, not its events').
rl_brief() {
	local head=${1%%\"events\":\[*}
	grep -oE '"(rate|failed|events|stream_breaks|max_gap_ms|latency_p50_ms|latency_p99_ms|cpu_s|missed_slots)":[0-9.e+-]+|"by_class":\{[^}]*\}|"failure":"[^"]+"' <<<"$head" | tr '\n' ' '
}

# rl_backend_start: the scenario's own nginx backend (the l4/l7 backend's HTTP part:
# one process, access_log off, return 200 with the ~100-byte body) on a free port, on
# $LG_CPU; sets RL_BACKEND_PORT and RL_BACKEND_PID.
rl_backend_start() {
	local d=$BENCH_TMP/ngx-reload
	mkdir -p "$d"
	free_port || return 1
	RL_BACKEND_PORT=$FREE_PORT
	{
		nginx_head "$d"
		cat <<-NGX
		http {
		  access_log off;
		  keepalive_requests 100000000; keepalive_timeout 120s;
		  $(nginx_temp_paths "$d")
		  default_type text/plain;
		  server { listen 127.0.0.1:$RL_BACKEND_PORT backlog=4096; location / { return 200 "$BODY\n"; } }
		}
		NGX
	} >"$d/nginx.conf"
	start_proc "$LG_CPU" "$RL_BACKEND_PORT" "$LOGDIR/reload-nginx-backend.log" nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" || return 1
	RL_BACKEND_PID=$PROC_PID
}

# Per repetition, the cells in rotated order, each on fresh processes and ports.
scenario_reload() {
	local runs=$BENCH_TMP/reload.jsonl rep cell cells
	: >"$runs"
	# shellcheck disable=SC2034 # write_px_results (bench.sh) reads it
	PX_MACHINE=${MACHINE%\}},\"tools\":$(proxy_versions_json)\}
	# Built here rather than in build_bins: only this scenario uses it.
	(cd "$ROOT/bench" && go build -o "$BIN/" ./cmd/churn) || { log "reload: churn does not build"; return; }
	# shellcheck disable=SC2206 # the list is split on blanks on purpose
	cells=($RELOAD_CELLS)
	rl_backend_start || { log "reload: nginx backend did not start"; return; }
	for ((rep = 1; rep <= REPS; rep++)); do
		for cell in $(rotate_list "$rep" "${cells[@]}"); do
			log "reload rep $rep/$REPS: $cell ($(rl_cell_events "$cell") events, $(rl_cell_spacing "$cell") s apart)"
			reload_cell "$cell" "$rep" "$runs"
			sleep 0.3
		done
	done
	stop_pid "$RL_BACKEND_PID"
	write_px_results reload "$runs" "$(printf '{"reps":%s,"rate":%s,"conc":%s,"streams":%s,"stream_interval_ms":100,"timeout_s":2,"cells":"%s","drain_time_s":%s,"parent_shutdown_time_s":%s,"request":"GET / HTTP/1.1, Connection: close, RST after the response","backend":"nginx return 200 (~100 B)"}' \
		"$REPS" "$RELOAD_RATE" "$RELOAD_CONC" "$RELOAD_STREAMS" "$RELOAD_CELLS" "$RELOAD_DRAIN_S" "$RELOAD_PARENT_SHUTDOWN_S")"
}
