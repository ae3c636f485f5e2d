/* llama-diff: a thin command-line front over libllamaref that tells where a Llama
 * implementation diverges from ground truth. Commands: info, check, dump.
 * Exit status: 0 agree (or success), 1 diverge, 2 bad input or usage. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "llamaref.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_AGREE = 0, EXIT_DIVERGE = 1, EXIT_BAD = 2 };

#define DEFAULT_MODEL "models/gqa-f32"
#define DEFAULT_FIXTURE "golden/gqa-f32-batch.safetensors"

typedef struct {
    const char *cmd;
    const char *model, *fixture, *tokens, *out;
    lr_options opt;
    bool json, force, color, precision_given;
    char kernels[512]; /* --kernel family=name, comma-joined */
} args;

static int bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llama-diff: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_BAD;
}

/* A library failure: one line naming the file and field. */
static int lib_fail(int rc) { return bad("%s (%s)", lr_last_error(), lr_status_name(rc)); }

static void usage(FILE *fp) {
    fputs("usage: llama-diff [COMMAND] [OPTIONS]\n"
          "\n"
          "Tells where a Llama-family forward pass diverges from ground truth.\n"
          "\n"
          "Commands:\n"
          "  check   run a backend on a golden fixture's inputs and compare every stage\n"
          "  dump    run a backend and write every stage as a llama-golden/1 file\n"
          "  info    print the parsed config and each rank's packed, sharded tensors\n"
          "  (none)  check the bundled default model and fixture\n"
          "\n"
          "Options:\n"
          "  -m, --model DIR          Hugging Face checkpoint directory\n"
          "  -f, --fixture FILE       golden fixture (llama-golden/1 safetensors)\n"
          "  -t, --tokens \"1 2 3\"     token ids of one sequence (dump), instead of a fixture\n"
          "  -o, --out FILE           output file (dump); never overwritten without --force\n"
          "  -b, --backend NAME       cpu (default) or cuda\n"
          "  -p, --precision P        cpu: f64 (default) or f32; cuda: bf16 (default), fp16 or fp32\n"
          "      --tp N               tensor-parallel size (default 1)\n"
          "      --threads N          BLAS threads (default 1: bitwise reproducible)\n"
          "      --devices N          cuda: GPUs for the tp ranks (default: tp GPUs over NCCL when\n"
          "                           present, else all ranks on one GPU; 1 forces one GPU)\n"
          "  -k, --kernel FAM=NAME    cuda: kernel variant for an op family (repeatable)\n"
          "      --json               print one JSON document instead of text\n"
          "      --force              let dump replace an existing output file\n"
          "  -h, --help               this help\n"
          "  -V, --version            version\n"
          "\n"
          "Exit status: 0 all stages agree, 1 a stage diverges, 2 bad input or usage.\n",
          fp);
}

static const char *fixtures_root(void) {
    const char *env = getenv("LR_FIXTURES");
    if (env && *env) return env;
    struct stat st;
    if (stat(LR_SRC_FIXTURES, &st) == 0 && S_ISDIR(st.st_mode)) return LR_SRC_FIXTURES;
    return LR_DATA_FIXTURES;
}

static char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (p) sprintf(p, "%s/%s", a, b);
    return p;
}

static int parse_int(const char *s, const char *opt, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return bad("%s: \"%s\" is not an integer in %d..%d", opt, s, lo, hi);
    *out = (int)v;
    return 0;
}

static const char *precision_name(lr_dtype d) {
    switch (d) {
    case LR_F64: return "f64";
    case LR_F32: return "f32";
    case LR_BF16: return "bf16";
    case LR_F16: return "fp16";
    default: return lr_dtype_name(d);
    }
}

static int parse_args(int argc, char **argv, args *a) {
    enum { OPT_TP = 256, OPT_THREADS, OPT_JSON, OPT_FORCE, OPT_DEVICES };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},   {"fixture", required_argument, NULL, 'f'},
        {"tokens", required_argument, NULL, 't'},  {"out", required_argument, NULL, 'o'},
        {"backend", required_argument, NULL, 'b'}, {"precision", required_argument, NULL, 'p'},
        {"tp", required_argument, NULL, OPT_TP},   {"threads", required_argument, NULL, OPT_THREADS},
        {"json", no_argument, NULL, OPT_JSON},     {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {"kernel", required_argument, NULL, 'k'},  {"devices", required_argument, NULL, OPT_DEVICES},
        {NULL, 0, NULL, 0},
    };
    lr_options_init(&a->opt);
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:f:t:o:b:p:k:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'f': a->fixture = optarg; break;
        case 't': a->tokens = optarg; break;
        case 'o': a->out = optarg; break;
        case 'b': a->opt.backend = optarg; break;
        case 'p':
            if (strcmp(optarg, "f64") == 0)
                a->opt.precision = LR_F64;
            else if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "fp32") == 0)
                a->opt.precision = LR_F32;
            else if (strcmp(optarg, "bf16") == 0)
                a->opt.precision = LR_BF16;
            else if (strcmp(optarg, "fp16") == 0 || strcmp(optarg, "f16") == 0)
                a->opt.precision = LR_F16;
            else
                return bad("--precision: \"%s\" is not f64, f32, bf16 or fp16", optarg);
            a->precision_given = true;
            break;
        case 'k': {
            size_t used = strlen(a->kernels);
            if (!strchr(optarg, '=') || used + strlen(optarg) + 2 > sizeof a->kernels)
                return bad("--kernel: \"%s\" is not FAMILY=NAME", optarg);
            snprintf(a->kernels + used, sizeof a->kernels - used, "%s%s", used ? "," : "", optarg);
            a->opt.kernels = a->kernels;
            break;
        }
        case OPT_DEVICES:
            if (parse_int(optarg, "--devices", 1, 64, &a->opt.num_devices)) return EXIT_BAD;
            break;
        case OPT_TP:
            if (parse_int(optarg, "--tp", 1, 4096, &a->opt.tp_size)) return EXIT_BAD;
            break;
        case OPT_THREADS:
            if (parse_int(optarg, "--threads", 1, 1024, &a->opt.num_threads)) return EXIT_BAD;
            break;
        case OPT_JSON: a->json = true; break;
        case OPT_FORCE: a->force = true; break;
        case 'h': usage(stdout); exit(EXIT_AGREE);
        case 'V': printf("llama-diff (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION); exit(EXIT_AGREE);
        case ':': return bad("option %s needs a value (see --help)", argv[optind - 1]);
        default: return bad("unknown option %s (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad("unexpected argument \"%s\" (see --help)", argv[optind]);
    bool cuda = strcmp(a->opt.backend, "cuda") == 0;
    if (cuda && !a->precision_given) a->opt.precision = LR_BF16;
    if (!cuda && strcmp(a->opt.backend, "cpu") != 0)
        return bad("--backend: \"%s\" is not cpu or cuda", a->opt.backend);
    if (!cuda && a->opt.precision != LR_F64 && a->opt.precision != LR_F32)
        return bad("--precision: %s needs --backend cuda (cpu computes in f64 or f32)", precision_name(a->opt.precision));
    if (cuda && a->opt.precision == LR_F64)
        return bad("--precision: f64 is for --backend cpu (cuda computes in bf16, fp16 or fp32)");
    if (!cuda && (a->opt.kernels || a->opt.num_devices))
        return bad("%s: needs --backend cuda", a->opt.kernels ? "--kernel" : "--devices");
    return 0;
}

/* ---- info -------------------------------------------------------------------------- */

static json_t *config_json(const lr_config *c) {
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:b, s:b, s:s, s:f, s:i}",
                          "vocab_size", (json_int_t)c->vocab_size, "hidden_size", (json_int_t)c->hidden_size,
                          "intermediate_size", (json_int_t)c->intermediate_size, "num_hidden_layers",
                          (json_int_t)c->num_hidden_layers, "num_attention_heads",
                          (json_int_t)c->num_attention_heads, "num_key_value_heads",
                          (json_int_t)c->num_key_value_heads, "head_dim", (json_int_t)c->head_dim,
                          "max_position_embeddings", (json_int_t)c->max_position_embeddings,
                          "rms_norm_eps", c->rms_norm_eps, "attention_bias", c->attention_bias, "mlp_bias",
                          c->mlp_bias, "tie_word_embeddings", c->tie_word_embeddings, "rope_type",
                          lr_rope_type_name(c->rope_type), "rope_theta", c->rope_theta, "config_style",
                          c->config_style);
    if (c->rope_type != LR_ROPE_DEFAULT) json_object_set_new(j, "rope_factor", json_real(c->rope_factor));
    if (c->rope_type == LR_ROPE_LLAMA3) {
        json_object_set_new(j, "rope_low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(j, "rope_high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(j, "rope_original_max_position_embeddings",
                            json_integer(c->rope_original_max_position_embeddings));
    }
    return j;
}

static void print_config(const lr_config *c) {
    printf("config (transformers %d.x style)\n", c->config_style);
    printf("  vocab_size %lld, hidden_size %lld, intermediate_size %lld, num_hidden_layers %lld\n",
           (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->intermediate_size,
           (long long)c->num_hidden_layers);
    printf("  num_attention_heads %lld, num_key_value_heads %lld, head_dim %lld\n",
           (long long)c->num_attention_heads, (long long)c->num_key_value_heads, (long long)c->head_dim);
    printf("  rms_norm_eps %g, attention_bias %s, mlp_bias %s, tie_word_embeddings %s\n", c->rms_norm_eps,
           c->attention_bias ? "true" : "false", c->mlp_bias ? "true" : "false",
           c->tie_word_embeddings ? "true" : "false");
    printf("  rope %s, theta %g", lr_rope_type_name(c->rope_type), c->rope_theta);
    if (c->rope_type != LR_ROPE_DEFAULT) printf(", factor %g", c->rope_factor);
    if (c->rope_type == LR_ROPE_LLAMA3)
        printf(", low_freq_factor %g, high_freq_factor %g, original_max_position_embeddings %lld",
               c->rope_low_freq_factor, c->rope_high_freq_factor,
               (long long)c->rope_original_max_position_embeddings);
    printf(", max_position_embeddings %lld\n", (long long)c->max_position_embeddings);
}

static int cmd_info(const args *a) {
    if (!a->model) return bad("info: --model DIR is required");
    lr_checkpoint *ck;
    int rc = lr_checkpoint_open(a->model, &ck);
    if (rc) return lib_fail(rc);
    const lr_config *c = lr_checkpoint_config(ck);
    json_t *root = a->json ? json_pack("{s:s, s:s, s:o, s:i, s:[]}", "command", "info", "model", a->model,
                                       "config", config_json(c), "tp", a->opt.tp_size, "ranks")
                           : NULL;
    if (!a->json) {
        printf("model %s\n", a->model);
        print_config(c);
    }
    int status = EXIT_AGREE;
    for (int r = 0; r < a->opt.tp_size && status == EXIT_AGREE; r++) {
        lr_plan *p;
        if ((rc = lr_plan_create(c, a->opt.tp_size, r, &p))) {
            status = lib_fail(rc);
            break;
        }
        const lr_tp_layout *L = lr_plan_layout(p);
        json_t *tensors = json_array();
        if (a->json) {
            json_array_append_new(
                json_object_get(root, "ranks"),
                json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "rank", r, "num_heads",
                          (json_int_t)L->num_heads, "num_kv_heads", (json_int_t)L->num_kv_heads, "kv_replicas",
                          (json_int_t)L->kv_replicas, "kv_head_start", (json_int_t)L->kv_head_start,
                          "intermediate", (json_int_t)L->intermediate, "vocab_padded",
                          (json_int_t)L->vocab_padded, "vocab_shard", (json_int_t)L->vocab_shard,
                          "vocab_start", (json_int_t)L->vocab_start, "q_size", (json_int_t)L->q_size,
                          "tensors", tensors));
        } else {
            printf("\nrank %d of %d: %lld heads, %lld kv heads (kv head %lld, %lld replica%s), "
                   "intermediate %lld, vocabulary rows [%lld, %lld) of %lld padded\n",
                   r, a->opt.tp_size, (long long)L->num_heads, (long long)L->num_kv_heads,
                   (long long)L->kv_head_start, (long long)L->kv_replicas, L->kv_replicas == 1 ? "" : "s",
                   (long long)L->intermediate, (long long)L->vocab_start,
                   (long long)(L->vocab_start + L->vocab_shard), (long long)L->vocab_padded);
            json_decref(tensors);
        }
        for (size_t i = 0; i < lr_plan_count(p); i++) {
            const lr_packed_desc *d = lr_plan_at(p, i);
            if (a->json) {
                json_t *slices = json_array();
                for (int k = 0; k < d->nslices; k++) {
                    const lr_slice *s = &d->slices[k];
                    json_array_append_new(slices,
                                          json_pack("{s:s, s:[I,I], s:[I,I], s:I}", "src", s->src, "src_rows",
                                                    (json_int_t)s->src_row0, (json_int_t)(s->src_row0 + s->rows),
                                                    "src_cols", (json_int_t)s->src_col0,
                                                    (json_int_t)(s->src_col0 + s->cols), "dst_row",
                                                    (json_int_t)s->dst_row0));
                }
                json_t *shape = d->ndim == 2 ? json_pack("[I,I]", (json_int_t)d->shape[0], (json_int_t)d->shape[1])
                                             : json_pack("[I]", (json_int_t)d->shape[0]);
                json_array_append_new(tensors, json_pack("{s:s, s:o, s:o, s:o}", "name", d->name, "shape", shape,
                                                         "tied_to",
                                                         d->tied_to >= 0 ? json_string(lr_plan_at(p, (size_t)d->tied_to)->name)
                                                                         : json_null(),
                                                         "slices", slices));
                continue;
            }
            char shape[48];
            if (d->ndim == 2)
                snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)d->shape[0], (long long)d->shape[1]);
            else
                snprintf(shape, sizeof shape, "[%lld]", (long long)d->shape[0]);
            printf("  %-48s %-12s", d->name, shape);
            if (d->tied_to >= 0) printf(" tied to %s", lr_plan_at(p, (size_t)d->tied_to)->name);
            for (int k = 0; k < d->nslices; k++) {
                const lr_slice *s = &d->slices[k];
                printf("%s %s[%lld:%lld", k ? "," : (d->tied_to >= 0 ? ";" : " <-"), s->src,
                       (long long)s->src_row0, (long long)(s->src_row0 + s->rows));
                if (d->ndim == 2)
                    printf(", %lld:%lld]", (long long)s->src_col0, (long long)(s->src_col0 + s->cols));
                else
                    printf("]");
                printf(" -> row %lld", (long long)s->dst_row0);
            }
            if (d->nslices == 0) printf(" (padding only)");
            printf("\n");
        }
        lr_plan_free(p);
    }
    if (root) {
        if (status == EXIT_AGREE) {
            json_dumpf(root, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        }
        json_decref(root);
    }
    lr_checkpoint_close(ck);
    return status;
}

/* ---- running a model ------------------------------------------------------------------ */

/* Runs the backend on a batch and records every stage, logits included. */
static int run_model(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_recorder *rec) {
    lr_model *m;
    int rc = lr_model_create(ck, &a->opt, &m);
    if (rc) return lib_fail(rc);
    lr_observer obs = lr_recorder_observer(rec);
    lr_tensor hidden, logits;
    rc = lr_model_forward(m, b, NULL, &obs, &hidden);
    if (rc == LR_OK) rc = lr_model_compute_logits(m, &hidden, &obs, &logits);
    if (rc == LR_OK) rc = lr_recorder_status(rec);
    lr_model_free(m);
    return rc ? lib_fail(rc) : 0;
}


/* ---- check ----------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    lr_stage_kind kind;
    lr_metrics m;
    double tol;
    bool pass;
    int64_t width;
} stage_result;

static void print_check_text(const args *a, const lr_fixture *fx, const stage_result *res, size_t n,
                             size_t failed, const stage_result *first) {
    const char *green = a->color ? "\033[32m" : "", *red = a->color ? "\033[31;1m" : "",
               *off = a->color ? "\033[0m" : "";
    printf("llama-diff check\n  model     %s\n  fixture   %s (%s, %s)\n  backend   %s, precision %s, tp %d\n\n",
           a->model, a->fixture, lr_fixture_metadata(fx, "compute_dtype") ? lr_fixture_metadata(fx, "compute_dtype") : "?",
           lr_fixture_metadata(fx, "generator") ? lr_fixture_metadata(fx, "generator") : "unknown generator",
           a->opt.backend, precision_name(a->opt.precision), a->opt.tp_size);
    printf("%-42s %-10s %9s %9s %12s %18s %9s %7s  %s\n", "stage", "kind", "rel_l2", "max_abs", "at [t, i]",
           "cosine", "tol", "used", "result");
    for (size_t i = 0; i < n; i++) {
        const stage_result *r = &res[i];
        char at[32];
        snprintf(at, sizeof at, "[%lld, %lld]", (long long)(r->m.max_abs_index / r->width),
                 (long long)(r->m.max_abs_index % r->width));
        printf("%-42s %-10s %9.2e %9.2e %12s %18.15f %9.1e %6.1f%%  %s%s%s", r->name, lr_stage_kind_name(r->kind),
               r->m.rel_l2, r->m.max_abs, at, r->m.cosine, r->tol, 100 * r->m.rel_l2 / r->tol,
               r->pass ? green : red, r->pass ? "PASS" : "FAIL", off);
        if (r->m.nan_a || r->m.inf_a)
            printf(" (%lld NaN, %lld Inf)", (long long)r->m.nan_a, (long long)r->m.inf_a);
        if (r == first) printf("  <-- first divergence");
        printf("\n");
    }
    printf("\n%zu stages: %zu agree, %zu diverge", n, n - failed, failed);
    if (first) printf("; first divergence at %s", first->name);
    printf("\n");
}

static int cmd_check(const args *a) {
    if (!a->model || !a->fixture) return bad("check: --model DIR and --fixture FILE are required");
    lr_checkpoint *ck = NULL;
    lr_fixture *fx = NULL;
    lr_recorder *rec = NULL;
    stage_result *res = NULL;
    int rc, status;
    if ((rc = lr_checkpoint_open(a->model, &ck)) || (rc = lr_fixture_open(a->fixture, &fx)) ||
        (rc = lr_fixture_check_config(fx, lr_checkpoint_config(ck))) || (rc = lr_recorder_create(&rec))) {
        status = lib_fail(rc);
        goto out;
    }
    if ((status = run_model(a, ck, lr_fixture_batch(fx), rec))) goto out;

    /* Compare in the order the backend reported, which is the order of the forward. */
    size_t n = 0, failed = 0;
    res = calloc(lr_recorder_count(rec) + 1, sizeof *res);
    if (!res) {
        status = bad("out of memory");
        goto out;
    }
    const stage_result *first = NULL;
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        const char *name = lr_recorder_name(rec, i);
        const lr_st_entry *gold = lr_fixture_stage(fx, name);
        if (!gold) continue; /* an optional stage the fixture does not hold */
        stage_result *r = &res[n++];
        r->name = name;
        r->kind = lr_stage_kind_of(name);
        r->width = gold->t.shape[1];
        if ((rc = lr_compare(lr_recorder_at(rec, i), &gold->t, &r->m))) {
            status = lib_fail(rc);
            goto out;
        }
        r->tol = lr_tolerance(r->kind, a->opt.precision);
        r->pass = lr_metrics_pass(&r->m, r->tol);
        if (!r->pass && !first) first = r;
        failed += !r->pass;
    }
    if (n != lr_fixture_stage_count(fx)) {
        status = bad("%s: %zu stages in the fixture but only %zu reported by the backend", a->fixture,
                     lr_fixture_stage_count(fx), n);
        goto out;
    }
    status = failed ? EXIT_DIVERGE : EXIT_AGREE;
    if (!a->json) {
        print_check_text(a, fx, res, n, failed, first);
        goto out;
    }
    json_t *stages = json_array();
    for (size_t i = 0; i < n; i++) {
        const stage_result *r = &res[i];
        json_t *s = json_pack("{s:s, s:s, s:I, s:f, s:f, s:[I,I], s:f, s:I, s:I, s:f, s:f, s:b}", "name", r->name,
                              "kind", lr_stage_kind_name(r->kind), "numel", (json_int_t)r->m.n, "rel_l2",
                              isfinite(r->m.rel_l2) ? r->m.rel_l2 : -1.0, "max_abs", r->m.max_abs,
                              "max_abs_at", (json_int_t)(r->m.max_abs_index / r->width),
                              (json_int_t)(r->m.max_abs_index % r->width), "cosine", r->m.cosine, "nan",
                              (json_int_t)r->m.nan_a, "inf", (json_int_t)r->m.inf_a, "tolerance", r->tol,
                              "budget_used", isfinite(r->m.rel_l2) ? r->m.rel_l2 / r->tol : -1.0, "pass",
                              r->pass);
        json_array_append_new(stages, s);
    }
    json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:o, s:I, s:I, s:o, s:s}", "command", "check",
                             "model", a->model, "fixture", a->fixture, "backend", a->opt.backend, "precision",
                             precision_name(a->opt.precision), "tp", a->opt.tp_size, "stages", stages,
                             "passed", (json_int_t)(n - failed), "failed", (json_int_t)failed,
                             "first_divergence", first ? json_string(first->name) : json_null(), "result",
                             failed ? "diverge" : "agree");
    json_dumpf(root, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
    json_decref(root);
out:
    free(res);
    lr_recorder_free(rec);
    lr_fixture_free(fx);
    lr_checkpoint_close(ck);
    return status;
}

/* ---- dump ----------------------------------------------------------------------------- */

static int parse_tokens(const char *s, int64_t **ids, int64_t *n) {
    size_t cap = 16, k = 0;
    int64_t *v = malloc(cap * sizeof *v);
    if (!v) return bad("out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 0) {
            free(v);
            return bad("--tokens: \"%s\" is not a list of non-negative token ids", s);
        }
        if (k == cap) {
            int64_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return bad("out of memory");
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = x;
        p = end;
    }
    if (k == 0) {
        free(v);
        return bad("--tokens: no token ids given");
    }
    *ids = v;
    *n = (int64_t)k;
    return 0;
}

static const char *basename_of(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    static char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)n, path);
    char *slash = strrchr(buf, '/');
    return slash ? slash + 1 : buf;
}

static int cmd_dump(const args *a) {
    if (!a->model || !a->out) return bad("dump: --model DIR and --out FILE are required");
    if (!!a->fixture == !!a->tokens) return bad("dump: give exactly one of --fixture FILE or --tokens \"...\"");
    if (!a->force && access(a->out, F_OK) == 0)
        return bad("%s: already exists (use --force to replace it)", a->out);
    lr_checkpoint *ck = NULL;
    lr_fixture *fx = NULL;
    lr_recorder *rec = NULL;
    lr_st_writer *w = NULL;
    int64_t *ids = NULL, *pos = NULL, T = 0;
    lr_batch b;
    int rc, status;
    if ((rc = lr_checkpoint_open(a->model, &ck)) || (rc = lr_recorder_create(&rec)) ||
        (rc = lr_st_writer_create(&w))) {
        status = lib_fail(rc);
        goto out;
    }
    if (a->fixture) {
        if ((rc = lr_fixture_open(a->fixture, &fx))) {
            status = lib_fail(rc);
            goto out;
        }
        b = *lr_fixture_batch(fx);
    } else {
        if ((status = parse_tokens(a->tokens, &ids, &T))) goto out;
        if (!(pos = malloc((size_t)T * sizeof *pos))) {
            status = bad("out of memory");
            goto out;
        }
        for (int64_t t = 0; t < T; t++) pos[t] = t;
        b = (lr_batch){.input_ids = ids, .positions = pos, .num_tokens = T, .num_seqs = 1};
    }
    if ((status = run_model(a, ck, &b, rec))) goto out;

    lr_tensor in_ids = {.dtype = LR_I64, .ndim = 1, .shape = {b.num_tokens}, .data = b.input_ids};
    lr_tensor in_pos = {.dtype = LR_I64, .ndim = 1, .shape = {b.num_tokens}, .data = b.positions};
    lr_tensor in_lens = {.dtype = LR_I64, .ndim = 1, .shape = {b.num_seqs}, .data = b.seq_lens};
    char gen[160];
    snprintf(gen, sizeof gen, "%s %s llama-diff dump (backend %s, precision %s, tp %d)", PACKAGE_NAME,
             PACKAGE_VERSION, a->opt.backend, precision_name(a->opt.precision), a->opt.tp_size);
    if ((rc = lr_st_writer_set_metadata(w, "format", LR_FIXTURE_FORMAT)) ||
        (rc = lr_st_writer_set_metadata(w, "model", basename_of(a->model))) ||
        (rc = lr_st_writer_set_metadata(w, "compute_dtype", a->opt.precision == LR_F64   ? "float64"
                                                         : a->opt.precision == LR_F32 ? "float32"
                                                         : a->opt.precision == LR_BF16 ? "bfloat16"
                                                                                      : "float16")) ||
        (rc = lr_st_writer_set_metadata(w, "generator", gen)) || (rc = lr_st_writer_add(w, "input_ids", &in_ids)) ||
        (rc = lr_st_writer_add(w, "positions", &in_pos)) ||
        (b.seq_lens && (rc = lr_st_writer_add(w, "seq_lens", &in_lens)))) {
        status = lib_fail(rc);
        goto out;
    }
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        /* Stages are stored in the precision they were computed in. */
        const lr_tensor *t = lr_recorder_at(rec, i);
        lr_tensor st = *t;
        float *f32 = NULL;
        if (a->opt.precision != LR_F64) {
            int64_t n = lr_tensor_numel(t);
            if (!(f32 = malloc((size_t)n * sizeof *f32))) {
                status = bad("out of memory");
                goto out;
            }
            lr_convert(f32, LR_F32, t->data, LR_F64, (size_t)n);
            st.dtype = LR_F32;
            st.data = f32;
        }
        rc = lr_st_writer_add(w, lr_recorder_name(rec, i), &st);
        free(f32);
        if (rc) {
            status = lib_fail(rc);
            goto out;
        }
    }
    if ((rc = lr_st_writer_write(w, a->out, a->force))) {
        status = lib_fail(rc);
        goto out;
    }
    if (a->json)
        printf("{\"command\": \"dump\", \"out\": \"%s\", \"stages\": %zu, \"tokens\": %lld}\n", a->out,
               lr_recorder_count(rec), (long long)b.num_tokens);
    else
        printf("wrote %zu stages of %lld tokens to %s\n", lr_recorder_count(rec), (long long)b.num_tokens, a->out);
    status = EXIT_AGREE;
out:
    free(ids);
    free(pos);
    lr_st_writer_free(w);
    lr_recorder_free(rec);
    lr_fixture_free(fx);
    lr_checkpoint_close(ck);
    return status;
}

int main(int argc, char **argv) {
    args a = {0};
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        a.cmd = argv[1];
        first = 2;
    }
    /* getopt sees the options after the command. */
    argv[first - 1] = argv[0];
    int status = parse_args(argc - first + 1, argv + first - 1, &a);
    if (status) return status;
    a.color = !a.json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");

    char *model = NULL, *fixture = NULL;
    if (!a.cmd) {
        /* The bundled default: check the default model against its fixture. */
        const char *root = fixtures_root();
        if (!a.model) a.model = model = join(root, DEFAULT_MODEL);
        if (!a.fixture) a.fixture = fixture = join(root, DEFAULT_FIXTURE);
        a.cmd = "check";
    }
    if (strcmp(a.cmd, "check") == 0)
        status = cmd_check(&a);
    else if (strcmp(a.cmd, "dump") == 0)
        status = cmd_dump(&a);
    else if (strcmp(a.cmd, "info") == 0)
        status = cmd_info(&a);
    else if (strcmp(a.cmd, "help") == 0)
        usage(stdout), status = EXIT_AGREE;
    else
        status = bad("unknown command \"%s\" (commands: check, dump, info; see --help)", a.cmd);
    free(model);
    free(fixture);
    return status;
}
