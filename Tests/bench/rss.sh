#!/usr/bin/env bash
# RSS with 1 000 open keep-alive client connections, and whether it stays flat between 1 M and 2 M requests.
# Builds the release binary as deploy/Dockerfile does (static Swift runtime; own scratch path .build-static), starts a
# one-worker nginx upstream (the bench kit's config) and the sidecar with one event-loop thread, and drives it with
# wrk -t2 -c1000 (the kit's v5 JWE session cookie) until N2 requests, sampling VmRSS, the open descriptors and the
# request count (/metrics) every 5 s. Prints the samples, resident memory by mapping when idle and at N2, the RSS at
# the first sample past N1 and past N2, and the change.
#   Tests/bench/rss.sh [N1=1000000] [N2=2000000]      BIN=path/to/authjs-sidecar to measure another build
#   CONNS=1000 (client connections)  SIDECAR_THREADS=1
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KIT=${BENCH_KIT:-$ROOT/../shared/bench}
N1=${1:-1000000}; N2=${2:-2000000}; CONNS=${CONNS:-1000}
. Tests/bench/common.sh
bench_tools wrk nginx
bench_binary
RUN=$(mktemp -d /tmp/sidecar-rss.XXXXXX)
UP_PORT=18481; PORT=18491; METRICS_PORT=18492
SIDECAR_PID=""; WRK_PID=""
cleanup() {
    [ -n "$WRK_PID" ] && kill "$WRK_PID" 2>/dev/null || true
    [ -n "$SIDECAR_PID" ] && kill "$SIDECAR_PID" 2>/dev/null || true
    [ -f "$RUN/nginx.pid" ] && kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || true
bench_upstream "$RUN" "$UP_PORT"

AUTH_SECRET=$(cat "$KIT/tokens/secret.txt") SIDECAR_LISTEN=127.0.0.1:$PORT SIDECAR_UPSTREAM=http://127.0.0.1:$UP_PORT \
    SIDECAR_METRICS_LISTEN=127.0.0.1:$METRICS_PORT SIDECAR_THREADS=${SIDECAR_THREADS:-1} SIDECAR_ACCESS_LOG=false \
    SIDECAR_LOG_LEVEL=warning SIDECAR_TOKEN_FORMATS=authjs-v5,nextauth-v4 SIDECAR_MAX_CONNECTIONS=$((CONNS + 1000)) \
    "$BIN" serve >"$RUN/sidecar.log" 2>&1 &
SIDECAR_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/_sidecar/healthz" && break
    sleep 0.2
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SIDECAR_PID/status"; }
requests() {
    curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk '/^authjs_sidecar_request_duration_seconds_count/ {v = $2} END {print v}' || true
}
# Resident memory by mapping (file name, [heap], [anon], …), the ones of 0.5 MiB and more: file pages (the binary,
# libcrypto, libc) against the heap that grows per connection.
breakdown() {
    awk '/^[0-9a-f]+-[0-9a-f]+ / {n = (NF >= 6 ? $6 : "[anon]"); sub(".*/", "", n)} /^Rss:/ {r[n] += $2}
         END {for (k in r) if (r[k] >= 512) printf "%s %.1f, ", k, r[k] / 1024; print "(MiB)"}' "/proc/$SIDECAR_PID/smaps"
}
echo "idle: RSS $(( $(rss) / 1024 )) MiB: $(breakdown)"
# Long enough for N2 at ≥ 5 k rps; stopped as soon as N2 is reached.
wrk -t2 -c"$CONNS" -d"$(( N2 / 5000 + 60 ))s" -H "Cookie: authjs.session-token=$(cat "$KIT/tokens/jwe.txt")" \
    "http://127.0.0.1:$PORT/" >"$RUN/wrk.out" 2>&1 &
WRK_PID=$!
at1=""; at2=""
printf '%8s %12s %10s %6s\n' "t_s" "requests" "rss_kib" "fds"
t=0
while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep 5; t=$((t + 5))
    n=$(requests); r=$(rss); fds=$(ls "/proc/$SIDECAR_PID/fd" | wc -l)
    printf '%8s %12s %10s %6s\n' "$t" "$n" "$r" "$fds"
    n=${n%.*}
    if [ -z "$at1" ] && [ "${n:-0}" -ge "$N1" ]; then at1=$r; fi
    if [ -z "$at2" ] && [ "${n:-0}" -ge "$N2" ]; then at2=$r; echo "at $N2 requests: $(breakdown)"; break; fi
done
kill "$WRK_PID" 2>/dev/null || true; WRK_PID=""
[ -n "$at1" ] && [ -n "$at2" ] || { echo "did not reach $N2 requests"; cat "$RUN/wrk.out"; exit 1; }
echo "RSS with $CONNS connections: $(awk -v a="$at1" 'BEGIN {printf "%.1f", a / 1024}') MiB after $N1 requests," \
     "$(awk -v b="$at2" 'BEGIN {printf "%.1f", b / 1024}') MiB after $N2 ($(awk -v a="$at1" -v b="$at2" 'BEGIN {printf "%+.1f", (b - a) * 100 / a}') %)"
