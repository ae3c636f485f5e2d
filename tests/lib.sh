# tests/lib.sh: what the shell tests share (sourced, not run): counters and checks.
# The sourcing script sets TMP (its scratch folder) first; each check counts a pass or
# prints FAIL with what it saw; finish prints the tally and sets the exit status.
pass=0 fail=0

expect() { # expect STATUS DESCRIPTION -- command...: the command exits with STATUS
    want=$1 what=$2
    shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    got=$?
    if [ "$got" = "$want" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $what: exit $got, expected $want"
        show_failure
    fi
}

show_failure() { # what expect prints of a failed command; a script may redefine it
    sed 's/^/  | /' "$TMP/out" "$TMP/err" | tail -20
}

expect_err() { # expect_err TEXT...: the last command's stderr is one line holding each TEXT
    for s in "$@"; do
        if grep -qF -- "$s" "$TMP/err"; then pass=$((pass + 1)); else
            fail=$((fail + 1)); echo "FAIL: stderr lacks \"$s\":"; sed 's/^/  | /' "$TMP/err"
        fi
    done
    if [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
        fail=$((fail + 1)); echo "FAIL: error is not one line"; sed 's/^/  | /' "$TMP/err"
    fi
}

json_ok() { # json_ok EXPR: the last stdout parses as JSON and the python EXPR holds for it (d)
    if python3 -c "import json,sys; d=json.load(open('$TMP/out')); sys.exit(0 if ($1) else 1)"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: JSON check: $1"; head -c 600 "$TMP/out"
    fi
}

ok() { # ok DESCRIPTION -- command...: the command succeeds
    what=$1
    shift 2
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $what"; fi
}

plant() { # plant SRC_DIR TENSOR SCALE DST_DIR: a copy of a model with one tensor scaled (F32, F16, BF16)
    rm -rf "$4" && cp -r "$1" "$4"
    python3 - "$4/model.safetensors" "$2" "$3" <<'PY'
import json, struct, sys
path, name, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
info = json.loads(data[8:8 + n])[name]
a, b = info["data_offsets"]
base, size = 8 + n + a, b - a
dt = info["dtype"]
if dt == "F32":
    v = struct.unpack("<%df" % (size // 4), data[base:base + size])
    data[base:base + size] = struct.pack("<%df" % len(v), *[x * scale for x in v])
elif dt == "F16":
    v = struct.unpack("<%de" % (size // 2), data[base:base + size])
    data[base:base + size] = struct.pack("<%de" % len(v), *[x * scale for x in v])
else:  # BF16: the top half of a float32, rounded to nearest even
    u = struct.unpack("<%dH" % (size // 2), data[base:base + size])
    out = []
    for h in u:
        f = struct.unpack("<f", struct.pack("<I", h << 16))[0] * scale
        w = struct.unpack("<I", struct.pack("<f", f))[0]
        out.append(((w + 0x7FFF + ((w >> 16) & 1)) >> 16) & 0xFFFF)
    data[base:base + size] = struct.pack("<%dH" % len(out), *out)
open(path, "wb").write(data)
PY
}

finish() { # the tally; exit status 0 only when nothing failed
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}
