#!/bin/sh
# test_ops_cli.sh: llama-diff ops without a device (make check): --help; --list (text and
# JSON that parses and validates against docs/llama-diff.schema.json where jsonschema is
# installed), with every family, the default variants marked and the helpers; bad options
# and unknown family, variant, dtype, shape set or --shape keys: exit 2 with one line
# naming the option and the choices, before any device is opened (the message is the
# option's, never the device's); a sweep on a machine without a device: exit 2 saying so.
# With a device: one small custom case passes (exit 0) and its JSON validates. A build
# without CUDA: --list says so (exit 0), a sweep is refused (exit 2).
set -u
LD=${LLAMA_DIFF:-./llama-diff}
TMP=${LR_TMPDIR:?}/ops-cli-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
SCHEMA=$SRC/docs/llama-diff.schema.json
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"

validate() { # the last stdout validates against the schema (skipped without jsonschema)
    python3 -c "import jsonschema" 2>/dev/null || return 0
    if python3 - "$SCHEMA" "$TMP/out" <<'PY'
import json, sys, jsonschema
V = getattr(jsonschema, "Draft202012Validator", jsonschema.Draft7Validator)
errs = list(V(json.load(open(sys.argv[1]))).iter_errors(json.load(open(sys.argv[2]))))
for e in errs[:5]:
    print("  at /" + "/".join(map(str, e.absolute_path)) + ": " + e.message[:300])
sys.exit(1 if errs else 0)
PY
    then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1 does not validate"; fi
}

expect 0 "ops --help" -- "$LD" ops --help
grep -q "usage: llama-diff ops" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: ops --help text"; }
expect 0 "--help names ops" -- "$LD" --help
grep -q "^  ops " "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: --help lacks ops"; }

expect 0 "ops --list --json" -- "$LD" ops --list --json
json_ok 'd["command"] == "ops"'
validate "ops --list --json"
if python3 -c "import json,sys; sys.exit(0 if json.load(open('$TMP/out'))['cuda'] else 1)"; then
    json_ok '{f["name"] for f in d["families"]} >= {"embedding", "rmsnorm", "rotary", "activation", "cache", "attention", "helpers"}'
    json_ok 'all(sum(v["default"] for v in f["variants"]) == 1 for f in d["families"])'
    # every family has a sweep: a registered variant's cases all run (linear's among them)
    json_ok 'all(f["swept"] for f in d["families"]) and "linear" in [f["name"] for f in d["families"]]'
    # filtered: one family, or one variant, each checked as a sweep checks it
    expect 0 "ops --list --op linear" -- "$LD" ops --list --op linear --json
    json_ok '[(f["name"], [v["name"] for v in f["variants"]]) for f in d["families"]][0][0] == "linear" and len(d["families"]) == 1'
    expect 2 "kernels is gone" -- "$LD" kernels --json
    expect_err "there is no kernels command" "llama-diff ops --list"
    expect 0 "ops --list (json)" -- "$LD" ops --list --json
    json_ok 'd["command"] == "ops" and "linear" in [f["name"] for f in d["families"]]'
    json_ok 'd["dtypes"] == ["f32", "f16", "bf16"] and [s["name"] for s in d["shape_sets"]] == ["fixtures", "llama3-8b", "llama3-70b"]'
    expect 0 "ops --list" -- "$LD" ops --list
    grep -q "^    \* vec " "$TMP/out" && grep -q "^  helpers" "$TMP/out" && pass=$((pass + 1)) ||
        { fail=$((fail + 1)); echo "FAIL: --list text lacks the default mark or the helpers"; sed 's/^/  | /' "$TMP/out"; }

    # Unknown names and bad shapes: exit 2, one line naming the option and the choices,
    # never a device's message (they are checked before any device is opened).
    bad_name() { # bad_name DESCRIPTION TEXT... -- ARGS...
        what=$1; shift
        texts=""
        while [ "$1" != "--" ]; do texts="$texts|$1"; shift; done
        shift
        expect 2 "$what" -- "$LD" ops "$@"
        IFS='|'; set -f
        for t in ${texts#|}; do expect_err "$t"; done
        set +f; unset IFS
        if grep -q "CUDA device" "$TMP/err"; then fail=$((fail + 1)); echo "FAIL: $what: reached the device"; else pass=$((pass + 1)); fi
    }
    bad_name "unknown family" '--op' '"nope"' 'rmsnorm' 'attention' 'helpers' -- --op nope
    bad_name "unknown variant of a family" '--variant' '"nope"' 'rmsnorm/block' 'rmsnorm/warp' -- --op rmsnorm --variant nope
    bad_name "unknown variant" '--variant' 'attention/fa2' 'helpers/builtin' -- --variant nope
    bad_name "variant of another family" '--variant' '"fa2"' -- --op rmsnorm --variant fa2
    bad_name "unknown dtype" '--dtype' '"f64"' 'bf16' -- --dtype f64
    bad_name "unknown shape set" '--shapes' '"llama2"' 'llama3-8b' -- --shapes llama2
    bad_name "--shape without --op" '--shape' '--op' -- --shape T=3,H=4
    bad_name "--shape missing key" '--shape' 'needs H' -- --op rmsnorm --shape T=3
    bad_name "--shape unknown key" '--shape' '"Q"' 'T,H' -- --op rmsnorm --shape T=3,Q=1
    bad_name "--shape bad value" '--shape' 'H=x' -- --op rmsnorm --shape T=3,H=x
    bad_name "--shape out of range" '--shape' 'T=0' -- --op rmsnorm --shape T=0,H=8
    bad_name "--shape GQA" 'not a multiple' -- --op attention --shape heads=6,kv=4,hd=8
    bad_name "--shape odd hd" 'odd' -- --op rotary --shape T=2,heads=1,hd=7
    bad_name "--shape cache slots" 'fewer slots' -- --op cache --shape T=40,kv=1,hd=8,blocks=1
    bad_name "--shape linear missing K" '--shape' 'needs K' 'T,N,K,skew?' -- --op linear --shape T=3,N=4
    bad_name "--shape linear skew" '--shape' 'skew=8' -- --op linear --shape T=3,N=4,K=8,skew=8
    bad_name "--shape attention seqs" '--shape' 'seqs=33' '[1, 32]' -- --op attention --shape heads=8,kv=8,hd=8,seqs=33
    bad_name "helpers take no --shape" 'helpers' -- --op helpers --shape n=4
    bad_name "--shape and --shapes" '--shape' -- --op rmsnorm --shape T=2,H=8 --shapes fixtures

    # A small custom case: passes with a device; without one, exit 2 saying so.
    "$LD" ops --op rmsnorm --dtype f32 --shape T=2,H=64 --json >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if grep -q "no CUDA device" "$TMP/err"; then
        [ "$rc" = 2 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: no device: exit $rc, expected 2"; }
        expect_err "no CUDA device"
    else
        [ "$rc" = 0 ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: custom case: exit $rc"; sed 's/^/  | /' "$TMP/err"; }
        json_ok 'd["result"] == "pass" and d["summary"]["planned"] == d["summary"]["passed"] and d["shapes"] == "custom"'
        validate "ops --json"
    fi
else
    expect 0 "ops --list without CUDA" -- "$LD" ops --list
    grep -q "without the CUDA backend" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: --list does not say CUDA is not built"; }
    expect 2 "a sweep without CUDA" -- "$LD" ops
    expect_err "without the CUDA backend"
fi

# Usage errors, CUDA or not.
expect 2 "unknown option" -- "$LD" ops --bogus
expect_err "--bogus"
expect 2 "missing value" -- "$LD" ops --op
expect_err "--op" "needs a value"
expect 2 "stray argument" -- "$LD" ops extra
expect_err '"extra"'
expect 2 "bad seed" -- "$LD" ops --seed x
expect_err "--seed"
expect 2 "--list with a shape" -- "$LD" ops --list --shape T=1,H=8
expect_err "--list" "--shape"
expect 2 "dtype not swept" -- "$LD" ops --dtype f64
expect_err "--dtype" "f32, f16 or bf16"

# The sweep's JSON document, as docs/llama-diff.md shows it, validates (its shape is
# checked here without a device; with one, above, a real run's is).
cat >"$TMP/out" <<'JSON'
{"command": "ops", "cuda": true, "seed": 1, "shapes": "fixtures", "shape": null, "perf": true,
 "copy_bandwidth_Bps": 7.9e12,
 "cases": [
  {"family": "rmsnorm", "variant": "vec", "op": "rms_norm", "dtype": "bf16", "shape": "T 64 H 4096",
   "status": "pass", "hard": false, "why": null, "f64_used": 0.061, "max_ulps": 0.5,
   "perf": {"seconds": 4.1e-6, "bytes": 1056768, "gbps": 257.7, "bandwidth_ratio": 0.033,
            "copy_same_size_seconds": 2.9e-6, "same_size_ratio": 0.71, "flops": 0, "tflops": null}},
  {"family": "linear", "variant": "example-gemv", "op": "linear", "dtype": "f32", "shape": "",
   "status": "skipped", "hard": false,
   "why": "linear/example-gemv does not declare F32 (it takes F16, BF16): its entry point refuses it",
   "f64_used": 0, "max_ulps": null, "perf": null}],
 "summary": {"planned": 1, "run": 1, "passed": 1, "failed": 0, "errors": 0, "not_run": 0, "skipped": 1},
 "result": "pass"}
JSON
validate "the documented ops document"
finish
