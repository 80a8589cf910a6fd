#!/usr/bin/env bash
# The project's whole test run: installs what the tests need, then runs every suite.
# README's test command and .ci/run both call exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# glommio registers io buffers in locked memory.
ulimit -l unlimited 2>/dev/null || true
cargo test --workspace --all-targets
