# shellcheck shell=bash
# Shared by scripts/librdkafka-tests.sh and scripts/smoke.sh (sourced, not run):
#   - find or build the `skein` binary,
#   - start a fresh single-node skein on a free 127.0.0.1 port with a temporary data dir,
#     and kill every process started here when the calling script exits (trap),
#   - locate librdkafka inside the rdkafka-sys crate in the cargo registry and build it
#     (libraries, and optionally its test-runner) in a cached copy under target/.
# Everything here talks to 127.0.0.1 only.

SKEIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SKEIN_STARTUP_TIMEOUT_S=${SKEIN_STARTUP_TIMEOUT_S:-60}

log() { printf '%s: %s\n' "${SCRIPT_NAME:-skein}" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# ---------------------------------------------------------------------------------------------
# Cleanup: every background process and temp dir registered here goes when the script exits.
_CLEANUP_PIDS=()
_CLEANUP_DIRS=()
_cleanup() {
    local pid dir
    for pid in "${_CLEANUP_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for dir in "${_CLEANUP_DIRS[@]}"; do
        rm -rf -- "$dir"
    done
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Cargo's target dir: CARGO_TARGET_DIR (relative to the repository root, where cargo runs) or
# target/.
skein_cargo_target_dir() {
    case ${CARGO_TARGET_DIR:-} in
    "") echo "$SKEIN_ROOT/target" ;;
    /*) echo "$CARGO_TARGET_DIR" ;;
    *) echo "$SKEIN_ROOT/$CARGO_TARGET_DIR" ;;
    esac
}

# The broker binary. SKEIN_BIN overrides; the default is built when missing.
skein_resolve_bin() {
    if [ -n "${SKEIN_BIN:-}" ]; then
        [ -x "$SKEIN_BIN" ] || die "SKEIN_BIN=$SKEIN_BIN is not an executable file"
        return
    fi
    SKEIN_BIN="$(skein_cargo_target_dir)/release/skein"
    # Always asked: cargo does nothing when the binary is current, and a stale binary would
    # test old code.
    log "building $SKEIN_BIN (cargo build --release -p skein-broker)"
    (cd "$SKEIN_ROOT" && cargo build --release -p skein-broker) >&2 ||
        die "cargo build --release -p skein-broker failed"
    [ -x "$SKEIN_BIN" ] || die "no skein binary at $SKEIN_BIN after the build"
}

# A port that was free a moment ago (bound to port 0 and released). The broker may still lose
# the race to another process; skein_start retries.
skein_free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

skein_default_shards() {
    local n
    n=$(nproc 2>/dev/null || echo 1)
    if [ "$n" -ge 2 ]; then echo "0-1"; else echo "0"; fi
}

# skein_start WORKDIR
#   Starts one broker. WORKDIR holds skein.toml and skein.log (kept for the report); the data
#   dir is a fresh temp dir removed on exit. Broker settings: SKEIN_BROKER_CONF (TOML lines for
#   the [broker] table), default auto-create on with 4 partitions. SKEIN_SHARDS: core list.
#   Sets SKEIN_PID, SKEIN_PORT, SKEIN_BOOTSTRAP, SKEIN_DATA, SKEIN_LOG.
skein_start() {
    local workdir=$1 attempt conf deadline
    mkdir -p "$workdir"
    ulimit -l unlimited 2>/dev/null || true
    SKEIN_DATA=$(mktemp -d "${TMPDIR:-/tmp}/skein-data.XXXXXX")
    _CLEANUP_DIRS+=("$SKEIN_DATA")
    conf="$workdir/skein.toml"
    SKEIN_LOG="$workdir/skein.log"
    for attempt in 1 2 3 4 5; do
        SKEIN_PORT=$(skein_free_port)
        cat >"$conf" <<EOF
[node]
id = 1
data_dir = "$SKEIN_DATA"
[cores]
shards = "${SKEIN_SHARDS:-$(skein_default_shards)}"
[listeners]
kafka = "127.0.0.1:$SKEIN_PORT"
[broker]
${SKEIN_BROKER_CONF:-"auto.create.topics.enable" = true
"num.partitions" = 4}
EOF
        "$SKEIN_BIN" broker --config "$conf" >"$SKEIN_LOG" 2>&1 </dev/null &
        SKEIN_PID=$!
        _CLEANUP_PIDS+=("$SKEIN_PID")
        deadline=$((SECONDS + SKEIN_STARTUP_TIMEOUT_S))
        while [ "$SECONDS" -lt "$deadline" ]; do
            if grep -q "skein: listening on 127.0.0.1:$SKEIN_PORT" "$SKEIN_LOG" 2>/dev/null; then
                SKEIN_BOOTSTRAP="127.0.0.1:$SKEIN_PORT"
                log "skein pid $SKEIN_PID listening on $SKEIN_BOOTSTRAP (data $SKEIN_DATA, log $SKEIN_LOG)"
                return 0
            fi
            kill -0 "$SKEIN_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SKEIN_PID" 2>/dev/null; then
            kill -KILL "$SKEIN_PID" 2>/dev/null || true
            wait "$SKEIN_PID" 2>/dev/null || true
            log "skein did not print its listening line within ${SKEIN_STARTUP_TIMEOUT_S}s; log tail:"
            tail -n 30 "$SKEIN_LOG" >&2 || true
            return 1
        fi
        wait "$SKEIN_PID" 2>/dev/null || true
        if grep -qiE 'address (already )?in use|EADDRINUSE' "$SKEIN_LOG"; then
            log "port $SKEIN_PORT was taken (attempt $attempt), retrying"
            continue
        fi
        log "skein exited during startup; log tail:"
        tail -n 30 "$SKEIN_LOG" >&2 || true
        return 1
    done
    log "could not find a free port for skein"
    return 1
}

skein_alive() { [ -n "${SKEIN_PID:-}" ] && kill -0 "$SKEIN_PID" 2>/dev/null; }

skein_stop() {
    if skein_alive; then
        kill -KILL "$SKEIN_PID" 2>/dev/null || true
        wait "$SKEIN_PID" 2>/dev/null || true
    fi
    SKEIN_PID=
}

# ---------------------------------------------------------------------------------------------
# librdkafka from the rdkafka-sys crate in the cargo registry (the same sources the rdkafka
# dev-dependency builds). The registry copy is never modified: it is copied under target/.

rdkafka_sys_version() {
    awk '/^name = "rdkafka-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
        "$SKEIN_ROOT/Cargo.lock"
}

# Prints the first of its arguments that exists (an unmatched glob stays a literal pattern).
_first_existing() {
    local path
    for path in "$@"; do
        if [ -e "$path" ]; then
            echo "$path"
            return
        fi
    done
}

# Prints the registry's librdkafka directory, running `cargo fetch` first when it is absent.
rdkafka_registry_src() {
    local ver dir cargo_home
    ver=$(rdkafka_sys_version)
    [ -n "$ver" ] || die "rdkafka-sys not found in Cargo.lock"
    cargo_home=${CARGO_HOME:-$HOME/.cargo}
    dir=$(_first_existing "$cargo_home"/registry/src/*/"rdkafka-sys-$ver"/librdkafka)
    if [ -z "$dir" ]; then
        log "cargo fetch (rdkafka-sys-$ver not in the registry yet)"
        (cd "$SKEIN_ROOT" && cargo fetch) >&2 || die "cargo fetch failed"
        dir=$(_first_existing "$cargo_home"/registry/src/*/"rdkafka-sys-$ver"/librdkafka)
    fi
    if [ -z "$dir" ] || [ ! -f "$dir/configure" ]; then die "no librdkafka in rdkafka-sys-$ver"; fi
    echo "$dir"
}

# rdkafka_build libs|tests
#   Configures and builds librdkafka (and with "tests" its test-runner) in
#   target/librdkafka/<rdkafka-sys version>/librdkafka, offline. Stamps make reruns instant.
#   Sets RDKAFKA_WORK_DIR (build logs) and RDKAFKA_BUILD_DIR (the source copy).
rdkafka_build() {
    local want_tests=$1 src ver jobs
    ver=$(rdkafka_sys_version)
    RDKAFKA_WORK_DIR="$SKEIN_ROOT/target/librdkafka/$ver"
    RDKAFKA_BUILD_DIR="$RDKAFKA_WORK_DIR/librdkafka"
    jobs=$(nproc 2>/dev/null || echo 2)
    if [ ! -f "$RDKAFKA_BUILD_DIR/.skein-copied" ]; then
        src=$(rdkafka_registry_src)
        log "copying $src -> $RDKAFKA_BUILD_DIR"
        rm -rf "$RDKAFKA_BUILD_DIR"
        mkdir -p "$(dirname "$RDKAFKA_BUILD_DIR")"
        cp -a "$src" "$RDKAFKA_BUILD_DIR"
        touch "$RDKAFKA_BUILD_DIR/.skein-copied"
    fi
    if [ ! -f "$RDKAFKA_BUILD_DIR/.skein-configured" ]; then
        log "configuring librdkafka $ver (offline: no ssl, gssapi or curl)"
        (cd "$RDKAFKA_BUILD_DIR" &&
            ./configure --disable-ssl --disable-gssapi --disable-curl --enable-zstd \
                --disable-lz4-ext >"$RDKAFKA_WORK_DIR/configure.log" 2>&1) ||
            { tail -n 30 "$RDKAFKA_WORK_DIR/configure.log" >&2; die "librdkafka configure failed"; }
        touch "$RDKAFKA_BUILD_DIR/.skein-configured"
    fi
    if [ ! -f "$RDKAFKA_BUILD_DIR/.skein-libs-built" ]; then
        log "building librdkafka $ver (log: $RDKAFKA_WORK_DIR/build-libs.log)"
        (cd "$RDKAFKA_BUILD_DIR" && make -j"$jobs" libs >"$RDKAFKA_WORK_DIR/build-libs.log" 2>&1) ||
            { tail -n 30 "$RDKAFKA_WORK_DIR/build-libs.log" >&2; die "librdkafka build failed"; }
        touch "$RDKAFKA_BUILD_DIR/.skein-libs-built"
    fi
    if [ "$want_tests" = tests ] && [ ! -f "$RDKAFKA_BUILD_DIR/.skein-tests-built" ]; then
        log "building librdkafka's test-runner (log: $RDKAFKA_WORK_DIR/build-tests.log)"
        (cd "$RDKAFKA_BUILD_DIR/tests" &&
            make -j"$jobs" test-runner >"$RDKAFKA_WORK_DIR/build-tests.log" 2>&1) ||
            { tail -n 30 "$RDKAFKA_WORK_DIR/build-tests.log" >&2; die "test-runner build failed"; }
        touch "$RDKAFKA_BUILD_DIR/.skein-tests-built"
    fi
}

# Prints a directory holding a current librdkafka.so.1: the one the rdkafka-sys build script
# left under the cargo target dir's */build/, else the one rdkafka_build makes.
rdkafka_lib_dir() {
    local so target_dir
    target_dir=$(skein_cargo_target_dir)
    # The newest: ls -t sorts by mtime (these paths have no odd characters).
    # shellcheck disable=SC2012
    so=$(ls -t "$target_dir"/*/build/rdkafka-sys-*/out/src/librdkafka.so.1 2>/dev/null | head -n 1 || true)
    if [ -z "$so" ]; then
        rdkafka_build libs >&2
        so="$RDKAFKA_BUILD_DIR/src/librdkafka.so.1"
    fi
    [ -f "$so" ] || die "no librdkafka.so.1 found or built"
    dirname "$so"
}
