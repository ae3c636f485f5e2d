/* llama-diff: a thin command-line front over libllamaref that tells where a Llama
 * implementation diverges from ground truth. Commands: check, dump, compare, backends,
 * info, convert (a GGUF file to a Hugging Face checkpoint).
 * Exit status: 0 agree (or success), 1 diverge, 2 bad input or usage. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "llamaref.h"
#include "report.h"

#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_AGREE = 0, EXIT_DIVERGE = 1, EXIT_BAD = 2 };

#define DEFAULT_MODEL "models/gqa-f32"
#define DEFAULT_FIXTURE "golden/gqa-f32-batch.safetensors"

typedef struct {
    const char *cmd;
    const char *model, *fixture, *tokens, *out, *report, *gguf;
    lr_options opt;
    bool json, force, color, precision_given, isolate, quiet;
    int decode; /* check --decode K */
    char kernels[512]; /* --kernel family=name, comma-joined */
    const char *spec_a, *spec_b; /* backends --a, --b */
    const char *pos[2];          /* compare A B */
    int npos;
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
          "  compare A.safetensors B.safetensors\n"
          "          two dumps (llama-golden/1) of the same inputs, A under test, B the reference\n"
          "  backends --a BACKEND[:P] --b BACKEND[:P]\n"
          "          run two backends on one input (--fixture or --tokens), B against A\n"
          "  info    print the parsed config and each rank's packed, sharded tensors\n"
          "  convert --gguf FILE --out DIR\n"
          "          write a GGUF model (F32, F16, BF16, Q8_0, Q4_0, Q4_1) as a Hugging Face\n"
          "          checkpoint: DIR/config.json and DIR/model.safetensors, dequantized to F32\n"
          "  (none)  check the bundled default model and fixture\n"
          "\n"
          "Options:\n"
          "  -m, --model PATH         Hugging Face checkpoint directory, or a .gguf file\n"
          "      --gguf FILE          convert: the GGUF file to read\n"
          "  -f, --fixture FILE       golden fixture (llama-golden/1 safetensors)\n"
          "  -t, --tokens \"1 2 3\"     token ids of one sequence (dump), instead of a fixture\n"
          "  -o, --out PATH           output file (dump) or directory (convert); existing files\n"
          "                           are never overwritten without --force\n"
          "  -b, --backend NAME       cpu (default) or cuda\n"
          "  -p, --precision P        cpu: f64 (default) or f32; cuda: bf16 (default), fp16 or fp32\n"
          "      --tp N               tensor-parallel size (default 1)\n"
          "      --threads N          BLAS threads (default 1: bitwise reproducible)\n"
          "      --devices N          cuda: GPUs for the tp ranks (default: tp GPUs over NCCL when\n"
          "                           present, else all ranks on one GPU; 1 forces one GPU)\n"
          "  -k, --kernel FAM=NAME    cuda: kernel variant for an op family (repeatable)\n"
          "      --a, --b SPEC        backends: cpu:f64, cpu:f32, cuda:bf16, cuda:fp16, cuda:fp32,\n"
          "                           then optionally ,tp=N and ,devices=N for that side alone\n"
          "                           (e.g. --a cuda:bf16,tp=1 --b cuda:bf16 --tp 2)\n"
          "      --decode K           check: prefill all but K tokens of each sequence, then K\n"
          "                           single-token steps through the KV cache, each compared\n"
          "      --isolate            check: feed every layer the fixture's input to it, so each\n"
          "                           layer's own error shows, not the error it inherits\n"
          "      --json               print one JSON document instead of text\n"
          "      --report FILE        check, compare, backends: also write a self-contained HTML\n"
          "                           report (charts per stage and per layer, table, drill-down)\n"
          "      --force              let dump, convert or --report replace an existing output file\n"
          "  -q, --quiet              no progress lines on stderr (shown once a run takes over 1.5 s)\n"
          "  -h, --help               this help\n"
          "  -V, --version            version\n"
          "\n"
          "\n"
          "With no command and no --model, the default job checks SmolLM2-135M-Instruct (Q4_1 GGUF)\n"
          "when $LLAMAREF_CACHE (default $XDG_CACHE_HOME/llamaref or ~/.cache/llamaref) holds\n"
          "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf and the fixtures hold\n"
          "golden/smollm2-135m.safetensors; otherwise the bundled gqa-f32 model and fixture.\n"
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
    enum { OPT_TP = 256, OPT_THREADS, OPT_JSON, OPT_FORCE, OPT_DEVICES, OPT_A, OPT_B, OPT_ISOLATE, OPT_DECODE, OPT_REPORT,
           OPT_GGUF };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},   {"fixture", required_argument, NULL, 'f'},
        {"tokens", required_argument, NULL, 't'},  {"out", required_argument, NULL, 'o'},
        {"backend", required_argument, NULL, 'b'}, {"precision", required_argument, NULL, 'p'},
        {"tp", required_argument, NULL, OPT_TP},   {"threads", required_argument, NULL, OPT_THREADS},
        {"json", no_argument, NULL, OPT_JSON},     {"force", no_argument, NULL, OPT_FORCE},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {"kernel", required_argument, NULL, 'k'},  {"devices", required_argument, NULL, OPT_DEVICES},
        {"a", required_argument, NULL, OPT_A},     {"b", required_argument, NULL, OPT_B},
        {"isolate", no_argument, NULL, OPT_ISOLATE}, {"decode", required_argument, NULL, OPT_DECODE},
        {"report", required_argument, NULL, OPT_REPORT}, {"quiet", no_argument, NULL, 'q'},
        {"gguf", required_argument, NULL, OPT_GGUF},
        {NULL, 0, NULL, 0},
    };
    lr_options_init(&a->opt);
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:f:t:o:b:p:k:qhV", longopts, NULL)) != -1) {
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
        case OPT_A: a->spec_a = optarg; break;
        case OPT_ISOLATE: a->isolate = true; break;
        case OPT_REPORT: a->report = optarg; break;
        case OPT_GGUF: a->gguf = optarg; break;
        case OPT_DECODE:
            if (parse_int(optarg, "--decode", 1, 1 << 20, &a->decode)) return EXIT_BAD;
            break;
        case OPT_B: a->spec_b = optarg; break;
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
        case 'q': a->quiet = true; break;
        case 'h': usage(stdout); exit(EXIT_AGREE);
        case 'V': printf("llama-diff (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION); exit(EXIT_AGREE);
        case ':': return bad("option %s needs a value (see --help)", argv[optind - 1]);
        default: return bad("unknown option %s (see --help)", argv[optind - 1]);
        }
    }
    for (; optind < argc; optind++) {
        if (a->npos == 2) return bad("unexpected argument \"%s\" (see --help)", argv[optind]);
        a->pos[a->npos++] = argv[optind];
    }
    if (a->npos && (!a->cmd || strcmp(a->cmd, "compare") != 0))
        return bad("unexpected argument \"%s\" (see --help)", a->pos[0]);
    bool cuda = strcmp(a->opt.backend, "cuda") == 0;
    /* backends: --kernel and --devices serve whichever side is cuda */
    bool backends = a->cmd && strcmp(a->cmd, "backends") == 0;
    if (backends)
        cuda = (a->spec_a && strncmp(a->spec_a, "cuda", 4) == 0) || (a->spec_b && strncmp(a->spec_b, "cuda", 4) == 0);
    if (cuda && !a->precision_given) a->opt.precision = LR_BF16;
    if (!cuda && strcmp(a->opt.backend, "cpu") != 0)
        return bad("--backend: \"%s\" is not cpu or cuda", a->opt.backend);
    if (!cuda && a->opt.precision != LR_F64 && a->opt.precision != LR_F32)
        return bad("--precision: %s needs --backend cuda (cpu computes in f64 or f32)", precision_name(a->opt.precision));
    if (cuda && a->opt.precision == LR_F64)
        return bad("--precision: f64 is for --backend cpu (cuda computes in bf16, fp16 or fp32)");
    if (a->decode && a->isolate) return bad("--decode and --isolate: choose one");
    if (a->report && a->cmd && strcmp(a->cmd, "check") != 0 && strcmp(a->cmd, "compare") != 0 &&
        strcmp(a->cmd, "backends") != 0)
        return bad("--report: for check, compare and backends");
    bool convert = a->cmd && strcmp(a->cmd, "convert") == 0;
    if (a->gguf && !convert) return bad("--gguf: for convert (other commands take a .gguf file as --model)");
    if (convert && (a->model || a->fixture || a->tokens))
        return bad("convert: takes --gguf FILE and --out DIR (not %s)",
                   a->model ? "--model" : a->fixture ? "--fixture" : "--tokens");
    if (!cuda && (a->opt.kernels || a->opt.num_devices))
        return bad("%s: needs %s", a->opt.kernels ? "--kernel" : "--devices",
                   backends ? "a cuda side (--a or --b cuda:...)" : "--backend cuda");
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

/* Observer of a run: records every stage; with isolate, feeds each layer the
 * reference's residual stream from a fixture. */
typedef struct {
    lr_observer rec;
    const lr_fixture *isolate;
    double start, last;
    long long layers;
    bool progress, tty, shown;
} run_ctx;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_on_stage(void *user, const char *stage, const lr_tensor *t) {
    run_ctx *c = user;
    c->rec.on_stage(c->rec.user, stage, t);
    /* Progress once a run has taken more than a second and a half: on a terminal one
     * line rewritten at every layer, elsewhere (a CI log) a line every five seconds. */
    long long l;
    char tail;
    if (c->layers <= 0 || !c->progress || sscanf(stage, "model.layers.%lld%c", &l, &tail) != 1) return;
    double now = now_s();
    if (now - c->start < 1.5 || (!c->tty && now - c->last < 5)) return;
    if (c->tty) {
        fprintf(stderr, "\rllama-diff: layer %lld/%lld", l + 1, c->layers);
        c->shown = true;
    } else {
        fprintf(stderr, "llama-diff: layer %lld/%lld, %.0f s\n", l + 1, c->layers, now - c->start);
    }
    c->last = now;
}

static const lr_tensor *run_inject(void *user, const char *stage) {
    const lr_st_entry *e = lr_fixture_stage(((run_ctx *)user)->isolate, stage);
    return e ? &e->t : NULL;
}

/* Where a model ran, for the labels: ", over 2 GPUs (NCCL)", ", ranks in turn on one GPU"
 * (tp > 1), ", one GPU", or "" (the host). */
static const char *devices_note(int devices, int tp) {
    static char buf[48];
    if (devices == 0) return "";
    if (devices == 1) return tp > 1 ? ", ranks in turn on one GPU" : ", one GPU";
    snprintf(buf, sizeof buf, ", over %d GPUs (NCCL)", devices);
    return buf;
}

/* Runs the backend on a batch and records every stage, logits included; *devices (may
 * be NULL) gets the model's GPU count (lr_model_num_devices). */
static int run_model(const args *a, const lr_checkpoint *ck, const lr_batch *b, lr_recorder *rec,
                     const lr_fixture *isolate, int *devices) {
    lr_model *m;
    int rc = lr_model_create(ck, &a->opt, &m);
    if (rc) return lib_fail(rc);
    if (devices) *devices = lr_model_num_devices(m);
    run_ctx ctx = {.rec = lr_recorder_observer(rec),
                   .isolate = isolate,
                   .start = now_s(),
                   .layers = (long long)lr_checkpoint_config(ck)->num_hidden_layers,
                   .progress = !a->quiet,
                   .tty = isatty(STDERR_FILENO) != 0};
    lr_observer obs = {.on_stage = run_on_stage, .user = &ctx, .inject = isolate ? run_inject : NULL};
    lr_tensor hidden, logits;
    rc = lr_model_forward(m, b, NULL, &obs, &hidden);
    if (rc == LR_OK) rc = lr_model_compute_logits(m, &hidden, &obs, &logits);
    if (rc == LR_OK) rc = lr_recorder_status(rec);
    if (ctx.shown) fputs("\r\033[K", stderr);
    lr_model_free(m);
    return rc ? lib_fail(rc) : 0;
}

/* Decode: prefill all but the last K tokens of every sequence (at least one), then K
 * single-token steps through the KV cache with every sequence in one batch. Each step's
 * rows are compared with the fixture's (a line per step); the rows are also put back in
 * the prompt's layout and handed to rec, so the stage table covers the decoded run. */
typedef struct {
    char *name;
    int64_t width;
    double *rows; /* (T, width) */
} assembled;

static int run_decode(const args *a, const lr_checkpoint *ck, const lr_fixture *fx, const lr_error_model *em,
                      lr_recorder *rec, json_t **steps_out, int *devices) {
    const lr_batch *full = lr_fixture_batch(fx);
    int64_t B = full->num_seqs, T = full->num_tokens;
    int64_t *lens = calloc((size_t)B, sizeof *lens), *starts = calloc((size_t)B, sizeof *starts),
            *done = calloc((size_t)B, sizeof *done), *bl = calloc((size_t)B, sizeof *bl),
            *bid = calloc((size_t)B, sizeof *bid), *brow = calloc((size_t)B, sizeof *brow),
            *at = calloc((size_t)B, sizeof *at), *ids = calloc((size_t)T, sizeof *ids),
            *pos = calloc((size_t)T, sizeof *pos);
    size_t nst = lr_fixture_stage_count(fx);
    assembled *as = calloc(nst + 1, sizeof *as);
    lr_model *m = NULL;
    lr_kv_cache *kv = NULL;
    lr_recorder *step = NULL;
    json_t *steps = json_array();
    int status = 0, rc;
    size_t nas = 0;
    if (!lens || !starts || !done || !bl || !bid || !brow || !at || !ids || !pos || !as || !steps) {
        status = bad("out of memory");
        goto out;
    }
    int64_t longest = 0;
    for (int64_t s = 0, off = 0; s < B; s++) {
        lens[s] = full->seq_lens ? full->seq_lens[s] : T;
        starts[s] = off;
        off += lens[s];
        done[s] = lens[s] - a->decode > 1 ? lens[s] - a->decode : 1;
        longest = lens[s] > longest ? lens[s] : longest;
    }
    if ((rc = lr_model_create(ck, &a->opt, &m)) || (rc = lr_kv_cache_create(m, B, longest, &kv)) ||
        (rc = lr_recorder_create(&step))) {
        status = lib_fail(rc);
        goto out;
    }
    *devices = lr_model_num_devices(m);
    for (int round = 0;; round++) {
        int64_t nb = 0, n_tok = 0;
        for (int64_t s = 0; s < B; s++) {
            int64_t from = round == 0 ? 0 : done[s], n = round == 0 ? done[s] : (done[s] < lens[s]);
            if (n == 0) continue;
            for (int64_t j = 0; j < n; j++) {
                ids[n_tok + j] = full->input_ids[starts[s] + from + j];
                pos[n_tok + j] = full->positions[starts[s] + from + j];
            }
            bl[nb] = n, bid[nb] = s, brow[nb] = starts[s] + from, at[nb] = n_tok;
            nb++;
            n_tok += n;
            if (round > 0) done[s]++;
        }
        if (nb == 0) break;
        lr_batch b = {.input_ids = ids, .positions = pos, .seq_lens = bl, .seq_ids = bid, .num_tokens = n_tok,
                      .num_seqs = nb};
        lr_recorder_clear(step);
        lr_observer obs = lr_recorder_observer(step);
        lr_tensor h, lg;
        if ((rc = lr_model_forward(m, &b, kv, &obs, &h)) || (rc = lr_model_compute_logits(m, &h, &obs, &lg)) ||
            (rc = lr_recorder_status(step))) {
            status = lib_fail(rc);
            goto out;
        }
        double worst = 0, logits_err = 0;
        const char *worst_name = "";
        for (size_t i = 0; i < lr_recorder_count(step); i++) {
            const char *name = lr_recorder_name(step, i);
            const lr_st_entry *g = lr_fixture_stage(fx, name);
            if (!g) continue;
            const lr_tensor *got = lr_recorder_at(step, i);
            int64_t w = g->t.shape[1];
            size_t k = 0;
            while (k < nas && strcmp(as[k].name, name) != 0) k++;
            if (k == nas) {
                if (!(as[k].name = strdup(name)) || !(as[k].rows = calloc((size_t)(T * w), sizeof(double)))) {
                    status = bad("out of memory");
                    goto out;
                }
                as[k].width = w;
                nas++;
            }
            /* The step's rows against the fixture's rows, sequence by sequence. */
            double dd = 0, bb = 0;
            for (int64_t q = 0; q < nb; q++) {
                memcpy(as[k].rows + brow[q] * w, (const double *)got->data + at[q] * w, (size_t)(bl[q] * w) * sizeof(double));
                for (int64_t e = 0; e < bl[q] * w; e++) {
                    double x = ((const double *)got->data)[at[q] * w + e], y = lr_tensor_get(&g->t, brow[q] * w + e);
                    dd += (x - y) * (x - y);
                    bb += y * y;
                }
            }
            double rel = bb > 0 ? sqrt(dd / bb) : sqrt(dd);
            /* The same budget the stage table uses (scaled by the error model, em). */
            double share =
                rel / lr_stage_budget(lr_stage_kind_of(name), a->opt.precision, lr_error_model_predict(em, name));
            if (!(share <= worst)) worst = share, worst_name = g->name;
            if (strcmp(name, "lm_head") == 0) logits_err = rel;
        }
        json_array_append_new(steps, json_pack("{s:i, s:s, s:I, s:f, s:s, s:f}", "step", round, "kind",
                                               round == 0 ? "prefill" : "decode", "tokens", (json_int_t)n_tok,
                                               "lm_head_rel_l2", logits_err, "worst_stage", worst_name,
                                               "worst_budget_used", isfinite(worst) ? worst : -1.0));
        if (!a->json)
            fprintf(stdout, "%s %3d: %3lld tokens, logits rel_l2 %.2e, worst stage %s at %.1f%% of its budget\n",
                    round == 0 ? "prefill" : "decode ", round, (long long)n_tok, logits_err, worst_name, 100 * worst);
    }
    if (!a->json) fputc('\n', stdout);
    lr_observer obs = lr_recorder_observer(rec);
    for (size_t k = 0; k < nas; k++) {
        lr_tensor t = {.dtype = LR_F64, .ndim = 2, .shape = {T, as[k].width}, .data = as[k].rows};
        obs.on_stage(obs.user, as[k].name, &t);
    }
    *steps_out = steps;
    steps = NULL;
out:
    for (size_t k = 0; as && k < nas; k++) {
        free(as[k].name);
        free(as[k].rows);
    }
    free(as);
    json_decref(steps);
    lr_recorder_free(step);
    lr_kv_cache_free(kv);
    lr_model_free(m);
    free(lens), free(starts), free(done), free(bl), free(bid), free(brow), free(at), free(ids), free(pos);
    return status;
}

/* ---- comparison report (check, compare, backends) ------------------------------------- */

typedef struct {
    char *name;
    lr_stage_kind kind;
    lr_metrics m;
    double tol;
    double predicted; /* the error model's figure for this stage, or -1 */
    bool pass;
    int64_t width;
} stage_result;

/* One comparison of a run under test against a reference, stage by stage. */
typedef struct {
    const char *command;
    const char *test_label, *ref_label; /* what each side is, for the header */
    lr_dtype precision;                 /* the budget column used */
    lr_error_model *model[2];           /* what the test side and the reference should show
                                         * (docs/error-model.md); their errors add */
    stage_result *res;
    size_t n, cap, failed;
    const stage_result *first;
    bool have_logits; /* the logits as users see them, when lm_head was compared */
    int64_t tokens, top1_agree, topk;
    double topk_overlap, kl_mean, kl_max, max_dlogp;
    int64_t kl_max_token;
} report;

/* log-softmax of row x (V) into out, in double. */
static void log_softmax(const lr_tensor *t, int64_t row, int64_t V, double *out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < V; v++) {
        out[v] = lr_tensor_get(t, row * V + v);
        mx = out[v] > mx ? out[v] : mx;
    }
    for (int64_t v = 0; v < V; v++) sum += exp(out[v] - mx);
    double lse = mx + log(sum);
    for (int64_t v = 0; v < V; v++) out[v] -= lse;
}

/* Indices of the k largest entries of x (V), by insertion; k is small. */
static void top_k(const double *x, int64_t V, int64_t k, int64_t *idx) {
    for (int64_t i = 0; i < k; i++) idx[i] = -1;
    for (int64_t v = 0; v < V; v++) {
        int64_t j = k;
        while (j > 0 && (idx[j - 1] < 0 || x[v] > x[idx[j - 1]])) j--;
        if (j == k) continue;
        for (int64_t m = k - 1; m > j; m--) idx[m] = idx[m - 1];
        idx[j] = v;
    }
}

/* Per token: top-1 agreement, top-k overlap, KL(reference || test) of the softmaxes,
 * and the largest |difference of log-probabilities|; summarised over tokens. */
static int logits_metrics(report *r, const lr_tensor *test, const lr_tensor *ref) {
    if (test->ndim != 2 || ref->ndim != 2 || test->shape[0] != ref->shape[0] || test->shape[1] != ref->shape[1])
        return 0;
    int64_t T = ref->shape[0], V = ref->shape[1], k = V < 5 ? V : 5;
    double *lp = malloc((size_t)V * sizeof *lp), *lq = malloc((size_t)V * sizeof *lq);
    if (!lp || !lq) {
        free(lp);
        free(lq);
        return bad("out of memory");
    }
    r->have_logits = true;
    r->tokens = T;
    r->topk = k;
    r->top1_agree = 0;
    r->topk_overlap = r->kl_mean = r->kl_max = r->max_dlogp = 0;
    for (int64_t t = 0; t < T; t++) {
        log_softmax(test, t, V, lp);
        log_softmax(ref, t, V, lq);
        int64_t ip[5], iq[5], common = 0;
        top_k(lp, V, k, ip);
        top_k(lq, V, k, iq);
        r->top1_agree += ip[0] == iq[0];
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < k; j++) common += ip[i] == iq[j];
        r->topk_overlap += (double)common / (double)k;
        double kl = 0;
        for (int64_t v = 0; v < V; v++) {
            kl += exp(lq[v]) * (lq[v] - lp[v]);
            double d = fabs(lp[v] - lq[v]);
            r->max_dlogp = d > r->max_dlogp || !isfinite(d) ? d : r->max_dlogp;
        }
        r->kl_mean += kl / (double)T;
        if (kl > r->kl_max || t == 0) {
            r->kl_max = kl;
            r->kl_max_token = t;
        }
    }
    r->topk_overlap /= (double)T;
    free(lp);
    free(lq);
    return 0;
}

static int report_add(report *r, const char *name, const lr_tensor *test, const lr_tensor *ref) {
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        stage_result *res = realloc(r->res, cap * sizeof *res);
        if (!res) return bad("out of memory");
        r->res = res;
        r->cap = cap;
    }
    stage_result *x = &r->res[r->n];
    memset(x, 0, sizeof *x);
    int rc = lr_compare(test, ref, &x->m);
    if (rc) return lib_fail(rc);
    if (!(x->name = strdup(name))) return bad("out of memory");
    r->n++;
    x->kind = lr_stage_kind_of(name);
    x->width = ref->ndim == 2 && ref->shape[1] > 0 ? ref->shape[1] : 1;
    x->predicted = -1;
    double own = r->model[0] ? lr_error_model_predict(r->model[0], name) : -1;
    double other = r->model[1] ? lr_error_model_predict(r->model[1], name) : -1;
    x->predicted = own >= 0 && other >= 0 ? hypot(own, other) : own; /* independent errors add in quadrature */
    x->tol = lr_stage_budget(x->kind, r->precision, own);      /* the budget scales with the run's own */
    x->pass = lr_metrics_pass(&x->m, x->tol);
    r->failed += !x->pass;
    return strcmp(name, "lm_head") == 0 ? logits_metrics(r, test, ref) : 0;
}

static void report_free(report *r) {
    for (size_t i = 0; i < r->n; i++) free(r->res[i].name);
    free(r->res);
    lr_error_model_free(r->model[0]);
    lr_error_model_free(r->model[1]);
}

/* The error model of a run in precision p of this checkpoint on batch b, with norms
 * from src (the golden or a reference run). Without one the report shows no figure. */
static int attach_model(lr_error_model **out, const lr_checkpoint *ck, lr_dtype p, const lr_batch *b,
                        lr_stage_source src, void *user) {
    const lr_st_entry *emb = lr_checkpoint_find(ck, "model.embed_tokens.weight");
    double ctx = 0;
    for (int64_t t = 0; t < b->num_tokens; t++) ctx += (double)b->positions[t] + 1;
    ctx = b->num_tokens > 0 ? ctx / (double)b->num_tokens : 1;
    int rc = lr_error_model_create(lr_checkpoint_config(ck), emb ? emb->t.dtype : LR_F32, p, ctx, src, user, out);
    return rc ? lib_fail(rc) : 0;
}

static const lr_tensor *fixture_source(void *user, const char *stage) {
    const lr_st_entry *e = lr_fixture_stage(user, stage);
    return e ? &e->t : NULL;
}

static const lr_tensor *recorder_source(void *user, const char *stage) { return lr_recorder_find(user, stage); }

/* The layer index of a stage, or -1. */
static long long layer_of(const char *name) {
    long long l;
    return sscanf(name, "model.layers.%lld", &l) == 1 ? l : -1;
}

/* Drill-down: inside the first failing stage's layer, the sub-stage where the error
 * grows most relative to the stage before it (the operation that introduced it). */
static const stage_result *drill_down(const report *r, double *jump) {
    if (!r->first) return NULL;
    long long layer = layer_of(r->first->name);
    const stage_result *best = NULL, *prev = NULL;
    *jump = 0;
    for (size_t i = 0; i < r->n; i++) {
        const stage_result *x = &r->res[i];
        if (layer >= 0 && layer_of(x->name) != layer) {
            prev = x;
            continue;
        }
        /* Growth over the stage before, with a floor of a thousandth of the budget so
         * that an exact predecessor (the embedding) does not make rounding look like a
         * jump. */
        double floor = 1e-3 * x->tol;
        double before = prev && isfinite(prev->m.rel_l2) ? fmax(prev->m.rel_l2, floor) : floor;
        double g = !isfinite(x->m.rel_l2) ? INFINITY : x->m.rel_l2 / before;
        if (x->kind != LR_STAGE_LAYER && (!best || g > *jump)) {
            best = x;
            *jump = g;
        }
        prev = x;
        if (layer < 0 && x == r->first) break;
    }
    return best;
}

static int report_finish(const args *a, report *r, json_t *extra) {
    for (size_t i = 0; i < r->n && !r->first; i++)
        if (!r->res[i].pass) r->first = &r->res[i];
    double jump = 0;
    const stage_result *cause = drill_down(r, &jump);
    int status = r->failed ? EXIT_DIVERGE : EXIT_AGREE;
    if (a->report && !a->force && access(a->report, F_OK) == 0)
        return bad("%s: already exists (use --force to replace it)", a->report);
    if (a->json || a->report) {
        json_t *stages = json_array();
        for (size_t i = 0; i < r->n; i++) {
            const stage_result *x = &r->res[i];
            json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:f, s:[I,I], s:f, s:I, s:I, s:f, s:f, s:b}", "name", x->name,
                                  "kind", lr_stage_kind_name(x->kind), "numel", (json_int_t)x->m.n, "rel_l2",
                                  isfinite(x->m.rel_l2) ? x->m.rel_l2 : -1.0, "max_abs", x->m.max_abs, "max_abs_at",
                                  (json_int_t)(x->m.max_abs_index / x->width), (json_int_t)(x->m.max_abs_index % x->width),
                                  "cosine", x->m.cosine, "nan", (json_int_t)x->m.nan_a, "inf", (json_int_t)x->m.inf_a,
                                  "tolerance", x->tol, "budget_used",
                                  isfinite(x->m.rel_l2) ? x->m.rel_l2 / x->tol : -1.0, "pass", x->pass);
            json_object_set_new(o, "predicted", x->predicted >= 0 ? json_real(x->predicted) : json_null());
            json_array_append_new(stages, o);
        }
        json_t *root = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:o, s:o, s:s}", "command", r->command, "test",
                                 r->test_label, "reference", r->ref_label, "precision", precision_name(r->precision),
                                 "stages", stages, "passed", (json_int_t)(r->n - r->failed), "failed",
                                 (json_int_t)r->failed, "first_divergence",
                                 r->first ? json_string(r->first->name) : json_null(), "drill_down",
                                 cause ? json_pack("{s:s, s:f}", "stage", cause->name, "growth",
                                                   isfinite(jump) ? jump : -1.0)
                                       : json_null(),
                                 "result", r->failed ? "diverge" : "agree");
        if (r->have_logits)
            json_object_set_new(root, "logits",
                                json_pack("{s:I, s:f, s:I, s:f, s:f, s:f, s:I, s:f}", "tokens", (json_int_t)r->tokens,
                                          "top1_agreement", (double)r->top1_agree / (double)r->tokens, "k",
                                          (json_int_t)r->topk, "topk_overlap", r->topk_overlap, "kl_mean", r->kl_mean,
                                          "kl_max", r->kl_max, "kl_max_token", (json_int_t)r->kl_max_token,
                                          "max_abs_delta_logprob", r->max_dlogp));
        if (extra) json_object_update(root, extra);
        if (a->report && lr_write_html_report(a->report, root, a->force) != 0) status = EXIT_BAD;
        if (a->json) {
            json_dumpf(root, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        }
        json_decref(root);
        if (a->json || status == EXIT_BAD) return status;
    }
    const char *green = a->color ? "\033[32m" : "", *red = a->color ? "\033[31;1m" : "",
               *off = a->color ? "\033[0m" : "";
    printf("llama-diff %s\n  test       %s\n  reference  %s\n  budgets    %s (docs/tolerances.md)\n\n", r->command,
           r->test_label, r->ref_label, precision_name(r->precision));
    printf("%-42s %-10s %9s %9s %12s %18s %9s %7s %8s  %s\n", "stage", "kind", "rel_l2", "max_abs", "at [t, i]",
           "cosine", "tol", "used", "x model", "result");
    for (size_t i = 0; i < r->n; i++) {
        const stage_result *x = &r->res[i];
        char at[32];
        snprintf(at, sizeof at, "[%lld, %lld]", (long long)(x->m.max_abs_index / x->width),
                 (long long)(x->m.max_abs_index % x->width));
        char vs[16] = "-"; /* measured over the error model's prediction */
        if (x->predicted > 0 && isfinite(x->m.rel_l2)) snprintf(vs, sizeof vs, "%.2f", x->m.rel_l2 / x->predicted);
        printf("%-42s %-10s %9.2e %9.2e %12s %18.15f %9.1e %6.1f%% %8s  %s%s%s", x->name, lr_stage_kind_name(x->kind),
               x->m.rel_l2, x->m.max_abs, at, x->m.cosine, x->tol, 100 * x->m.rel_l2 / x->tol, vs,
               x->pass ? green : red, x->pass ? "PASS" : "FAIL", off);
        if (x->m.nan_a || x->m.inf_a) printf(" (%lld NaN, %lld Inf)", (long long)x->m.nan_a, (long long)x->m.inf_a);
        if (x == r->first) printf("  <-- first divergence");
        printf("\n");
    }
    printf("\n%zu stages: %zu agree, %zu diverge", r->n, r->n - r->failed, r->failed);
    if (r->first) printf("; first divergence at %s", r->first->name);
    printf("\n");
    if (r->have_logits)
        printf("logits as users see them: top-1 agrees on %lld/%lld tokens, top-%lld overlap %.3f, "
               "KL(ref||test) mean %.3g max %.3g (token %lld), max |d log-prob| %.3g\n",
               (long long)r->top1_agree, (long long)r->tokens, (long long)r->topk, r->topk_overlap, r->kl_mean,
               r->kl_max, (long long)r->kl_max_token, r->max_dlogp);
    if (cause && isfinite(jump))
        printf("drill-down: within %s the error jumps most at %s (x%.3g over the stage before)\n",
               layer_of(r->first->name) >= 0 ? "that layer" : "the model", cause->name, jump);
    else if (cause)
        printf("drill-down: within %s the first NaN or Inf appears at %s\n",
               layer_of(r->first->name) >= 0 ? "that layer" : "the model", cause->name);
    return status;
}

/* ---- check ----------------------------------------------------------------------------- */

static int cmd_check(const args *a) {
    if (!a->model || !a->fixture) return bad("check: --model DIR and --fixture FILE are required");
    lr_checkpoint *ck = NULL;
    lr_fixture *fx = NULL;
    lr_recorder *rec = NULL;
    char test_label[512], ref_label[1024];
    report r = {.command = "check", .test_label = test_label, .ref_label = ref_label, .precision = a->opt.precision};
    int rc, status;
    if ((rc = lr_checkpoint_open(a->model, &ck)) || (rc = lr_fixture_open(a->fixture, &fx)) ||
        (rc = lr_fixture_check_config(fx, lr_checkpoint_config(ck))) || (rc = lr_recorder_create(&rec))) {
        status = lib_fail(rc);
        goto out;
    }
    char decode_note[48] = "";
    if (a->decode) snprintf(decode_note, sizeof decode_note, ", last %d tokens decoded one by one", a->decode);
    snprintf(test_label, sizeof test_label, "%s on %s, backend %s, precision %s, tp %d%s%s", a->model,
             a->fixture, a->opt.backend, precision_name(a->opt.precision), a->opt.tp_size,
             a->isolate ? ", layers isolated" : "", decode_note);
    const char *cd = lr_fixture_metadata(fx, "compute_dtype"), *gen = lr_fixture_metadata(fx, "generator");
    snprintf(ref_label, sizeof ref_label, "%s (%s, %s)", a->fixture, cd ? cd : "?", gen ? gen : "unknown generator");
    json_t *decode_steps = NULL;
    int devices = 0;
    /* The golden is float64 arithmetic too: its own rounding counts at f64. */
    if ((status = attach_model(&r.model[0], ck, a->opt.precision, lr_fixture_batch(fx), fixture_source, fx)) ||
        (status = attach_model(&r.model[1], ck, LR_F64, lr_fixture_batch(fx), fixture_source, fx)))
        goto out;
    if (a->decode > 0)
        status = run_decode(a, ck, fx, r.model[0], rec, &decode_steps, &devices);
    else
        status = run_model(a, ck, lr_fixture_batch(fx), rec, a->isolate ? fx : NULL, &devices);
    if (status) goto out;
    snprintf(test_label + strlen(test_label), sizeof test_label - strlen(test_label), "%s",
             devices_note(devices, a->opt.tp_size));
    /* In the order the backend reported, which is the order of the forward. */
    for (size_t i = 0; i < lr_recorder_count(rec); i++) {
        const lr_st_entry *gold = lr_fixture_stage(fx, lr_recorder_name(rec, i));
        if (!gold) continue; /* an optional stage the fixture does not hold */
        if ((status = report_add(&r, gold->name, lr_recorder_at(rec, i), &gold->t))) goto out;
    }
    if (r.n != lr_fixture_stage_count(fx)) {
        status = bad("%s: %zu stages in the fixture but only %zu reported by the backend", a->fixture,
                     lr_fixture_stage_count(fx), r.n);
        goto out;
    }
    json_t *extra = json_pack("{s:s, s:s, s:s, s:i, s:i, s:b}", "model", a->model, "fixture", a->fixture, "backend",
                              a->opt.backend, "tp", a->opt.tp_size, "devices", devices, "isolate", a->isolate);
    if (decode_steps) json_object_set_new(extra, "decode", decode_steps);
    status = report_finish(a, &r, extra);
    json_decref(extra);
out:
    report_free(&r);
    lr_recorder_free(rec);
    lr_fixture_free(fx);
    lr_checkpoint_close(ck);
    return status;
}

/* ---- compare ---------------------------------------------------------------------------- */

/* Position of a stage in the forward pass, for ordering stages of a file. */
static long long stage_rank(const char *name) {
    if (strcmp(name, "model.embed_tokens") == 0) return 0;
    if (strcmp(name, "model.norm") == 0) return LLONG_MAX - 1;
    if (strcmp(name, "lm_head") == 0) return LLONG_MAX;
    static const char *order[] = {"input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                  "self_attn.o_proj.input", "self_attn.o_proj", "self_attn", "post_attention_layernorm",
                                  "mlp.gate_proj", "mlp.up_proj", "mlp.act_fn", "mlp.down_proj.input", "mlp.down_proj",
                                  "mlp"};
    long long l = layer_of(name);
    if (l < 0) return LLONG_MAX - 2;
    const char *rest = strchr(name + strlen("model.layers."), '.');
    int k = 14; /* the layer's own output comes after its sub-stages */
    for (int i = 0; rest && i < 14; i++)
        if (strcmp(rest + 1, order[i]) == 0) k = i;
    return 1 + l * 16 + k;
}

static const lr_fixture *sort_fx;
static int by_rank(const void *x, const void *y) {
    long long a = stage_rank(lr_fixture_stage_at(sort_fx, *(const size_t *)x)->name);
    long long b = stage_rank(lr_fixture_stage_at(sort_fx, *(const size_t *)y)->name);
    return a < b ? -1 : a > b;
}

static bool same_inputs(const lr_batch *x, const lr_batch *y) {
    if (x->num_tokens != y->num_tokens || x->num_seqs != y->num_seqs) return false;
    size_t n = (size_t)x->num_tokens * sizeof(int64_t);
    if (memcmp(x->input_ids, y->input_ids, n) || memcmp(x->positions, y->positions, n)) return false;
    if (!x->seq_lens != !y->seq_lens) return x->num_seqs == 1;
    return !x->seq_lens || !memcmp(x->seq_lens, y->seq_lens, (size_t)x->num_seqs * sizeof(int64_t));
}

static lr_dtype dtype_of_dump(const lr_fixture *fx) {
    const char *cd = lr_fixture_metadata(fx, "compute_dtype");
    if (!cd || strcmp(cd, "float64") == 0) return LR_F64;
    if (strcmp(cd, "float32") == 0) return LR_F32;
    if (strcmp(cd, "bfloat16") == 0) return LR_BF16;
    if (strcmp(cd, "float16") == 0) return LR_F16;
    return LR_BF16; /* unknown: the loosest budget row */
}

static int cmd_compare(const args *a, const char *test_path, const char *ref_path) {
    lr_fixture *t = NULL, *ref = NULL;
    size_t *idx = NULL;
    report r = {.command = "compare", .test_label = test_path, .ref_label = ref_path};
    int rc, status = 0;
    if ((rc = lr_fixture_open(test_path, &t)) || (rc = lr_fixture_open(ref_path, &ref))) {
        status = lib_fail(rc);
        goto out;
    }
    if (!same_inputs(lr_fixture_batch(t), lr_fixture_batch(ref))) {
        status = bad("%s: input_ids, positions or seq_lens differ from %s: the dumps are of different inputs", test_path,
                     ref_path);
        goto out;
    }
    r.precision = a->precision_given ? a->opt.precision : dtype_of_dump(t);
    size_t n = lr_fixture_stage_count(t);
    if (!(idx = malloc((n ? n : 1) * sizeof *idx))) {
        status = bad("out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    sort_fx = t;
    qsort(idx, n, sizeof *idx, by_rank);
    size_t common = 0;
    for (size_t i = 0; i < n; i++) {
        const lr_st_entry *x = lr_fixture_stage_at(t, idx[i]), *y = lr_fixture_stage(ref, x->name);
        if (!y) continue;
        if (x->t.shape[1] != y->t.shape[1]) {
            status = bad("%s: tensor \"%s\": %lld features, %lld in %s", test_path, x->name, (long long)x->t.shape[1],
                         (long long)y->t.shape[1], ref_path);
            goto out;
        }
        common++;
        if ((status = report_add(&r, x->name, &x->t, &y->t))) goto out;
    }
    if (common == 0) {
        status = bad("%s: no stage in common with %s", test_path, ref_path);
        goto out;
    }
    status = report_finish(a, &r, NULL);
out:
    free(idx);
    report_free(&r);
    lr_fixture_free(t);
    lr_fixture_free(ref);
    return status;
}

/* ---- backends ---------------------------------------------------------------------------- */

/* "cpu:f64", "cuda:bf16", "cpu", "cuda:bf16,tp=1,devices=1" -> options. tp= and
 * devices= override --tp and --devices for this side alone (tp N against tp 1, or NCCL
 * against the single-GPU tp mode). */
static int parse_backend_spec(const char *spec, const char *opt, const args *a, lr_options *o) {
    *o = a->opt;
    static char names[2][16];
    static int which;
    char *name = names[which++ % 2];
    char head[64];
    size_t hlen = strcspn(spec, ",");
    if (hlen >= sizeof head) return bad("%s: \"%s\" is not BACKEND[:PRECISION][,tp=N][,devices=N]", opt, spec);
    memcpy(head, spec, hlen);
    head[hlen] = '\0';
    const char *colon = strchr(head, ':');
    size_t len = colon ? (size_t)(colon - head) : strlen(head);
    if (len == 0 || len >= 16) return bad("%s: \"%s\" is not BACKEND[:PRECISION][,tp=N][,devices=N]", opt, spec);
    memcpy(name, head, len);
    name[len] = '\0';
    if (strcmp(name, "cpu") != 0 && strcmp(name, "cuda") != 0)
        return bad("%s: backend \"%s\" is not cpu or cuda", opt, name);
    o->backend = name;
    bool cuda = strcmp(name, "cuda") == 0;
    const char *p = colon ? colon + 1 : (cuda ? "bf16" : "f64");
    if (strcmp(p, "f64") == 0 && !cuda)
        o->precision = LR_F64;
    else if (strcmp(p, "f32") == 0 || strcmp(p, "fp32") == 0)
        o->precision = LR_F32;
    else if ((strcmp(p, "bf16") == 0) && cuda)
        o->precision = LR_BF16;
    else if ((strcmp(p, "fp16") == 0 || strcmp(p, "f16") == 0) && cuda)
        o->precision = LR_F16;
    else
        return bad("%s: precision \"%s\" is not one %s computes in (cpu: f64, f32; cuda: bf16, fp16, fp32)", opt, p,
                   name);
    if (!cuda) o->kernels = NULL, o->num_devices = 0;
    /* ,key=value settings after the precision */
    for (const char *q = spec + hlen; *q == ',';) {
        q++;
        size_t n = strcspn(q, ",");
        char item[64], what[96];
        if (n == 0 || n >= sizeof item) return bad("%s: \"%s\": empty or overlong setting after ','", opt, spec);
        memcpy(item, q, n);
        item[n] = '\0';
        q += n;
        char *eq = strchr(item, '=');
        if (!eq) return bad("%s: \"%s\": setting \"%s\" is not KEY=VALUE (tp=N, devices=N)", opt, spec, item);
        *eq = '\0';
        snprintf(what, sizeof what, "%s %s=", opt, item);
        if (strcmp(item, "tp") == 0) {
            if (parse_int(eq + 1, what, 1, 4096, &o->tp_size)) return EXIT_BAD;
        } else if (strcmp(item, "devices") == 0) {
            if (!cuda) return bad("%s: devices= is for the cuda backend", opt);
            if (parse_int(eq + 1, what, 1, 64, &o->num_devices)) return EXIT_BAD;
        } else
            return bad("%s: \"%s\": unknown setting \"%s\" (tp=N, devices=N)", opt, spec, item);
    }
    return 0;
}

static int cmd_backends(const args *a, const char *spec_a, const char *spec_b, const lr_batch *b, const char *input) {
    lr_options oa, ob;
    int status;
    if ((status = parse_backend_spec(spec_a, "--a", a, &oa)) || (status = parse_backend_spec(spec_b, "--b", a, &ob)))
        return status;
    lr_checkpoint *ck = NULL;
    lr_recorder *ra = NULL, *rb = NULL;
    char la[256], lb[256];
    report r = {.command = "backends", .test_label = lb, .ref_label = la, .precision = ob.precision};
    int rc = lr_checkpoint_open(a->model, &ck);
    if (rc == LR_OK) rc = lr_recorder_create(&ra);
    if (rc == LR_OK) rc = lr_recorder_create(&rb);
    if (rc) {
        status = lib_fail(rc);
        goto out;
    }
    snprintf(la, sizeof la, "%s %s tp %d on %s", oa.backend, precision_name(oa.precision), oa.tp_size, input);
    snprintf(lb, sizeof lb, "%s %s tp %d on %s", ob.backend, precision_name(ob.precision), ob.tp_size, input);
    args aa = *a, ab = *a;
    aa.opt = oa;
    ab.opt = ob;
    int da = 0, db = 0;
    if ((status = run_model(&aa, ck, b, ra, NULL, &da)) || (status = run_model(&ab, ck, b, rb, NULL, &db))) goto out;
    snprintf(la + strlen(la), sizeof la - strlen(la), "%s", devices_note(da, oa.tp_size));
    snprintf(lb + strlen(lb), sizeof lb - strlen(lb), "%s", devices_note(db, ob.tp_size));
    if ((status = attach_model(&r.model[0], ck, ob.precision, b, recorder_source, ra)) ||
        (status = attach_model(&r.model[1], ck, oa.precision, b, recorder_source, ra)))
        goto out;
    for (size_t i = 0; i < lr_recorder_count(rb); i++) {
        const lr_tensor *x = lr_recorder_at(rb, i), *y = lr_recorder_find(ra, lr_recorder_name(rb, i));
        if (y && (status = report_add(&r, lr_recorder_name(rb, i), x, y))) goto out;
    }
    status = report_finish(a, &r, NULL);
out:
    report_free(&r);
    lr_recorder_free(ra);
    lr_recorder_free(rb);
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

/* The input of dump and backends: a fixture's, or --tokens as one sequence at 0..n-1. */
typedef struct {
    lr_fixture *fx;
    int64_t *ids, *pos;
    lr_batch b;
} input;

static int input_open(const args *a, input *in) {
    memset(in, 0, sizeof *in);
    if (!!a->fixture == !!a->tokens) return bad("%s: give exactly one of --fixture FILE or --tokens \"...\"", a->cmd);
    if (a->fixture) {
        int rc = lr_fixture_open(a->fixture, &in->fx);
        if (rc) return lib_fail(rc);
        in->b = *lr_fixture_batch(in->fx);
        return 0;
    }
    int64_t T = 0;
    int status = parse_tokens(a->tokens, &in->ids, &T);
    if (status) return status;
    if (!(in->pos = malloc((size_t)T * sizeof *in->pos))) return bad("out of memory");
    for (int64_t t = 0; t < T; t++) in->pos[t] = t;
    in->b = (lr_batch){.input_ids = in->ids, .positions = in->pos, .num_tokens = T, .num_seqs = 1};
    return 0;
}

static void input_close(input *in) {
    lr_fixture_free(in->fx);
    free(in->ids);
    free(in->pos);
}

static int cmd_dump(const args *a) {
    if (!a->model || !a->out) return bad("dump: --model DIR and --out FILE are required");
    if (!a->force && access(a->out, F_OK) == 0)
        return bad("%s: already exists (use --force to replace it)", a->out);
    lr_checkpoint *ck = NULL;
    lr_recorder *rec = NULL;
    lr_st_writer *w = NULL;
    input in;
    int rc, status = input_open(a, &in);
    if (status) {
        input_close(&in);
        return status;
    }
    const lr_batch b = in.b;
    if ((rc = lr_checkpoint_open(a->model, &ck)) || (rc = lr_recorder_create(&rec)) ||
        (rc = lr_st_writer_create(&w))) {
        status = lib_fail(rc);
        goto out;
    }
    if ((status = run_model(a, ck, &b, rec, NULL, NULL))) goto out;

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
    input_close(&in);
    lr_st_writer_free(w);
    lr_recorder_free(rec);
    lr_checkpoint_close(ck);
    return status;
}

/* ---- convert -------------------------------------------------------------------------- */

static int cmd_convert(const args *a) {
    if (!a->gguf || !a->out) return bad("convert: --gguf FILE and --out DIR are required");
    struct stat st;
    if (stat(a->gguf, &st) != 0) return bad("%s: cannot open: no such file", a->gguf);
    if (!S_ISREG(st.st_mode)) return bad("%s: --gguf wants a GGUF file, not a directory", a->gguf);
    lr_checkpoint *ck;
    int rc = lr_checkpoint_open(a->gguf, &ck);
    if (rc) return lib_fail(rc);
    if ((rc = lr_checkpoint_save(ck, a->out, a->force))) {
        lr_checkpoint_close(ck);
        return lib_fail(rc);
    }
    const lr_config *c = lr_checkpoint_config(ck);
    int64_t q = c->num_attention_heads * c->head_dim, kv = c->num_key_value_heads * c->head_dim;
    int64_t H = c->hidden_size, I = c->intermediate_size, L = c->num_hidden_layers;
    int64_t per_layer = 2 * H + 2 * q * H + 2 * kv * H + 3 * H * I + (c->attention_bias ? q + 2 * kv + H : 0) +
                        (c->mlp_bias ? 2 * I + H : 0);
    int64_t tensors = 2 + L * (9 + (c->attention_bias ? 4 : 0) + (c->mlp_bias ? 3 : 0)) + !c->tie_word_embeddings;
    int64_t params = c->vocab_size * H * (c->tie_word_embeddings ? 1 : 2) + L * per_layer + H;
    if (a->json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:[s,s], s:I, s:I, s:o}", "command", "convert", "gguf", a->gguf,
                              "out", a->out, "files", "config.json", "model.safetensors", "tensors",
                              (json_int_t)tensors, "parameters", (json_int_t)params, "config", config_json(c));
        json_dumpf(j, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("wrote %s/config.json and %s/model.safetensors: %lld tensors, %lld parameters as F32%s\n", a->out,
               a->out, (long long)tensors, (long long)params,
               c->tie_word_embeddings ? " (lm_head tied to the embedding, not stored)" : "");
    }
    lr_checkpoint_close(ck);
    return EXIT_AGREE;
}

/* The default job's model and fixture: the cached SmolLM2 GGUF with its golden fixture
 * when both are there, else the bundled model and fixture. Fills *model and *fixture
 * with fresh strings and says which on stderr when it is SmolLM2. */
#define SMOLLM2_GGUF "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#define SMOLLM2_FIXTURE "golden/smollm2-135m.safetensors"

static char *smollm2_path(void) {
    const char *cache = getenv("LLAMAREF_CACHE"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *root = NULL, *path = NULL;
    if (cache && *cache)
        root = strdup(cache);
    else if (xdg && *xdg)
        root = join(xdg, "llamaref");
    else if (home && *home)
        root = join(home, ".cache/llamaref");
    if (root) path = join(root, SMOLLM2_GGUF);
    free(root);
    return path;
}

static bool is_file(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int default_job(char **model, char **fixture) {
    const char *root = fixtures_root();
    char *gguf = smollm2_path(), *fx = join(root, SMOLLM2_FIXTURE);
    if (is_file(gguf) && is_file(fx)) {
        *model = gguf;
        *fixture = fx;
        fprintf(stderr, "llama-diff: default job: SmolLM2-135M-Instruct from the cache (%s) against %s\n", gguf, fx);
    } else {
        free(gguf);
        free(fx);
        *model = join(root, DEFAULT_MODEL);
        *fixture = join(root, DEFAULT_FIXTURE);
    }
    return *model && *fixture ? 0 : bad("out of memory");
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
        if (!a.model && !a.fixture) {
            if ((status = default_job(&model, &fixture))) return status;
            a.model = model;
            a.fixture = fixture;
        }
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
    else if (strcmp(a.cmd, "convert") == 0)
        status = cmd_convert(&a);
    else if (strcmp(a.cmd, "compare") == 0)
        status = a.npos == 2 ? cmd_compare(&a, a.pos[0], a.pos[1])
                             : bad("compare: give two dumps: compare A.safetensors B.safetensors");
    else if (strcmp(a.cmd, "backends") == 0) {
        input in;
        if (!a.model || !a.spec_a || !a.spec_b)
            status = bad("backends: --model DIR, --a BACKEND[:P] and --b BACKEND[:P] are required");
        else if (!(status = input_open(&a, &in)))
            status = cmd_backends(&a, a.spec_a, a.spec_b, &in.b, a.fixture ? a.fixture : "--tokens");
        if (a.model && a.spec_a && a.spec_b) input_close(&in);
    }
    else if (strcmp(a.cmd, "help") == 0)
        usage(stdout), status = EXIT_AGREE;
    else
        status = bad("unknown command \"%s\" (commands: check, dump, compare, backends, info, convert; see --help)", a.cmd);
    free(model);
    free(fixture);
    return status;
}
