#!/usr/bin/env bash
# Performance benchmark: builds the release binary as deploy/Dockerfile does (static Swift runtime; own scratch path
# .build-static) and runs the shared anchors kit (../shared/bench) with the sidecar next to HAProxy-jwt (the kit adds
# `direct` and `nginx` for the ratios). Prints the kit's table with rps, p50/p99, CPU µs per request, RSS and ratios
# to nginx.  BIN=path/to/authjs-sidecar measures another build.
#   SIDECAR_THREADS=1 (default) | 2      SIDECAR_TOKEN=jwe-cookie (default) | jwe-bearer | jws-bearer
#   NIO_FLOOR=1 adds `nio-floor`, the byte relay of Tests/bench/nio-floor (SwiftNIO with no HTTP and no token: what
#                NIO's event loop and socket I/O alone cost a proxy on this machine)
#   extra arguments go to the kit, e.g.  Tests/bench/run.sh -c 64,256 -r 3 -d 10
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KIT=${BENCH_KIT:-$ROOT/../shared/bench}
[ -x "$KIT/run.sh" ] || { echo "bench kit not found at $KIT (set BENCH_KIT)"; exit 2; }
. Tests/bench/common.sh
bench_binary
THREADS=${SIDECAR_THREADS:-1}
# Access log off, as the kit's nginx and HAProxy run without one; JWE formats only, because the kit's checks require a
# JWE verifier to refuse its HS256 token ("a token of the other family"). Everything else is the default configuration.
export SIDECAR_CMD="SIDECAR_LISTEN=127.0.0.1:\$LISTEN_PORT SIDECAR_UPSTREAM=\$UPSTREAM_URL SIDECAR_THREADS=$THREADS SIDECAR_ACCESS_LOG=false SIDECAR_LOG_LEVEL=warning SIDECAR_TOKEN_FORMATS=authjs-v5,nextauth-v4 exec $BIN serve"
export SIDECAR_TOKEN=${SIDECAR_TOKEN:-jwe-cookie}
floor=()
if [ "${NIO_FLOOR:-0}" = 1 ]; then
    nio_floor_binary
    floor=(--extra "nio-floor 18097 exec $FLOOR_BIN 18097 \$UPSTREAM_PORT" --extra-noauth)
fi
exec "$KIT/run.sh" sidecar haproxy-jwt ${floor[@]+"${floor[@]}"} "$@"
