# shellcheck shell=bash
# Sourced by the perf/scripts/*.sh benchmarks (not run on its own):
#   - the binaries: skein, skein-perf, rdkafka_performance, tansu (env overrides, or built),
#   - start/stop a single-node skein (given CPUs, data dir) or tansu (in-memory, pinned),
#   - run skein-perf / rdkafka_performance and pull MB/s and msg/s out of their output.
# Everything here talks to 127.0.0.1 only; every process started here dies with the script.

PERF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PERF_OUT=${PERF_OUT:-$PERF_ROOT/target/perf-runs/$(date +%Y%m%d-%H%M%S)}
SKEIN_PORT=${SKEIN_PORT:-39092}
TANSU_PORT=${TANSU_PORT:-39192}

log() { printf '%s: %s\n' "${SCRIPT_NAME:-perf}" "$*" >&2; }
die() { log "error: $*"; exit 2; }

_PIDS=()
_DIRS=()
_cleanup() {
    local pid dir
    for pid in "${_PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 0.5
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    for dir in "${_DIRS[@]}"; do rm -rf -- "$dir"; done
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Binaries. Each can be given by environment (SKEIN_BIN, SKEIN_PERF_BIN, RDKAFKA_PERF_BIN,
# TANSU_BIN), e.g. on a machine without a toolchain; otherwise it is built here.
rdkafka_perf_path() {
    local ver
    ver=$(awk '/^name = "rdkafka-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' \
        "$PERF_ROOT/Cargo.lock")
    echo "$PERF_ROOT/target/librdkafka/$ver/librdkafka/examples/rdkafka_performance"
}

resolve_bins() {
    if [ -z "${SKEIN_BIN:-}" ] || [ -z "${SKEIN_PERF_BIN:-}" ]; then
        log "cargo build --release -p skein-broker -p skein-perf"
        (cd "$PERF_ROOT" && cargo build --release -p skein-broker -p skein-perf) >&2 ||
            die "cargo build failed"
    fi
    SKEIN_BIN=${SKEIN_BIN:-$PERF_ROOT/target/release/skein}
    SKEIN_PERF_BIN=${SKEIN_PERF_BIN:-$PERF_ROOT/target/release/skein-perf}
    if [ "${NEED_RDKAFKA:-1}" = 1 ] && [ -z "${RDKAFKA_PERF_BIN:-}" ]; then
        bash "$PERF_ROOT/perf/scripts/build-rdkafka-perf.sh" >&2 || die "rdkafka_performance build failed"
        RDKAFKA_PERF_BIN=$(rdkafka_perf_path)
    fi
    if [ "${NEED_TANSU:-1}" = 1 ] && [ -z "${TANSU_BIN:-}" ]; then
        bash "$PERF_ROOT/perf/scripts/install-tansu.sh" >&2 || die "tansu install failed"
        TANSU_BIN=$PERF_ROOT/target/tansu/bin/tansu
    fi
    local b
    for b in SKEIN_BIN SKEIN_PERF_BIN; do [ -x "${!b}" ] || die "$b=${!b} is not executable"; done
    if [ "${NEED_RDKAFKA:-1}" = 1 ]; then [ -x "$RDKAFKA_PERF_BIN" ] || die "no rdkafka_performance"; fi
    if [ "${NEED_TANSU:-1}" = 1 ]; then [ -x "$TANSU_BIN" ] || die "no tansu"; fi
}

# ---------------------------------------------------------------------------------------------
wait_for_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# start_skein CPUS [DATA_PARENT]: a fresh single-node skein whose shards are CPUS ("0", "0-3").
# Data goes into a temp dir under DATA_PARENT (default $TMPDIR or /tmp): pass /dev/shm to keep
# the log in memory (like tansu's memory:// engine). Sets BROKER_PID, BOOTSTRAP, BROKER_LOG.
start_skein() {
    local cpus=$1 parent=${2:-${TMPDIR:-/tmp}} dir conf
    ulimit -l unlimited 2>/dev/null || true
    dir=$(mktemp -d "$parent/skein-perf-data.XXXXXX")
    _DIRS+=("$dir")
    mkdir -p "$PERF_OUT"
    conf="$PERF_OUT/skein-$cpus.toml"
    BROKER_LOG="$PERF_OUT/skein-$cpus-$(date +%s%N).log"
    cat >"$conf" <<EOF
[node]
id = 1
data_dir = "$dir"
[cores]
shards = "$cpus"
[listeners]
kafka = "127.0.0.1:$SKEIN_PORT"
[broker]
"auto.create.topics.enable" = false
${SKEIN_BROKER_CONF:-}
EOF
    "$SKEIN_BIN" broker --config "$conf" >"$BROKER_LOG" 2>&1 </dev/null &
    BROKER_PID=$!
    _PIDS+=("$BROKER_PID")
    wait_for_port "$SKEIN_PORT" "$BROKER_PID" || { tail -20 "$BROKER_LOG" >&2; die "skein did not start"; }
    BOOTSTRAP="127.0.0.1:$SKEIN_PORT"
    log "skein (shards on CPUs $cpus, data in $dir) on $BOOTSTRAP"
}

# start_tansu CPUS: tansu with its in-memory storage engine, pinned to CPUS with taskset.
start_tansu() {
    local cpus=$1
    mkdir -p "$PERF_OUT"
    BROKER_LOG="$PERF_OUT/tansu-$cpus-$(date +%s%N).log"
    taskset -c "$cpus" "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" \
        --storage-engine memory://tansu/ >"$BROKER_LOG" 2>&1 </dev/null &
    BROKER_PID=$!
    _PIDS+=("$BROKER_PID")
    wait_for_port "$TANSU_PORT" "$BROKER_PID" || { tail -20 "$BROKER_LOG" >&2; die "tansu did not start"; }
    BOOTSTRAP="127.0.0.1:$TANSU_PORT"
    log "tansu (CPUs $cpus, memory://) on $BOOTSTRAP"
}

stop_broker() {
    if [ -n "${BROKER_PID:-}" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
    fi
    BROKER_PID=
}

# ---------------------------------------------------------------------------------------------
# skein_perf NAME ARGS...: runs skein-perf with --bootstrap $BOOTSTRAP and --output
# $PERF_OUT/NAME, echoing its output; sets MBPS and MSGS from result.json (produce or consume,
# whichever the mode measured) and P99_US (e2e, else produce) when present.
skein_perf() {
    local name=$1
    shift
    local out="$PERF_OUT/$name"
    "$SKEIN_PERF_BIN" "$@" --bootstrap "$BOOTSTRAP" --output "$out" --label "$name" 2>&1 |
        tee "$out.log" | grep -v '^\[' >&2 || true
    if [ ! -f "$out/result.json" ]; then
        MBPS=0 MSGS=0 P99_US=
        log "$name: no result (see $out.log)"
        return 1
    fi
    # shellcheck disable=SC2034 # P99_US is read by the callers
    read -r MBPS MSGS P99_US < <(python3 - "$out/result.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r.get("consume") if r["config"]["mode"] == "consume" else r.get("produce")
lat = r["latency_us"].get("e2e") or r["latency_us"].get("produce") or {}
print(f'{(t or {}).get("mb_per_s", 0):.1f} {(t or {}).get("msgs_per_s", 0):.0f} {lat.get("p99_us", "-")}')
EOF
    )
}

# rdkafka_perf NAME CPUS ARGS...: rdkafka_performance pinned to CPUS, output kept in
# $PERF_OUT/NAME.log; sets MBPS and MSGS from its final summary line.
rdkafka_perf() {
    local name=$1 cpus=$2
    shift 2
    local out="$PERF_OUT/$name.log"
    mkdir -p "$PERF_OUT"
    # SIGINT makes rdkafka_performance stop and print its summary so far.
    timeout -s INT "${RDKAFKA_TIMEOUT_S:-60}" taskset -c "$cpus" "$RDKAFKA_PERF_BIN" -b "$BOOTSTRAP" "$@" \
        >"$out" 2>&1 || log "$name: rdkafka_performance exited with $? (see $out)"
    local line
    line=$(grep -E '^% [0-9]+ messages (produced|\()' "$out" | tail -n 1 || true)
    # Producer: "... in T ms: N msgs/s and X MB/s, ..."; consumer: "... N msgs/s (X MB/s)".
    MSGS=$(sed -nE 's/.* ([0-9]+) msgs\/s.*/\1/p' <<<"$line")
    MBPS=$(sed -nE 's/.* msgs\/s (and |\()([0-9.]+) MB\/s.*/\2/p' <<<"$line")
    MSGS=${MSGS:-0}
    MBPS=${MBPS:-0}
    log "$name: ${line:-no summary line (see $out)}"
}

# ratio A B: A / B with two decimals ("-" when B is 0).
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}

# needs_replication WORKLOAD: exits 3 with a message when the workload needs more than one node.
check_workload() {
    local w=$1
    if "$SKEIN_PERF_BIN" produce --list-workloads | awk -v w="$w" '$1 == w && $7 > 1 { f = 1 } END { exit !f }'; then
        log "workload $w needs replication factor > 1 on a 3-node cluster, and the peer does not replicate: run it with perf/scripts/cluster3.sh."
        exit 3
    fi
}
