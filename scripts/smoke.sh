#!/usr/bin/env bash
# Smoke test with real clients against a fresh single-node skein:
#   - kcat (run against the current librdkafka, see below): metadata, produce and consume back,
#   - confluent-kafka (Python): 1000 records with each compression codec, read back,
#   - kafka-python: a short round trip with a client that is not librdkafka,
#   - confluent-kafka's AdminClient: ElectLeaders answers per partition.
#
#   scripts/smoke.sh            (needs scripts/install-deps.sh to have run)
#
# Environment: SKEIN_BIN (default release/skein in $CARGO_TARGET_DIR or target/; built when
# missing).
# The last line printed is "N passed, M failed"; the exit status is non-zero when any failed.
set -euo pipefail
SCRIPT_NAME=smoke
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

command -v kcat >/dev/null || die "kcat not found: run scripts/install-deps.sh"
python3 -c 'import confluent_kafka, kafka' 2>/dev/null ||
    die "confluent-kafka / kafka-python not importable: run scripts/install-deps.sh"

skein_resolve_bin
WORK="$SKEIN_ROOT/target/smoke/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$WORK"

# Debian's kcat links librdkafka 2.0.2, which mis-parses some responses of newer protocol
# versions; run it with the librdkafka that rdkafka-sys vendors (same soname, newer version).
RDK_LIB=$(rdkafka_lib_dir)
kcat_() { LD_LIBRARY_PATH="$RDK_LIB" timeout 60 kcat "$@"; }
kcat_version=$(kcat_ -V 2>&1 | sed -n 's/.*librdkafka \([0-9][0-9.]*\) .*/\1/p' | head -n 1)
log "kcat uses librdkafka ${kcat_version:-?} from $RDK_LIB"

skein_start "$WORK/broker" || die "could not start skein"
B=$SKEIN_BOOTSTRAP

passed=0
failed=0
check() {
    local name=$1
    shift
    local out="$WORK/$name.log"
    if "$@" >"$out" 2>&1 </dev/null; then
        printf '%s: %s PASSED\n' "$SCRIPT_NAME" "$name"
        passed=$((passed + 1))
    else
        printf '%s: %s FAILED (log %s):\n' "$SCRIPT_NAME" "$name" "$out"
        tail -n 20 "$out" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
    if ! skein_alive; then
        log "skein died during $name; log tail:"
        tail -n 30 "$SKEIN_LOG" >&2
        echo "$passed passed, $((failed + 1)) failed"
        exit 1
    fi
}

kcat_version_is_current() {
    [ "$kcat_version" = "$(rdkafka_sys_version | sed 's/.*+//')" ]
}

kcat_metadata() {
    kcat_ -b "$B" -L -J | tee /dev/stderr | python3 -c '
import json, sys
md = json.load(sys.stdin)
brokers = md.get("brokers") or []
assert brokers, "no brokers in metadata"
print("brokers:", brokers)'
}

KCAT_TOPIC=smoke-kcat
kcat_roundtrip() {
    # Runs under `if` (no errexit), so every step says `|| return 1`.
    local want="$WORK/kcat.want" got="$WORK/kcat.got" i
    for i in $(seq 1 20); do printf 'key-%02d|value %02d: hello skein\n' "$i" "$i"; done >"$want"
    # Key before '|'; one partition, so that the order is total.
    kcat_ -b "$B" -P -t "$KCAT_TOPIC" -p 0 -K '|' -X acks=all <"$want" || return 1
    # One more record with an empty value and a header.
    printf 'key-21|\n' | kcat_ -b "$B" -P -t "$KCAT_TOPIC" -p 0 -K '|' -H smoke=yes || return 1
    printf 'key-21|\n' >>"$want"
    kcat_ -b "$B" -C -t "$KCAT_TOPIC" -p 0 -o beginning -e -q -f '%k|%s\n' >"$got" || return 1
    diff -u "$want" "$got" || return 1
    # Offsets are dense from 0.
    [ "$(kcat_ -b "$B" -C -t "$KCAT_TOPIC" -p 0 -o beginning -e -q -f '%o ')" = \
        "$(seq -s ' ' 0 20) " ] || { echo "offsets are not 0..20"; return 1; }
    # The header came back; reading from the middle; the last record only (-o -1).
    [ "$(kcat_ -b "$B" -C -t "$KCAT_TOPIC" -p 0 -o 20 -c 1 -e -q -f '%h')" = 'smoke=yes' ] ||
        { echo "header missing at offset 20"; return 1; }
    [ "$(kcat_ -b "$B" -C -t "$KCAT_TOPIC" -p 0 -o 10 -c 1 -e -q -f '%k')" = 'key-11' ] ||
        { echo "offset 10 is not key-11"; return 1; }
    [ "$(kcat_ -b "$B" -C -t "$KCAT_TOPIC" -p 0 -o -1 -e -q -f '%k')" = 'key-21' ] ||
        { echo "-o -1 did not give the last record"; return 1; }
}

check kcat-current-librdkafka kcat_version_is_current
check kcat-metadata kcat_metadata
check kcat-produce-consume kcat_roundtrip
for codec in none gzip snappy lz4 zstd; do
    check "confluent-kafka-$codec" python3 "$SKEIN_ROOT/scripts/smoke_clients.py" confluent "$B" "$codec" 1000
done
check kafka-python python3 "$SKEIN_ROOT/scripts/smoke_clients.py" kafka-python "$B" 100
check confluent-elect-leaders python3 "$SKEIN_ROOT/scripts/smoke_clients.py" elect-leaders "$B"

echo "logs: $WORK"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
