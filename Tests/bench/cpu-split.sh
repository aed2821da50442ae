#!/usr/bin/env bash
# Where the CPU per request goes: user and system time (from /proc/<pid>/stat) per request for the sidecar, the NIO
# floor (Tests/bench/nio-floor: a SwiftNIO byte relay, no HTTP) and nginx plain proxy_pass, each under wrk at each
# concurrency, in interleaved rounds; prints the medians. Answers "is the extra CPU in user space or in the kernel, and
# is it NIO's or ours?" on this noisy box, where rps alone drifts by ±20 %.
#   Tests/bench/cpu-split.sh [ROUNDS=3] [SECONDS=8]   CONNS="64 256" by default; BIN=path/to/authjs-sidecar to measure another build
# One process each, one event-loop thread / worker, the bench kit's one-worker nginx upstream, the kit's v5 JWE in the
# session cookie (sent to all three; only the sidecar reads it). wrk -t1 as the kit runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KIT=${BENCH_KIT:-$ROOT/../shared/bench}
ROUNDS=${1:-3}; SECS=${2:-8}; CONNS=${CONNS:-64 256}
. Tests/bench/common.sh
bench_tools wrk nginx
bench_binary
nio_floor_binary
RUN=$(mktemp -d /tmp/sidecar-cpu.XXXXXX)
UP_PORT=18681; SIDECAR_PORT=18691; FLOOR_PORT=18692; NGINX_PORT=18693
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$RUN/nginx.pid" ] && kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
bench_upstream "$RUN" "$UP_PORT"
mkdir -p "$RUN/nginx-proxy.tmp"
sed -e "s#@RUN@#$RUN#g" -e "s#@PORT@#$NGINX_PORT#g" -e "s#@UPSTREAM_PORT@#$UP_PORT#g" "$KIT/conf/nginx-proxy.conf.in" > "$RUN/nginx-proxy.conf"
nginx -c "$RUN/nginx-proxy.conf" -p "$RUN/" -g 'daemon off;' 2>"$RUN/nginx-proxy.log" &
pids+=($!); NGINX_PID=$!
"$FLOOR_BIN" "$FLOOR_PORT" "$UP_PORT" >"$RUN/floor.log" 2>&1 &
pids+=($!); FLOOR_PID=$!
AUTH_SECRET=$(cat "$KIT/tokens/secret.txt") SIDECAR_LISTEN=127.0.0.1:$SIDECAR_PORT SIDECAR_UPSTREAM=http://127.0.0.1:$UP_PORT \
    SIDECAR_THREADS=1 SIDECAR_ACCESS_LOG=false SIDECAR_LOG_LEVEL=warning "$BIN" serve >"$RUN/sidecar.log" 2>&1 &
pids+=($!); SIDECAR_PID=$!
for port in $SIDECAR_PORT $FLOOR_PORT $NGINX_PORT; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
TOKEN=$(cat "$KIT/tokens/jwe.txt")
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14, $15}' "/proc/$1/stat"; }  # utime stime, in clock ticks
echo "server conns round rps user_us sys_us" > "$RUN/rows"
for round in $(seq "$ROUNDS"); do
    for server in sidecar nio-floor nginx; do
        case $server in
            sidecar) port=$SIDECAR_PORT pid=$SIDECAR_PID ;;
            nio-floor) port=$FLOOR_PORT pid=$FLOOR_PID ;;
            nginx) port=$NGINX_PORT pid=$(pgrep -P "$NGINX_PID" | head -1) ;;  # the worker, not the master
        esac
        for c in $CONNS; do
            wrk -t1 -c"$c" -d2s -H "Cookie: authjs.session-token=$TOKEN" "http://127.0.0.1:$port/" >/dev/null  # warm-up
            read -r u0 s0 < <(cpu "$pid")
            wrk -t1 -c"$c" -d"${SECS}s" -H "Cookie: authjs.session-token=$TOKEN" "http://127.0.0.1:$port/" > "$RUN/wrk.txt"
            read -r u1 s1 < <(cpu "$pid")
            grep -q "Non-2xx" "$RUN/wrk.txt" && { echo "$server c=$c: non-2xx responses" >&2; cat "$RUN/wrk.txt" >&2; exit 1; }
            n=$(awk '/requests in/ {print $1}' "$RUN/wrk.txt")
            python3 -c "n=$n; t=$ticks; print('$server', $c, $round, round(n / $SECS), round(($u1-$u0)/t*1e6/n, 2), round(($s1-$s0)/t*1e6/n, 2))" >> "$RUN/rows"
        done
    done
done
python3 - "$RUN/rows" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
print(f"{'server':<10} {'conns':>5} {'rps':>8} {'user µs/req':>12} {'sys µs/req':>11} {'total':>7}   (medians of {len({r[2] for r in rows})} rounds)")
for server in dict.fromkeys(r[0] for r in rows):
    for c in dict.fromkeys(r[1] for r in rows):
        sel = [r for r in rows if r[0] == server and r[1] == c]
        rps = statistics.median(float(r[3]) for r in sel)
        user = statistics.median(float(r[4]) for r in sel)
        sys_ = statistics.median(float(r[5]) for r in sel)
        tot = statistics.median(float(r[4]) + float(r[5]) for r in sel)
        print(f"{server:<10} {c:>5} {rps:>8.0f} {user:>12.1f} {sys_:>11.1f} {tot:>7.1f}")
EOF
