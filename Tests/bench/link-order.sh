#!/usr/bin/env bash
# Regenerates Sources/AuthJSSidecarCLI/link-order.txt: the functions the sidecar runs — start-up, proxied requests
# with a valid session cookie, 401s, a CORS preflight, health checks, a metrics scrape, shutdown — in the order
# callgrind first meets them. The executable is linked with it (`--symbol-ordering-file`, Package.swift), so the code
# that runs sits on fewer pages and the kernel's fault-around maps fewer cold ones (resident memory,
# Tests/bench/HISTORY.md). Names missing from a later build are skipped by the linker; rerun this after larger changes.
#   Tests/bench/link-order.sh            BIN=path/to/authjs-sidecar to profile another build
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KIT=${BENCH_KIT:-$ROOT/../shared/bench}
. Tests/bench/common.sh
bench_tools valgrind nginx curl
bench_binary
RUN=$(mktemp -d /tmp/sidecar-order.XXXXXX)
UP_PORT=18581; PORT=18591; METRICS_PORT=18592
cleanup() {
    [ -f "$RUN/nginx.pid" ] && kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    pkill -f "callgrind-out-file=$RUN" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
strip --strip-debug -o "$RUN/sidecar" "$BIN"   # valgrind cannot read the toolchain's compressed debug info
bench_upstream "$RUN" "$UP_PORT"

AUTH_SECRET=$(cat "$KIT/tokens/secret.txt") SIDECAR_LISTEN=127.0.0.1:$PORT SIDECAR_UPSTREAM=http://127.0.0.1:$UP_PORT \
    SIDECAR_METRICS_LISTEN=127.0.0.1:$METRICS_PORT SIDECAR_THREADS=1 SIDECAR_LOG_LEVEL=warning \
    SIDECAR_CORS_ORIGINS=https://app.example.com \
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$RUN/cg.out" "$RUN/sidecar" serve >"$RUN/vg.log" 2>&1 &
pid=$!
for _ in $(seq 240); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/_sidecar/healthz" && break
    sleep 0.5
done
token=$(cat "$KIT/tokens/jwe.txt")
for _ in $(seq 20); do
    curl -s -o /dev/null -H "Cookie: authjs.session-token=$token" "http://127.0.0.1:$PORT/items?x=1"
    curl -s -o /dev/null -H "Authorization: Bearer $token" -H "Origin: https://app.example.com" "http://127.0.0.1:$PORT/items"
    curl -s -o /dev/null "http://127.0.0.1:$PORT/items"
    curl -s -o /dev/null -X OPTIONS -H "Origin: https://app.example.com" -H "Access-Control-Request-Method: GET" \
        -H "Access-Control-Request-Headers: authorization" "http://127.0.0.1:$PORT/items"
done
curl -s -o /dev/null "http://127.0.0.1:$PORT/_sidecar/readyz"
curl -s -o /dev/null "http://127.0.0.1:$METRICS_PORT/metrics"
kill -INT "$pid"; wait "$pid" || true
# Every function callgrind names (fn= and callee cfn= lines carry a name the first time an id appears), in order.
awk 'match($0, /^c?fn=\([0-9]+\) /) { name = substr($0, RLENGTH + 1); if (name !~ /^0x/ && !(name in seen)) { seen[name] = 1; print name } }' \
    "$RUN/cg.out" > Sources/AuthJSSidecarCLI/link-order.txt
echo "Sources/AuthJSSidecarCLI/link-order.txt: $(wc -l < Sources/AuthJSSidecarCLI/link-order.txt) functions"
