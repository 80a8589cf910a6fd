#!/usr/bin/env bash
# The storage append target (within 80% of `dd bs=1M oflag=direct` on the same disk), measured
# so that a disk whose speed drifts cannot decide it: rounds of dd, then the criterion append
# bench, then dd again; each round's ratio is the bench over the mean of the two dd runs around
# it, and the median ratio is the answer.
#
#   perf/scripts/append-vs-dd.sh [--rounds 5] [--dir DIR] [--bench FILTER] [--dd-mib 2000]
#
# DIR (default target/bench-tmp) must be on the disk under test and support O_DIRECT. FILTER is
# a criterion filter of `cargo bench -p skein-benches --bench storage` (default: 1 MiB batches,
# one at a time, dd's own access pattern). Prints one line per round and the median.
set -euo pipefail
SCRIPT_NAME=append-vs-dd
# shellcheck source=perf/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
root=$PERF_ROOT

rounds=5
dir=$root/target/bench-tmp
filter='append/1024KiB_batches/1_in_flight'
dd_mib=2000
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift ;;
    --dir) dir=$2; shift ;;
    --bench) filter=$2; shift ;;
    --dd-mib) dd_mib=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1" ;;
    esac
    shift
done
mkdir -p "$dir"
ddfile=$(mktemp "$dir/dd.XXXXXX")
_DIRS+=("$ddfile")
ulimit -l unlimited 2>/dev/null || true

log "building the storage bench"
bench=$(cd "$root" && cargo bench -p skein-benches --bench storage --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "storage" and m.get("executable"):
        print(m["executable"])') || die "cargo bench --no-run failed"
[ -x "$bench" ] || die "no bench executable"

# dd's rate in MiB/s (bytes over its own elapsed seconds).
dd_mibs() {
    rm -f "$ddfile"
    dd if=/dev/zero of="$ddfile" bs=1M count="$dd_mib" oflag=direct 2>&1 |
        awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") s = $(i - 1); printf "%.1f\n", $1 / s / 1048576 }'
    rm -f "$ddfile"
}

# The bench's median throughput in MiB/s (criterion's middle estimate).
bench_mibs() {
    SKEIN_BENCH_DIR=$dir "$bench" --bench "$filter" 2>&1 |
        awk '/thrpt:/ { v = $4; u = $5; gsub(/\[/, "", v)
                 if (u ~ /^GiB/) v *= 1024; else if (u ~ /^KiB/) v /= 1024
                 print v; exit }'
}

ratios=()
before=$(dd_mibs)
for r in $(seq "$rounds"); do
    got=$(bench_mibs)
    [ -n "$got" ] || die "the bench printed no throughput for '$filter'"
    after=$(dd_mibs)
    ratio=$(awk -v g="$got" -v a="$before" -v b="$after" 'BEGIN { printf "%.3f", g / ((a + b) / 2) }')
    printf 'round %d: dd %s MiB/s, %s %s MiB/s, dd %s MiB/s: %.0f%% of dd\n' \
        "$r" "$before" "$filter" "$got" "$after" "$(awk -v x="$ratio" 'BEGIN { print x * 100 }')"
    ratios+=("$ratio")
    before=$after
done
printf '%s\n' "${ratios[@]}" | sort -n |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
           printf "median over %d rounds: %.0f%% of dd (min %.0f%%, max %.0f%%)\n", NR, m * 100, v[1] * 100, v[NR] * 100 }'
