# shellcheck shell=bash
# Shared by scripts/librdkafka-tests.sh and scripts/smoke.sh (sourced, not run):
#   - find or build the `skein` binary,
#   - start a fresh single-node skein on a free 127.0.0.1 port with a temporary data dir,
#     or a cluster of N nodes (all controller voters), and stop every process started here
#     when the calling script exits (trap),
#   - locate librdkafka inside the rdkafka-sys crate in the cargo registry and build it
#     (libraries, and optionally its test-runner) in a cached copy under target/.
# Everything here talks to 127.0.0.1 only.

SKEIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SKEIN_STARTUP_TIMEOUT_S=${SKEIN_STARTUP_TIMEOUT_S:-60}
# How long a SIGTERMed cluster node may take (controlled shutdown) before it is SIGKILLed.
SKEIN_STOP_TIMEOUT_S=${SKEIN_STOP_TIMEOUT_S:-10}
# How long a new cluster may take until every node lists every broker.
SKEIN_CLUSTER_READY_TIMEOUT_S=${SKEIN_CLUSTER_READY_TIMEOUT_S:-60}
# The [broker] table when SKEIN_BROKER_CONF is not set: librdkafka's "default" test scenario.
SKEIN_DEFAULT_BROKER_CONF='"auto.create.topics.enable" = true
"num.partitions" = 4'

log() { printf '%s: %s\n' "${SCRIPT_NAME:-skein}" "$*" >&2; }
die() { log "error: $*"; exit 2; }

# ---------------------------------------------------------------------------------------------
# Cleanup: every background process and temp dir registered here goes when the script exits.
# _CLEANUP_PIDS are SIGKILLed; _CLEANUP_TERM_PIDS (cluster nodes) are SIGTERMed first.
_CLEANUP_PIDS=()
_CLEANUP_TERM_PIDS=()
_CLEANUP_DIRS=()
SKEIN_NODE_PIDS=()
_cleanup() {
    local pid dir
    skein_stop_pids "$SKEIN_STOP_TIMEOUT_S" "${_CLEANUP_TERM_PIDS[@]}"
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

# skein_stop_pids TIMEOUT_S PID...
#   SIGTERMs every PID still running, waits up to TIMEOUT_S seconds for all of them to exit, then
#   SIGKILLs the rest. Only for children of this shell (it reaps them).
skein_stop_pids() {
    local timeout_s=$1 pid i deadline
    local running=()
    shift
    for pid in "$@"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            running+=("$pid")
        fi
    done
    deadline=$((SECONDS + timeout_s))
    while [ "${#running[@]}" -gt 0 ] && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
        for i in "${!running[@]}"; do
            kill -0 "${running[i]}" 2>/dev/null || unset "running[i]"
        done
    done
    for pid in "${running[@]}"; do
        log "pid $pid still running ${timeout_s}s after SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        wait "$pid" 2>/dev/null || true
    done
}

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

# skein_free_ports [N]
#   N distinct ports (default 1), one a line, that were free a moment ago (all bound to port 0
#   at once, then released). A broker may still lose the race to another process; skein_start
#   and skein_cluster_start retry.
skein_free_ports() {
    python3 - "${1:-1}" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
for s in socks:
    s.close()
EOF
}

skein_default_shards() {
    local n
    n=$(nproc 2>/dev/null || echo 1)
    if [ "$n" -ge 2 ]; then echo "0-1"; else echo "0"; fi
}

# _skein_write_conf FILE NODE_ID DATA_DIR SHARDS KAFKA_PORT [INTERNAL_PORT VOTERS]
#   Writes a broker config. With INTERNAL_PORT and VOTERS (a TOML array's contents) the node
#   is a controller voter of a multi-node cluster; without, a single-node broker. The [broker]
#   table is SKEIN_BROKER_CONF (default SKEIN_DEFAULT_BROKER_CONF).
_skein_write_conf() {
    local file=$1 id=$2 data=$3 shards=$4 kafka_port=$5 internal_port=${6:-} voters=${7:-}
    {
        cat <<EOF
[node]
id = $id
data_dir = "$data"
[cores]
shards = "$shards"
[listeners]
kafka = "127.0.0.1:$kafka_port"
EOF
        if [ -n "$internal_port" ]; then
            printf 'internal = "127.0.0.1:%s"\n[controller]\nvoters = [%s]\n' \
                "$internal_port" "$voters"
        fi
        printf '[broker]\n%s\n' "${SKEIN_BROKER_CONF:-$SKEIN_DEFAULT_BROKER_CONF}"
    } >"$file"
}

# _skein_launch CONF LOG
#   Starts `skein broker --config CONF` in the background, output to LOG; sets _SKEIN_LAUNCHED.
#   The caller registers the pid for cleanup.
_skein_launch() {
    "$SKEIN_BIN" broker --config "$1" >"$2" 2>&1 </dev/null &
    _SKEIN_LAUNCHED=$!
}

# _skein_await_listening PID PORT LOG
#   Waits for the broker's listening line. Returns 0 when it printed it, 3 when the broker
#   exited because a port was taken (retry on other ports), 1 otherwise (log tail printed;
#   a broker that is still running is killed).
_skein_await_listening() {
    local pid=$1 port=$2 logfile=$3 deadline
    deadline=$((SECONDS + SKEIN_STARTUP_TIMEOUT_S))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if grep -q "skein: listening on 127.0.0.1:$port" "$logfile" 2>/dev/null; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        log "skein did not print its listening line within ${SKEIN_STARTUP_TIMEOUT_S}s; log tail ($logfile):"
        tail -n 30 "$logfile" >&2 || true
        return 1
    fi
    wait "$pid" 2>/dev/null || true
    if grep -qiE 'address (already )?in use|EADDRINUSE' "$logfile"; then
        return 3
    fi
    log "skein exited during startup; log tail ($logfile):"
    tail -n 30 "$logfile" >&2 || true
    return 1
}

# skein_start WORKDIR
#   Starts one broker. WORKDIR holds skein.toml and skein.log (kept for the report); the data
#   dir is a fresh temp dir removed on exit. Broker settings: SKEIN_BROKER_CONF (TOML lines for
#   the [broker] table), default auto-create on with 4 partitions. SKEIN_SHARDS: core list.
#   Sets SKEIN_PID, SKEIN_PORT, SKEIN_BOOTSTRAP, SKEIN_DATA, SKEIN_LOG.
skein_start() {
    local workdir=$1 attempt conf rc
    mkdir -p "$workdir"
    ulimit -l unlimited 2>/dev/null || true
    SKEIN_DATA=$(mktemp -d "${TMPDIR:-/tmp}/skein-data.XXXXXX")
    _CLEANUP_DIRS+=("$SKEIN_DATA")
    conf="$workdir/skein.toml"
    SKEIN_LOG="$workdir/skein.log"
    for attempt in 1 2 3 4 5; do
        SKEIN_PORT=$(skein_free_ports 1)
        _skein_write_conf "$conf" 1 "$SKEIN_DATA" "${SKEIN_SHARDS:-$(skein_default_shards)}" \
            "$SKEIN_PORT"
        _skein_launch "$conf" "$SKEIN_LOG"
        SKEIN_PID=$_SKEIN_LAUNCHED
        _CLEANUP_PIDS+=("$SKEIN_PID")
        rc=0
        _skein_await_listening "$SKEIN_PID" "$SKEIN_PORT" "$SKEIN_LOG" || rc=$?
        case $rc in
        0)
            SKEIN_BOOTSTRAP="127.0.0.1:$SKEIN_PORT"
            log "skein pid $SKEIN_PID listening on $SKEIN_BOOTSTRAP (data $SKEIN_DATA, log $SKEIN_LOG)"
            return 0
            ;;
        3) log "port $SKEIN_PORT was taken (attempt $attempt), retrying" ;;
        *) return 1 ;;
        esac
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
# A cluster of N nodes on 127.0.0.1, every one a controller voter (N = 1, 3 or 5).

# skein_cluster_start WORKDIR N
#   Starts nodes 1..N, each with a free Kafka and internal port, its own temp data dir (removed
#   on exit) and WORKDIR/node-<id>/{skein.toml,skein.log}; every node lists all N as voters.
#   Node i runs on CPU (i-1) mod nproc (SKEIN_SHARDS: the core list of every node instead).
#   All nodes are launched before any is waited for (a node may wait for its controller quorum
#   before it listens); then waits until every node's Metadata lists all N brokers (kcat).
#   Broker settings as for skein_start. Nodes are SIGTERMed on exit (skein_cluster_stop).
#   Sets SKEIN_NODE_PIDS, SKEIN_NODE_PORTS, SKEIN_NODE_LOGS (arrays, index id-1) and
#   SKEIN_BOOTSTRAP (every node, comma-separated).
skein_cluster_start() {
    local workdir=$1 n=$2 attempt i id rc ports voters data cpus nodedir taken
    cpus=$(nproc 2>/dev/null || echo 1)
    ulimit -l unlimited 2>/dev/null || true
    local datas=()
    for ((i = 0; i < n; i++)); do
        data=$(mktemp -d "${TMPDIR:-/tmp}/skein-data.XXXXXX")
        _CLEANUP_DIRS+=("$data")
        datas+=("$data")
    done
    for attempt in 1 2 3 4 5; do
        mapfile -t ports < <(skein_free_ports $((2 * n)))
        [ "${#ports[@]}" = $((2 * n)) ] || { log "could not pick free ports"; return 1; }
        SKEIN_NODE_PORTS=("${ports[@]:0:n}")
        voters=
        for ((i = 0; i < n; i++)); do
            voters+="${voters:+, }\"$((i + 1))@127.0.0.1:${ports[n + i]}\""
        done
        SKEIN_NODE_PIDS=()
        SKEIN_NODE_LOGS=()
        for ((i = 0; i < n; i++)); do
            id=$((i + 1))
            nodedir="$workdir/node-$id"
            mkdir -p "$nodedir"
            rm -rf "${datas[i]:?}" && mkdir "${datas[i]}"
            _skein_write_conf "$nodedir/skein.toml" "$id" "${datas[i]}" \
                "${SKEIN_SHARDS:-$((i % cpus))}" "${ports[i]}" "${ports[n + i]}" "$voters"
            _skein_launch "$nodedir/skein.toml" "$nodedir/skein.log"
            SKEIN_NODE_PIDS+=("$_SKEIN_LAUNCHED")
            SKEIN_NODE_LOGS+=("$nodedir/skein.log")
            _CLEANUP_TERM_PIDS+=("$_SKEIN_LAUNCHED")
        done
        taken=0
        for ((i = 0; i < n; i++)); do
            rc=0
            _skein_await_listening "${SKEIN_NODE_PIDS[i]}" "${SKEIN_NODE_PORTS[i]}" \
                "${SKEIN_NODE_LOGS[i]}" || rc=$?
            case $rc in
            0) ;;
            3)
                log "node $((i + 1)): a port was taken (attempt $attempt); new ports for all"
                taken=1
                break
                ;;
            *)
                log "node $((i + 1)) did not start"
                skein_cluster_stop
                return 1
                ;;
            esac
        done
        if [ "$taken" = 1 ]; then
            skein_cluster_stop
            continue
        fi
        SKEIN_BOOTSTRAP=
        for ((i = 0; i < n; i++)); do
            SKEIN_BOOTSTRAP+="${SKEIN_BOOTSTRAP:+,}127.0.0.1:${SKEIN_NODE_PORTS[i]}"
        done
        log "skein cluster of $n listening on $SKEIN_BOOTSTRAP (pids ${SKEIN_NODE_PIDS[*]}, logs $workdir/node-*/skein.log)"
        if ! skein_cluster_wait_ready; then
            skein_cluster_stop
            return 1
        fi
        return 0
    done
    log "could not find free ports for the cluster"
    return 1
}

# skein_cluster_wait_ready
#   Waits (SKEIN_CLUSTER_READY_TIMEOUT_S) until every node of the cluster answers Metadata
#   listing every node at its port; `kcat -L` run with the current librdkafka (rdkafka_lib_dir).
skein_cluster_wait_ready() {
    local n=${#SKEIN_NODE_PORTS[@]} lib deadline i j md pending start=$SECONDS
    lib=$(rdkafka_lib_dir)
    command -v kcat >/dev/null || { log "kcat not found: run scripts/install-deps.sh"; return 1; }
    deadline=$((SECONDS + SKEIN_CLUSTER_READY_TIMEOUT_S))
    while :; do
        pending=
        for ((i = 0; i < n; i++)); do
            md=$(LD_LIBRARY_PATH="$lib" timeout 10 kcat -L -m 2 \
                -b "127.0.0.1:${SKEIN_NODE_PORTS[i]}" 2>&1 </dev/null || true)
            for ((j = 0; j < n; j++)); do
                if ! grep -qE "^ +broker $((j + 1)) at 127\.0\.0\.1:${SKEIN_NODE_PORTS[j]}( |$)" \
                    <<<"$md"; then
                    pending+=" $((i + 1))"
                    break
                fi
            done
        done
        if [ -z "$pending" ]; then
            log "every node lists all $n brokers ($((SECONDS - start))s)"
            return 0
        fi
        if ! skein_cluster_alive; then
            log "a cluster node exited before the cluster was ready"
            skein_cluster_log_tails dead >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "nodes${pending} do not list all $n brokers after ${SKEIN_CLUSTER_READY_TIMEOUT_S}s; last answer:"
            printf '%s\n' "$md" | head -n 20 >&2
            skein_cluster_log_tails all >&2
            return 1
        fi
        sleep 0.5
    done
}

# True while every node of the cluster runs.
skein_cluster_alive() {
    local pid
    [ "${#SKEIN_NODE_PIDS[@]}" -gt 0 ] || return 1
    for pid in "${SKEIN_NODE_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null || return 1
    done
}

# skein_cluster_log_tails all|dead: prints the log tail of every node, or of every node that
# is not running.
skein_cluster_log_tails() {
    local which=$1 i
    for i in "${!SKEIN_NODE_PIDS[@]}"; do
        if [ "$which" = all ] || ! kill -0 "${SKEIN_NODE_PIDS[i]}" 2>/dev/null; then
            echo "----- node $((i + 1)) log tail (${SKEIN_NODE_LOGS[i]}) -----"
            tail -n 40 "${SKEIN_NODE_LOGS[i]}"
        fi
    done
}

# SIGTERMs every node at once; SIGKILLs those still running after SKEIN_STOP_TIMEOUT_S.
skein_cluster_stop() {
    local start=$SECONDS
    [ "${#SKEIN_NODE_PIDS[@]}" -gt 0 ] || return 0
    skein_stop_pids "$SKEIN_STOP_TIMEOUT_S" "${SKEIN_NODE_PIDS[@]}"
    log "cluster stopped ($((SECONDS - start))s)"
    SKEIN_NODE_PIDS=()
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
#   With "tests", tests/test.c is patched first (scripts/lib/librdkafka-test-rf.patch).
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
    if [ "$want_tests" = tests ] && [ ! -f "$RDKAFKA_BUILD_DIR/.skein-test-rf-patched" ]; then
        # One change to the test framework: env TEST_REPLICATION_FACTOR, when set, is the
        # replication factor of every topic a test creates (the tests hard-code theirs).
        log "patching librdkafka's tests/test.c (TEST_REPLICATION_FACTOR)"
        patch -p1 --forward -d "$RDKAFKA_BUILD_DIR" \
            <"$SKEIN_ROOT/scripts/lib/librdkafka-test-rf.patch" >&2 ||
            die "scripts/lib/librdkafka-test-rf.patch does not apply"
        touch "$RDKAFKA_BUILD_DIR/.skein-test-rf-patched"
        rm -f "$RDKAFKA_BUILD_DIR/.skein-tests-built"
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
