#!/usr/bin/env bash
# The Swift test suite under AddressSanitizer (+ LeakSanitizer) and/or ThreadSanitizer, each in its own build folder.
#   Tests/sanitizers/run.sh            address and thread
#   Tests/sanitizers/run.sh address    one of them (the CI runs `address`)
# Exit status non-zero if a build fails, a test fails, or a sanitizer reports anything (reports make the test
# process exit non-zero: ASan/TSan halt_on_error, LSan at exit).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
SUPP="$ROOT/Tests/sanitizers/lsan.supp"
KINDS=("$@")
[ ${#KINDS[@]} -eq 0 ] && KINDS=(address thread)

status=0
for kind in "${KINDS[@]}"; do
  case "$kind" in
    address)
      export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=0"
      export LSAN_OPTIONS="suppressions=$SUPP:print_suppressions=0"
      ;;
    thread)
      export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
      ;;
    *) echo "unknown sanitizer $kind (address | thread)"; exit 2 ;;
  esac
  echo "== swift test --sanitize=$kind (scratch .build-$kind)"
  mkdir -p "$ROOT/.build-$kind"
  start=$(date +%s)
  # SWIFT_BACKTRACE off: the Swift runtime's backtracer and the sanitizer's own report would fight over a crash.
  if SWIFT_BACKTRACE=enable=no swift test --sanitize="$kind" --scratch-path "$ROOT/.build-$kind" 2>&1 | tee "$ROOT/.build-$kind/test.log" | \
       grep -E "Test run with|✘|ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|SUMMARY:"; then :; fi
  rc=${PIPESTATUS[0]}
  if grep -qE "ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer" "$ROOT/.build-$kind/test.log"; then rc=1; fi
  echo "== $kind: exit $rc after $(( $(date +%s) - start )) s (log: .build-$kind/test.log)"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
