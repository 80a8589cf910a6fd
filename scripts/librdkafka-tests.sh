#!/usr/bin/env bash
# Runs librdkafka's own test suite (the copy vendored by the rdkafka-sys crate) against a fresh
# single-node skein broker, one test per test-runner process.
#
#   scripts/librdkafka-tests.sh [--quick] [NNNN ...]
#
#   NNNN ...   test numbers (default: 0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015
#              0017 0021 0035 0036 0041 0044)
#   --quick    pass -Q to test-runner (fewer messages; 0113 then runs only subtest a)
#   --cluster  reserved for a 3-node run (not implemented yet)
#
# Environment:
#   SKEIN_BIN                  broker binary (default release/skein in $CARGO_TARGET_DIR or
#                              target/, built when missing)
#   LIBRDKAFKA_TEST_TIMEOUT    seconds per test before it is killed (default 300)
#   LIBRDKAFKA_TEST_ARGS       extra test-runner flags (default -L: skip mock-cluster-only tests)
#   TEST_DEBUG                 passed through: librdkafka debug contexts, e.g. broker,protocol
#   SUBTESTS                   passed through: run only subtests whose name contains this
#
# Logs: target/librdkafka/<version>/logs/<run>/<NNNN>.log and skein.log. The last line printed
# is "N passed, M failed"; the exit status is non-zero when any test failed.
set -euo pipefail
SCRIPT_NAME=librdkafka-tests
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

DEFAULT_TESTS=(0001 0002 0003 0005 0007 0008 0011 0012 0013 0014 0015 0017 0021 0035 0036 0041 0044)
# The broker version the tests assume: selects the modern code paths in test.c (CreateTopics via
# the Admin API, no KAFKA_PATH scripts) and enables every test gated on a broker version.
export TEST_KAFKA_VERSION=3.9.0

quick=0
cluster=0
tests=()
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1 ;;
    --cluster) cluster=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    [0-9][0-9][0-9][0-9]) tests+=("$1") ;;
    *) die "unknown argument: $1 (expected --quick or a 4-digit test number)" ;;
    esac
    shift
done
[ "${#tests[@]}" -gt 0 ] || tests=("${DEFAULT_TESTS[@]}")
if [ "$cluster" = 1 ]; then
    # Planned: start 3 brokers (node ids 1-3, one controller quorum), write all three to
    # bootstrap.servers and run with the default scenario's replication factor 3.
    die "--cluster is not implemented yet"
fi

TEST_TIMEOUT=${LIBRDKAFKA_TEST_TIMEOUT:-300}
read -r -a RUNNER_ARGS <<<"${LIBRDKAFKA_TEST_ARGS:--L}"
[ "$quick" = 1 ] && RUNNER_ARGS+=(-Q)

skein_resolve_bin
rdkafka_build tests
TESTS_DIR="$RDKAFKA_BUILD_DIR/tests"
RUN_DIR="$RDKAFKA_WORK_DIR/logs/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$RUN_DIR"
log "logs in $RUN_DIR"

start_broker() {
    skein_start "$RUN_DIR/broker-$1" || return 1
    # tests/test.conf is read by every test-runner process from its working directory.
    cat >"$TESTS_DIR/test.conf" <<EOF
# Written by scripts/librdkafka-tests.sh for this run.
bootstrap.servers=$SKEIN_BOOTSTRAP
EOF
}

strip_colors() { sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\x1b[()][A-Za-z0-9]//g'; }

broker_no=1
start_broker "$broker_no" || die "could not start skein"

passed=0
failed=0
failed_tests=()
for t in "${tests[@]}"; do
    if ! skein_alive; then
        broker_no=$((broker_no + 1))
        log "starting a fresh broker before $t"
        if ! start_broker "$broker_no"; then
            log "$t: FAILED (no broker)"
            failed=$((failed + 1))
            failed_tests+=("$t")
            continue
        fi
    fi
    tlog="$RUN_DIR/$t.log"
    start=$SECONDS
    rc=0
    (
        cd "$TESTS_DIR"
        export LD_LIBRARY_PATH="../src:../src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        TESTS=$t exec timeout -k 10 "$TEST_TIMEOUT" ./test-runner -p1 "${RUNNER_ARGS[@]}"
    ) >"$tlog" 2>&1 </dev/null || rc=$?
    dur=$((SECONDS - start))

    # Summary rows look like "| 0001_multiobj   |     PASSED |   1.234s |".
    summary=$(strip_colors <"$tlog" | grep -E "^\| +${t}_[^ ]* +\| +[A-Z]+ +\|" || true)
    n_pass=$(grep -c ' PASSED ' <<<"$summary" || true)
    n_fail=$(grep -cE ' (FAILED|RUNNING) ' <<<"$summary" || true)
    reason=""
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        reason="timed out after ${TEST_TIMEOUT}s"
    elif [ "$rc" != 0 ]; then
        reason="test-runner exit status $rc"
    elif [ "$n_fail" != 0 ]; then
        reason="a subtest failed"
    elif [ "$n_pass" = 0 ]; then
        reason="no test ran (skipped or unknown number)"
    fi
    if ! skein_alive; then
        reason="${reason:+$reason; }broker died"
    fi
    if [ -z "$reason" ]; then
        printf '%s: %s PASSED (%ss)\n' "$SCRIPT_NAME" "$t" "$dur"
        passed=$((passed + 1))
    else
        printf '%s: %s FAILED (%ss): %s\n' "$SCRIPT_NAME" "$t" "$dur" "$reason"
        failed=$((failed + 1))
        failed_tests+=("$t")
        {
            echo "----- $t: last 40 lines of $tlog -----"
            strip_colors <"$tlog" | grep -v '^\[<MAIN>' | tail -n 40
            if ! skein_alive; then
                echo "----- skein log tail ($SKEIN_LOG) -----"
                tail -n 40 "$SKEIN_LOG"
            fi
            echo "-----"
        } >"$RUN_DIR/$t.tail"
    fi
done

for t in "${failed_tests[@]}"; do
    cat "$RUN_DIR/$t.tail"
done
echo "logs: $RUN_DIR"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
