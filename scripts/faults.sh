#!/usr/bin/env bash
# Fault-injection scenarios (broker/tests/faults.rs): three real skein processes on 127.0.0.1,
# an idempotent acks=all producer and a consumer running through kill -9, SIGSTOP, rolling
# restarts and a network partition; each scenario prints
# "scenario X: produced N, acknowledged A, lost L, duplicates D" and its violated invariants.
#
#   scripts/faults.sh                 short schedule (about 5 minutes in all)
#   scripts/faults.sh --long          SKEIN_FAULTS_LONG=1: more rounds, longer phases
#   scripts/faults.sh [--long] NAME   only the scenarios whose test name contains NAME
#
# The network partition scenario needs root and the `nft` tool, and prints "skipped: <why>"
# without them. Other knobs: SKEIN_FAULTS_MIN_INSYNC (the topic's min.insync.replicas, 2),
# SKEIN_TEST_BIN (another skein build). The timing run is separate:
#   SKEIN_FAULT_KILLS=20 cargo test -p skein-broker --test faults -- --ignored \
#       produce_interruption_timing --nocapture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${1:-}" == "--long" ]]; then
    export SKEIN_FAULTS_LONG=1
    shift
fi
# glommio registers io buffers in locked memory; the broker raises the limit itself as root.
ulimit -l unlimited 2>/dev/null || true
# One scenario at a time: each starts three brokers (the harness also serializes them).
exec cargo test -p skein-broker --test faults -- --test-threads=1 --nocapture "$@"
