#!/bin/sh
# install-deps.sh: installs every Debian package llamaref's build and tests need.
# Idempotent; the only place the package list lives. Run as root (or with sudo).
set -eu

# build: autotools and a C compiler; libraries: OpenBLAS (cblas), jansson (JSON),
# Check (tests); tools the checks use: valgrind (make check-valgrind), python3 (tests
# of the JSON output, with jsonschema for the schema test); clang, its libFuzzer runtime and llvm-symbolizer (make fuzz).
PACKAGES="build-essential autoconf automake pkg-config libopenblas-dev libjansson-dev check
libsubunit-dev valgrind python3 python3-jsonschema clang libclang-rt-dev llvm"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
