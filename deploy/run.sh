#!/usr/bin/env bash
# Runs authjs-sidecar on a fresh Debian 12 machine: installs the two system libraries, builds a release binary and
# starts it. With no SIDECAR_UPSTREAM it runs the built-in echo upstream (a demo): every request shows exactly the
# headers an upstream would receive. With no AUTH_SECRET it makes a throw-away demo secret (never printed) and a
# demo session token in .build/demo-token.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
need=()
for p in libssl-dev libjansson-dev pkg-config; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
swift build -c release --product authjs-sidecar >&2
BIN=.build/release/authjs-sidecar
if [ -z "${AUTH_SECRET:-}${AUTH_SECRET_1:-}${AUTH_SECRET_2:-}${AUTH_SECRET_3:-}${NEXTAUTH_SECRET:-}" ]; then
  AUTH_SECRET=$(head -c 32 /dev/urandom | base64)
  export AUTH_SECRET
  "$BIN" mint '{"sub":"demo-user","name":"Demo User","email":"demo@example.com","picture":null}' > .build/demo-token
  port=${SIDECAR_LISTEN:-0.0.0.0:8080}; port=${port##*:}
  cat >&2 <<MSG

Demo mode: no AUTH_SECRET was set, so a throw-away one was generated and a session token for it was minted.
Try (in another shell):
  curl -s localhost:$port/hello -H "Cookie: authjs.session-token=\$(cat $PWD/.build/demo-token)"
  curl -si localhost:$port/hello            # 401: no session
MSG
fi
exec "$BIN" serve "$@"
