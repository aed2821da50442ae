#!/usr/bin/env bash
# Graceful shutdown under load: wrk drives the release sidecar for DURATION s (three rotating tokens, c=CONCURRENCY);
# a few slow requests (GET /slow/SLOW_S) are put in flight just before the sidecar gets SIGTERM at TERM_AT s.
#
#   Tests/soak/shutdown_under_load.sh [duration=20] [term_at=5] [concurrency=128]
#
# Asserts: every accepted request completes (wrk counts no read errors or timeouts; keepalive_clients.py, 16 more
# keep-alive connections, sees no request written and then dropped without a response; every slow in-flight
# request answers 200; all statuses are 200 for the valid token and 401 for the others), new connections are
# refused while the sidecar drains, and it exits 0 before its deadline
# (SIDECAR_SHUTDOWN_TIMEOUT = SHUTDOWN_TIMEOUT, 10 s by default). Prints a summary table.
#
# wrk's connect and write errors are expected once the listener is closed: wrk reports a refused non-blocking
# connect as a write error, and retries at once, so they count refused reconnects, not dropped requests.
#
# Environment: as soak.sh (SOAK_BIN, SOAK_PYTHON, SOAK_WRK_THREADS, SOAK_KEEP), plus SHUTDOWN_TIMEOUT, SLOW_S (3),
# SLOW_N (4), KA_N (16).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOAK_LIB=1 source "$HERE/soak.sh"

DURATION=${1:-20}
TERM_AT=${2:-5}
CONC=${3:-128}
SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-10}
SLOW_S=${SLOW_S:-3}
SLOW_N=${SLOW_N:-4}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

probe() {  # what a brand-new connection gets (refused, or what it was served), and whether the sidecar still ran
  "$PY" - "$SC_PORT" "$SC_PID" "$T_TERM" <<'PY'
import os, socket, sys, time
port, pid, t_term = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) is not alive
        return f.read().split(")")[-1].split()[0] != "Z"
at = f"+{time.time() - t_term:.2f} s"
before = alive()
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
except ConnectionRefusedError:
    outcome = "refused"
except OSError as e:
    outcome = f"error {e}"
else:
    try:
        s.sendall(b"GET /_sidecar/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = s.recv(200)
        outcome = "accepted, answered " + (data.split(b"\r\n")[0].decode("latin-1") if data else "nothing (closed)")
    except OSError as e:
        outcome = f"accepted, then {e.__class__.__name__}"
draining = before and alive()
print(f"{outcome} at {at}, sidecar {'still running' if draining else 'gone'}")
PY
}

soak_workdir
build_release
ensure_wrk
ensure_python
SOAK_UPSTREAM=uvicorn start_upstream  # /slow needs the FastAPI upstream
start_sidecar SIDECAR_SHUTDOWN_TIMEOUT="$SHUTDOWN_TIMEOUT"
mint_tokens
write_lua
FACTS="$WORK/facts"
: >"$FACTS"

log "wrk for $DURATION s at c=$CONC; $SLOW_N x /slow/$SLOW_S in flight at $((TERM_AT - 1)) s; SIGTERM at $TERM_AT s"
T0=$(now)
run_wrk "$WORK/wrk.out" 0 "$DURATION" "$CONC"
# exact per-exchange accounting on a few keep-alive connections (wrk cannot tell dropped from refused)
"$PY" "$HERE/keepalive_clients.py" "$SC_PORT" "${KA_N:-16}" "$DURATION" "$VALID" "$WORK/keepalive.json" &
KA_PID=$!
sleep $((TERM_AT - 1))
SLOW_PIDS=()
for i in $(seq "$SLOW_N"); do
  curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "Cookie: authjs.session-token=$VALID" \
       "http://127.0.0.1:$SC_PORT/slow/$SLOW_S" >"$WORK/slow-$i" 2>/dev/null &
  SLOW_PIDS+=("$!")
done
sleep 1

T_TERM=$(now)
kill -TERM "$SC_PID"
log "SIGTERM sent at $(elapsed "$T0" "$T_TERM") s"
echo "term_unix=$T_TERM" >>"$FACTS"
sleep 0.5
P1=$(probe)
sleep 1
P2=$(probe)
echo "probe_1=$P1" >>"$FACTS"
echo "probe_2=$P2" >>"$FACTS"
case "$P1$P2" in *"still running"*) echo "probe_while_draining=yes" >>"$FACTS" ;; esac

DEADLINE=$SHUTDOWN_TIMEOUT
set +e
for _ in $(seq $(((SHUTDOWN_TIMEOUT + 10) * 10))); do
  kill -0 "$SC_PID" 2>/dev/null || break
  sleep 0.1
done
T_EXIT=$(now)
if kill -0 "$SC_PID" 2>/dev/null; then
  echo "exit_after_s=inf" >>"$FACTS"
  kill -KILL "$SC_PID"
  wait "$SC_PID" 2>/dev/null
  echo "exit_code=killed" >>"$FACTS"
else
  wait "$SC_PID"
  echo "exit_code=$?" >>"$FACTS"
  echo "exit_after_s=$(elapsed "$T_TERM" "$T_EXIT")" >>"$FACTS"
fi
for pid in "${SLOW_PIDS[@]}"; do wait "$pid"; done
wait "$WRK_PID"
wait "$KA_PID"
set -e
echo "deadline_s=$DEADLINE" >>"$FACTS"
echo "slow_statuses=$(for f in "$WORK"/slow-*; do printf '%s ' "$(cat "$f")"; done)" >>"$FACTS"
echo "keepalive_json=$WORK/keepalive.json" >>"$FACTS"

grep -v '^SOAK' "$WORK/wrk.out" >&2 || true
grep -i "error\|warn\|crash" "$WORK/sidecar.log" | head -20 >&2 || true
python3 "$HERE/soak_report.py" shutdown "$WORK/wrk.out" "$FACTS"
