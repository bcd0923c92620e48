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
# (it may be mid-edit), or from $PORTICO_BIN when given; the baseline Portico
# (contender portico-base) from $BENCH_BASE_BIN when given.
build_bins() {
	local bin=$1
	log "building load generator and peers into $bin"
	# bench/ is its own module (the peers' dependencies stay out of the main go.mod).
	(cd "$ROOT/bench" && go build -o "$bin/" ./cmd/loadgen ./cmd/echo-gnet ./cmd/echo-netpoll ./cmd/echo-net ./cmd/report ./cmd/proxy-net ./cmd/connload ./cmd/drip ./cmd/tlsload) || exit 1
	if [[ -n ${BENCH_BASE_BIN:-} ]]; then
		[[ -x $BENCH_BASE_BIN ]] || { log "BENCH_BASE_BIN=$BENCH_BASE_BIN is not an executable"; exit 1; }
		cp "$BENCH_BASE_BIN" "$bin/portico-base"
	fi
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
	case $1 in portico) echo 10000 ;; gnet) echo 10001 ;; netpoll) echo 10002 ;; net) echo 10003 ;; portico-base) echo 10004 ;; esac
}

# with_base NAME...: the NAMEs, with portico-base right after portico when
# $BENCH_BASE_BIN is set (and portico-base is not listed already).
with_base() {
	local n
	for n in "$@"; do
		echo "$n"
		[[ $n == portico && -n ${BENCH_BASE_BIN:-} && " $* " != *" portico-base "* ]] && echo portico-base
	done
}

# have_bin NAME: false for a Portico contender whose binary is absent (did
# not build, or no BENCH_BASE_BIN); the peers are always built.
have_bin() {
	case $1 in portico | portico-base) [[ -x $BIN/$1 ]] ;; portico-sockmap) [[ -x $BIN/portico ]] ;; *) return 0 ;; esac
}

# server_cmd NAME: the command line of one echo contender, one worker each.
server_cmd() {
	local port
	port=$(server_port "$1")
	case $1 in
	portico | portico-base)
		portico_config "$port" >"$BENCH_TMP/$1-echo.yaml"
		echo "$BIN/$1 -c $BENCH_TMP/$1-echo.yaml --concurrency 1"
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

# wait_ports_free PORT...: up to 10 s until nothing listens on any PORT;
# logs who still holds one.
wait_ports_free() {
	local i p busy
	for ((i = 0; i < 100; i++)); do
		busy=""
		for p in "$@"; do port_listening "$p" && busy+=" $p"; done
		[[ -z $busy ]] && { ((i > 0)) && log "  ports free after $((i * 100)) ms"; return 0; }
		((i == 0)) && log "  waiting for port(s)$busy: $(ss -Hltnp "sport = :${busy# }" 2>/dev/null | grep -o 'users:.*' | head -1)"
		sleep 0.1
	done
	log "  port(s)$busy still busy after 10 s"
	return 1
}

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
	gnetv=$(cd "$ROOT/bench" && go list -m -f '{{.Version}}' github.com/panjf2000/gnet/v2)
	netpollv=$(cd "$ROOT/bench" && go list -m -f '{{.Version}}' github.com/cloudwego/netpoll)
	commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(cd "$ROOT" && git status --porcelain -- engine poller filters config cmd 2>/dev/null) ]]; then
		commit+="+dirty"
	fi
	if [[ -n ${PORTICO_BIN:-} ]]; then
		# The tree's commit says little about a binary built elsewhere.
		commit="prebuilt $(sha256sum "$PORTICO_BIN" | cut -c1-12) (tree $commit)"
	fi
	local base=""
	[[ -n ${BENCH_BASE_BIN:-} ]] && base="prebuilt $(sha256sum "$BENCH_BASE_BIN" | cut -c1-12) ($BENCH_BASE_BIN)"
	printf '{"cpu_model":%s,"cores":%s,"kernel":%s,"mem":%s,"virt":%s,"go":%s,"gnet":%s,"netpoll":%s,"portico_commit":%s,"portico_base":%s,"nginx":%s,"haproxy":%s,"ulimit_n":%s,"clk_tck":%s,"sut_cpu":%s,"loadgen_cpu":%s,"nice":%s}' \
		"$(json_str "$cpu")" "$(nproc)" "$(json_str "$kernel")" "$(json_str "$mem")" "$(json_str "$virt")" \
		"$(json_str "$gover")" "$(json_str "$gnetv")" "$(json_str "$netpollv")" "$(json_str "$commit")" "$(json_str "$base")" \
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

# ---------------------------------------------------------------------------
# Proxy scenarios (l4-proxy, sni, syscalls, balance).

# Ports: backends 18080 (HTTP), 18443/18444 (TLS, one per server name);
# L4 proxies 10010-10015, SNI proxies 10020-10023 (the drip scenario uses the
# SNI proxies), balance 10030; Portico's admin on 19901, portico-base's on
# 19902, portico-sockmap's on 19903.
proxy_port() {
	case $1:$2 in
	l4:portico) echo 10010 ;; l4:haproxy) echo 10011 ;; l4:nginx) echo 10012 ;; l4:net) echo 10013 ;;
	l4:portico-base) echo 10014 ;; l4:portico-sockmap) echo 10015 ;;
	l4:none) echo 18080 ;;
	sni:portico) echo 10020 ;; sni:haproxy) echo 10021 ;; sni:nginx) echo 10022 ;; sni:portico-base) echo 10023 ;;
	l7:*) echo "${L7_PORT[$2]:?no l7 port picked for $2}" ;;
	esac
}

# The l7-proxy scenario picks its proxies' ports (and Portico's admin port)
# afresh for every run: l7_pick_ports NAME sets L7_PORT[NAME] and
# L7_ADMIN[NAME] to ports nothing listens on, never handed out before in
# this invocation, so a proxy that outlived its run can never answer for the
# next one.
declare -A L7_PORT=() L7_ADMIN=()
PICKED_PORTS=" "
l7_pick_ports() {
	free_port || return 1
	L7_PORT[$1]=$FREE_PORT
	free_port || return 1
	L7_ADMIN[$1]=$FREE_PORT
}

# free_port: sets FREE_PORT to a TCP port in 20000-29999 (below the
# ephemeral range, so no client socket takes it between our pick and the
# server's bind) that no socket listens on and that this invocation has not
# handed out yet. Not a $(...) function: the hand-out list must persist.
free_port() {
	local busy p i
	busy=" $(ss -Hltn 2>/dev/null | awk '{ n = split($4, a, ":"); printf "%s ", a[n] }')"
	for ((i = 0; i < 1000; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 10000))
		[[ $busy == *" $p "* || $PICKED_PORTS == *" $p "* ]] && continue
		PICKED_PORTS+="$p "
		FREE_PORT=$p
		return 0
	done
	log "no free port in 20000-29999"
	return 1
}
ADMIN_PORT=19901
admin_port() { case $1 in portico-base) echo 19902 ;; portico-sockmap) echo 19903 ;; *) echo "$ADMIN_PORT" ;; esac; }
BODY=$(printf 'portico-bench %.0s' 1 2 3 4 5 6 7)   # ~100 bytes
SNI_A=localhost    # wrk sends the URL's host as SNI, and localhost is in /etc/hosts
SNI_B=b.bench.test

# start_proc CPU PORT LOG CMD...: CPU "" = unpinned. Sets PROC_PID; waits
# until PORT listens (10 s). Boosted like the echo contenders.
start_proc() {
	local cpu=$1 port=$2 logf=$3 i
	shift 3
	if port_listening "$port"; then
		log "port $port already in use; refusing to start $1"
		return 1
	fi
	if [[ -n $cpu ]]; then
		"${BOOSTED[@]}" taskset -c "$cpu" "$@" >>"$logf" 2>&1 &
	else
		"${BOOSTED[@]}" "$@" >>"$logf" 2>&1 &
	fi
	PROC_PID=$!
	track "$PROC_PID"
	for ((i = 0; i < 100; i++)); do
		port_listening "$port" && return 0
		kill -0 "$PROC_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "$1 did not start listening on :$port (log: $logf)"
	tail -5 "$logf" >&2
	stop_pid "$PROC_PID"
	return 1
}

# backend_setup DIR: self-signed ECDSA P-256 certificate for both server
# names, a sparse big file, and the nginx backend config.
backend_setup() {
	local d=$1
	mkdir -p "$d/ngx-backend" "$d/ngx-sut"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj "/CN=$SNI_A" -addext "subjectAltName=DNS:$SNI_A,DNS:$SNI_B" \
		-keyout "$d/key.pem" -out "$d/cert.pem" 2>/dev/null || { log "openssl failed"; return 1; }
	truncate -s "$BULK_BYTES" "$d/big.bin"
	truncate -s 1M "$d/1m.bin"
	# Read the sparse files once so that no contender pays for filling the
	# page cache (the first read of a fresh sparse file is several times slower).
	cat "$d/big.bin" "$d/1m.bin" >/dev/null
	{
	nginx_head "$d/ngx-backend"
	cat <<-NGX
	http {
	  access_log off; sendfile on; tcp_nopush on;
	  keepalive_requests 100000000; keepalive_timeout 120s;
	  $(nginx_temp_paths "$d/ngx-backend")
	  default_type text/plain;
	  server { listen 127.0.0.1:18080 backlog=4096;
	    location / { return 200 "$BODY\n"; }
	    location = /big { alias $d/big.bin; }
	    location = /1m { alias $d/1m.bin; }
	    location = /status { stub_status; } }
	  ssl_certificate $d/cert.pem; ssl_certificate_key $d/key.pem;
	  ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
	  server { listen 127.0.0.1:18443 ssl backlog=4096; location / { return 200 "a $BODY\n"; } }
	  server { listen 127.0.0.1:18444 ssl backlog=4096; location / { return 200 "b $BODY\n"; } }
	}
	NGX
	} >"$d/nginx-backend.conf"
}

# nginx_head DIR: one nginx process doing the work (no master, one worker,
# in the foreground), its pid and error log in DIR.
nginx_head() {
	cat <<-NGX
	daemon off; master_process off; worker_processes 1;
	worker_rlimit_nofile 20000;
	pid $1/nginx.pid;
	error_log $1/error.log warn;
	events { worker_connections 16000; }
	NGX
}

# nginx_temp_paths DIR: every temp path of the http module under DIR (the
# compiled-in ones are system directories).
nginx_temp_paths() {
	printf 'client_body_temp_path %s/cb; proxy_temp_path %s/px; fastcgi_temp_path %s/fc; uwsgi_temp_path %s/uw; scgi_temp_path %s/sc;' \
		"$1" "$1" "$1" "$1" "$1"
}

# start_backend: the nginx backend on the load generator's CPU. Sets BACKEND_PID.
start_backend() {
	start_proc "$LG_CPU" 18443 "$LOGDIR/nginx-backend.log" nginx -p "$BENCH_TMP/ngx-backend" \
		-e "$BENCH_TMP/ngx-backend/error.log" -c "$BENCH_TMP/nginx-backend.conf" || return 1
	BACKEND_PID=$PROC_PID
	local i
	for ((i = 0; i < 50; i++)); do port_listening 18080 && port_listening 18444 && return 0; sleep 0.1; done
	return 1
}

# portico_proxy_config KIND [NAME]: KIND l4|sni|l7; NAME portico (default),
# portico-base or portico-sockmap, which differ only in their ports.
portico_proxy_config() {
	local port admin
	port=$(proxy_port "$1" "${2:-portico}")
	admin=$(admin_port "${2:-portico}")
	[[ $1 == l7 ]] && admin=${L7_ADMIN[${2:-portico}]}
	cat <<-YAML
	admin: { address: { socket_address: { address: 127.0.0.1, port_value: $admin } } }
	static_resources:
	  listeners:
	  - name: $1
	    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
	YAML
	if [[ $1 == l4 ]]; then
		cat <<-YAML
		    filter_chains:
		    - filters:
		      - name: envoy.filters.network.tcp_proxy
		        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: l4, cluster: backend }
		  clusters:
		  - name: backend
		    load_assignment: { cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18080 } } } } ] } ] }
		YAML
	elif [[ $1 == l7 ]]; then
		# HTTP connection manager -> router -> cluster "backend"; no access
		# log (the other proxies log nothing either). Envoy's defaults
		# otherwise: x-forwarded-proto is set and an x-request-id generated
		# per request, which HAProxy and nginx do not do;
		# L7_REQUEST_ID=false turns the latter off (generate_request_id).
		cat <<-YAML
		    filter_chains:
		    - filters:
		      - name: envoy.filters.network.http_connection_manager
		        typed_config:
		          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
		          stat_prefix: l7
		          codec_type: AUTO$([[ ${L7_REQUEST_ID:-true} == false ]] && printf '\n          generate_request_id: false')
		          route_config:
		            name: local
		            virtual_hosts:
		            - name: all
		              domains: [ "*" ]
		              routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ]
		          http_filters:
		          - name: envoy.filters.http.router
		            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
		  clusters:
		  - name: backend
		    type: STATIC
		    connect_timeout: 1s
		    load_assignment: { cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18080 } } } } ] } ] }
		YAML
	else
		cat <<-YAML
		    listener_filters:
		    - name: envoy.filters.listener.tls_inspector
		      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
		    filter_chains:
		    - name: a
		      filter_chain_match: { server_names: [ "$SNI_A" ] }
		      filters:
		      - name: envoy.filters.network.tcp_proxy
		        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: sni_a, cluster: tls_a }
		    - name: b
		      filter_chain_match: { server_names: [ "$SNI_B" ] }
		      filters:
		      - name: envoy.filters.network.tcp_proxy
		        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: sni_b, cluster: tls_b }
		  clusters:
		  - name: tls_a
		    load_assignment: { cluster_name: tls_a, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18443 } } } } ] } ] }
		  - name: tls_b
		    load_assignment: { cluster_name: tls_b, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18444 } } } } ] } ] }
		YAML
	fi
}

haproxy_config() { # KIND
	local port
	port=$(proxy_port "$1" haproxy)
	cat <<-CFG
	global
	  nbthread 1
	  maxconn 9000
	defaults
	  mode $([[ $1 == l7 ]] && echo http || echo tcp)
	  timeout connect 5s
	  timeout client 120s
	  timeout server 120s
	CFG
	if [[ $1 == l7 ]]; then
		# http-reuse always: an idle server connection may serve any client
		# (HAProxy's default, safe, only lets a connection's first request go
		# to a connection another client used).
		cat <<-CFG
		frontend fe
		  bind 127.0.0.1:$port
		  default_backend be
		backend be
		  http-reuse always
		  server s1 127.0.0.1:18080
		CFG
	elif [[ $1 == l4 ]]; then
		cat <<-CFG
		frontend fe
		  bind 127.0.0.1:$port
		  default_backend be
		backend be
		  server s1 127.0.0.1:18080
		CFG
	else
		# inspect-delay 5s bounds the wait for a whole ClientHello: when it
		# expires the rules run on what has arrived, no use_backend matches
		# and, with no default_backend, HAProxy closes the connection (the
		# drip scenario shows it at 5 s).
		cat <<-CFG
		frontend fe
		  bind 127.0.0.1:$port
		  tcp-request inspect-delay 5s
		  tcp-request content accept if { req.ssl_hello_type 1 }
		  use_backend be_a if { req.ssl_sni -i $SNI_A }
		  use_backend be_b if { req.ssl_sni -i $SNI_B }
		backend be_a
		  server a 127.0.0.1:18443
		backend be_b
		  server b 127.0.0.1:18444
		CFG
	fi
}

nginx_stream_config() { # KIND
	local port d=$BENCH_TMP
	port=$(proxy_port "$1" nginx)
	echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
	nginx_head "$d/ngx-sut"
	echo "stream {"
	if [[ $1 == l4 ]]; then
		echo "  server { listen 127.0.0.1:$port backlog=4096; proxy_pass 127.0.0.1:18080; }"
	else
		# ssl_preread waits for the ClientHello up to preread_timeout (default
		# 30 s, not set here) and reads at most preread_buffer_size (16k).
		cat <<-NGX
		  map \$ssl_preread_server_name \$sni_upstream {
		    $SNI_A 127.0.0.1:18443;
		    $SNI_B 127.0.0.1:18444;
		    default 127.0.0.1:18443;
		  }
		  server { listen 127.0.0.1:$port backlog=4096; ssl_preread on; proxy_pass \$sni_upstream; }
		NGX
	fi
	echo "}"
}

# nginx_http_config: the L7 proxy, proxy_pass to an upstream block with a
# keep-alive pool of L7_NGINX_KEEPALIVE idle connections (a cache smaller
# than the number of requests in flight closes a connection whenever more
# responses than that complete at once, and the next requests dial anew).
# keepalive_requests is raised on both sides (nginx's default of 1000
# would close every downstream and upstream connection after 1000
# requests, which neither HAProxy nor Portico does).
nginx_http_config() {
	local port d=$BENCH_TMP
	port=$(proxy_port l7 nginx)
	nginx_head "$d/ngx-sut"
	cat <<-NGX
	http {
	  access_log off;
	  keepalive_requests 100000000; keepalive_timeout 120s;
	  $(nginx_temp_paths "$d/ngx-sut")
	  upstream backend { server 127.0.0.1:18080; keepalive $L7_NGINX_KEEPALIVE; keepalive_requests 100000000; }
	  server { listen 127.0.0.1:$port backlog=4096;
	    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
	}
	NGX
}

# start_proxy KIND NAME: the proxy under test, one worker, on CPU $SUT_CPU.
# Sets SRV_PID (the process doing the work: nginx and HAProxy run without a
# master process).
start_proxy() {
	local kind=$1 name=$2 port logf=$LOGDIR/$1-proxy-$2.log cmd
	port=$(proxy_port "$kind" "$name")
	case $name in
	portico | portico-base)
		portico_proxy_config "$kind" "$name" >"$BENCH_TMP/$name-$kind.yaml"
		cmd=("$BIN/$name" -c "$BENCH_TMP/$name-$kind.yaml" --concurrency 1)
		# The L4 rows portico and portico-base are the userspace path (splice
		# included): portico-sockmap is the kernel one. Other kinds run
		# Portico's defaults.
		[[ $kind == l4 ]] && portico_has_flag "$BIN/$name" disable-sockmap && cmd+=(--disable-sockmap) ;;
	portico-sockmap)
		portico_proxy_config "$kind" "$name" >"$BENCH_TMP/$name-$kind.yaml"
		cmd=("$BIN/portico" -c "$BENCH_TMP/$name-$kind.yaml" --concurrency 1)
		# The kernel path is opt-in (--enable-sockmap; --experimental-sockmap
		# in older builds); a binary with neither took it by default.
		if portico_has_flag "$BIN/portico" enable-sockmap; then
			cmd+=(--enable-sockmap)
		elif portico_has_flag "$BIN/portico" experimental-sockmap; then
			cmd+=(--experimental-sockmap)
		fi ;;
	haproxy)
		haproxy_config "$kind" >"$BENCH_TMP/haproxy-$kind.cfg"
		cmd=(haproxy -db -f "$BENCH_TMP/haproxy-$kind.cfg") ;;
	nginx)
		if [[ $kind == l7 ]]; then nginx_http_config; else nginx_stream_config "$kind"; fi >"$BENCH_TMP/nginx-$kind.conf"
		cmd=(nginx -p "$BENCH_TMP/ngx-sut" -e "$BENCH_TMP/ngx-sut/error.log" -c "$BENCH_TMP/nginx-$kind.conf") ;;
	net)
		cmd=("$BIN/proxy-net" -addr "127.0.0.1:$port" -upstream 127.0.0.1:18080) ;;
	esac
	printf '=== %s ===\n' "$(date -u +%FT%TZ)" >>"$logf"
	start_proc "$SUT_CPU" "$port" "$logf" "${cmd[@]}" || return 1
	SRV_PID=$PROC_PID
}

# portico_has_flag BIN FLAG: does BIN's usage (--help) name --FLAG? Cached
# per binary and flag (PORTICO_FLAGS), so a run asks each binary once.
declare -A PORTICO_FLAGS=()
portico_has_flag() {
	local key=$1:$2 usage
	if [[ -z ${PORTICO_FLAGS[$key]:-} ]]; then
		PORTICO_FLAGS[$key]=no
		# Not piped into grep: --help exits 2, which pipefail would make the
		# pipeline's status.
		usage=$("$1" --help 2>&1)
		grep -qE -- "(^|[^a-z-])--?$2([^a-z-]|\$)" <<<"$usage" && PORTICO_FLAGS[$key]=yes
	fi
	[[ ${PORTICO_FLAGS[$key]} == yes ]]
}

# portico_path_counts ADMIN_PORT: "SOCKMAP USERSPACE", the connections
# Portico's tcp_proxy closed on each path (downstream_cx_sockmap_total,
# downstream_cx_userspace_total summed over every tcp.<stat_prefix>; the
# per-worker copies are left out); empty if the admin does not answer.
portico_path_counts() {
	curl -s --max-time 2 "http://127.0.0.1:$1/stats" | awk '
		/^tcp\./ && !/\.worker_[0-9]+\./ {
			if ($1 ~ /\.downstream_cx_sockmap_total:$/) s += $2
			else if ($1 ~ /\.downstream_cx_userspace_total:$/) u += $2
			seen = 1 }
		END { if (seen) printf "%d %d\n", s, u }'
}

# cpu_ticks PID: utime+stime of the whole process.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# machine_busy: non-idle ticks of all CPUs (/proc/stat: user, nice,
# system, irq, softirq, steal).
machine_busy() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }

# machine_work: "WORK SOFTIRQ" ticks of all CPUs, WORK being user + nice +
# system + irq + softirq: the CPU time spent on this machine, whoever it was
# charged to (the kernel's softirq and kworker work included, which on the
# sockmap path is where a proxied byte's cost goes). Unlike machine_busy it
# leaves out steal: that is the hypervisor running someone else, no work
# done here. (guest time is already inside user.)
machine_work() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8, $8; exit }' /proc/stat; }

# kthread_ticks: "KWORKER KSOFTIRQD", utime+stime summed over the kworker
# and ksoftirqd threads alive now (kernel threads are processes of their
# own, so /proc/PID/stat holds each). cat, not awk, opens the files: a
# thread that exits between the glob and the read is skipped, not fatal.
# A kworker that exits inside a window loses its ticks from the count.
kthread_ticks() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 ~ /^\((kworker|ksoftirqd)\// {
		c = $2; sub(/^.*\) /, ""); if (c ~ /^\(ksoftirqd/) s += $12 + $13; else k += $12 + $13 }
		END { printf "%d %d\n", k, s }'
}

# irq_time_accounting: y, n or unknown, from the kernel's config. With y the
# irq and softirq time is not in any process's stime (bench_cpu_json then
# misses it; the machine figure does not).
irq_time_accounting() {
	local cfg
	cfg=$(zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null)
	if [[ -z $cfg ]]; then echo unknown
	elif grep -q '^CONFIG_IRQ_TIME_ACCOUNTING=y' <<<"$cfg"; then echo y
	else echo n
	fi
}

# kthread_delta KT0 KT1: the kernel threads' ticks between two kthread_ticks.
kthread_delta() {
	local k0 s0 k1 s1
	read -r k0 s0 <<<"$1"
	read -r k1 s1 <<<"$2"
	echo $((k1 + s1 - k0 - s0))
}

# children_ticks: CPU ticks of this shell's reaped children (bash's times),
# which after a wrk_run include wrk's. Not in a $(...): a subshell would
# report its own children.
children_ticks() {
	times >"$BENCH_TMP/times"
	CHILD_TICKS=$(awk -v hz="$CLK_TCK" 'NR == 2 { t = 0; for (i = 1; i <= NF; i++) { split($i, m, "m"); t += m[1] * 60 + m[2] } printf "%d", t * hz }' "$BENCH_TMP/times")
}

# wrk_run OUT URL DURATION CONNS [wrk args...]: wrk on CPU $LG_CPU with one
# thread. Writes "rps p50_us p99_us requests errors non2xx" to OUT.
wrk_run() {
	local out=$1 url=$2 dur=$3 conns=$4 fence
	shift 4
	fence=$(awk -v d="${dur%s}" 'BEGIN { printf "%d", d + 30 }')
	timeout --kill-after=5 "$fence" "${BOOSTED[@]}" taskset -c "$LG_CPU" \
		wrk -t1 -c"$conns" -d"$dur" --timeout 5s --latency "$@" "$url" >"$out.txt" 2>&1 &
	local pid=$!
	track "$pid"
	wait "$pid"
	untrack "$pid"
	awk '
	function us(s) { if (s ~ /us$/) return s + 0; if (s ~ /ms$/) return s * 1000; if (s ~ /s$/) return s * 1e6; return s }
	/^ +50%/ { p50 = us($2) } /^ +99%/ { p99 = us($2) }
	/requests in/ { req = $1 }
	/Socket errors/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
	/Non-2xx/ { n2 = $NF }
	/^Requests\/sec/ { rps = $2 }
	END { printf "%s %s %s %s %d %d\n", rps + 0, p50 + 0, p99 + 0, req + 0, err, n2 }' "$out.txt" >"$out"
}

# metrics_line SCEN SERVER REP TEST CELL METRICS_JSON [FAILURE]: one result row.
metrics_line() {
	printf '{"mode":"metrics","labels":{"scenario":"%s","server":"%s","rep":"%s","test":"%s","cell":"%s"},"metrics":%s,"failure":%s}\n' \
		"$1" "$2" "$3" "$4" "$5" "$6" "$(json_str "${7:-}")"
}

proxy_versions_json() {
	printf '{"haproxy":%s,"nginx":%s,"wrk":%s,"curl":%s,"openssl":%s,"strace":%s}' \
		"$(json_str "$(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3)")" \
		"$(json_str "$(nginx -v 2>&1 | head -1)")" \
		"$(json_str "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)")" \
		"$(json_str "$(curl --version | head -1 | cut -d' ' -f1-2)")" \
		"$(json_str "$(openssl version)")" \
		"$(json_str "$(strace -V 2>/dev/null | head -1)")"
}
