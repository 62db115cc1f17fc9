#!/usr/bin/env bash
# Instructions per call of rpc-core's client and server, counted by
# valgrind's callgrind: deterministic enough to compare two commits on a
# busy machine, where calls/s are not.
#
#   bench/callgrind.sh [N1 [N2]]        (defaults: 10000 20000)
#   CONNS=16 IN_FLIGHT=8 bench/callgrind.sh     (the `conns` scenario's shape)
#   CONNS=1000 IN_FLIGHT=1 bench/callgrind.sh   (`fanin`'s)
#   ECHO=1048576 IN_FLIGHT=1 bench/callgrind.sh 20 40   (`big`'s: echo(s)
#       of a 1 MiB string instead of add; far fewer calls, each is ~MiB)
#
# Builds `rpc-bench` in release, then for each side runs
# `rpc-bench callgrind server 127.0.0.1:0` and `rpc-bench callgrind client
# ADDR N` (pipelined `add(i64, i64)` calls over CONNS connections, default
# 1, IN_FLIGHT in flight on each, default 64: the `pipe` scenario; every
# answer checked; see bench/src/callgrind.rs) with that side under
# `valgrind --tool=callgrind` and the other side native, once with N1 calls
# and once with N2, one valgrind at a time. Prints
# (Ir(N2) - Ir(N1)) / (N2 - N1) per side, so startup and shutdown cancel.
# Set CALLGRIND_KEEP=1 to keep the callgrind output files (for
# callgrind_annotate); every process is bounded by a time limit.
#
# The counts are not exact: how many requests each read returns depends on
# the two processes' timing, which shows in malloc and in task polls. On
# the machine this was written on, repeated runs of one build stayed within
# about 0.3 % (client) and 1.5 % (server) of each other, so compare
# commits on more than one run each. A commit's "(with uncommitted changes)"
# is about the whole work tree (rpc-core included).
set -euo pipefail

N1=${1:-10000}
N2=${2:-20000}
IN_FLIGHT=${IN_FLIGHT:-64}
CONNS=${CONNS:-1}
ECHO=${ECHO:-}
LIMIT=900           # seconds any one process may take
ADDR_WAIT=120       # seconds to wait for the server's address

die() { echo "callgrind.sh: $*" >&2; exit 1; }

[[ $N1 =~ ^[0-9]+$ && $N2 =~ ^[0-9]+$ && $N2 -gt $N1 ]] || die "usage: $0 [N1 [N2]] with N2 > N1"
[[ $CONNS =~ ^[1-9][0-9]*$ && $IN_FLIGHT =~ ^[1-9][0-9]*$ ]] ||
    die "CONNS and IN_FLIGHT must be positive integers"
[[ -z $ECHO || $ECHO =~ ^[0-9]+$ ]] || die "ECHO must be a byte count"
ECHO_ARGS=()
CALL="add(i64, i64)"
if [[ -n $ECHO ]]; then ECHO_ARGS=(--echo "$ECHO"); CALL="echo(s) of $ECHO bytes"; fi
# Each connection is a descriptor on both sides: raise the soft limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v valgrind >/dev/null ||
    die "valgrind not found; install it with: apt-get install -y valgrind"

BENCH=$(cd "$(dirname "$0")" && pwd)
cd "$BENCH"
echo "building rpc-bench (release)..." >&2
cargo build --release --quiet
TARGET=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN=$TARGET/release/rpc-bench
[[ -x $BIN ]] || die "no binary at $BIN"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/rpc-callgrind.XXXXXX")
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ ${CALLGRIND_KEEP:-} == 1 ]]; then
        echo "callgrind output kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT

# measure SIDE N: runs a server and a client making N calls, SIDE under
# callgrind, the other native; sets IR to that side's instruction count.
measure() {
    local side=$1 n=$2
    local out=$TMP/$side.$n.callgrind log=$TMP/$side.$n.valgrind.log
    local vg=(valgrind --tool=callgrind --callgrind-out-file="$out" --log-file="$log")
    local server_vg=() client_vg=()
    if [[ $side == server ]]; then server_vg=("${vg[@]}"); else client_vg=("${vg[@]}"); fi

    # A fresh file: the loop below must not read the last run's address
    # before this server's redirection truncates it.
    rm -f "$TMP/server.out"
    timeout "$LIMIT" "${server_vg[@]}" "$BIN" callgrind server 127.0.0.1:0 --max-secs "$LIMIT" \
        >"$TMP/server.out" 2>"$TMP/server.err" &
    SERVER_PID=$!
    local addr= waited=0
    until addr=$(sed -n 's/^addr //p' "$TMP/server.out" 2>/dev/null); [[ -n $addr ]]; do
        kill -0 "$SERVER_PID" 2>/dev/null ||
            die "the server exited before printing its address: $(cat "$TMP/server.err")"
        ((waited++ < ADDR_WAIT * 10)) || die "no address from the server in ${ADDR_WAIT}s"
        sleep 0.1
    done

    timeout "$LIMIT" "${client_vg[@]}" "$BIN" callgrind client "$addr" "$n" \
        --conns "$CONNS" --in-flight "$IN_FLIGHT" "${ECHO_ARGS[@]}" --max-secs "$LIMIT" 2>"$TMP/client.err" ||
        die "client ($side under callgrind, $n calls) failed: $(cat "$TMP/client.err")"
    local status=0
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    ((status == 0)) ||
        die "server ($side under callgrind, $n calls) exited with $status: $(cat "$TMP/server.err")"

    IR=$(awk '/^(summary|totals):/ { v = $2 } END { print v }' "$out")
    [[ $IR =~ ^[0-9]+$ ]] || die "no summary/totals line in $out (see $log)"
}

commit=$(git -C "$BENCH" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$BENCH/.." status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    commit="$commit (with uncommitted changes)"
fi
echo "commit $commit; $CALL, $CONNS connection(s) × $IN_FLIGHT in flight, current_thread runtimes; valgrind $(valgrind --version)"
printf '%-8s %16s %16s %12s\n' side "Ir($N1)" "Ir($N2)" "Ir/call"
for side in client server; do
    echo "running: $side under callgrind, $N1 and $N2 calls..." >&2
    measure "$side" "$N1"; ir1=$IR
    measure "$side" "$N2"; ir2=$IR
    awk -v s="$side" -v a="$ir1" -v b="$ir2" -v n="$((N2 - N1))" \
        'BEGIN { printf "%-8s %16d %16d %12.1f\n", s, a, b, (b - a) / n }'
done
