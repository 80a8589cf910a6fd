#!/usr/bin/env bash
# Side by side, in one run: the same workload against Skein and against tansu (a Kafka-compatible
# broker in Rust, in-memory storage), each driven by skein-perf and by librdkafka's
# rdkafka_performance, one broker at a time on the same cores. Prints MB/s and the ratios.
#
#   perf/scripts/compare.sh [--workload NAME] [--duration S] [--broker-cpus LIST]
#                           [--client-cpus LIST] [--skein-data DIR] [--batch-size BYTES]
#
#   --workload     a skein-perf standard workload (default 1-topic-1-partition-1kb); one that
#                  needs replication stops here with exit status 3 (tansu does not replicate;
#                  perf/scripts/cluster3.sh runs it on three local skein nodes)
#   --duration     measured seconds per skein-perf run (default 10); rdkafka_performance sends
#                  as many messages as skein-perf managed in that time against the same broker
#   --broker-cpus  broker cores (default 0): skein's shards, tansu's taskset
#   --client-cpus  client cores (default 1)
#   --skein-data   parent of skein's data dir (default /tmp; /dev/shm keeps it in memory,
#                  like tansu's memory:// engine)
#   --batch-size   skein-perf batch size in bytes (default 262144)
#
# rdkafka_performance runs with librdkafka's defaults plus linger.ms=5 and the workload's acks.
#
# Environment: SKEIN_BIN, SKEIN_PERF_BIN, RDKAFKA_PERF_BIN, TANSU_BIN (prebuilt binaries; each
# is built when unset), PERF_OUT (results directory, default target/perf-runs/<time>).
set -euo pipefail
SCRIPT_NAME=compare
# shellcheck source=perf/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

workload=1-topic-1-partition-1kb
duration=10
broker_cpus=0
client_cpus=1
skein_data=${TMPDIR:-/tmp}
batch_size=262144
while [ $# -gt 0 ]; do
    case $1 in
    --workload) workload=$2; shift ;;
    --duration) duration=$2; shift ;;
    --broker-cpus) broker_cpus=$2; shift ;;
    --client-cpus) client_cpus=$2; shift ;;
    --skein-data) skein_data=$2; shift ;;
    --batch-size) batch_size=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done

resolve_bins
check_workload "$workload"
read -r partitions msg_size acks < <("$SKEIN_PERF_BIN" produce --list-workloads |
    awk -v w="$workload" '$1 == w { print $2, $4, $9 }')
[ -n "${partitions:-}" ] || die "unknown workload $workload"
partition_args=()
for ((p = 0; p < partitions; p++)); do partition_args+=(-p "$p"); done
# Run names carry where skein's data lived, so runs with different --skein-data never collide.
tag="$workload-$(basename "$skein_data")"
log "workload $workload: $partitions partitions, $msg_size B, acks $acks; results in $PERF_OUT"

declare -A R
run_broker() {
    local b=$1
    case $b in
    skein) start_skein "$broker_cpus" "$skein_data" ;;
    tansu) start_tansu "$broker_cpus" ;;
    esac
    local common=(--workload "$workload" --cpus "$client_cpus" --batch-size "$batch_size")
    skein_perf "$tag-$b-skein-perf-produce" produce "${common[@]}" --topic "sp-produce" \
        --duration "$duration" --producers "$partitions" || true
    R[$b.sp.produce]=$MBPS
    local msgs=$MSGS
    skein_perf "$tag-$b-skein-perf-consume" consume "${common[@]}" --topic "sp-consume" \
        --duration "$duration" --consumers "$partitions" --producers "$partitions" \
        --preload-bytes "${PRELOAD_BYTES:-2000000000}" || true
    R[$b.sp.consume]=$MBPS
    # rdkafka_performance: as many messages as skein-perf produced in the measured time (at
    # least 200k, at most RDKAFKA_MESSAGES_MAX), to a topic created by skein-perf, then read
    # back from the start. A run past RDKAFKA_TIMEOUT_S is interrupted and reports so far.
    local count
    count=$(awk -v m="$msgs" -v d="$duration" -v x="${RDKAFKA_MESSAGES_MAX:-5000000}" \
        'BEGIN { c = int(m * d); if (c < 200000) c = 200000; if (c > x) c = x; print c }')
    "$SKEIN_PERF_BIN" produce --setup-only --bootstrap "$BOOTSTRAP" --topic rk \
        --workload "$workload" >/dev/null
    rdkafka_perf "$tag-$b-rdkafka-produce" "$client_cpus" -P -t rk -s "$msg_size" -c "$count" \
        -a "$acks" -X linger.ms=5 -q || true
    R[$b.rk.produce]=$MBPS
    rdkafka_perf "$tag-$b-rdkafka-consume" "$client_cpus" -C -t rk "${partition_args[@]}" \
        -o beginning -c "$count" -q || true
    R[$b.rk.consume]=$MBPS
    stop_broker
}

run_broker skein
run_broker tansu

{
    echo
    echo "== compare: $workload, broker CPUs $broker_cpus, client CPUs $client_cpus," \
        "skein data under $skein_data, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
    printf '%-28s %12s %12s %10s\n' "client / direction" "skein MB/s" "tansu MB/s" "ratio"
    for c in sp rk; do
        for d in produce consume; do
            name=$([ "$c" = sp ] && echo skein-perf || echo rdkafka_performance)
            printf '%-28s %12s %12s %10s\n' "$name $d" "${R[skein.$c.$d]}" "${R[tansu.$c.$d]}" \
                "$(ratio "${R[skein.$c.$d]}" "${R[tansu.$c.$d]}")"
        done
    done
    echo "MB = 10^6 bytes of record values per second; ratio = skein / tansu."
    echo "results: $PERF_OUT"
} | tee "$PERF_OUT/compare-$tag.txt"
