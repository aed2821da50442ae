#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind (callgrind): repeatable on a noisy box where rps and CPU time
# drift by ±20 %. Builds release as deploy/Dockerfile does (static Swift runtime; scratch path .build-static), starts
# a one-worker nginx upstream (the bench kit's config) and the sidecar under callgrind with one event-loop thread, sends N1 and then N2 keep-alive requests (v5 JWE session cookie, the kit's
# token; 8 connections, one request at a time) and prints (I(N2) − I(N1)) / (N2 − N1): start-up cancels out.
#   Tests/bench/instructions.sh [N1=200] [N2=1200]      BIN=path/to/authjs-sidecar to measure another build
#   KEEP_PROFILE=dir keeps the callgrind outputs there
#   REQUEST=browser adds the 13 headers a browser's fetch() sends (Accept, User-Agent, Sec-Fetch-*, …) to each request
#   ACCESS_LOG=json|text counts with the access log on (JSON lines to stdout, text lines to stderr; both to a file
#                   here), the writer thread's instructions included (its write system calls are kernel time, not counted)
#   SERVER=nio-floor counts the NIO byte relay of Tests/bench/nio-floor instead (no HTTP, no token: the floor)
#   LOAD="8 64 256" counts under wrk -t1 at each concurrency instead (LOAD_SECONDS=15 after a 3 s warm-up): whether a
#                   request costs more instructions when more connections are busy (several requests per loop turn);
#                   CACHE_SIM=1 adds callgrind's cache simulation (32 KiB L1i/L1d and a 1 MiB last level, this machine's
#                   per-core L1 and L2): simulated misses per request (I1mr, D1mr/D1mw, ILmr, DLmr/DLmw)
# Counts user-space instructions only (no kernel, no waiting); one request per event-loop turn, so per-turn costs
# are included in full (a loaded server spreads them over several requests).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KIT=${BENCH_KIT:-$ROOT/../shared/bench}
N1=${1:-200}; N2=${2:-1200}
. Tests/bench/common.sh
bench_tools valgrind nginx
if [ "${SERVER:-sidecar}" = nio-floor ]; then nio_floor_binary; BIN=$FLOOR_BIN; else bench_binary; fi
RUN=$(mktemp -d /tmp/sidecar-instr.XXXXXX)
UP_PORT=18381; PORT=18391
cleanup() {
    [ -f "$RUN/nginx.pid" ] && kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    pkill -f "callgrind-out-file=$RUN" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT
# valgrind cannot read the Swift toolchain's DWARF; symbols (the symbol table) are kept.
strip --strip-debug -o "$RUN/sidecar" "$BIN"
bench_upstream "$RUN" "$UP_PORT"

ACCESS_LOG_ON=false; LOG_LEVEL=warning
[ -n "${ACCESS_LOG:-}" ] && { ACCESS_LOG_ON=true; LOG_LEVEL=info; }

start() {  # start NAME -> a sidecar (or relay) under callgrind, counts to $RUN/cg.NAME; sets pid
    local args=(serve)
    [ "${SERVER:-sidecar}" = nio-floor ] && args=("$PORT" "$UP_PORT")
    AUTH_SECRET=$(cat "$KIT/tokens/secret.txt") SIDECAR_LISTEN=127.0.0.1:$PORT SIDECAR_UPSTREAM=http://127.0.0.1:$UP_PORT \
        SIDECAR_THREADS=1 SIDECAR_ACCESS_LOG=$ACCESS_LOG_ON SIDECAR_LOG_FORMAT=${ACCESS_LOG:-text} \
        SIDECAR_LOG_LEVEL=$LOG_LEVEL SIDECAR_TOKEN_FORMATS=authjs-v5,nextauth-v4 \
        valgrind --tool=callgrind ${CACHE_SIM:+--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=1048576,16,64} \
        --callgrind-out-file="$RUN/cg.$1" "$RUN/sidecar" "${args[@]}" >"$RUN/vg.$1.log" 2>&1 &
    pid=$!
    for _ in $(seq 240); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()" 2>/dev/null && break
        sleep 0.5
    done
}

count() {  # count N -> total instructions of a sidecar (or relay) process that served N requests
    local n=$1
    start "$n"
    python3 - "$PORT" "$n" "$KIT/tokens/jwe.txt" "${REQUEST:-minimal}" <<'EOF'
import socket, sys
port, n, token = int(sys.argv[1]), int(sys.argv[2]), open(sys.argv[3]).read().strip()
extra = ""
if sys.argv[4] == "browser":
    extra = ("Accept: application/json, text/plain, */*\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
             "Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\nConnection: keep-alive\r\nOrigin: https://app.example.com\r\n"
             "Referer: https://app.example.com/dashboard\r\nSec-Fetch-Dest: empty\r\nSec-Fetch-Mode: cors\r\n"
             "Sec-Fetch-Site: same-site\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/131.0.0.0 Safari/537.36\r\nsec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n"
             "sec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Linux\"\r\n")
req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Cookie: authjs.session-token={token}\r\n\r\n".encode()
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
for i in range(n):
    s = conns[i % 8]
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit(f"request {i}: {head.splitlines()[0]!r}")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(rest) < length:
        rest += s.recv(65536)
EOF
    kill -INT "$pid"; wait "$pid" || true
    awk '/^summary:/ {print $2}' "$RUN/cg.$n"
}
loaded() {  # loaded C -> instructions per request while wrk keeps C connections busy (counters zeroed after a warm-up)
    local c=$1
    start "load$c"
    local token; token=$(cat "$KIT/tokens/jwe.txt")
    wrk -t1 -c"$c" -d3s -H "Cookie: authjs.session-token=$token" "http://127.0.0.1:$PORT/" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    wrk -t1 -c"$c" -d"${LOAD_SECONDS:-15}s" -H "Cookie: authjs.session-token=$token" "http://127.0.0.1:$PORT/" >"$RUN/wrk.$c"
    kill -INT "$pid"; wait "$pid" || true
    grep -q "Non-2xx" "$RUN/wrk.$c" && { echo "c=$c: non-2xx responses" >&2; exit 1; }
    local n events
    n=$(awk '/requests in/ {print $1}' "$RUN/wrk.$c")
    events=$(sed -n 's/^events: //p' "$RUN/cg.load$c")
    # "Collected : Ir [cache events]": counted since the zeroing
    awk -v n="$n" -v c="$c" -v ev="$events" '/Collected :/ {
        split(ev, names, " "); printf "c=%s: per request under load (%d requests):", c, n
        for (i = 4; i <= NF; i++) printf " %s %.1f", names[i - 3], $i / n; print "" }' "$RUN/vg.load$c.log"
}
if [ -n "${LOAD:-}" ]; then
    bench_tools wrk
    for c in $LOAD; do loaded "$c"; done
    exit 0
fi
a=$(count "$N1"); b=$(count "$N2")
echo "instructions per request: $(( (b - a) / (N2 - N1) ))  ($N1 requests: $a, $N2 requests: $b)"
# KEEP_PROFILE=dir keeps both callgrind outputs (callgrind_annotate dir/cg.N2, or diff them: callgrind_annotate
# --diff needs valgrind ≥ 3.21) for a per-function view.
if [ -n "${KEEP_PROFILE:-}" ]; then mkdir -p "$KEEP_PROFILE" && cp "$RUN/cg.$N1" "$RUN/cg.$N2" "$KEEP_PROFILE/"; fi
