#!/usr/bin/env bash
# Builds librdkafka's examples/rdkafka_performance from the librdkafka sources that the
# rdkafka-sys crate vendors (the same copy scripts/librdkafka-tests.sh builds its test-runner
# from), offline, into target/librdkafka/<version>/librdkafka/examples/. Prints its path.
#
#   perf/scripts/build-rdkafka-perf.sh
set -euo pipefail
SCRIPT_NAME=build-rdkafka-perf
# shellcheck source=scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

rdkafka_build libs
EXAMPLES="$RDKAFKA_BUILD_DIR/examples"
if [ ! -x "$EXAMPLES/rdkafka_performance" ] ||
    [ "$EXAMPLES/rdkafka_performance.c" -nt "$EXAMPLES/rdkafka_performance" ]; then
    log "building rdkafka_performance (log: $RDKAFKA_WORK_DIR/build-perf.log)"
    (cd "$EXAMPLES" && make rdkafka_performance >"$RDKAFKA_WORK_DIR/build-perf.log" 2>&1) ||
        { tail -n 30 "$RDKAFKA_WORK_DIR/build-perf.log" >&2; die "rdkafka_performance build failed"; }
fi
echo "$EXAMPLES/rdkafka_performance"
