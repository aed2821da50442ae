#!/usr/bin/env bash
# Builds the libFuzzer binary, makes the seed corpora and fuzzes each target for N seconds.
#
#   Tests/fuzz/run.sh [seconds-per-target] [target...]        (default: 60 s, every target)
#
# Targets: token-v5 token-v4 token-jws token-auto cookie headers path config json pipeline forward upstream-response
#          client-request
# Environment:
#   FUZZ_PARALLEL=2   run up to this many targets at once (default 1; each libFuzzer process uses one core)
#   FUZZ_NICE=10      niceness of the fuzzers (default 10)
#   FUZZ_ARGS="..."   extra libFuzzer flags, e.g. "-max_len=4096 -use_value_profile=1"
#   FUZZ_BUILD=release  fuzz an optimised build (.build-fuzz/release/SidecarFuzz, ~3-8x more execs/s, slower to
#                     build, less precise stacks); default debug
#   SKIP_BUILD=1      reuse the existing binary;  SKIP_CORPUS=1  do not run make-corpus.py
#   FUZZ_IGNORE=a,b   count named invariants (e.g. path-query) instead of stopping on them; FUZZ_STRICT=0 skips
#                     the failure-reason check; FUZZ_OUTCOMES=1 prints outcome counts at exit (see README.md)
#
# Corpora grow in .build-fuzz/corpus/<target>/, crash/timeout/leak artefacts land in .build-fuzz/artifacts/,
# full libFuzzer logs in .build-fuzz/logs/<target>.log. Exit status: 0 when no target found anything, 1 otherwise,
# 2 on usage or build errors.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
ALL_TARGETS=(token-v5 token-v4 token-jws token-auto cookie headers path config json pipeline forward upstream-response client-request)
SECONDS_PER_TARGET=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then SECONDS_PER_TARGET=$1; shift; fi
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    case " ${ALL_TARGETS[*]} " in
        *" $t "*) ;;
        *) echo "run.sh: unknown target '$t' (known: ${ALL_TARGETS[*]})" >&2
           exit 2 ;;
    esac
done
PARALLEL=${FUZZ_PARALLEL:-1}
NICE=${FUZZ_NICE:-10}
SCRATCH=.build-fuzz
BUILD_CONFIG=${FUZZ_BUILD:-debug}
[[ $BUILD_CONFIG == debug || $BUILD_CONFIG == release ]] || { echo "run.sh: FUZZ_BUILD must be debug or release" >&2; exit 2; }
BIN=$SCRATCH/$BUILD_CONFIG/SidecarFuzz
ARTIFACTS=$SCRATCH/artifacts
LOGS=$SCRATCH/logs
CORPUS=$SCRATCH/corpus
mkdir -p "$ARTIFACTS" "$LOGS" "$CORPUS"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    if ! pkg-config --exists jansson openssl 2>/dev/null; then
        echo "run.sh: installing libssl-dev libjansson-dev" >&2
        apt-get install -y libssl-dev libjansson-dev >/dev/null || { echo "run.sh: apt-get failed" >&2; exit 2; }
    fi
    echo "run.sh: building $BIN (libFuzzer + AddressSanitizer)"
    if ! swift build -c "$BUILD_CONFIG" --scratch-path "$SCRATCH" --product SidecarFuzz --sanitize=fuzzer --sanitize=address \
            -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING >"$LOGS/build.log" 2>&1; then
        grep -E "error:" "$LOGS/build.log" | head -20 >&2
        echo "run.sh: build failed; see $LOGS/build.log" >&2
        exit 2
    fi
fi
[[ -x $BIN ]] || { echo "run.sh: $BIN is missing (run without SKIP_BUILD=1)" >&2; exit 2; }

if [[ ${SKIP_CORPUS:-0} != 1 ]]; then
    python3 Tests/fuzz/make-corpus.py --out "$CORPUS" "${TARGETS[@]}" || { echo "run.sh: make-corpus.py failed" >&2; exit 2; }
fi

# How many reproducers target $1 has left in $ARTIFACTS (libFuzzer names them <prefix><kind>-<hash>).
artifacts_of() {
    local n=0 f
    for f in "$ARTIFACTS/$1-"*; do [[ -e $f ]] && n=$((n + 1)); done
    echo "$n"
}

# One target: libFuzzer with the shared limits; the summary line is written to $LOGS/<target>.summary.
fuzz_one() {
    local t=$1 log=$LOGS/$1.log dict=Tests/fuzz/dict/$1.dict
    local before after
    before=$(artifacts_of "$t")
    local -a extra=()
    [[ -f $dict ]] && extra+=("-dict=$dict")
    # shellcheck disable=SC2086
    # SWIFT_BACKTRACE=enable=no: the Swift runtime's own crash backtracer otherwise starts on the first crash and can
    # hang the run; libFuzzer and ASan print the stack instead.
    FUZZ_TARGET=$t SWIFT_BACKTRACE=enable=no \
    LSAN_OPTIONS=suppressions=$ROOT/Tests/fuzz/lsan.supp:print_suppressions=0 \
        nice -n "$NICE" "$BIN" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-" "${extra[@]}" ${FUZZ_ARGS:-} "$CORPUS/$t" >"$log" 2>&1
    local rc=$?
    after=$(artifacts_of "$t")
    local execs rate cov
    execs=$(grep -oE 'stat::number_of_executed_units: +[0-9]+' "$log" | tail -1 | awk '{print $2}')
    rate=$(grep -oE 'stat::average_exec_per_sec: +[0-9]+' "$log" | tail -1 | awk '{print $2}')
    cov=$(grep -oE '(DONE|#[0-9]+) +cov: [0-9]+' "$log" | tail -1 | awk '{print $NF}')
    if [[ -z $execs ]]; then # a crash stops libFuzzer before the final stats
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    local status=ok
    if [[ $rc -ne 0 || $after -gt $before ]]; then
        status="FOUND (exit $rc): $(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|INVARIANT|Fatal error|SUMMARY' "$log" | cut -c1-160)"
        local art
        art=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | awk '{print $NF}')
        [[ -n $art ]] && status+=" -> $art"
    fi
    printf '%-10s %5ss %-7s execs %-12s exec/s %-8s cov %-6s corpus %-6s %s\n' "$t" "$SECONDS_PER_TARGET" "$BUILD_CONFIG" "${execs:-?}" \
        "${rate:-?}" "${cov:-?}" "$(ls "$CORPUS/$t" | wc -l)" "$status" >"$LOGS/$t.summary"
    [[ $status == ok ]]
}

echo "run.sh: fuzzing ${TARGETS[*]} for ${SECONDS_PER_TARGET}s each, ${PARALLEL} at a time (logs in $LOGS/)"
for t in "${TARGETS[@]}"; do
    rm -f "$LOGS/$t.summary"
    while [[ $(jobs -rp | wc -l) -ge $PARALLEL ]]; do wait -n || true; done
    fuzz_one "$t" &
done
wait
echo "run.sh: summary"
failed=0
for t in "${TARGETS[@]}"; do
    if [[ -f $LOGS/$t.summary ]]; then cat "$LOGS/$t.summary"; else echo "$t: no summary (see $LOGS/$t.log)"; failed=1; fi
    grep -q ' FOUND ' "$LOGS/$t.summary" 2>/dev/null && failed=1
done
if [[ $failed -ne 0 ]]; then
    echo "run.sh: at least one target found a problem; reproduce with: FUZZ_TARGET=<target> $BIN <artifact>  (see Tests/fuzz/README.md)"
    exit 1
fi
exit 0
