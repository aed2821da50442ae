# shellcheck shell=bash disable=SC2034  # sourced: the variables it sets (FLOOR_BIN, BIN) are the callers'
# Shared by the bench scripts (sourced): the toolchain on PATH, missing tools installed, the kit's tokens made, and
#   bench_binary            BIN = the release binary as deploy/Dockerfile builds it (static Swift runtime; scratch
#                           path .build-static; installs the libssl/libjansson headers it needs), unless BIN is set
#   nio_floor_binary        FLOOR_BIN = the NIO byte relay of Tests/bench/nio-floor, built release as the sidecar is
#   bench_upstream DIR PORT start a one-worker nginx upstream from the kit's config in DIR (pid in DIR/nginx.pid)
# Callers: cd to the repository root and set KIT and ROOT first; bench_tools TOOL... installs what is missing.
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"

bench_tools() {
    local need=() tool
    for tool in "$@"; do command -v "$tool" >/dev/null || need+=("$tool"); done
    [ ${#need[@]} -eq 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
    [ -s "$KIT/tokens/jwe.txt" ] || "$KIT/setup.sh" >/dev/null
}

bench_binary() {
    if [ -z "${BIN:-}" ]; then
        local need=() pkg
        for pkg in libssl-dev libjansson-dev pkg-config; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
        [ ${#need[@]} -eq 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
        swift build -c release --static-swift-stdlib --scratch-path .build-static --product authjs-sidecar >&2
        BIN=$ROOT/.build-static/release/authjs-sidecar
    fi
}

nio_floor_binary() {
    (cd "$ROOT/Tests/bench/nio-floor" && swift build -c release --static-swift-stdlib >&2)
    FLOOR_BIN=$ROOT/Tests/bench/nio-floor/.build/release/NIOFloor
}

bench_upstream() {
    local dir=$1 port=$2
    mkdir -p "$dir/tmp"
    sed -e "s#@RUN@#$dir#g" -e "s#@PORT@#$port#g" -e "s#nginx-upstream.tmp#tmp#g" "$KIT/conf/nginx-upstream.conf.in" \
        | sed -e "s#pid .*;#pid $dir/nginx.pid;#" > "$dir/nginx.conf"
    nginx -c "$dir/nginx.conf"
}
