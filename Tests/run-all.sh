#!/usr/bin/env bash
# Runs every test of authjs-sidecar on a fresh Debian 12 machine: installs what the tests need (apt + a venv),
# builds, runs the Swift tests, the end-to-end tests against real FastAPI/nginx/Caddy/Chromium, the deploy checks
# and a libFuzzer smoke run. Exit status is non-zero if any suite failed.
#   FUZZ_SECONDS=60 (per fuzz target; 0 skips fuzzing), FUZZ_PARALLEL=2, SANITIZERS="address thread" (or none)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need=()
for p in libssl-dev libjansson-dev pkg-config nginx-light caddy chromium chromium-driver systemd shellcheck; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== apt-get install ${need[*]}"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null || { echo "apt-get install failed"; exit 1; }
fi

VENV="$ROOT/.build-venv"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV" || exit 1; fi
"$VENV/bin/pip" install -q -r Tests/e2e/requirements.txt -r deploy/examples/fastapi/requirements.txt || { echo "pip install failed"; exit 1; }

failed=()
passed=()
run() {  # run NAME CMD...
  local name=$1; shift
  echo; echo "== $name: $*"
  if "$@"; then passed+=("$name"); else failed+=("$name"); echo "!! $name FAILED"; fi
}

run build swift build --product authjs-sidecar
export AUTHJS_SIDECAR_BIN="$ROOT/.build/debug/authjs-sidecar"
run swift-test swift test
run e2e-and-deploy "$VENV/bin/python" -m pytest -q -p no:cacheprovider Tests/e2e Tests/deploy deploy/examples/fastapi
# The Swift upstream example (Hummingbird 2) builds and passes its own tests: what README shows must compile.
run swift-upstream-example swift test --package-path deploy/examples/swift-hummingbird --scratch-path "$ROOT/.build-hummingbird"
# The Swift tests again under AddressSanitizer (+ LeakSanitizer) and ThreadSanitizer (own build folders, ~2 min each).
[ "${SANITIZERS:-address thread}" != "none" ] && run sanitizers Tests/sanitizers/run.sh ${SANITIZERS:-address thread}
if [ "${FUZZ_SECONDS:-60}" != "0" ] && [ -x Tests/fuzz/run.sh ]; then
  # two targets at a time: libFuzzer uses one core each
  run fuzz-smoke env FUZZ_PARALLEL="${FUZZ_PARALLEL:-2}" Tests/fuzz/run.sh "${FUZZ_SECONDS:-60}"
fi

echo
echo "suites passed: ${passed[*]:-none}"
[ ${#failed[@]} -gt 0 ] && echo "suites failed: ${failed[*]}"
echo "${#passed[@]} passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
