#!/bin/sh
# test_plugin.sh: kernel plugins (llamaref_kernels.h, lr_gpu_plugin_load, llama-diff
# --plugin; ops --list, the one listing; ops --plugin).
# Tiny plugins built here with the C compiler (their launchers
# launch nothing: what is tested is the loader, the registry and --kernel's checks, none of
# which needs a GPU): a good one loads and its variants are listed with their dtypes and
# rounding, and --kernel is checked against it before any device is opened; a bad ABI
# version, a missing symbol, a duplicate or clashing name, a NULL launcher, an unknown
# family, a bad count, dtypes or rounding, and files that are no plugin are each refused
# with exit 2 and one line naming the file and the field. With nvcc, the example plugin of
# docs/examples/kernel-plugin is built too and loaded. A build without CUDA refuses
# --plugin plainly, then the test skips (77).
set -u
LD=${LLAMA_DIFF:-./llama-diff}
TMP=${LR_TMPDIR:?}/plugin-sh
SRC=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$TMP" && mkdir -p "$TMP"
. "$(dirname "$0")/lib.sh"
M=${LR_FIXTURES:?}/models/gqa-f32
F=$LR_FIXTURES/golden/gqa-f32-batch.safetensors

if ! "$LD" ops --list --json 2>/dev/null | grep -q '"cuda": true'; then
    expect 2 "--plugin without the CUDA backend" -- "$LD" check --plugin "$TMP/x.so" -m "$M" -f "$F"
    expect_err "--plugin" "x.so" "built without the CUDA backend"
    expect 2 "ops --plugin without the CUDA backend" -- "$LD" ops --list --plugin "$TMP/x.so"
    expect_err "--plugin" "x.so" "built without the CUDA backend"
    finish || exit 1
    echo "SKIP: built without CUDA (the plugin loader needs the CUDA backend)"
    exit 77
fi

# plugin NAME [-DMACRO...]: $TMP/NAME.so from tiny_plugin.c.
plugin() {
    name=$1
    shift
    # shellcheck disable=SC2086
    ${LR_CC:-cc} -std=c11 -Wall -Werror -shared -fPIC -fvisibility=hidden -I"$SRC/ref" -I"$SRC/gpu" \
        ${LR_CUDA_CFLAGS:-} "$@" -o "$TMP/$name.so" "$SRC/tests/data/plugin/tiny_plugin.c"
}
ok "the good plugin builds" -- plugin good
cp "$TMP/good.so" "$TMP/twin.so"
echo "not a shared object" >"$TMP/text.so"

# Loads; its variants are listed after the in-tree ones (ops --list: per family), with
# dtypes, rounding and source. V: the variants as (family, variant) pairs.
V='[dict(v, family=f["name"]) for f in d["families"] for v in f["variants"]]'
expect 0 "ops --list --plugin" -- "$LD" ops --list --plugin "$TMP/good.so" --json
json_ok '[(v["family"], v["name"], v["plugin"], v["dtypes"], v["rounds_p"]) for v in '"$V"' if v["plugin"]] == [("rmsnorm", "tiny-norm", "tiny", ["F32", "F16", "BF16"], False), ("rmsnorm", "tiny-bf16", "tiny", ["BF16"], False), ("rmsnorm", "tiny-mark", "tiny", ["F32"], False), ("rmsnorm", "tiny-fail", "tiny", ["F32"], False), ("attention", "tiny-attn", "tiny", ["F32", "F16", "BF16"], True)]'
json_ok 'all(v["source"].endswith("good.so") for v in '"$V"' if v["plugin"]) and d["plugins"][0].endswith("good.so")'
json_ok '[v["name"] for v in '"$V"' if v["rounds_p"] and not v["plugin"]] == ["fa2", "fa3", "fa3p", "fa3w", "fa3wp", "fa3wt", "fa3wts", "tc", "fd", "fdt", "fdtc"]'
# The rounding map follows each declaration (in-tree: LR_ATTN_ROUNDING_MAP; the plugin's:
# entered when it loads), so the emulated reference rounds P where the kernel does.
json_ok 'all(v["emulated_rounds_p"] == v["rounds_p"] for v in '"$V"') and [v["name"] for v in '"$V"' if v["emulated_rounds_p"]] == ["fa2", "fa3", "fa3p", "fa3w", "fa3wp", "fa3wt", "fa3wts", "tc", "fd", "fdt", "fdtc", "tiny-attn"]'
expect 0 "ops --list --plugin (text)" -- "$LD" ops --list --plugin "$TMP/good.so"
grep -q "^ *tiny-norm .*plugin tiny (.*good.so)" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: the listing lacks tiny-norm"; }
grep -q "^ *tiny-attn .*P rounded" "$TMP/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: tiny-attn not listed as rounding P"; }
# kernels, the listing's older name, is gone: it says to use ops --list.
expect 2 "kernels is gone" -- "$LD" kernels --plugin "$TMP/good.so"
expect_err "there is no kernels command" "llama-diff ops --list"

# Inside the library: enumerated, in the rounding map, reached through the entry points.
# shellcheck disable=SC2086
if ${LR_CC:-cc} -std=c11 -Wall -Werror -I"$SRC/ref" -I"$SRC/ref/core" -I"$SRC/gpu" -I"${LR_BUILDDIR:-.}" \
    ${LR_CUDA_CFLAGS:-} -o "$TMP/driver" "$SRC/tests/data/plugin/plugin_driver.c" ${LR_LINK:?} 2>"$TMP/cc.err"; then
    pass=$((pass + 1))
    "$TMP/driver" "$TMP/good.so" >"$TMP/driver.out" 2>&1 && pass=$((pass + 1)) || {
        fail=$((fail + 1)); echo "FAIL: plugin_driver:"; sed 's/^/  | /' "$TMP/driver.out"; }
else
    fail=$((fail + 1)); echo "FAIL: plugin_driver does not build:"; sed 's/^/  | /' "$TMP/cc.err" | head -20
fi

# --kernel checked against the plugins, before any device: family, name, dtype. A valid
# choice passes the checks (what stops the run then is the device, or on a GPU the tiny
# launchers, which compute nothing).
"$LD" check -b cuda -p bf16 --plugin "$TMP/good.so" -k rmsnorm=tiny-norm -k attention=tiny-attn -m "$M" -f "$F" -q >/dev/null 2>"$TMP/err"
grep -q -- "--kernel\|--plugin" "$TMP/err" && { fail=$((fail + 1)); echo "FAIL: a valid plugin --kernel refused:"; cat "$TMP/err"; } || pass=$((pass + 1))
expect 2 "--kernel a plugin variant without its plugin" -- "$LD" check -b cuda -k rmsnorm=tiny-norm -m "$M" -f "$F"
expect_err "--kernel" "rmsnorm has no variant \"tiny-norm\"" "vec (default), block, warp"
expect 2 "--kernel a misspelt variant lists the plugin's" -- "$LD" check -b cuda --plugin "$TMP/good.so" -k rmsnorm=tiny-nrom -m "$M" -f "$F"
expect_err "--kernel" "no variant \"tiny-nrom\"" "tiny-norm (plugin)"
grep -q "CUDA" "$TMP/err" && { fail=$((fail + 1)); echo "FAIL: a misspelt --kernel reached the device"; } || pass=$((pass + 1))
expect 2 "--kernel with a part that is not FAMILY=NAME" -- "$LD" check -b cuda -k "rmsnorm=warp,junk" -m "$M" -f "$F"
expect_err "--kernel" "\"junk\" is not FAMILY=NAME"
expect 2 "--kernel an unknown family" -- "$LD" check -b cuda -k rmsnrom=vec -m "$M" -f "$F"
expect_err "--kernel" "no family \"rmsnrom\"" "embedding, rmsnorm, rotary, activation, cache, attention"
expect 2 "--kernel a dtype the variant does not take (check)" -- "$LD" check -b cuda -p fp16 --plugin "$TMP/good.so" -k rmsnorm=tiny-bf16 -m "$M" -f "$F"
expect_err "--kernel" "rmsnorm variant \"tiny-bf16\" (plugin tiny," "does not take F16 (it takes BF16)"
expect 2 "--kernel a dtype the variant does not take (backends, side b)" -- "$LD" backends --a cpu:f64 --b cuda:fp32 --plugin "$TMP/good.so" -k rmsnorm=tiny-bf16 -m "$M" -t "1 2"
expect_err "does not take F32"
expect 2 "a variant at a dtype it does not take (ops --list --dtype)" -- "$LD" ops --list --plugin "$TMP/good.so" --variant tiny-bf16 --dtype f16
expect_err "does not take F16"
expect 0 "a variant at the dtype it takes (ops --list --dtype)" -- "$LD" ops --list --plugin "$TMP/good.so" --variant tiny-bf16 --dtype bf16 --json
json_ok '[(f["name"], [v["name"] for v in f["variants"]]) for f in d["families"]] == [("rmsnorm", ["tiny-bf16"])]'
expect 2 "--plugin on the cpu backend" -- "$LD" check --plugin "$TMP/good.so" -m "$M" -f "$F"
expect_err "--plugin" "needs --backend cuda"
expect 2 "--plugin with no cuda side" -- "$LD" backends --a cpu:f64 --b cpu:f32 --plugin "$TMP/good.so" -m "$M" -t 1
expect_err "--plugin" "cuda side"

# The op sweep over plugins: --plugin loaded before any name is checked, so --variant
# names a plugin's variant; a dtype it does not declare, named with --dtype, is refused
# before any device (a whole sweep skips it and says so: tests/test_gpu_ops).
expect 0 "ops --plugin --list" -- "$LD" ops --plugin "$TMP/good.so" --list --json
json_ok '[v["name"] for f in d["families"] for v in f["variants"] if f["name"] == "rmsnorm"][-3:] == ["tiny-bf16", "tiny-mark", "tiny-fail"]'
expect 2 "ops --variant of a plugin not loaded" -- "$LD" ops --variant tiny-norm
expect_err "--variant" "no variant \"tiny-norm\""
expect 2 "ops --variant misspelt lists the plugin's" -- "$LD" ops --plugin "$TMP/good.so" --variant tiny-nrom
expect_err "--variant" "rmsnorm/tiny-norm"
expect 2 "ops --variant at a dtype it does not declare" -- "$LD" ops --plugin "$TMP/good.so" --variant tiny-bf16 --dtype f16
expect_err "--dtype" "tiny-bf16" "does not take F16 (it takes BF16)"
grep -q "CUDA device" "$TMP/err" && { fail=$((fail + 1)); echo "FAIL: ops reached the device before refusing the dtype"; } || pass=$((pass + 1))
expect 2 "ops --plugin of a bad plugin" -- "$LD" ops --plugin "$TMP/text.so" --list
expect_err "--plugin" "text.so"

# Bad plugins: exit 2, one line naming the file and the field; nothing registered.
bad_plugin() { # bad_plugin NAME "TEXT..." -DMACRO...: builds NAME.so, expects its refusal
    name=$1 texts=$2
    shift 2
    if plugin "$name" "$@" 2>"$TMP/cc.err"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $name does not build"; cat "$TMP/cc.err"; return; fi
    expect 2 "$name is refused" -- "$LD" ops --list --plugin "$TMP/$name.so"
    # shellcheck disable=SC2086
    eval "expect_err \"$name.so: \" $texts"
}
bad_plugin abi '"abi_version: 99" "rebuild the plugin"' -DABI=99
bad_plugin nosym '"no symbol llamaref_kernel_plugin"' -DNO_SYMBOL
bad_plugin dup '"variants[5].name" "tiny-norm" "is also variants[0]"' -DDUP
bad_plugin intree '"variants[0].name" "rmsnorm" "vec" "is an in-tree variant"' '-DVNAME="vec"'
bad_plugin nolaunch '"variants[0].launch: NULL"' -DLAUNCH=0
bad_plugin family '"variants[0].family: 42 is no family" "rmsnorm 1"' -DFAMILY=42
bad_plugin count0 '"count: 0, not 1 to 64"' -DCOUNT=0
bad_plugin count '"count: 1000, not 1 to 64"' -DCOUNT=1000
bad_plugin nodtype '"variants[0].dtypes: 0x0"' -DDTYPES=0
bad_plugin rounding '"variants[0].rounding" "attention'"'"'s, not rmsnorm'"'"'s"' -DROUNDING=LR_KERNEL_ROUNDS_P
bad_plugin noname '"name: NULL"' -DPNAME=0
bad_plugin vname '"variants[0].name" "is not 1 to 63 of"' '-DVNAME="a,b"'
bad_plugin nodesc '"variants[0].description: NULL"' -DDESCRIPTION=0
expect 2 "a variant name clashing with another plugin's" -- "$LD" ops --list --plugin "$TMP/good.so" --plugin "$TMP/twin.so"
expect_err "twin.so: variants[0].name" "registered already by plugin tiny" "good.so"
expect 2 "the same plugin twice" -- "$LD" ops --list --plugin "$TMP/good.so" --plugin "$TMP/good.so"
expect_err "good.so: loaded already"
expect 2 "a file that is no shared object" -- "$LD" ops --list --plugin "$TMP/text.so"
expect_err "text.so: cannot load as a shared object"
expect 2 "a missing plugin" -- "$LD" check -b cuda --plugin "$TMP/missing.so" -m "$M" -f "$F"
expect_err "--plugin" "missing.so: No such file or directory"
expect 2 "a folder as a plugin" -- "$LD" ops --list --plugin "$TMP"
expect_err "not a file"
# Relative to the working directory, not the library path.
expect 0 "a plugin named without a slash" -- sh -c "cd '$TMP' && '$LD' ops --list --plugin good.so"

# The example plugin, when nvcc is at hand: built against this tree's headers as an
# installed llamaref would give them, loaded, listed, and its F16/BF16-only variant refused
# at F32.
if [ -n "${LR_NVCC:-}" ] && [ -x "$LR_NVCC" ]; then
    # as its Makefile builds it: cuBLAS shared (example-gemv's fallback), nothing of libllamaref
    cudalib=$(cd "$(dirname "$LR_NVCC")/../lib64" && pwd)
    ok "the example plugin builds" -- "$LR_NVCC" -arch="${LR_CUDA_ARCH:-sm_90}" -std=c++17 -shared -cudart shared \
        -Xcompiler -fPIC,-fvisibility=hidden -I"$SRC/ref" -I"$SRC/gpu" -o "$TMP/example.so" \
        "$SRC/docs/examples/kernel-plugin/example_kernels.cu" -L"$cudalib" -Xlinker -rpath,"$cudalib",--no-undefined -lcublas
    expect 0 "the example plugin loads" -- "$LD" ops --list --plugin "$TMP/example.so" --json
    json_ok '[(v["family"], v["name"], v["dtypes"]) for v in '"$V"' if v["plugin"] == "example"] == [("rmsnorm", "example-row", ["F32", "F16", "BF16"]), ("rmsnorm", "example-planted", ["F32", "F16", "BF16"]), ("activation", "example-silu", ["F16", "BF16"]), ("linear", "example-gemv", ["F32", "F16", "BF16"]), ("linear", "example-gemv-planted", ["F32", "F16", "BF16"])]'
    # The example's gemv sweep takes its variant by name: on a machine with a GPU it runs and
    # passes (exit 0); without one it stops at the device (exit 2), not at --variant.
    "$LD" ops --plugin "$TMP/example.so" --variant example-gemv --op linear --shape T=4,N=64,K=4096 --dtype bf16 \
        >"$TMP/out" 2>"$TMP/err"
    rc=$?
    case $rc in
    0) ok "the example's gemv sweep runs on this GPU and passes" -- grep -qE "^PASS +linear/example-gemv linear bf16 T 4 N 64 K 4096" "$TMP/out" ;;
    2) ok "the example's gemv sweep names its variant, then needs a device" -- grep -qF "ops: no CUDA device" "$TMP/err" ;;
    *) fail=$((fail + 1)); echo "FAIL: the example's gemv sweep: exit $rc (0 on a GPU, 2 without)"; show_failure ;;
    esac
    expect 2 "the example's silu at F32" -- "$LD" ops --list --plugin "$TMP/example.so" --variant example-silu --dtype f32
    expect_err "does not take F32 (it takes F16, BF16)"
else
    echo "no nvcc: the example plugin is not built here"
fi

finish
