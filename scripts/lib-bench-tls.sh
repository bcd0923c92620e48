# shellcheck shell=bash
# The tls scenario of scripts/bench.sh: TLS terminated by the proxy under test (Portico's
# envoy.transport_sockets.tls, HAProxy `bind ... ssl`, nginx `listen ... ssl`) in front
# of the plaintext nginx backend on :18080. Sourced by bench.sh after lib-bench.sh; uses
# its helpers (start_proc, stop_pid, wrk_cell, metrics_line, free_port, BOOSTED, ...).
#
# Every proxy run serves five listeners from one worker, each on a port picked afresh
# (free_port): https-ecdsa, https-rsa, https-resume (ECDSA; only the resumption cells
# use it, so its counters are theirs alone) with the HTTP proxy (Portico
# http_connection_manager + router, HAProxy mode http, nginx proxy_pass with an
# upstream keep-alive pool), tcp-tls (ECDSA, TLS then plain TCP to the backend: Portico
# tcp_proxy, HAProxy mode tcp, nginx stream) and, for Portico only, https-mlkem (ECDSA,
# ecdh_curves X25519MLKEM768 first; HAProxy and nginx link OpenSSL 3.0, which has no
# ML-KEM). The idle-memory cell runs on a fresh proxy of its own.

TLS_IDLE_CONNS=${BENCH_TLS_IDLE_CONNS:-8000}
TLS_HS_CONC=${BENCH_TLS_HS_CONC:-32}
TLS_PROBE_CONNS=${BENCH_TLS_PROBE_CONNS:-10}
TLS_PROBE_INTERVAL=${BENCH_TLS_PROBE_INTERVAL:-10ms}
# The probe runs in an autogroup of its own at nice $BENCH_NICE - 5 (-20), the flood
# (and the backend) at $BENCH_NICE (-15): on the shared load CPU the probe runs as soon
# as it is due, so its latency is the SUT's rather than the flood client's run queue,
# while the flood still outranks the nice-0 work of other sessions on this box (at
# nice 10 it got a third of the CPU). The flood makes no requests (-path=), so it
# leaves the backend to the probe.
# (Set in scenario_tls: BENCH_NICE is not known yet when this file is sourced.)
# shellcheck disable=SC2086 # the list is split on blanks on purpose
mapfile -t TLS_SERVERS < <(with_base ${BENCH_TLS_SERVERS:-portico haproxy nginx})
TLS_CIPHERS12=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305
TLS_CIPHERS13=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256

# tlst_certs DIR: a throwaway CA (ECDSA P-256) and two leaves it signs for localhost and
# b.bench.test, ECDSA P-256 and RSA-2048; DIR/{ecdsa,rsa}.{pem,key} and, for HAProxy,
# DIR/{ecdsa,rsa}.combined.pem (certificate then key).
tlst_certs() {
	local d=$1 k
	mkdir -p "$d"
	printf 'subjectAltName=DNS:%s,DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
		"$SNI_A" "$SNI_B" >"$d/ext.cnf"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=portico bench throwaway CA" \
		-keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null || return 1
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$SNI_A" -keyout "$d/ecdsa.key" -out "$d/ecdsa.csr" 2>/dev/null || return 1
	openssl req -newkey rsa:2048 -nodes -subj "/CN=$SNI_A" -keyout "$d/rsa.key" -out "$d/rsa.csr" 2>/dev/null || return 1
	for k in ecdsa rsa; do
		openssl x509 -req -in "$d/$k.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
			-extfile "$d/ext.cnf" -out "$d/$k.pem" 2>/dev/null || return 1
		cat "$d/$k.pem" "$d/$k.key" >"$d/$k.combined.pem"
	done
}

# tlst_pick_ports NAME: fresh ports for every listener of one proxy run (TP[kind]), and
# its admin (Portico) or stats (HAProxy) port.
declare -A TP=()
tlst_pick_ports() {
	local k
	for k in ecdsa rsa resume tcp mlkem admin; do
		free_port || return 1
		TP[$k]=$FREE_PORT
	done
}

# tlst_portico_listener NAME PORT CERT CURVES FILTER: one listener whose only filter
# chain terminates TLS with one certificate (a DownstreamTlsContext; TLS 1.2 to 1.3,
# Envoy's server defaults written out; Envoy's default ciphers, and its default groups
# unless CURVES is not "-"), then FILTER: hcm (http_connection_manager + router) or tcp
# (tcp_proxy), both to the cluster "backend".
tlst_portico_listener() {
	local d=$BENCH_TMP/tls
	cat <<-YAML
	  - name: $1
	    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
	    filter_chains:
	    - transport_socket:
	        name: envoy.transport_sockets.tls
	        typed_config:
	          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
	          common_tls_context:
	            tls_certificates:
	            - certificate_chain: { filename: $d/$3.pem }
	              private_key: { filename: $d/$3.key }
	            tls_params:
	              tls_minimum_protocol_version: TLSv1_2
	              tls_maximum_protocol_version: TLSv1_3
	YAML
	[[ $4 != - ]] && printf '              ecdh_curves: [ %s ]\n' "$4"
	if [[ $5 == tcp ]]; then
		cat <<-YAML
		      filters:
		      - name: envoy.filters.network.tcp_proxy
		        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: $1, cluster: backend }
		YAML
		return
	fi
	cat <<-YAML
	      filters:
	      - name: envoy.filters.network.http_connection_manager
	        typed_config:
	          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
	          stat_prefix: $1
	          codec_type: AUTO
	          route_config:
	            name: local
	            virtual_hosts:
	            - name: all
	              domains: [ "*" ]
	              routes: [ { match: { prefix: "/" }, route: { cluster: backend } } ]
	          http_filters:
	          - name: envoy.filters.http.router
	            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
	YAML
}

tlst_portico_config() {
	cat <<-YAML
	admin: { address: { socket_address: { address: 127.0.0.1, port_value: ${TP[admin]} } } }
	static_resources:
	  listeners:
	YAML
	tlst_portico_listener https_ecdsa "${TP[ecdsa]}" ecdsa - hcm
	tlst_portico_listener https_rsa "${TP[rsa]}" rsa - hcm
	tlst_portico_listener https_resume "${TP[resume]}" ecdsa - hcm
	tlst_portico_listener https_mlkem "${TP[mlkem]}" ecdsa "X25519MLKEM768, X25519, P-256" hcm
	tlst_portico_listener tcp_tls "${TP[tcp]}" ecdsa - tcp
	cat <<-YAML
	  clusters:
	  - name: backend
	    type: STATIC
	    connect_timeout: 1s
	    load_assignment: { cluster_name: backend, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18080 } } } } ] } ] }
	YAML
}

# HAProxy: the same suites and groups as Envoy's defaults, AES-128-GCM first (HAProxy
# picks by its own order, as Go's server does); maxconn 9000 fits the 20,000-fd limit
# (HAProxy reserves two per connection).
tlst_haproxy_config() {
	local d=$BENCH_TMP/tls
	cat <<-CFG
	global
	  nbthread 1
	  maxconn 9000
	  ssl-default-bind-ciphers $TLS_CIPHERS12
	  ssl-default-bind-ciphersuites $TLS_CIPHERS13
	  ssl-default-bind-curves X25519:P-256
	  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3
	defaults
	  mode http
	  timeout connect 5s
	  timeout client 120s
	  timeout server 120s
	frontend https_ecdsa
	  bind 127.0.0.1:${TP[ecdsa]} ssl crt $d/ecdsa.combined.pem
	  default_backend be
	frontend https_rsa
	  bind 127.0.0.1:${TP[rsa]} ssl crt $d/rsa.combined.pem
	  default_backend be
	frontend https_resume
	  bind 127.0.0.1:${TP[resume]} ssl crt $d/ecdsa.combined.pem
	  default_backend be
	frontend tcp_tls
	  mode tcp
	  bind 127.0.0.1:${TP[tcp]} ssl crt $d/ecdsa.combined.pem
	  default_backend be_tcp
	backend be
	  http-reuse always
	  server s1 127.0.0.1:18080
	backend be_tcp
	  mode tcp
	  server s1 127.0.0.1:18080
	listen stats
	  bind 127.0.0.1:${TP[admin]}
	  stats enable
	  stats uri /stats
	CFG
}

# nginx: server-preferred suites in the same order; its default session cache ("none")
# and tickets (on) kept. The resume server logs $ssl_session_reused per request,
# buffered (one write per 64 KiB), which is how its resumptions are counted.
tlst_nginx_config() {
	local d=$BENCH_TMP/tls n=$BENCH_TMP/ngx-sut ssl
	ssl="ssl_protocols TLSv1.2 TLSv1.3; ssl_prefer_server_ciphers on; ssl_ciphers $TLS_CIPHERS12; ssl_conf_command Ciphersuites $TLS_CIPHERS13; ssl_ecdh_curve X25519:prime256v1;"
	echo "load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
	nginx_head "$n"
	cat <<-NGX
	http {
	  access_log off;
	  keepalive_requests 100000000; keepalive_timeout 120s;
	  $(nginx_temp_paths "$n")
	  $ssl
	  log_format reused '\$ssl_session_reused';
	  upstream backend { server 127.0.0.1:18080; keepalive $((WRK_CONNS > 32 ? WRK_CONNS : 32)); keepalive_requests 100000000; }
	  server { listen 127.0.0.1:${TP[ecdsa]} ssl backlog=4096; ssl_certificate $d/ecdsa.pem; ssl_certificate_key $d/ecdsa.key;
	    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
	  server { listen 127.0.0.1:${TP[rsa]} ssl backlog=4096; ssl_certificate $d/rsa.pem; ssl_certificate_key $d/rsa.key;
	    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
	  server { listen 127.0.0.1:${TP[resume]} ssl backlog=4096; ssl_certificate $d/ecdsa.pem; ssl_certificate_key $d/ecdsa.key;
	    access_log $n/resume.log reused buffer=64k flush=500ms;
	    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }
	}
	stream {
	  $ssl
	  server { listen 127.0.0.1:${TP[tcp]} ssl backlog=4096; ssl_certificate $d/ecdsa.pem; ssl_certificate_key $d/ecdsa.key; proxy_pass 127.0.0.1:18080; }
	}
	NGX
}

# tlst_start NAME: the proxy with all its listeners on CPU $SUT_CPU (SRV_PID), after
# the ports are picked. It is ready when its last listener listens.
tlst_start() {
	local name=$1 logf=$LOGDIR/tls-proxy-$1.log cmd k
	tlst_pick_ports "$name" || return 1
	case $name in
	portico | portico-base)
		tlst_portico_config >"$BENCH_TMP/$name-tls.yaml"
		cmd=("$BIN/$name" -c "$BENCH_TMP/$name-tls.yaml" --concurrency 1) ;;
	haproxy)
		tlst_haproxy_config >"$BENCH_TMP/haproxy-tls.cfg"
		cmd=(haproxy -db -f "$BENCH_TMP/haproxy-tls.cfg") ;;
	nginx)
		rm -f "$BENCH_TMP/ngx-sut/resume.log"
		tlst_nginx_config >"$BENCH_TMP/nginx-tls.conf"
		cmd=(nginx -p "$BENCH_TMP/ngx-sut" -e "$BENCH_TMP/ngx-sut/error.log" -c "$BENCH_TMP/nginx-tls.conf") ;;
	*) log "tls: unknown contender $name"; return 1 ;;
	esac
	printf '=== %s ===\n' "$(date -u +%FT%TZ)" >>"$logf"
	start_proc "$SUT_CPU" "${TP[tcp]}" "$logf" "${cmd[@]}" || return 1
	SRV_PID=$PROC_PID
	for k in ecdsa rsa resume; do
		wait_listening "${TP[$k]}" || { log "tls: $name does not listen on :${TP[$k]} ($k)"; stop_pid "$SRV_PID"; return 1; }
	done
}

wait_listening() {
	local i
	for ((i = 0; i < 50; i++)); do port_listening "$1" && return 0; sleep 0.1; done
	return 1
}

# tlst_load OUT FENCE_S NICE TLSLOAD_ARGS...: tlsload on $LG_CPU at priority NICE in
# an autogroup of its own, in the background (TLSLOAD_PID); tlst_wait reaps it.
tlst_load() {
	local out=$1 fence=$2 nice=$3
	shift 3
	rm -f "$out"
	# shellcheck disable=SC2016 # the inner sh expands $1 and $@
	timeout --foreground --kill-after=5 "$fence" setsid sh -c 'n=$1; shift
		[ -w /proc/self/autogroup ] && echo "$n" >/proc/self/autogroup 2>/dev/null
		exec nice -n "$n" "$@"' sh "$nice" taskset -c "$LG_CPU" "$BIN/tlsload" -clk-tck "$CLK_TCK" -load-cpu "$LG_CPU" -out "$out" "$@" \
		2>>"$BENCH_TMP/tlsload.log" &
	TLSLOAD_PID=$!
	track "$TLSLOAD_PID"
}
tlst_wait() {
	wait "$1"
	untrack "$1"
}

# tlst_labels SRV REP TEST: sets TL to tlsload's -label flags for one row.
tlst_labels() {
	TL=(-label scenario=tls -label "server=$1" -label "rep=$2" -label "test=$3" -label "cell=$3")
}

# tlst_row OUT SRV REP TEST PID RUNS [EXTRA_JSON_MEMBERS]: the tlsload result as a row
# (EXTRA joins its metrics), or a failure row.
tlst_row() {
	local out=$1 srv=$2 rep=$3 test=$4 pid=$5 runs=$6 extra=${7:-} row
	if [[ ! -s $out ]]; then
		metrics_line tls "$srv" "$rep" "$test" "$test" '{}' "tlsload produced no output: $(tail -1 "$BENCH_TMP/tlsload.log" 2>/dev/null)" >>"$runs"
		log "  $test $srv: !! tlsload produced no output"
		return
	fi
	row=$(cat "$out")
	if [[ -n $extra && $row == *'"metrics":{"'* ]]; then
		row=${row/\"metrics\":\{/\"metrics\":\{$extra,}
	fi
	if sut_dead "$pid" && [[ $row != *'"failure"'* ]]; then
		row=${row%\}},\"failure\":\"$srv exited during the run\"\}
	fi
	echo "$row" >>"$runs"
	log "  $test $srv: $(tlst_brief "$row")"
}

# tlst_brief ROW: the figures worth a log line.
tlst_brief() {
	grep -oE '"(rate|cpu_us_per_op|cpu_us_per_req|p50_us|p99_us|sut_util|client_util|load_cpu_busy|resumed|ops|server_resumed|server_full|bytes_per_conn|conns_open|rps)":[0-9.e+-]+|"negotiated":\{[^}]*\}|"last":"[^"]+"|"failure":"[^"]+"' <<<"$1" | tr '\n' ' '
}

# tlst_server_counts SRV: "FULL RESUMED" handshakes of the resume listener so far, from
# the proxy's own counters (Portico: its /stats; HAProxy: the frontend's ssl_sess and
# ssl_reused_sess; nginx: its $ssl_session_reused log, "." and "r" per request, read
# once the 500 ms buffer flush has passed). Empty when unavailable.
tlst_server_counts() {
	case $1 in
	portico | portico-base)
		# ssl.handshake counts every handshake, ssl.session_reused the resumed ones
		# (Envoy's meaning); the listener's totals, not its per-worker lines.
		curl -s --max-time 2 "http://127.0.0.1:${TP[admin]}/stats" | awk '
			$1 == "listener.https_resume.ssl.handshake:" { h = $2 } $1 == "listener.https_resume.ssl.session_reused:" { r = $2 }
			END { if (h != "") print h - r, r + 0 }' ;;
	haproxy)
		curl -s --max-time 2 "http://127.0.0.1:${TP[admin]}/stats;csv" | awk -F, '
			NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "ssl_sess") s = i; if ($i == "ssl_reused_sess") r = i } }
			$1 == "https_resume" && $2 == "FRONTEND" && s && r { print $s, $r }' ;;
	nginx)
		sleep 0.7
		awk '{ if ($1 == "r") r++; else f++ } END { print f + 0, r + 0 }' "$BENCH_TMP/ngx-sut/resume.log" 2>/dev/null ;;
	esac
}

# tlst_hs_cell SRV REP TEST PORT PID RUNS TLSLOAD_ARGS...: handshakes (plus one GET
# each) for the warm-up and the window; for the resume cells the server's own counts
# of full and resumed handshakes across the cell join the row.
tlst_hs_cell() {
	local srv=$1 rep=$2 test=$3 port=$4 pid=$5 runs=$6 c0="" c1 extra=""
	shift 6
	[[ $test == resume* ]] && c0=$(tlst_server_counts "$srv")
	tlst_labels "$srv" "$rep" "$test"
	tlst_load "$BENCH_TMP/tls-hs.json" $((PX_DURATION + 32)) "$BENCH_NICE" -mode handshake -addr "127.0.0.1:$port" \
		-sni "$SNI_A" -conc "$TLS_HS_CONC" -warmup "$TLS_WARM" -duration "${PX_DURATION}s" -pid "$pid" "${TL[@]}" "$@"
	tlst_wait "$TLSLOAD_PID"
	if [[ $test == resume* ]]; then
		c1=$(tlst_server_counts "$srv")
		if [[ -n $c0 && -n $c1 ]]; then
			extra=$(awk -v a="$c0" -v b="$c1" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "\"server_full\":%d,\"server_resumed\":%d", y[1] - x[1], y[2] - x[2] }')
		elif [[ -n $c1 ]]; then
			extra=$(awk -v b="$c1" 'BEGIN { split(b, y, " "); printf "\"server_full\":%d,\"server_resumed\":%d", y[1], y[2] }')
		fi
	fi
	tlst_row "$BENCH_TMP/tls-hs.json" "$srv" "$rep" "$test" "$pid" "$runs" "$extra"
}

# tlst_bulk_cell SRV REP PID RUNS: one curl download of /big through the TLS-terminating
# TCP proxy, TLS 1.3 AES-128-GCM over X25519 (every server's first choice), curl on
# $LG_CPU.
tlst_bulk_cell() {
	local srv=$1 rep=$2 pid=$3 runs=$4 t0 t1 out fail="" w
	t0=$(cpu_ticks "$pid")
	out=$(timeout --kill-after=5 120 "${BOOSTED[@]}" taskset -c "$LG_CPU" curl -sk -o /dev/null --max-time 110 \
		--tlsv1.3 --tls13-ciphers TLS_AES_128_GCM_SHA256 --curves X25519 \
		-w '%{speed_download} %{size_download} %{http_code} %{time_total}' "https://$SNI_A:${TP[tcp]}/big")
	t1=$(cpu_ticks "$pid")
	read -r speed size code tt <<<"$out"
	[[ ${code:-0} == 200 ]] || fail="curl: http ${code:-none} size ${size:-0}"
	sut_dead "$pid" && fail="$srv exited during the run"
	w=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v s="${speed:-0}" -v n="${size:-0}" -v t="${tt:-0}" 'BEGIN {
		printf "{\"mb_per_s\":%.1f,\"bytes\":%s,\"seconds\":%s", s / 1e6, n, t
		if (n > 0) printf ",\"cpu_s\":%.3f,\"cpu_us_per_mb\":%.2f", (b - a) / hz, (b - a) / hz / (n / 1e6) * 1e6
		printf "}" }')
	metrics_line tls "$srv" "$rep" bulk "$BULK_BYTES" "$w" "$fail" >>"$runs"
	log "  bulk $srv: $w${fail:+ !! $fail}"
}

# tlst_flood_cell SRV REP PID RUNS: the probe's keep-alive latency alone, then while a
# full-handshake flood (ECDSA, TLS 1.3, $TLS_HS_CONC concurrent, low priority) hits the
# same listener; the flood's own row says how many handshakes it made.
tlst_flood_cell() {
	local srv=$1 rep=$2 pid=$3 runs=$4 port=${TP[ecdsa]} fl probe
	probe=(-mode probe -addr "127.0.0.1:$port" -sni "$SNI_A" -conns "$TLS_PROBE_CONNS" -interval "$TLS_PROBE_INTERVAL"
		-warmup "$TLS_WARM" -duration "${PX_DURATION}s" -pid "$pid")
	tlst_labels "$srv" "$rep" probe-alone
	tlst_load "$BENCH_TMP/tls-probe.json" $((PX_DURATION + 32)) "$TLS_PROBE_NICE" "${probe[@]}" "${TL[@]}"
	tlst_wait "$TLSLOAD_PID"
	tlst_row "$BENCH_TMP/tls-probe.json" "$srv" "$rep" probe-alone "$pid" "$runs"
	# The flood starts first and ends after the probe; its window covers the probe's.
	tlst_labels "$srv" "$rep" flood
	tlst_load "$BENCH_TMP/tls-flood.json" $((PX_DURATION + 42)) "$TLS_FLOOD_NICE" -mode handshake -addr "127.0.0.1:$port" \
		-sni "$SNI_A" -path= -conc "$TLS_HS_CONC" -warmup 300ms -duration "$(awk -v w="$TLS_WARM_S" -v d="$PX_DURATION" 'BEGIN { printf "%.1fs", w + d + 0.6 }')" \
		"${TL[@]}"
	fl=$TLSLOAD_PID
	sleep 0.4
	tlst_labels "$srv" "$rep" probe-flood
	tlst_load "$BENCH_TMP/tls-probe.json" $((PX_DURATION + 32)) "$TLS_PROBE_NICE" "${probe[@]}" "${TL[@]}"
	tlst_wait "$TLSLOAD_PID"
	tlst_wait "$fl"
	tlst_row "$BENCH_TMP/tls-probe.json" "$srv" "$rep" probe-flood "$pid" "$runs"
	tlst_row "$BENCH_TMP/tls-flood.json" "$srv" "$rep" flood "$pid" "$runs"
}

# tlst_idle_cell SRV REP RUNS: a fresh proxy; TLS_IDLE_CONNS established idle TLS
# connections (ECDSA, TLS 1.3, one GET each) and the SUT's RSS growth per connection.
tlst_idle_cell() {
	local srv=$1 rep=$2 runs=$3
	if ! tlst_start "$srv"; then
		metrics_line tls "$srv" "$rep" idle "$TLS_IDLE_CONNS conns" '{}' "did not start: $(start_failure "$LOGDIR/tls-proxy-$srv.log")" >>"$runs"
		return
	fi
	sleep 0.5 # let the baseline settle
	tlst_labels "$srv" "$rep" idle
	tlst_load "$BENCH_TMP/tls-idle.json" 150 "$BENCH_NICE" -mode idle -addr "127.0.0.1:${TP[ecdsa]}" -sni "$SNI_A" \
		-conns "$TLS_IDLE_CONNS" -settle "$TLS_SETTLE" -pid "$SRV_PID" "${TL[@]}"
	tlst_wait "$TLSLOAD_PID"
	tlst_row "$BENCH_TMP/tls-idle.json" "$srv" "$rep" idle "$SRV_PID" "$runs"
	stop_pid "$SRV_PID"
	sleep 0.3
}

# tlst_portico_ok: drops every Portico contender whose binary does not validate the TLS
# bootstrap (it cannot terminate TLS from config yet), saying why.
tlst_portico_ok() {
	local keep=() s
	for s in "${TLS_SERVERS[@]}"; do
		if [[ $s == portico* ]]; then
			tlst_pick_ports "$s" || return 1
			tlst_portico_config >"$BENCH_TMP/$s-tls-validate.yaml"
			if ! "$BIN/$s" validate -c "$BENCH_TMP/$s-tls-validate.yaml" >"$BENCH_TMP/$s-tls-validate.log" 2>&1; then
				log "tls: $s does not take the TLS bootstrap, left out: $(start_failure "$BENCH_TMP/$s-tls-validate.log")"
				TLS_LEFT_OUT+="$s: $(start_failure "$BENCH_TMP/$s-tls-validate.log"); "
				continue
			fi
		fi
		keep+=("$s")
	done
	TLS_SERVERS=("${keep[@]}")
}

# Per repetition, each contender in rotated order on a fresh proxy: full handshakes
# (ECDSA and RSA, TLS 1.3 and 1.2, X25519; Portico also X25519MLKEM768), resumed
# handshakes (TLS 1.3 and 1.2), keep-alive requests (wrk), a bulk download (curl), the
# probe alone and under a handshake flood; then the idle-memory cell on a fresh proxy.
scenario_tls() {
	local runs=$BENCH_TMP/tls.jsonl rep srv pid TLS_LEFT_OUT=""
	: >"$runs"
	proxy_init || return
	mapfile -t TLS_SERVERS < <(only_built "${TLS_SERVERS[@]}")
	tlst_certs "$BENCH_TMP/tls" || { log "tls: openssl could not make the certificates"; return; }
	tlst_portico_ok || return
	((${#TLS_SERVERS[@]})) || { log "tls: no contender left"; return; }
	local TLS_WARM TLS_WARM_S TLS_SETTLE TLS_IDLE_CONNS=$TLS_IDLE_CONNS
	local TLS_PROBE_NICE=${BENCH_TLS_PROBE_NICE:-$((BENCH_NICE - 5 < -20 ? -20 : BENCH_NICE - 5))}
	local TLS_FLOOD_NICE=${BENCH_TLS_FLOOD_NICE:-$BENCH_NICE}
	if $QUICK; then
		TLS_WARM=300ms TLS_WARM_S=0.3 TLS_SETTLE=500ms TLS_IDLE_CONNS=${BENCH_TLS_IDLE_CONNS:-500}
	else
		TLS_WARM=${PX_WARMUP}s TLS_WARM_S=$PX_WARMUP TLS_SETTLE=2s
	fi
	start_backend || { log "nginx backend did not start"; return; }
	for ((rep = 1; rep <= REPS; rep++)); do
		for srv in $(rotate_list "$rep" "${TLS_SERVERS[@]}"); do
			log "tls rep $rep/$REPS: $srv"
			if ! tlst_start "$srv"; then
				metrics_line tls "$srv" "$rep" ecdsa-tls13 ecdsa-tls13 '{}' "did not start: $(start_failure "$LOGDIR/tls-proxy-$srv.log")" >>"$runs"
				continue
			fi
			pid=$SRV_PID
			tlst_hs_cell "$srv" "$rep" ecdsa-tls13 "${TP[ecdsa]}" "$pid" "$runs" -version 1.3
			tlst_hs_cell "$srv" "$rep" ecdsa-tls12 "${TP[ecdsa]}" "$pid" "$runs" -version 1.2
			tlst_hs_cell "$srv" "$rep" rsa-tls13 "${TP[rsa]}" "$pid" "$runs" -version 1.3
			tlst_hs_cell "$srv" "$rep" rsa-tls12 "${TP[rsa]}" "$pid" "$runs" -version 1.2
			[[ $srv == portico* ]] && tlst_hs_cell "$srv" "$rep" ecdsa-tls13-mlkem "${TP[mlkem]}" "$pid" "$runs" -version 1.3 -curves default
			tlst_hs_cell "$srv" "$rep" resume-tls13 "${TP[resume]}" "$pid" "$runs" -version 1.3 -resume
			tlst_hs_cell "$srv" "$rep" resume-tls12 "${TP[resume]}" "$pid" "$runs" -version 1.2 -resume
			wrk_cell tls "$srv" "$rep" keepalive "https://$SNI_A:${TP[ecdsa]}/" "$pid" "$runs"
			tlst_bulk_cell "$srv" "$rep" "$pid" "$runs"
			tlst_flood_cell "$srv" "$rep" "$pid" "$runs"
			stop_pid "$pid"
			sleep 0.3
			tlst_idle_cell "$srv" "$rep" "$runs"
		done
	done
	stop_pid "$BACKEND_PID"
	write_px_results tls "$runs" "$(printf '{"reps":%s,"warmup_s":%s,"duration_s":%s,"handshake_conc":%s,"wrk_conns":%s,"bulk_bytes":"%s","idle_conns":%s,"probe_conns":%s,"probe_interval":"%s","probe_nice":%s,"flood_nice":%s,"flood_requests":false,"certs":"ECDSA P-256 and RSA-2048 leaves of a throwaway ECDSA CA, chain not verified by the client","servers":"%s","left_out":"%s"}' \
		"$REPS" "$TLS_WARM_S" "$PX_DURATION" "$TLS_HS_CONC" "$WRK_CONNS" "$BULK_BYTES" "$TLS_IDLE_CONNS" "$TLS_PROBE_CONNS" "$TLS_PROBE_INTERVAL" \
		"$TLS_PROBE_NICE" "$TLS_FLOOD_NICE" "${TLS_SERVERS[*]}" "$TLS_LEFT_OUT")"
}
