#!/usr/bin/env bash
# Soak test: the release sidecar (SIDECAR_THREADS=2) in front of the e2e FastAPI upstream under uvicorn, driven by
# wrk with a Lua script that rotates a valid, an expired and a forged token and counts statuses per token.
#
#   Tests/soak/soak.sh [requests=2000000] [concurrency=128]
#
# Asserts: valid -> only 200 (and the upstream saw x-auth-sub), expired/forged -> only 401, no socket errors,
# RSS flat (mean of the last quarter of the samples within ±SOAK_RSS_TOLERANCE % of the first quarter, sampled
# every SOAK_SAMPLE_S s after a SOAK_WARMUP_S s warm-up run), fd count not growing. Prints a summary table.
#
# Environment: SOAK_BIN (skip the build and use this binary), SOAK_PYTHON (a python with uvicorn+fastapi),
# SOAK_UPSTREAM=echo (the sidecar's built-in echo upstream instead of uvicorn), SOAK_WRK_THREADS (2),
# SOAK_SAMPLE_S (5), SOAK_WARMUP_S (10), SOAK_RSS_TOLERANCE (5), SOAK_KEEP=1 (keep the work directory).
#
# This file is also a library: `source soak.sh` (with SOAK_LIB=1) defines the functions shutdown_under_load.sh uses.
set -euo pipefail

SOAK_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOAK_ROOT=$(cd "$SOAK_HERE/../.." && pwd)
SOAK_SECRET="soak-secret-0123456789abcdefghijklmnopqrstuvwxyz"
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
PIDS_TO_STOP=()

log() { printf '== %s\n' "$*" >&2; }
die() { printf '!! %s\n' "$*" >&2; exit 1; }

soak_workdir() {
  WORK=$(mktemp -d /tmp/authjs-soak.XXXXXX)
  trap soak_cleanup EXIT
}

soak_cleanup() {
  local rc=$?
  for pid in "${PIDS_TO_STOP[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS_TO_STOP[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] || [ "${SOAK_KEEP:-0}" = "1" ]; then
    log "logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}

build_release() {
  if [ -n "${SOAK_BIN:-}" ]; then
    BIN=$SOAK_BIN
  else
    log "swift build -c release --scratch-path .build-soak --product authjs-sidecar"
    (cd "$SOAK_ROOT" && swift build -c release --scratch-path .build-soak --product authjs-sidecar >&2) || die "release build failed"
    BIN="$SOAK_ROOT/.build-soak/release/authjs-sidecar"
  fi
  [ -x "$BIN" ] || die "no sidecar binary at $BIN"
}

ensure_wrk() {
  if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (apt)"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk >/dev/null || die "cannot install wrk"
  fi
}

ensure_python() {
  local candidates=("${SOAK_PYTHON:-}" "$SOAK_ROOT/.build-venv/bin/python" "/tmp/venv-e2e/bin/python")
  for p in "${candidates[@]}"; do
    if [ -n "$p" ] && [ -x "$p" ] && "$p" -c "import uvicorn, fastapi, httptools" 2>/dev/null; then PY=$p; return; fi
  done
  log "creating $SOAK_ROOT/.build-venv for the upstream"
  python3 -m venv "$SOAK_ROOT/.build-venv" && "$SOAK_ROOT/.build-venv/bin/pip" install -q -r "$SOAK_ROOT/Tests/e2e/requirements.txt" httptools \
    || die "cannot create the python venv"
  PY="$SOAK_ROOT/.build-venv/bin/python"
}

free_port() { "${PY:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_url() {  # wait_url URL SECONDS
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || die "$1 did not come up"
    sleep 0.1
  done
}

start_upstream() {
  if [ "${SOAK_UPSTREAM:-uvicorn}" = "echo" ]; then UPSTREAM="echo"; return; fi
  UP_PORT=$(free_port)
  (cd "$SOAK_ROOT/Tests/e2e" && exec "$PY" -m uvicorn upstream_app:app --host 127.0.0.1 --port "$UP_PORT" \
      --log-level warning --timeout-keep-alive 60 --backlog 4096 --no-access-log) >"$WORK/upstream.log" 2>&1 &
  UP_PID=$!
  PIDS_TO_STOP+=("$UP_PID")
  wait_url "http://127.0.0.1:$UP_PORT/connections" 30
  UPSTREAM="http://127.0.0.1:$UP_PORT"
}

start_sidecar() {
  SC_PORT=$(free_port)
  # SWIFTNIO_STRICT: NIO crashes on work handed to a stopped event loop (it only logs otherwise), so a shutdown that
  # does it shows in the exit status.
  env -i PATH="$PATH" HOME="${HOME:-/root}" SWIFTNIO_STRICT=1 AUTH_SECRET="$SOAK_SECRET" SIDECAR_LISTEN="127.0.0.1:$SC_PORT" \
      SIDECAR_UPSTREAM="$UPSTREAM" SIDECAR_THREADS=2 SIDECAR_PUBLIC_PATHS=/public SIDECAR_LOG_LEVEL=warning \
      SIDECAR_ACCESS_LOG=false "$BIN" serve >"$WORK/sidecar.log" 2>&1 &
  SC_PID=$!
  PIDS_TO_STOP+=("$SC_PID")
  wait_url "http://127.0.0.1:$SC_PORT/_sidecar/healthz" 30
}

mint_tokens() {
  local claims='{"sub":"soak-user","email":"soak@example.com","name":"Soak"}'
  VALID=$("$BIN" mint --secret "$SOAK_SECRET" "$claims")
  EXPIRED=$("$BIN" mint --secret "$SOAK_SECRET" --now 1700000000 --max-age 3600 "$claims")
  FORGED=$("$BIN" mint --secret "another-secret-not-the-sidecars-0123456789" "$claims")
  # sanity: the three tokens behave as the soak expects before any load
  local v e f
  v=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: authjs.session-token=$VALID" "http://127.0.0.1:$SC_PORT/api/soak")
  e=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: authjs.session-token=$EXPIRED" "http://127.0.0.1:$SC_PORT/api/soak")
  f=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: authjs.session-token=$FORGED" "http://127.0.0.1:$SC_PORT/api/soak")
  [ "$v $e $f" = "200 401 401" ] || die "token sanity check: valid=$v expired=$e forged=$f (want 200 401 401)"
}

write_lua() {  # per-token status counting; each thread stops after its share of the requested responses
  cat >"$WORK/soak.lua" <<'LUA'
-- generated by Tests/soak/soak.sh: rotates three tokens, counts statuses per token (by the echoed X-Request-Id)
local names = {"valid", "expired", "forged"}
local tokens = {}
local target, responses, n = math.huge, 0, 0
local donefile
counts = {}  -- flat "<token>:<status>" -> n (wrk's thread:get() cannot copy nested tables)
sent = {valid = 0, expired = 0, forged = 0}
identity_ok = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  local total, nthreads = tonumber(args[1]), tonumber(args[2])
  if total > 0 then target = math.ceil(total / nthreads) end
  tokens = {args[3], args[4], args[5]}
  donefile = args[6]
end

function request()
  n = n + 1
  local i = n % 3 + 1
  local k = names[i]
  sent[k] = sent[k] + 1
  return wrk.format("GET", "/api/soak", {["Cookie"] = "authjs.session-token=" .. tokens[i],
                                         ["X-Request-Id"] = k .. "-" .. tid .. "-" .. n})
end

function response(status, headers, body)
  local rid = headers["x-request-id"] or headers["X-Request-Id"] or ""
  local k = rid:match("^(%a+)-")
  if k ~= "valid" and k ~= "expired" and k ~= "forged" then k = "unknown" end
  local key = k .. ":" .. status
  counts[key] = (counts[key] or 0) + 1
  if k == "valid" and status == 200 and body:find('"x-auth-sub","soak-user"', 1, true) then
    identity_ok = identity_ok + 1
  end
  responses = responses + 1
  if responses == target then
    local f = io.open(donefile .. "-" .. tid, "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local agg = {}
  local s = {valid = 0, expired = 0, forged = 0}
  local ok = 0
  for _, t in ipairs(threads) do
    for key, m in pairs(t:get("counts")) do agg[key] = (agg[key] or 0) + m end
    for k, m in pairs(t:get("sent")) do s[k] = s[k] + m end
    ok = ok + t:get("identity_ok")
  end
  for key, m in pairs(agg) do
    local k, code = key:match("^(%a+):(%d+)$")
    io.write(string.format("SOAK status %s %s %d\n", k, code, m))
  end
  for k, m in pairs(s) do io.write(string.format("SOAK sent %s %d\n", k, m)) end
  io.write(string.format("SOAK identity_ok %d\n", ok))
  io.write(string.format("SOAK requests %d\nSOAK duration_us %d\nSOAK bytes %d\n", summary.requests, summary.duration, summary.bytes))
  local e = summary.errors
  io.write(string.format("SOAK errors %d %d %d %d %d\n", e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("SOAK latency_us %d %d %d %d %d %d\n", latency:percentile(50), latency:percentile(90),
                         latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
LUA
}

run_wrk() {  # run_wrk OUTFILE REQUESTS(0 = until the duration) DURATION_S CONCURRENCY
  local out=$1 total=$2 duration=$3 conc=$4 threads=${SOAK_WRK_THREADS:-2}
  rm -f "$WORK"/done-*
  wrk -t"$threads" -c"$conc" -d"${duration}s" --timeout 10s --latency -s "$WORK/soak.lua" \
      "http://127.0.0.1:$SC_PORT/api/soak" -- "$total" "$threads" "$VALID" "$EXPIRED" "$FORGED" "$WORK/done" >"$out" 2>&1 &
  WRK_PID=$!
  PIDS_TO_STOP+=("$WRK_PID")
  if [ "$total" -gt 0 ]; then
    while kill -0 "$WRK_PID" 2>/dev/null; do
      # every thread wrote its done-file: stop wrk's main sleep (it then prints its summary and calls done())
      if [ "$(find "$WORK" -maxdepth 1 -name 'done-*' | wc -l)" -ge "$threads" ]; then kill -INT "$WRK_PID" 2>/dev/null || true; break; fi
      sleep 0.2
    done
  fi
}

fd_count() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }

sample_rss() {  # background: "<unix time> <VmRSS KiB> <fds>" every SOAK_SAMPLE_S seconds
  local pid=$1 out=$2 every=${SOAK_SAMPLE_S:-5}
  (
    while kill -0 "$pid" 2>/dev/null; do
      rss=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null) || break
      fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
      echo "$(date +%s.%N) $rss $fds" >>"$out"
      sleep "$every"
    done
  ) &
  SAMPLER_PID=$!
  PIDS_TO_STOP+=("$SAMPLER_PID")
}

soak_main() {
  local requests=${1:-2000000} conc=${2:-128}
  soak_workdir
  build_release
  ensure_wrk
  [ "${SOAK_UPSTREAM:-uvicorn}" = "echo" ] || ensure_python
  start_upstream
  start_sidecar
  mint_tokens
  write_lua
  log "sidecar pid $SC_PID on :$SC_PORT, upstream $UPSTREAM; warm-up ${SOAK_WARMUP_S:-10} s"
  run_wrk "$WORK/warmup.out" 0 "${SOAK_WARMUP_S:-10}" "$conc"
  wait "$WRK_PID" || true
  grep -q '^SOAK errors' "$WORK/warmup.out" || die "wrk warm-up failed: $(cat "$WORK/warmup.out")"
  sleep 2
  local fds_before fds_after
  fds_before=$(fd_count "$SC_PID")  # idle, upstream pool warmed
  log "soak: $requests requests at c=$conc, RSS every ${SOAK_SAMPLE_S:-5} s"
  sample_rss "$SC_PID" "$WORK/rss.tsv"
  local t0=$SECONDS
  run_wrk "$WORK/wrk.out" "$requests" 36000 "$conc"
  wait "$WRK_PID" || true
  kill "$SAMPLER_PID" 2>/dev/null || true
  # one last sample after the run
  echo "$(date +%s.%N) $(awk '/^VmRSS:/{print $2}' "/proc/$SC_PID/status") $(find "/proc/$SC_PID/fd" -mindepth 1 -maxdepth 1 | wc -l)" >>"$WORK/rss.tsv"
  log "wrk finished after $((SECONDS - t0)) s"
  sed -n '1,/^SOAK/p' "$WORK/wrk.out" | grep -v '^SOAK' >&2 || true
  kill -0 "$SC_PID" 2>/dev/null || die "the sidecar died during the soak (log: $WORK/sidecar.log)"
  sleep 2
  fds_after=$(fd_count "$SC_PID")
  python3 "$SOAK_HERE/soak_report.py" soak "$WORK/wrk.out" "$WORK/rss.tsv" "$requests" "${SOAK_RSS_TOLERANCE:-5}" "$fds_before" "$fds_after"
}

if [ "${SOAK_LIB:-0}" != "1" ] && [ "${BASH_SOURCE[0]}" = "$0" ]; then
  soak_main "$@"
fi
