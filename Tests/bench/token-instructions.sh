#!/usr/bin/env bash
# Instructions per operation of SidecarBench cases, counted by valgrind (callgrind): repeatable where the ns/op of
# `swift run -c release SidecarBench` drifts with the box. Each case runs twice (N1 and N2 iterations per timed run;
# every run makes its tokens and keys alike) and the difference is divided by the operations between them
# (5.2 × (N2 − N1): a warm-up of N/5 and five runs of N), so set-up cancels out.
#   Tests/bench/token-instructions.sh [CASE…]     default: v5-cbc-verify v5-gcm-verify v4-verify hs256-verify
#                                                 authenticate-cookie-cached part-json-parse-claims
#   N1=250 N2=1250 (iterations per timed run)     KEEP_PROFILE=dir keeps the callgrind outputs
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
N1=${N1:-250}; N2=${N2:-1250}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(v5-cbc-verify v5-gcm-verify v4-verify hs256-verify authenticate-cookie-cached part-json-parse-claims)
swift build -c release --product SidecarBench >/dev/null
RUN=$(mktemp -d /tmp/token-instr.XXXXXX)
trap 'rm -rf "$RUN"' EXIT
# valgrind cannot read the Swift toolchain's DWARF; symbols (the symbol table) are kept.
strip --strip-debug -o "$RUN/bench" .build/release/SidecarBench
count() {  # count CASE N -> total instructions of one SidecarBench run of CASE at N iterations
    valgrind --tool=callgrind --callgrind-out-file="$RUN/cg.$1.$2" "$RUN/bench" --only "=$1" --iterations "$2" \
        >"$RUN/out.$1.$2" 2>&1 || { cat "$RUN/out.$1.$2" >&2; exit 1; }
    grep -q "^$1 " "$RUN/out.$1.$2" || { echo "no case named $1" >&2; exit 1; }
    awk '/^summary:/ {print $2}' "$RUN/cg.$1.$2"
}
for c in "${cases[@]}"; do
    a=$(count "$c" "$N1"); b=$(count "$c" "$N2")
    awk -v c="$c" -v a="$a" -v b="$b" -v n="$(( (N2 - N1) * 26 / 5 ))" \
        'BEGIN { printf "%-28s %9.0f instructions/op\n", c, (b - a) / n }'
done
if [ -n "${KEEP_PROFILE:-}" ]; then mkdir -p "$KEEP_PROFILE" && cp "$RUN"/cg.* "$KEEP_PROFILE/"; fi
