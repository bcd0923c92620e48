# shellcheck shell=bash
# The xds scenario of scripts/bench.sh (issue 14): a fleet of Portico proxies configured
# live over ADS by a real control plane. Sourced by bench.sh after lib-bench.sh; uses its
# helpers (BOOSTED, track, write_results, json_str, ...).
#
# One run of bench/cmd/xdsbench (see its doc comment) does it all: go-control-plane's ADS
# server and the backends in-process, pinned with the whole of xdsbench to $LG_CPU;
# $BENCH_XDS_PROXIES Portico processes, which xdsbench starts pinned to $SUT_CPU (the
# three share it, as one machine's proxies share its cores), each on its own loopback
# address 127.0.1.<i>; then again with one proxy, which separates what one proxy takes
# from what sharing the CPU adds; both with --drain-time-s 1, so that the versions an
# update replaces are let go of before the steady-state sample (Portico, like Envoy,
# keeps a replaced listener version, connections or not, for the drain time: 600 s by
# default); the 3 again over delta xDS (DELTA_GRPC); then one proxy with the default
# drain time, to show what that retention costs. $BENCH_XDS_FLEETS lists the runs:
# PROXIES[:DRAIN_S[:delta]] each. For every size in $BENCH_XDS_SIZES (listeners per proxy, as many
# STATIC clusters), $REPS times with the sizes' order rotated per repetition: the size's
# initial snapshot, then $BENCH_XDS_UPDATES updates taking in turn a filter-chain-only LDS
# change of every listener, a cluster-set change (LDS and CDS), and one listener's
# change (state of the world still sends all of them, delta one), each timed from SetSnapshot to the last
# proxy's ACK of every changed type and followed by a serve check of a sample of
# listeners; then the steady-state memory and idle CPU.
#
# A Portico binary without the xDS bootstrap (it exits, or opens no ADS stream within
# 15 s) gives a row with "unavailable" (the reason), not a failure.

# The fleets, one xdsbench run each: PROXIES[:DRAIN_S[:delta]] (without DRAIN_S, or
# with it empty, Portico's default drain time; with delta, DELTA_GRPC).
XDS_FLEETS=${BENCH_XDS_FLEETS:-3:1 3:1:delta 1:1 1}
XDS_SIZES=${BENCH_XDS_SIZES:-10,100,1000}
XDS_UPDATES=${BENCH_XDS_UPDATES:-12}
# Bound of the whole run (no update starts after it); the timeout fence is a little longer.
XDS_MAX_S=${BENCH_XDS_MAX_S:-900}

scenario_xds() {
	local runs=$BENCH_TMP/xds.jsonl sizes=$XDS_SIZES updates=$XDS_UPDATES max_s=$XDS_MAX_S fleets=$XDS_FLEETS fleet
	: >"$runs"
	XDS_EXTRA=()
	if $QUICK; then
		# The smoke: small sizes, three updates each (one of each kind), short steady
		# samples.
		sizes=${BENCH_XDS_SIZES:-10,100} updates=${BENCH_XDS_UPDATES:-3} max_s=${BENCH_XDS_MAX_S:-60}
		fleets=${BENCH_XDS_FLEETS:-3:1 1:1:delta}
		XDS_EXTRA=(-settle 1s -idle-window 500ms)
	fi
	# Built here rather than in build_bins: only this scenario uses it (and its
	# go-control-plane and gRPC).
	(cd "$ROOT/bench" && go build -o "$BIN/" ./cmd/xdsbench) || { log "xds: xdsbench does not build"; return; }
	if ! have_bin portico; then
		log "xds: no portico binary"
		printf '{"mode":"xds-meta","labels":{"scenario":"xds","server":"portico","rep":"0","test":"meta","cell":"meta"},"unavailable":"no portico binary","failure":""}\n' >>"$runs"
	else
		for fleet in $fleets; do
			xds_fleet "$fleet" "$sizes" "$updates" "$max_s" "$runs"
		done
	fi
	write_results xds "$runs" "$(printf '{"reps":%s,"fleets":"%s","sizes":"%s","updates":%s,"max_duration_s":%s,"update_kinds":"initial, then in turn chain (LDS: every listener tcp_proxy to another cluster, new stat_prefix), clusters (CDS: every cluster renamed; LDS follows), one (LDS: listener 0 alone)","listener":"tcp_proxy to a STATIC cluster of one endpoint","control_plane":"go-control-plane v0.14 SnapshotCache ads=true, in-process","concurrency":1}' \
		"$REPS" "$fleets" "$sizes" "$updates" "$max_s")"
}

# xds_fleet PROXIES[:DRAIN_S[:delta]] SIZES UPDATES MAX_S RUNS: one xdsbench run with a
# fleet of PROXIES (with --drain-time-s DRAIN_S when given, over delta xDS with
# "delta"); its rows (or a failure row) are appended to RUNS.
xds_fleet() {
	local n drain proto sizes=$2 updates=$3 max_s=$4 runs=$5 p rc f
	IFS=: read -r n drain proto <<<"$1"
	local tag=$n${drain:+-d$drain}${proto:+-$proto} args=() dir out
	dir=$BENCH_TMP/xds-$tag out=$BENCH_TMP/xds-$tag.jsonl
	[[ -n $drain ]] && args=(-proxy-args "--drain-time-s $drain" -label "drain_s=$drain")
	[[ $proto == delta ]] && args+=(-delta)
	mkdir -p "$dir"
	log "xds: $n proxies${proto:+ ($proto xDS)}${drain:+ (--drain-time-s $drain)} on CPU $SUT_CPU, control plane on CPU $LG_CPU; sizes $sizes, $REPS reps, $updates updates per size and rep"
	timeout --foreground --kill-after=10 $((max_s + 180)) "${BOOSTED[@]}" taskset -c "$LG_CPU" \
		"$BIN/xdsbench" -portico "$BIN/portico" -proxies "$n" -sizes "$sizes" -reps "$REPS" \
		-updates "$updates" -sut-cpu "$SUT_CPU" -clk-tck "$CLK_TCK" -max-duration "${max_s}s" \
		"${args[@]}" "${XDS_EXTRA[@]}" -dir "$dir" -out "$out" 2>>"$LOGDIR/xds.log" &
	p=$!
	track "$p"
	wait "$p"
	rc=$?
	untrack "$p"
	for f in "$dir"/proxy-*.log; do
		[[ -f $f ]] && cp "$f" "$LOGDIR/xds-$tag-$(basename "$f")"
	done
	if [[ -s $out ]]; then
		cat "$out" >>"$runs"
		xds_brief "$out"
	else
		log "xds: !! xdsbench exit $rc without output: $(tail -1 "$LOGDIR/xds.log" 2>/dev/null)"
		printf '{"mode":"xds-meta","labels":{"scenario":"xds","server":"portico","rep":"0","test":"meta","cell":"meta","proxies":"%s","drain_s":"%s","protocol":"%s"},"failure":%s}\n' \
			"$n" "$drain" "${proto:-sotw}" "$(json_str "xdsbench exit $rc without output: $(tail -1 "$LOGDIR/xds.log" 2>/dev/null)")" >>"$runs"
	fi
}

# xds_brief OUT: a log line per size and kind (median all-ACKed ms), and the run's
# outcome, from xdsbench's rows.
xds_brief() {
	awk '
	/"mode":"xds-update"/ {
		match($0, /"listeners":[0-9]+/); n = substr($0, RSTART + 12, RLENGTH - 12)
		match($0, /"kind":"[a-z]+"/); k = substr($0, RSTART + 8, RLENGTH - 9)
		match($0, /"ack_ms":[0-9.]+/); a = substr($0, RSTART + 9, RLENGTH - 9) + 0
		key = n " " k; cnt[key]++; sum[key] += a; if (a > mx[key]) mx[key] = a
		if ($0 ~ /"failure":"[^"]/) fails++
	}
	/"unavailable":"/ { match($0, /"unavailable":"[^"]*"/); print "  xds: not available: " substr($0, RSTART + 15, RLENGTH - 16) }
	/"mode":"xds-meta"/ && /"failure":"[^"]/ { match($0, /"failure":"[^"]*"/); print "  xds: !! " substr($0, RSTART + 11, RLENGTH - 12) }
	END {
		for (key in cnt) printf "  xds %s: %d updates, all ACKed mean %.0f ms, max %.0f ms\n", key, cnt[key], sum[key] / cnt[key], mx[key]
		if (fails) printf "  xds: !! %d updates failed\n", fails
	}' "$1" | sort -n -k2 >&2
}
