#!/usr/bin/env bash
# Skein's throughput as shards are added: for each shard count N, a fresh broker on CPUs
# 0..N-1, skein-perf on the client CPUs, max-rate produce then consume of the same workload.
#
#   perf/scripts/scaling.sh [--shards "1 2 4 8"] [--client-cpus 8-15] [--workload NAME]
#                           [--duration S] [--connections N] [--skein-data DIR]
#
# Defaults: 1-topic-16-partitions-1kb, 10 s, 16 producer and 16 consumer connections,
# batch 256 KiB. Environment as for compare.sh (SKEIN_BIN, SKEIN_PERF_BIN, PERF_OUT).
set -euo pipefail
SCRIPT_NAME=scaling
NEED_RDKAFKA=0
NEED_TANSU=0
# shellcheck source=perf/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

shard_counts="1 2 4 8"
client_cpus=8-15
workload=1-topic-16-partitions-1kb
duration=10
connections=16
skein_data=${TMPDIR:-/tmp}
while [ $# -gt 0 ]; do
    case $1 in
    --shards) shard_counts=$2; shift ;;
    --client-cpus) client_cpus=$2; shift ;;
    --workload) workload=$2; shift ;;
    --duration) duration=$2; shift ;;
    --connections) connections=$2; shift ;;
    --skein-data) skein_data=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done
resolve_bins
check_workload "$workload"

rows=()
for n in $shard_counts; do
    start_skein "0-$((n - 1))" "$skein_data"
    common=(--workload "$workload" --cpus "$client_cpus" --batch-size 262144 --duration "$duration")
    skein_perf "scaling-$(basename "$skein_data")-$n-produce" produce "${common[@]}" --topic sp --producers "$connections" || true
    produce=$MBPS
    skein_perf "scaling-$(basename "$skein_data")-$n-consume" consume "${common[@]}" --topic sc --producers "$connections" \
        --consumers "$connections" --preload-bytes "${PRELOAD_BYTES:-4000000000}" || true
    rows+=("$(printf '%6s %14s %14s' "$n" "$produce" "$MBPS")")
    stop_broker
done
{
    echo
    echo "== scaling: $workload, client CPUs $client_cpus, $connections connections each way," \
        "skein data under $skein_data, $(nproc) CPUs"
    printf '%6s %14s %14s\n' shards "produce MB/s" "consume MB/s"
    printf '%s\n' "${rows[@]}"
    echo "results: $PERF_OUT"
} | tee "$PERF_OUT/scaling-$(basename "$skein_data").txt"
