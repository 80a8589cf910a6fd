#!/usr/bin/env bash
# Regenerates the committed flatbuffers code from net/schema/*.fbs:
#   net/schema/internal.fbs -> net/src/internal/internal_generated.rs
# with flatc 25.12.19 (the version of the `flatbuffers` runtime crate pinned in Cargo.toml),
# built from source by net/tools/flatc (the flatc-fork crate; needs cmake and a C++ compiler).
# Debian's flatc (2.0.8) writes code that does not compile against that runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --manifest-path net/tools/flatc/Cargo.toml
flatc=net/tools/flatc/target/release/skein-flatc
"$flatc" --version
"$flatc" --rust -o net/src/internal net/schema/internal.fbs
rustfmt --edition 2021 net/src/internal/internal_generated.rs
echo "gen-flatbuffers: wrote net/src/internal/internal_generated.rs"
