#!/usr/bin/env bash
# The replicated workload on a 3-node local cluster: three skein processes on 127.0.0.1, all
# controller voters (with a cluster secret), driven by skein-perf. OMB's own setup is RF 3 with
# acks=all; this is it scaled down to one machine.
#
#   perf/scripts/cluster3.sh [--workload NAME] [--duration S] [--node-cpus "A B C"]
#                            [--client-cpus N] [--skein-data DIR] [--batch-size BYTES]
#
#   --workload     a skein-perf standard workload (default 1-topic-16-partitions-1kb-rf3-acks-all)
#   --duration     measured seconds of the produce run (default 10)
#   --node-cpus    each node's shards, in Linux list syntax, space-separated (default "0 1 0":
#                  a 2-core box shares them)
#   --client-cpus  skein-perf shards (default 1)
#   --skein-data   parent of the nodes' data dirs (default /tmp)
#   --batch-size   skein-perf batch size in bytes (default 262144)
#
# Environment: SKEIN_BIN, SKEIN_PERF_BIN (prebuilt binaries; built when unset), PERF_OUT.
set -euo pipefail
SCRIPT_NAME=cluster3
# shellcheck source=perf/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

workload=1-topic-16-partitions-1kb-rf3-acks-all
duration=10
node_cpus="0 1 0"
client_cpus=1
skein_data=${TMPDIR:-/tmp}
batch_size=262144
while [ $# -gt 0 ]; do
    case $1 in
    --workload) workload=$2; shift ;;
    --duration) duration=$2; shift ;;
    --node-cpus) node_cpus=$2; shift ;;
    --client-cpus) client_cpus=$2; shift ;;
    --skein-data) skein_data=$2; shift ;;
    --batch-size) batch_size=$2; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
    esac
    shift
done
read -r -a cpus <<<"$node_cpus"
[ "${#cpus[@]}" -eq 3 ] || die "--node-cpus needs three entries, got '$node_cpus'"

NEED_RDKAFKA=0 NEED_TANSU=0 resolve_bins
ulimit -l unlimited 2>/dev/null || true
mkdir -p "$PERF_OUT"
secret="$PERF_OUT/cluster.secret"
head -c 32 /dev/urandom | base64 >"$secret"
voters=""
for i in 1 2 3; do
    voters+="\"$i@127.0.0.1:$((SKEIN_PORT + 100 + i))\","
done
voters="[${voters%,}]"

bootstrap=""
for i in 1 2 3; do
    dir=$(mktemp -d "$skein_data/skein-perf-node$i.XXXXXX")
    _DIRS+=("$dir")
    port=$((SKEIN_PORT + i))
    conf="$PERF_OUT/node$i.toml"
    cat >"$conf" <<EOF
[node]
id = $i
data_dir = "$dir"
[cores]
shards = "${cpus[$((i - 1))]}"
[listeners]
kafka = "127.0.0.1:$port"
internal = "127.0.0.1:$((SKEIN_PORT + 100 + i))"
[controller]
voters = $voters
secret_file = "$secret"
[broker]
"auto.create.topics.enable" = false
EOF
    "$SKEIN_BIN" broker --config "$conf" >"$PERF_OUT/node$i.log" 2>&1 </dev/null &
    _PIDS+=("$!")
    bootstrap+="127.0.0.1:$port,"
done
BOOTSTRAP=${bootstrap%,}
for i in 1 2 3; do
    wait_for_port "$((SKEIN_PORT + i))" "${_PIDS[$((i - 1))]}" ||
        { tail -20 "$PERF_OUT/node$i.log" >&2; die "node $i did not start"; }
done
# Every node registered and unfenced before the topic is created with RF 3.
deadline=$((SECONDS + 30))
until [ "$("$SKEIN_BIN" cluster describe --bootstrap-server "$BOOTSTRAP" --json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["brokers"]))' 2>/dev/null)" = 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "the three nodes did not form a cluster (logs in $PERF_OUT)"
    sleep 0.2
done
log "3 nodes (shards on CPUs ${cpus[*]}) on $BOOTSTRAP; results in $PERF_OUT"
# skein-perf bootstraps from one address and finds the others in Metadata.
BOOTSTRAP=${BOOTSTRAP%%,*}

skein_perf "produce-$workload" produce --workload "$workload" --cpus "$client_cpus" \
    --batch-size "$batch_size" --duration "$duration"
log "$workload: $MBPS MB/s, $MSGS msg/s, produce p99 ${P99_US} us"
