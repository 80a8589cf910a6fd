#!/usr/bin/env bash
# End-to-end latency under a fixed load: first the max throughput of the same e2e workload
# (skein-perf e2e at max rate: producers and consumers together, so the broker's fetch work is
# counted), then skein-perf e2e open loop at a fraction of it (default 50%), reporting
# p50/p99/p99.9 from the time each record was due to the time it was consumed.
#
#   perf/scripts/e2e-latency.sh [--broker skein|tansu] [--workload NAME] [--fraction 0.5]
#                               [--broker-cpus 0] [--client-cpus 1] [--duration S]
#                               [--skein-data DIR] [--batch-size BYTES] [--spin-us N]
#                               [--max-of e2e|produce]
#
# --spin-us is passed to the e2e run (client executors spin before parking). --max-of produce
# calibrates on a produce-only max instead (the script's behaviour before 2026-12-07): the e2e
# load then also carries the consumer's fetches, about as many requests again, so "50%" of it
# loads one shard to ~80%.
set -euo pipefail
SCRIPT_NAME=e2e-latency
NEED_RDKAFKA=0
# shellcheck source=perf/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

broker=skein
workload=1-topic-1-partition-1kb
fraction=0.5
broker_cpus=0
client_cpus=1
duration=10
skein_data=${TMPDIR:-/tmp}
batch_size=16384
spin_us=0
max_of=e2e
while [ $# -gt 0 ]; do
    case $1 in
    --broker) broker=$2; shift ;;
    --workload) workload=$2; shift ;;
    --fraction) fraction=$2; shift ;;
    --broker-cpus) broker_cpus=$2; shift ;;
    --client-cpus) client_cpus=$2; shift ;;
    --duration) duration=$2; shift ;;
    --skein-data) skein_data=$2; shift ;;
    --batch-size) batch_size=$2; shift ;;
    --spin-us) spin_us=$2; shift ;;
    --max-of) max_of=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done
case $max_of in e2e | produce) ;; *) die "--max-of e2e or produce" ;; esac
[ "$broker" = tansu ] || NEED_TANSU=0
resolve_bins
check_workload "$workload"
case $broker in
skein) start_skein "$broker_cpus" "$skein_data" ;;
tansu) start_tansu "$broker_cpus" ;;
*) die "--broker skein or tansu" ;;
esac
common=(--workload "$workload" --cpus "$client_cpus" --batch-size "$batch_size" --duration "$duration")
skein_perf "$broker-$(basename "$skein_data")-$max_of-max" "$max_of" "${common[@]}" --topic max \
    --spin-us "$spin_us" || die "max-rate run failed"
max_msgs=$MSGS
max_mbps=$MBPS
rate=$(awk -v m="$max_msgs" -v f="$fraction" 'BEGIN { printf "%.0f", m * f }')
name="$broker-$(basename "$skein_data")-e2e-at-$fraction-spin-$spin_us"
skein_perf "$name" e2e "${common[@]}" --topic e2e --rate "$rate" --spin-us "$spin_us" || true
{
    echo
    echo "== e2e latency: $broker, $workload, batch $batch_size B; max $max_of $max_mbps MB/s" \
        "($max_msgs msg/s); e2e open loop at $rate msg/s ($fraction of max, spin $spin_us µs):" \
        "p99 $P99_US µs"
    echo "results: $PERF_OUT/$name/"
} | tee "$PERF_OUT/e2e-$name.txt"
