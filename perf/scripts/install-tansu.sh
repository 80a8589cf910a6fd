#!/usr/bin/env bash
# Installs the peer broker for side-by-side runs: tansu (a Kafka-compatible broker in Rust)
# from crates.io, with only the in-memory storage engine (feature dynostore: memory://), into
# target/tansu/bin/tansu. Skips the build when that binary already reports the pinned version.
#
#   perf/scripts/install-tansu.sh
set -euo pipefail
TANSU_VERSION=${TANSU_VERSION:-0.6.0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/tansu
if [ -x "$ROOT/bin/tansu" ] && "$ROOT/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "$ROOT/bin/tansu"
    exit 0
fi
echo "install-tansu: cargo install tansu@$TANSU_VERSION (takes a while: ~700 crates)" >&2
cargo install "tansu@$TANSU_VERSION" --locked --features dynostore --root "$ROOT" >&2
echo "$ROOT/bin/tansu"
