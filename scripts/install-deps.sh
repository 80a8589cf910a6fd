#!/usr/bin/env bash
# Installs what the whole-process tests need (scripts/librdkafka-tests.sh, scripts/smoke.sh,
# broker/tests/): Debian packages and pinned Python clients. Idempotent and non-interactive;
# a step whose result is already present is skipped, so a second run takes about a second.
# Runs as root (CI) or through sudo when it is available.
set -euo pipefail

# Debian packages:
#   kcat                        smoke.sh, librdkafka-tests.sh --cluster (readiness check)
#   gcc g++ make pkg-config     building librdkafka and its test-runner (C and C++ tests)
#   zlib1g-dev libzstd-dev      gzip and zstd in that build (lz4 and snappy are built in)
#   python3 python3-pip         confluent-kafka / kafka-python, librdkafka's lds-gen.py
#   perl                        mklove's configure uses it
#   patch                       the test-runner build (scripts/lib/librdkafka-test-rf.patch)
#   nftables                    broker/tests/faults.rs cuts one broker off the network (as root)
#   libssl-dev                  the rdkafka crate's `ssl` feature (openssl-sys): librdkafka's SCRAM
#                               in broker/tests/sasl.rs
#   (no libsasl/libcurl; the scripts' own librdkafka build uses --disable-ssl --disable-gssapi
#   --disable-curl)
APT_PACKAGES=(kcat gcc g++ make pkg-config zlib1g-dev libzstd-dev python3 python3-pip perl patch nftables libssl-dev)

# Python clients, pinned. confluent-kafka 2.12.1 bundles librdkafka 2.12.1, the same version
# that rdkafka-sys vendors.
PIP_PACKAGES=(confluent-kafka==2.12.1 kafka-python==2.2.15)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo -n); else
        echo "install-deps: not root and no sudo; cannot install packages" >&2
        exit 1
    fi
fi

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing_apt+=("$p")
    fi
done
if [ "${#missing_apt[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${missing_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq </dev/null
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" </dev/null
else
    echo "install-deps: apt packages present"
fi

# The python3 on PATH is the one the scripts use (pyenv's shim on the dev image, Debian's
# otherwise). Debian's own python3 refuses pip installs into the system (PEP 668) unless told.
PY=python3
pip_missing=()
for spec in "${PIP_PACKAGES[@]}"; do
    name=${spec%%==*}
    want=${spec##*==}
    have=$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
    if [ "$have" != "$want" ]; then pip_missing+=("$spec"); fi
done
if [ "${#pip_missing[@]}" -gt 0 ]; then
    echo "install-deps: pip install ${pip_missing[*]}"
    pip_args=(-m pip install -q --disable-pip-version-check --root-user-action=ignore)
    if "$PY" -c 'import sys; sys.exit(0 if sys.prefix == sys.base_prefix else 1)' &&
        [ -e "$("$PY" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
        pip_args+=(--break-system-packages)
    fi
    "$PY" "${pip_args[@]}" "${pip_missing[@]}" </dev/null
else
    echo "install-deps: python packages present"
fi

"$PY" -c 'import confluent_kafka, kafka; print("install-deps: confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0], "kafka-python", kafka.__version__)'
