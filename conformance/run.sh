#!/usr/bin/env bash
# Runs public HTTP/1.1 conformance / desync suites against Portico (and, as baselines,
# nginx and HAProxy in front of the same backend, and the backend alone) on loopback,
# writes per-case verdicts and compares Portico's with the committed baseline.
#
#   conformance/run.sh            run, print the summary, compare with baseline.tsv
#   conformance/run.sh --update   also rewrite conformance/results.tsv and baseline.tsv
#
# Exit: 0 no regression; 1 a case Portico passes in baseline.tsv fails now (or gave no
# verdict); 2 the run could not be set up (a suite's source, deno, a build, a server).
#
# Environment (all optional):
#   TARGETS       default "portico nginx haproxy echo" (portico is always run)
#   SUITES        default "h1spec h1close smuggler" (h1close: conformance/h1close.py
#                 replays h1spec's requests, checking every response and the close)
#   H1SPEC_SRC    a git dir or clone of uNetworking/h1spec holding H1SPEC_COMMIT
#   SMUGGLER_SRC  a git dir or clone of defparam/smuggler holding SMUGGLER_COMMIT
#   DENO          a deno binary (else deno on PATH, else npm installs deno@DENO_VERSION
#                 into the cache)
#   CONF_CACHE    where fetched suites and deno are kept (~/.cache/portico-conformance)
#   SMUGGLER_TIMEOUT  smuggler's per-probe socket timeout, seconds (default 2)
#
# Nothing third-party is committed: the suites are read at pinned commits from a local
# git dir (the search tool's mirror, or a clone this script makes when the network
# allows) into a scratch directory that is removed at exit.
# The run_<suite> functions are called by name (run_$s): shellcheck sees no caller.
# shellcheck disable=SC2317
set -euo pipefail

H1SPEC_COMMIT=f0a5650a20c575fbea0f7179a3a9cfa50f20ba6e
SMUGGLER_COMMIT=2be871e6151ce85167a277fab21c74c851d8b20b
DENO_VERSION=2.9.6
DENOBIN=
SMUGGLER_CONFIGS="default exhaustive doubles"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
UPDATE=0
[[ "${1:-}" == "--update" ]] && UPDATE=1
if ((UPDATE)) && [[ -n "${TARGETS:-}${SUITES:-}" ]]; then
	echo "conformance: --update records the full run: unset TARGETS and SUITES" >&2
	exit 2
fi
TARGETS=${TARGETS:-"portico nginx haproxy echo"}
[[ " $TARGETS " == *" portico "* ]] || TARGETS="portico $TARGETS"
SUITES=${SUITES:-"h1spec h1close smuggler"}
CONF_CACHE=${CONF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portico-conformance}
SMUGGLER_TIMEOUT=${SMUGGLER_TIMEOUT:-2}

WORK=$(mktemp -d /tmp/portico-conf.XXXXXX)
PIDS=()

cleanup() {
	local pid i
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for ((i = 0; i < 20; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

die() {
	echo "conformance: $*" >&2
	exit 2
}

# --- ports ------------------------------------------------------------------------
USED=""
pick_port() {
	local i p listening
	listening=$(ss -Htln 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! grep -qx "$p" <<<"$listening" && [[ " $USED " != *" $p "* ]]; then
			USED="$USED $p"
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_http() { # port pid name log
	local i
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$2" 2>/dev/null; then
			cat "$4" >&2 || true
			die "$3 exited at start"
		fi
		if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"; then
			return 0
		fi
		sleep 0.1
	done
	cat "$4" >&2 || true
	die "$3 did not answer on 127.0.0.1:$1"
}

# --- third-party sources, at pinned commits -----------------------------------------
gitdir_with() { # commit candidate-dirs...
	local c=$1 d
	shift
	for d in "$@"; do
		[[ -n "$d" && -d "$d" ]] || continue
		if git --git-dir="$d" cat-file -e "$c^{commit}" 2>/dev/null; then
			echo "$d"
			return 0
		fi
		if git --git-dir="$d/.git" cat-file -e "$c^{commit}" 2>/dev/null; then
			echo "$d/.git"
			return 0
		fi
	done
	return 1
}

suite_src() { # name owner/repo commit env-override
	local name=$1 repo=$2 commit=$3 override=$4 d
	local mirror="/work/.mirror/${repo/\//+}/repo"
	if d=$(gitdir_with "$commit" "$override" "$mirror" "$CONF_CACHE/$name.git"); then
		echo "$d"
		return 0
	fi
	mkdir -p "$CONF_CACHE"
	if timeout 120 git clone --quiet --bare "https://github.com/$repo" "$CONF_CACHE/$name.git.tmp" >&2 2>/dev/null; then
		mv "$CONF_CACHE/$name.git.tmp" "$CONF_CACHE/$name.git"
		gitdir_with "$commit" "$CONF_CACHE/$name.git" && return 0
	fi
	rm -rf "$CONF_CACHE/$name.git.tmp"
	return 1
}

find_deno() {
	if [[ -n "${DENO:-}" ]]; then
		echo "$DENO"
	elif command -v deno >/dev/null; then
		command -v deno
	else
		local d="$CONF_CACHE/deno-$DENO_VERSION"
		if [[ ! -x "$d/node_modules/.bin/deno" ]]; then
			mkdir -p "$d"
			timeout 300 npm install --silent --no-audit --no-fund --prefix "$d" "deno@$DENO_VERSION" >&2 ||
				return 1
		fi
		echo "$d/node_modules/.bin/deno"
	fi
}

# --- servers ----------------------------------------------------------------------
fill() { # template out
	sed -e "s|@WORK@|$WORK|g" -e "s|@LISTEN@|$LISTEN|g" -e "s|@BACKEND@|$BACKEND|g" \
		-e "s|@ADMIN@|$ADMIN|g" "$1" >"$2"
}

declare -A PORT
start_servers() {
	BACKEND=$(pick_port)
	(cd "$ROOT" && go build -o "$WORK/portico" ./cmd/portico && go build -o "$WORK/echo" ./conformance/echo) ||
		die "go build failed"
	"$WORK/echo" -addr "127.0.0.1:$BACKEND" >"$WORK/echo.log" 2>&1 &
	PIDS+=($!)
	wait_http "$BACKEND" $! echo "$WORK/echo.log"
	PORT[echo]=$BACKEND
	local t
	for t in $TARGETS; do
		LISTEN=$(pick_port)
		case $t in
		echo) continue ;;
		portico)
			ADMIN=$(pick_port)
			fill "$HERE/portico.yaml.in" "$WORK/portico.yaml"
			"$WORK/portico" -c "$WORK/portico.yaml" --concurrency 1 >"$WORK/portico.log" 2>&1 &
			;;
		nginx)
			mkdir -p "$WORK/nginx-body"
			fill "$HERE/nginx.conf.in" "$WORK/nginx.conf"
			nginx -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/nginx-error.log" >"$WORK/nginx.log" 2>&1 &
			;;
		haproxy)
			fill "$HERE/haproxy.cfg.in" "$WORK/haproxy.cfg"
			haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
			;;
		*) die "unknown target $t" ;;
		esac
		PIDS+=($!)
		wait_http "$LISTEN" $! "$t" "$WORK/$t.log"
		PORT[$t]=$LISTEN
	done
}

# --- suites -------------------------------------------------------------------------
# Each writes rows "target<TAB>suite<TAB>case<TAB>pass|fail<TAB>detail" to stdout.

run_h1spec() { # target port
	local out="$WORK/h1spec-$1.out"
	DENO_DIR="$WORK/deno-dir" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 \
		timeout 60 "$DENOBIN" run --allow-net="127.0.0.1:$2" "$WORK/h1spec/http_test.ts" 127.0.0.1 "$2" \
		>"$out" 2>&1 || true
	# "✅ Name: detail" / "❌ Name: detail"; cases that printed nothing are reported too.
	awk -v t="$1" -F'\t' '
		FNR == NR { want[$0] = 1; order[++n] = $0; next }
		/^(✅|❌) / {
			v = ($0 ~ /^✅/) ? "pass" : "fail"
			s = $0; sub(/^[^ ]+ /, "", s)
			i = index(s, ": "); name = substr(s, 1, i - 1); det = substr(s, i + 2)
			got[name] = v "\t" det
		}
		END {
			for (k = 1; k <= n; k++) {
				c = order[k]
				printf "%s\th1spec\t%s\t%s\n", t, c, (c in got) ? got[c] : "fail\tno verdict printed"
			}
		}' "$WORK/h1spec/cases.txt" "$out"
}

run_h1close() { # target port
	timeout 120 python3 "$HERE/h1close.py" "$1" "$2" "$WORK/h1spec/http_test.ts" ||
		echo "$1	h1close	(run)	fail	h1close.py failed"
}

run_smuggler() { # target port
	local cfg log
	for cfg in $SMUGGLER_CONFIGS; do
		log="$WORK/smuggler-$1-$cfg.log"
		(cd "$WORK/smuggler" && timeout 600 python3 smuggler.py -u "http://127.0.0.1:$2/" --no-color \
			-t "$SMUGGLER_TIMEOUT" -c "$cfg.py" -l "$log" >"$WORK/smuggler-$1-$cfg.out" 2>&1) || true
		# "[name]   : OK (TECL: 0.00 - 400) (CLTE: 0.00 - 400)" or another verdict.
		awk -v t="$1" -v cfg="$cfg" -v port="$2" '
			/^\[\+\]/ || /^\[CRITICAL\]/ { next }
			/^\[/ {
				name = $0; sub(/^\[/, "", name); sub(/\].*/, "", name)
				msg = $0; sub(/^\[[^]]*\] *: */, "", msg)
				gsub("http://127.0.0.1:" port, "http://TARGET", msg)
				if (msg ~ /^OK /) {
					gsub(/[0-9]+\.[0-9]+ - /, "", msg); sub(/^OK /, "", msg)
					printf "%s\tsmuggler\t%s/%s\tpass\t%s\n", t, cfg, name, msg
				} else {
					printf "%s\tsmuggler\t%s/%s\tfail\t%s\n", t, cfg, name, msg
				}
			}' "$log" 2>/dev/null || true
	done
}

prepare_suites() {
	local s d
	for s in $SUITES; do
		case $s in
		h1spec)
			d=$(suite_src h1spec uNetworking/h1spec "$H1SPEC_COMMIT" "${H1SPEC_SRC:-}") ||
				die "uNetworking/h1spec at $H1SPEC_COMMIT not found (set H1SPEC_SRC)"
			mkdir -p "$WORK/h1spec"
			git --git-dir="$d" show "$H1SPEC_COMMIT:http_test.ts" >"$WORK/h1spec/http_test.ts"
			sed -n 's/^ *description: "\(.*\)",$/\1/p' "$WORK/h1spec/http_test.ts" >"$WORK/h1spec/cases.txt"
			DENOBIN=$(find_deno) || die "no deno (set DENO, or let npm install deno@$DENO_VERSION)"
			;;
		h1close)
			command -v python3 >/dev/null || die "h1close needs python3"
			[[ " $SUITES " == *" h1spec "* ]] || die "h1close reads h1spec's cases: list h1spec in SUITES"
			;;
		smuggler)
			command -v python3 >/dev/null || die "smuggler needs python3"
			d=$(suite_src smuggler defparam/smuggler "$SMUGGLER_COMMIT" "${SMUGGLER_SRC:-}") ||
				die "defparam/smuggler at $SMUGGLER_COMMIT not found (set SMUGGLER_SRC)"
			mkdir -p "$WORK/smuggler"
			git --git-dir="$d" archive "$SMUGGLER_COMMIT" | tar -x -C "$WORK/smuggler"
			;;
		*) die "unknown suite $s" ;;
		esac
	done
}

# --- main ---------------------------------------------------------------------------
prepare_suites
start_servers
RES="$WORK/results.tsv"
: >"$RES"
for t in $TARGETS; do
	for s in $SUITES; do
		"run_$s" "$t" "${PORT[$t]}" >>"$RES"
	done
done

echo "score (passed/total):"
for s in $SUITES; do
	for t in $TARGETS; do
		awk -F'\t' -v t="$t" -v s="$s" '$1 == t && $2 == s { n++; if ($4 == "pass") p++ }
			END { printf "  %-9s %-8s %d/%d\n", s, t, p, n }' "$RES"
	done
done
echo "failures:"
awk -F'\t' '$4 == "fail" { printf "  %s %s %s: %s\n", $1, $2, $3, $5 }' "$RES"

# Regressions: a case Portico passes in the baseline that it fails now or did not run.
BASE="$HERE/baseline.tsv"
rc=0
if [[ -f "$BASE" ]]; then
	# Only the suites that ran are compared (SUITES may name a subset).
	reg=$(awk -F'\t' -v suites=" $SUITES " '
		FNR == NR { if ($1 == "portico") now[$2 "\t" $3] = $4; next }
		/^#/ { next }
		$1 == "portico" && $4 == "pass" && index(suites, " " $2 " ") &&
			now[$2 "\t" $3] != "pass" { print "  " $2 " " $3 }' "$RES" "$BASE")
	if [[ -n "$reg" ]]; then
		echo "REGRESSIONS against conformance/baseline.tsv:"
		echo "$reg"
		rc=1
	else
		echo "no regression against conformance/baseline.tsv"
	fi
else
	echo "no conformance/baseline.tsv yet"
fi

if ((UPDATE)); then
	{
		echo "# command: conformance/run.sh --update ($(date -u +%Y-%m-%d))"
		echo "# target	suite	case	verdict	detail"
		echo "# h1spec uNetworking/h1spec@$H1SPEC_COMMIT (deno $("$DENOBIN" --version 2>/dev/null | head -1 | awk '{print $2}'))"
		echo "# smuggler defparam/smuggler@$SMUGGLER_COMMIT (configs: $SMUGGLER_CONFIGS; -t $SMUGGLER_TIMEOUT)"
		echo "# portico $(git -C "$ROOT" rev-parse --short HEAD); nginx $(nginx -v 2>&1 | sed 's|.*/||'); haproxy $(haproxy -v | head -1 | awk '{print $3}')"
		cat "$RES"
	} >"$HERE/results.tsv"
	{
		echo "# Portico's committed verdicts; run.sh fails when a pass here is not a pass now."
		awk -F'\t' '$1 == "portico"' "$RES"
	} >"$HERE/baseline.tsv"
	echo "wrote conformance/results.tsv and conformance/baseline.tsv"
fi
exit $rc
