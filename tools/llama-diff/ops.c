/* ops.c: llama-diff ops, the op sweep as a command (gpu/opsweep.c): every registered
 * kernel variant of every family, at f32, f16 and bf16, over a shape set or one custom
 * shape, each case judged against the float64 reference op and (f16, bf16) the emulated
 * same-precision reference; --perf times each case against the copy bandwidth measured
 * in the same run. Options are its own (parsed here; main.c hands over argv). Everything
 * named is checked before a device is opened. Exit: 0 every case passes, 1 one fails,
 * 2 usage, bad input or no device (docs/llama-diff.md, "ops"). */
#include "diff.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef LR_HAVE_CUDA
#include "opsweep.h"
#include "rounding.h"
#endif

static void ops_usage(FILE *fp) {
    fputs("usage: llama-diff ops [--plugin LIB.so]... [--list] [--op FAMILY] [--variant NAME]\n"
          "                      [--dtype f32|f16|bf16] [--shape SPEC | --shapes "
          "fixtures|llama3-8b|llama3-70b]\n"
          "                      [--perf] [--json] [--seed N]\n"
          "\n"
          "Sweeps every registered CUDA kernel variant op by op against the reference ops: guard\n"
          "bytes, poisoned outputs, unchanged inputs, NaN/Inf, the float64 criteria (relative L2,\n"
          "worst token, every element) and at f16/bf16 the emulated same-precision reference in\n"
          "ulps. One line per case, then the summary with coverage.\n"
          "\n"
          "  --plugin LIB.so    load a kernel plugin first (repeatable): its variants are listed,\n"
          "                     named by --variant and swept like the tree's; a dtype a variant\n"
          "                     does not declare is skipped and said so (SKIP), not failed\n"
          "  --list             the one listing of kernel variants: families (swept or not),\n"
          "                     variants (* default) with their dtypes, rounding and source\n"
          "                     (in-tree or plugin), dtypes, shape sets; --op, --variant and\n"
          "                     --dtype filter it (checked as for a sweep); needs no device\n"
          "  --op FAMILY        one family (embedding, rmsnorm, rotary, activation, cache,\n"
          "                     attention, linear, helpers, ...: --list)\n"
          "  --variant NAME     one variant (of --op's family, or of any)\n"
          "  --dtype D          f32, f16 or bf16 (default: all three)\n"
          "  --shapes SET       fixtures (default: the test's shapes), llama3-8b, llama3-70b\n"
          "  --shape SPEC       one custom case, KEY=N,... with --op (e.g. --op rmsnorm\n"
          "                     --shape T=2048,H=4096; --op linear --shape T=4,N=4096,K=14336;\n"
          "                     keys per family: docs/llama-diff.md)\n"
          "  --perf             time each case (3 warm-ups, median of 20, cudaEvent): GB/s (and\n"
          "                     TFLOP/s for attention and linear), the share of the copy\n"
          "                     bandwidth, and the share of a copy of the case's own bytes\n"
          "                     timed the same way (the ceiling at its size)\n"
          "  --seed N           the inputs' seed (default 1); the same seed, the same inputs\n"
          "  --json             one JSON document (docs/llama-diff.schema.json)\n"
          "\n"
          "Exit status: 0 every case passes, 1 a case fails, 2 usage, bad input or no device.\n",
          fp);
}

typedef struct {
    bool list, perf, json;
    const char *family, *variant, *shapes, *shape;
    int dtype;
    uint64_t seed;
    const char *plugins[16]; /* --plugin, in order */
    int nplugins;
    const char *cmd; /* "ops", as messages name the command */
} ops_args;

static int parse_ops(int argc, char **argv, ops_args *a) {
    enum { O_LIST = 300, O_OP, O_VARIANT, O_DTYPE, O_SHAPE, O_SHAPES, O_PERF, O_JSON, O_SEED, O_PLUGIN };
    static const struct option longopts[] = {
        {"list", no_argument, NULL, O_LIST},
        {"op", required_argument, NULL, O_OP},
        {"variant", required_argument, NULL, O_VARIANT},
        {"dtype", required_argument, NULL, O_DTYPE},
        {"shape", required_argument, NULL, O_SHAPE},
        {"shapes", required_argument, NULL, O_SHAPES},
        {"perf", no_argument, NULL, O_PERF},
        {"json", no_argument, NULL, O_JSON},
        {"seed", required_argument, NULL, O_SEED},
        {"plugin", required_argument, NULL, O_PLUGIN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->cmd = argv[0];
    a->dtype = -1;
    a->seed = 1;
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_LIST:
            a->list = true;
            break;
        case O_OP:
            a->family = optarg;
            break;
        case O_VARIANT:
            a->variant = optarg;
            break;
        case O_DTYPE:
            if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "fp32") == 0)
                a->dtype = LR_F32;
            else if (strcmp(optarg, "f16") == 0 || strcmp(optarg, "fp16") == 0)
                a->dtype = LR_F16;
            else if (strcmp(optarg, "bf16") == 0)
                a->dtype = LR_BF16;
            else
                return bad("--dtype: \"%s\" is not f32, f16 or bf16", optarg);
            break;
        case O_SHAPE:
            a->shape = optarg;
            break;
        case O_SHAPES:
            a->shapes = optarg;
            break;
        case O_PERF:
            a->perf = true;
            break;
        case O_JSON:
            a->json = true;
            break;
        case O_SEED: {
            char *end;
            a->seed = strtoull(optarg, &end, 0);
            if (!*optarg || *end || optarg[0] == '-' || a->seed > (uint64_t)INT64_MAX)
                return bad("--seed: \"%s\" is not an integer in 0..2^63-1", optarg);
            break;
        }
        case O_PLUGIN:
            if (a->nplugins == (int)(sizeof a->plugins / sizeof a->plugins[0]))
                return bad("--plugin: at most %d plugins", a->nplugins);
            a->plugins[a->nplugins++] = optarg;
            break;
        case 'h':
            ops_usage(stdout);
            exit(EXIT_AGREE);
        case ':':
            return bad("%s: option %s needs a value (see llama-diff ops --help)", a->cmd, argv[optind - 1]);
        default: {
            /* an option of the other commands: named as main.c's table names it */
            int st = refuse_option(a->cmd, argv[optind - 1]);
            if (st) return st;
            return bad("%s: unknown option %s (see llama-diff ops --help)", a->cmd, argv[optind - 1]);
        }
        }
    }
    if (optind < argc)
        return bad("%s: unexpected argument \"%s\" (see llama-diff ops --help)", a->cmd, argv[optind]);
    if (a->shape && a->shapes) return bad("--shape: not with --shapes (one custom case, or a set)");
    if (a->list && (a->shape || a->shapes || a->perf))
        return bad("--list: lists variants, sweeps nothing (not with --shape, --shapes or --perf)");
    return 0;
}

#ifndef LR_HAVE_CUDA

int cmd_ops(int argc, char **argv) {
    ops_args a;
    int st = parse_ops(argc, argv, &a);
    if (st) return st;
    if (a.nplugins)
        return bad(
            "--plugin: %s: this llama-diff is built without the CUDA backend, which kernel plugins run on "
            "(configure with nvcc on the PATH, or --with-cuda=DIR)",
            a.plugins[0]);
    if (!a.list)
        return bad("ops: this llama-diff was built without the CUDA backend (configure: CUDA backend no); "
                   "nothing to sweep");
    if (a.json)
        puts("{\n  \"command\": \"ops\",\n  \"cuda\": false,\n  \"families\": [],\n  \"dtypes\": [],\n  "
             "\"shape_sets\": []\n}");
    else
        puts("llama-diff ops: built without the CUDA backend (configure: CUDA backend no): no kernel "
             "variants to list");
    return EXIT_AGREE;
}

#else

static const char *dtype_short(lr_dtype d) { return d == LR_F32 ? "f32" : d == LR_F16 ? "f16" : "bf16"; }

static const char *const shape_sets[][2] = {
#define SET_ROW(name, what) {name, what},
    LR_OPSWEEP_SHAPE_SETS(SET_ROW)
#undef SET_ROW
};
#define N_SETS (sizeof shape_sets / sizeof shape_sets[0])

/* The one listing of kernel families and variants (llama-diff ops --list): per family
 * whether the sweep has cases for it; per variant the default mark, the dtypes it takes,
 * its rounding (attention: P rounded before P V, as it declares and as the rounding map
 * makes the emulated reference follow), where it comes from (in-tree, or a plugin and its
 * file) and its description. --op, --variant and --dtype filter it, each
 * checked as a sweep checks it. */
static int list(const ops_args *a, const lr_opsweep_opts *o) {
    bool json = a->json;
    json_t *root = json_object(), *fams = json_array(), *plugins = json_array();
    json_object_set_new(root, "command", json_string("ops"));
    json_object_set_new(root, "cuda", json_true());
    for (int i = 0; i < a->nplugins; i++)
        json_array_append_new(plugins, json_string(a->plugins[i]));
    json_object_set_new(root, "plugins", plugins);
    if (!json)
        puts("families and variants (* the default): the dtypes each takes, its rounding, where it comes "
             "from");
    for (int f = 0; f <= LR_GPU_NUM_FAMILIES; f++) {
        const char *name =
            f < LR_GPU_NUM_FAMILIES ? lr_gpu_family_name((lr_gpu_family)f) : LR_OPSWEEP_HELPERS;
        if (o->family && strcmp(o->family, name) != 0) continue;
        bool swept = lr_opsweep_has_sweep(name), attention = strcmp(name, "attention") == 0;
        json_t *jf = json_object(), *vars = json_array();
        json_object_set_new(jf, "name", json_string(name));
        json_object_set_new(jf, "swept", json_boolean(swept));
        bool header = false;
        for (size_t i = 0; i <= lr_gpu_variant_count(); i++) {
            const lr_gpu_variant *v = lr_gpu_variant_at(i);
            lr_gpu_variant helpers = {LR_OPSWEEP_HELPERS,
                                      "builtin",
                                      "lr_gpu_sum, add_bias, add_residual, convert (no variants)",
                                      true,
                                      LR_KERNEL_ALL_DTYPES,
                                      0,
                                      NULL,
                                      NULL};
            if (!v && f == LR_GPU_NUM_FAMILIES) v = &helpers;
            if (!v || strcmp(v->family, name) != 0) continue;
            if (o->variant && strcmp(o->variant, v->name) != 0) continue;
            bool rounds = v->rounding & LR_KERNEL_ROUNDS_P;
            bool emulated = attention && lr_attention_rounds_p(v->name, LR_BF16, 64, 2);
            const char *rounding = rounds ? "P rounded" : attention ? "P float32" : "default";
            char dts[32];
            lr_gpu_dtypes_name(v->dtypes, dts, sizeof dts);
            json_t *d = json_array();
            if (v->dtypes & LR_KERNEL_F32) json_array_append_new(d, json_string("F32"));
            if (v->dtypes & LR_KERNEL_F16) json_array_append_new(d, json_string("F16"));
            if (v->dtypes & LR_KERNEL_BF16) json_array_append_new(d, json_string("BF16"));
            json_t *jv = json_object();
            json_object_set_new(jv, "name", json_string(v->name));
            json_object_set_new(jv, "description", json_string(v->description));
            json_object_set_new(jv, "default", json_boolean(v->is_default));
            json_object_set_new(jv, "dtypes", d);
            json_object_set_new(jv, "rounds_p", json_boolean(rounds));
            json_object_set_new(jv, "emulated_rounds_p", json_boolean(emulated));
            json_object_set_new(jv, "plugin", v->plugin ? json_string(v->plugin) : json_null());
            json_object_set_new(jv, "source", v->source ? json_string(v->source) : json_null());
            json_array_append_new(vars, jv);
            if (json) continue;
            if (!header) printf("  %s%s\n", name, swept ? "" : " (no sweep: its cases are not run)");
            header = true;
            char from[600];
            if (v->plugin)
                snprintf(from, sizeof from, "plugin %s (%s)", v->plugin, v->source);
            else
                snprintf(from, sizeof from, "in-tree");
            printf("    %c %-20s %-15s %-9s %s\n", v->is_default ? '*' : ' ', v->name, dts, rounding, from);
            printf("      %s\n", v->description);
        }
        json_object_set_new(jf, "variants", vars);
        if (o->variant && json_array_size(vars) == 0) {
            json_decref(jf);
            continue;
        }
        json_array_append_new(fams, jf);
    }
    json_object_set_new(root, "families", fams);
    json_t *dts = json_array(), *sets = json_array();
    for (int d = 0; d < 3; d++)
        json_array_append_new(dts, json_string(d == 0 ? "f32" : d == 1 ? "f16" : "bf16"));
    json_object_set_new(root, "dtypes", dts);
    if (!json) puts("dtypes: f32, f16, bf16 (default: all three)\nshape sets (--shapes):");
    for (size_t s = 0; s < N_SETS; s++) {
        json_t *js = json_object();
        json_object_set_new(js, "name", json_string(shape_sets[s][0]));
        json_object_set_new(js, "description", json_string(shape_sets[s][1]));
        json_object_set_new(js, "default", json_boolean(s == 0));
        json_array_append_new(sets, js);
        if (!json) printf("  %c %-11s %s\n", s == 0 ? '*' : ' ', shape_sets[s][0], shape_sets[s][1]);
    }
    json_object_set_new(root, "shape_sets", sets);
    if (json) {
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        putchar('\n');
    }
    json_decref(root);
    return EXIT_AGREE;
}

typedef struct {
    bool json, perf;
    json_t *cases;
    const lr_opsweep_summary *sum; /* its copy_bandwidth is measured before the first case */
} ops_out;

static void on_case(const lr_opsweep_case *c, void *user) {
    ops_out *o = user;
    double gbps = c->seconds > 0 ? c->bytes / c->seconds * 1e-9 : 0,
           tflops = c->seconds > 0 ? c->flops / c->seconds * 1e-12 : 0;
    if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "family", json_string(c->family));
        json_object_set_new(j, "variant", json_string(c->variant));
        json_object_set_new(j, "op", json_string(c->op));
        json_object_set_new(j, "dtype", json_string(dtype_short(c->dt)));
        json_object_set_new(j, "shape", json_string(c->shape));
        json_object_set_new(j, "status",
                            json_string(c->status == LR_CASE_PASS      ? "pass"
                                        : c->status == LR_CASE_FAIL    ? "fail"
                                        : c->status == LR_CASE_ERROR   ? "error"
                                        : c->status == LR_CASE_SKIPPED ? "skipped"
                                                                       : "not_run"));
        json_object_set_new(j, "hard", json_boolean(c->hard));
        json_object_set_new(j, "why", c->why[0] ? json_string(c->why) : json_null());
        json_object_set_new(j, "f64_used", json_real(c->f64_used));
        json_object_set_new(j, "max_ulps", c->max_ulps >= 0 ? json_real(c->max_ulps) : json_null());
        if (c->seconds > 0) {
            json_t *p = json_object();
            json_object_set_new(p, "seconds", json_real(c->seconds));
            json_object_set_new(p, "bytes", json_real(c->bytes));
            json_object_set_new(p, "gbps", json_real(gbps));
            json_object_set_new(p, "bandwidth_ratio",
                                json_real(c->bytes / c->seconds / o->sum->copy_bandwidth));
            json_object_set_new(p, "copy_same_size_seconds",
                                c->copy_seconds > 0 ? json_real(c->copy_seconds) : json_null());
            json_object_set_new(p, "same_size_ratio",
                                c->copy_seconds > 0 ? json_real(c->copy_seconds / c->seconds) : json_null());
            json_object_set_new(p, "flops", json_real(c->flops));
            json_object_set_new(p, "tflops", c->flops > 0 ? json_real(tflops) : json_null());
            json_object_set_new(j, "perf", p);
        } else {
            json_object_set_new(j, "perf", json_null());
        }
        json_array_append_new(o->cases, j);
        return;
    }
    char ulps[32] = "";
    if (c->max_ulps >= 0) snprintf(ulps, sizeof ulps, " ulps %.2f", c->max_ulps);
    printf("%-7s %s/%s %s %s %s", lr_case_status_name(c->status), c->family, c->variant, c->op,
           dtype_short(c->dt), c->shape);
    if (c->status == LR_CASE_PASS || c->status == LR_CASE_FAIL) printf("  f64 %.3f%s", c->f64_used, ulps);
    if (c->seconds > 0) {
        printf("  %.1f us %.0f GB/s %.2f of copy", c->seconds * 1e6, gbps,
               c->bytes / c->seconds / o->sum->copy_bandwidth);
        if (c->copy_seconds > 0) printf(" (%.2f of a copy of its bytes)", c->copy_seconds / c->seconds);
        if (c->flops > 0) printf(" %.1f TFLOP/s", tflops);
    }
    putchar('\n');
    if (c->status != LR_CASE_PASS) printf("        %s\n", c->why);
    fflush(stdout);
}

int cmd_ops(int argc, char **argv) {
    ops_args a;
    int st = parse_ops(argc, argv, &a);
    if (st) return st;
    /* before any name is checked (a plugin's variants are names) and before any device */
    for (int i = 0; i < a.nplugins; i++)
        if (lr_gpu_plugin_load(a.plugins[i]) != LR_OK) return bad("--plugin: %s", lr_last_error());
    lr_opsweep_opts o;
    lr_opsweep_opts_init(&o);
    o.family = a.family, o.variant = a.variant, o.dtype = a.dtype, o.shape = a.shape, o.seed = a.seed,
    o.perf = a.perf;
    if (a.shapes) o.shapes = a.shapes;
    if (lr_opsweep_check(&o) != LR_OK) return bad("%s: %s", a.cmd, lr_last_error()); /* before any device */
    if (a.list) return list(&a, &o);
    lr_opsweep_summary sum;
    ops_out out = {.json = a.json, .perf = a.perf, .cases = json_array(), .sum = &sum};
    int rc = lr_opsweep_run(&o, on_case, &out, &sum);
    if (rc != LR_OK) {
        json_decref(out.cases);
        return bad("ops: %s (%s)", lr_last_error(), lr_status_name(rc));
    }
    /* coverage is part of the verdict: a planned case not run (a family without a sweep)
     * fails the run as a failing case does */
    bool pass = sum.failed == 0 && sum.errors == 0 && sum.not_run == 0 && sum.run > 0;
    if (a.json) {
        json_t *root = json_object(), *s = json_object();
        json_object_set_new(root, "command", json_string("ops"));
        json_object_set_new(root, "cuda", json_true());
        json_object_set_new(root, "seed", json_integer((json_int_t)a.seed));
        json_object_set_new(root, "shapes", json_string(a.shape ? "custom" : o.shapes));
        json_object_set_new(root, "shape", a.shape ? json_string(a.shape) : json_null());
        json_object_set_new(root, "perf", json_boolean(a.perf));
        json_object_set_new(root, "copy_bandwidth_Bps", a.perf ? json_real(sum.copy_bandwidth) : json_null());
        json_object_set_new(root, "cases", out.cases);
        json_object_set_new(s, "planned", json_integer(sum.planned));
        json_object_set_new(s, "run", json_integer(sum.run));
        json_object_set_new(s, "passed", json_integer(sum.passed));
        json_object_set_new(s, "failed", json_integer(sum.failed));
        json_object_set_new(s, "errors", json_integer(sum.errors));
        json_object_set_new(s, "not_run", json_integer(sum.not_run));
        json_object_set_new(s, "skipped", json_integer(sum.skipped));
        json_object_set_new(root, "summary", s);
        json_object_set_new(root, "result", json_string(pass ? "pass" : "fail"));
        json_dumpf(root, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(root);
    } else {
        json_decref(out.cases);
        if (a.perf)
            printf("copy bandwidth (read + write, device to device): %.0f GB/s\n", sum.copy_bandwidth * 1e-9);
        printf(
            "ops: %s: %lld of %lld planned cases run: %lld passed, %lld failed, %lld errors; %lld not run; "
            "%lld skipped (dtypes a variant does not declare)\n",
            pass ? "PASS" : "FAIL", (long long)sum.run, (long long)sum.planned, (long long)sum.passed,
            (long long)sum.failed, (long long)sum.errors, (long long)sum.not_run, (long long)sum.skipped);
    }
    return pass ? EXIT_AGREE : EXIT_DIVERGE;
}

#endif
