/* cpu_bench.c: the CPU reference's benchmark (issue 8). A SmolLM2-135M-shaped model with
 * random weights, in f32 and f64; in one run it measures the ceilings (OpenBLAS
 * sgemm/dgemm at the model's GEMM shapes, memory copy bandwidth) and the model (prefill,
 * decode step, peak resident memory, where the time goes) and the checkpoint's read into
 * float32 (the loaders' first step), and reports every figure as
 * a ratio against a ceiling of the same run. Each precision runs in its own child
 * process, so that its peak RSS is its own. Run by `make bench-cpu`; see
 * docs/performance.md. */
#include "llamaref.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- Options ------------------------------------------------------------------------ */

typedef struct {
    const char *model;      /* existing checkpoint, or NULL: generate one */
    const char *keep_model; /* generate into this directory and keep it */
    const char *json;       /* write the results here too */
    int threads;            /* BLAS threads (and copy threads) */
    int64_t tokens;         /* prefill length = decode context */
    int repeat;             /* timed prefills per precision */
    int steps;              /* timed decode steps */
    bool prec[2];           /* f32, f64 */
} options;

static void usage(FILE *f) {
    fprintf(f, "usage: cpu_bench [options]\n"
               "The CPU reference's benchmark: ceilings (OpenBLAS GEMM at the model's shapes, memory\n"
               "copy bandwidth) and the model (prefill, decode, peak memory, time split, the checkpoint's\n"
               "read into float32), each figure as a ratio against a ceiling measured in the same run.\n\n"
               "  --model DIR        benchmark this checkpoint (default: generate SmolLM2-135M shapes\n"
               "                     with random BF16 weights in a temporary directory, removed after)\n"
               "  --keep-model DIR   generate the checkpoint into DIR (created) and keep it\n"
               "  --threads N        OpenBLAS threads and copy threads (default 2)\n"
               "  --tokens N         prefill length and decode context (default 256)\n"
               "  --repeat N         timed prefills per precision; the median is reported (default 5)\n"
               "  --steps N          timed decode steps; the median is reported (default 16)\n"
               "  --precision P      f32, f64 or f32,f64 (default f32,f64)\n"
               "  --json PATH        also write every figure as JSON to PATH\n"
               "  --help             this text\n");
}

static int bad_option(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cpu_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(cpu_bench --help lists the options)\n");
    va_end(ap);
    return 2;
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options *o) {
    *o = (options){.threads = 2, .tokens = 256, .repeat = 5, .steps = 16, .prec = {true, true}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--model") && strcmp(a, "--keep-model") && strcmp(a, "--json") &&
            strcmp(a, "--threads") && strcmp(a, "--tokens") && strcmp(a, "--repeat") &&
            strcmp(a, "--steps") && strcmp(a, "--precision"))
            return bad_option("unknown option \"%s\"", a);
        if (i + 1 >= argc) return bad_option("%s needs a value", a);
        const char *v = argv[++i];
        long n;
        if (strcmp(a, "--model") == 0) {
            o->model = v;
        } else if (strcmp(a, "--keep-model") == 0) {
            o->keep_model = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json = v;
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_int(v, 1, 256, &n)) return bad_option("--threads: \"%s\" is not in 1..256", v);
            o->threads = (int)n;
        } else if (strcmp(a, "--tokens") == 0) {
            if (!parse_int(v, 1, 65536, &n)) return bad_option("--tokens: \"%s\" is not in 1..65536", v);
            o->tokens = n;
        } else if (strcmp(a, "--repeat") == 0) {
            if (!parse_int(v, 1, 1000, &n)) return bad_option("--repeat: \"%s\" is not in 1..1000", v);
            o->repeat = (int)n;
        } else if (strcmp(a, "--steps") == 0) {
            if (!parse_int(v, 1, 10000, &n)) return bad_option("--steps: \"%s\" is not in 1..10000", v);
            o->steps = (int)n;
        } else {
            o->prec[0] = strcmp(v, "f32") == 0 || strcmp(v, "f32,f64") == 0 || strcmp(v, "f64,f32") == 0;
            o->prec[1] = strcmp(v, "f64") == 0 || strcmp(v, "f32,f64") == 0 || strcmp(v, "f64,f32") == 0;
            if (!o->prec[0] && !o->prec[1])
                return bad_option("--precision: \"%s\" is not f32, f64 or f32,f64", v);
        }
    }
    if (o->model && o->keep_model) return bad_option("--model and --keep-model exclude each other");
    return 0;
}

/* ---- Small helpers ------------------------------------------------------------------ */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void cpu_model_name(char *out, size_t n) {
    snprintf(out, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p += 1 + strspn(p + 1, " \t");
                p[strcspn(p, "\n")] = 0;
                snprintf(out, n, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

static void loadavg(char *out, size_t n) {
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) snprintf(out, n, "%.2f %.2f %.2f", a, b, c);
    fclose(f);
}

/* splitmix64: the random weights and inputs. */
static uint64_t mix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}
static double uniform(uint64_t *s) { return (double)(mix64(s) >> 11) * 0x1p-52 - 1.0; } /* [-1, 1) */

/* ---- Running work in a child process --------------------------------------------------
 * Each precision's model runs in its own process so that its peak RSS (ru_maxrss) is its
 * own, not the generator's or the other precision's. fn fills res (n bytes), which comes
 * back through a pipe. */
static int in_child(int (*fn)(void *arg, void *res), void *arg, void *res, size_t n) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fd[0]);
        int rc = fn(arg, res);
        const char *p = res;
        for (size_t done = 0; done < n;) {
            ssize_t k = write(fd[1], p + done, n - done);
            if (k <= 0) _exit(3);
            done += (size_t)k;
        }
        fflush(NULL);
        _exit(rc ? 1 : 0);
    }
    close(fd[1]);
    char *p = res;
    size_t done = 0;
    while (done < n) {
        ssize_t k = read(fd[0], p + done, n - done);
        if (k <= 0) break;
        done += (size_t)k;
    }
    close(fd[0]);
    int st;
    if (waitpid(pid, &st, 0) < 0) return -1;
    if (done != n) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* ---- The model: SmolLM2-135M shapes ----------------------------------------------------- */

static void smollm2_config(lr_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 49152;
    c->hidden_size = 576;
    c->intermediate_size = 1536;
    c->num_hidden_layers = 30;
    c->num_attention_heads = 9;
    c->num_key_value_heads = 3;
    c->head_dim = 64;
    c->max_position_embeddings = 8192;
    c->rms_norm_eps = 1e-5;
    c->tie_word_embeddings = true;
    c->rope_theta = 100000.0;
}

static uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7FFFu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

/* One HF tensor of random BF16 values in [-scale, scale) (or 1 +- scale for norms). */
static int add_random(lr_st_writer *w, const char *name, int64_t rows, int64_t cols, double scale,
                      double offset, uint64_t seed) {
    size_t n = (size_t)(rows * cols);
    uint16_t *buf = malloc(n * sizeof *buf);
    if (!buf) return LR_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        buf[i] = bf16_of((float)(offset + scale * uniform(&seed)));
    lr_tensor t = {
        .dtype = LR_BF16, .ndim = cols == 1 ? 1 : 2, .shape = {rows, cols == 1 ? 0 : cols}, .data = buf};
    int rc = lr_st_writer_add(w, name, &t);
    free(buf);
    return rc;
}

static int write_config(const lr_config *c, const char *dir) {
    json_t *j = json_pack(
        "{s:[s], s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b, s:b, "
        "s:b, s:s}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_act", "silu", "vocab_size",
        (json_int_t)c->vocab_size, "hidden_size", (json_int_t)c->hidden_size, "intermediate_size",
        (json_int_t)c->intermediate_size, "num_hidden_layers", (json_int_t)c->num_hidden_layers,
        "num_attention_heads", (json_int_t)c->num_attention_heads, "num_key_value_heads",
        (json_int_t)c->num_key_value_heads, "head_dim", (json_int_t)c->head_dim, "max_position_embeddings",
        (json_int_t)c->max_position_embeddings, "rms_norm_eps", c->rms_norm_eps, "rope_theta", c->rope_theta,
        "attention_bias", 0, "mlp_bias", 0, "tie_word_embeddings", 1, "torch_dtype", "bfloat16");
    if (!j) return LR_E_NOMEM;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = json_dump_file(j, path, JSON_INDENT(2)) ? LR_E_IO : LR_OK;
    json_decref(j);
    return rc;
}

/* Writes config.json and model.safetensors (BF16, as SmolLM2 ships) into dir: weights
 * uniform in +-1/sqrt(in_features), embeddings in +-1, norm weights in 1 +- 1/4. */
static int generate_checkpoint(void *arg, void *res) {
    const char *dir = arg;
    char *err = res;
    lr_config c;
    smollm2_config(&c);
    int64_t H = c.hidden_size, Im = c.intermediate_size, hd = c.head_dim;
    int64_t q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
    lr_st_writer *w;
    int rc = write_config(&c, dir);
    if (rc == LR_OK) rc = lr_st_writer_create(&w);
    if (rc) {
        snprintf(err, 512, "%s/config.json: cannot write", dir);
        return rc;
    }
    uint64_t seed = 1;
    double sh = 1 / sqrt((double)H), si = 1 / sqrt((double)Im), sq = 1 / sqrt((double)q);
    rc = add_random(w, "model.embed_tokens.weight", c.vocab_size, H, 1, 0, seed++);
    for (int64_t l = 0; rc == LR_OK && l < c.num_hidden_layers; l++) {
        struct {
            const char *name;
            int64_t rows, cols;
            double scale, offset;
        } t[] = {
            {"input_layernorm.weight", H, 1, 0.25, 1}, {"self_attn.q_proj.weight", q, H, sh, 0},
            {"self_attn.k_proj.weight", kv, H, sh, 0}, {"self_attn.v_proj.weight", kv, H, sh, 0},
            {"self_attn.o_proj.weight", H, q, sq, 0},  {"post_attention_layernorm.weight", H, 1, 0.25, 1},
            {"mlp.gate_proj.weight", Im, H, sh, 0},    {"mlp.up_proj.weight", Im, H, sh, 0},
            {"mlp.down_proj.weight", H, Im, si, 0},
        };
        for (size_t k = 0; rc == LR_OK && k < sizeof t / sizeof t[0]; k++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)l, t[k].name);
            rc = add_random(w, name, t[k].rows, t[k].cols, t[k].scale, t[k].offset, seed++);
        }
    }
    if (rc == LR_OK) rc = add_random(w, "model.norm.weight", H, 1, 0.25, 1, seed++);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (rc == LR_OK) rc = lr_st_writer_set_metadata(w, "format", "pt");
    if (rc == LR_OK) rc = lr_st_writer_write(w, path, true);
    if (rc) snprintf(err, 512, "generating the checkpoint: %.400s", lr_last_error());
    lr_st_writer_free(w);
    return rc;
}

static void remove_checkpoint(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors"};
    char path[PATH_MAX];
    for (size_t k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[k]);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- Ceilings ---------------------------------------------------------------------------- */

/* The model's GEMM shapes as lr_ref_linear calls them: x (M, K) @ W (N, K)^T. */
typedef struct {
    const char *name;
    int64_t N, K;
    int64_t per_forward; /* how many a forward does (layers), 1 for the LM head */
} gemm_shape;

enum { NSHAPES = 5 };

typedef struct {
    double gflops[2][NSHAPES]; /* [f32, f64][shape] */
    double mix_layers[2];      /* the four layer shapes, weighted by their FLOPs in a forward */
    double mix_all[2];         /* the five shapes, the LM head at M rows */
    double copy_gbs;           /* bytes read + written per second, --threads threads */
    double copy_gbs_1;         /* the same with one thread */
    double copy_best;          /* the better of the two: the decode step's ceiling */
} ceilings;

static void shapes_of(const lr_config *c, gemm_shape *s) {
    int64_t H = c->hidden_size, hd = c->head_dim, q = c->num_attention_heads * hd,
            kv = c->num_key_value_heads * hd, Im = c->intermediate_size, L = c->num_hidden_layers;
    int64_t Vp = (c->vocab_size + LR_VOCAB_PADDING - 1) / LR_VOCAB_PADDING * LR_VOCAB_PADDING;
    s[0] = (gemm_shape){"qkv_proj", q + 2 * kv, H, L};
    s[1] = (gemm_shape){"o_proj", H, q, L};
    s[2] = (gemm_shape){"gate_up_proj", 2 * Im, H, L};
    s[3] = (gemm_shape){"down_proj", H, Im, L};
    s[4] = (gemm_shape){"lm_head", Vp, H, 1};
}

/* Median seconds of one GEMM (M, N, K) in f32 (p 0) or f64 (p 1): at least 3 runs and
 * 0.3 s after a warm-up run. */
static double time_gemm(int p, int64_t M, int64_t N, int64_t K) {
    size_t es = p ? sizeof(double) : sizeof(float);
    void *a = malloc((size_t)(M * K) * es), *b = malloc((size_t)(N * K) * es),
         *c = malloc((size_t)(M * N) * es);
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return -1;
    }
    uint64_t seed = 7;
    for (int64_t i = 0; i < M * K; i++) {
        if (p)
            ((double *)a)[i] = uniform(&seed);
        else
            ((float *)a)[i] = (float)uniform(&seed);
    }
    for (int64_t i = 0; i < N * K; i++) {
        if (p)
            ((double *)b)[i] = uniform(&seed);
        else
            ((float *)b)[i] = (float)uniform(&seed);
    }
    double t[64];
    int n = 0;
    double start = now_s();
    for (int run = -1; run < 64; run++) {
        double t0 = now_s();
        if (p)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, a, (int)K, b,
                        (int)K, 0, c, (int)N);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1, a, (int)K, b,
                        (int)K, 0, c, (int)N);
        if (run >= 0) t[n++] = now_s() - t0;
        if (n >= 3 && now_s() - start > 0.3) break;
    }
    free(a), free(b), free(c);
    return median(t, n);
}

typedef struct {
    char *dst;
    const char *src;
    size_t n;
} copy_job;

static void *copy_worker(void *arg) {
    copy_job *j = arg;
    memcpy(j->dst, j->src, j->n);
    return NULL;
}

/* memcpy bandwidth, bytes read + written per second, over 256 MiB buffers split among
 * threads threads; the median of 7 runs after a warm-up. */
static double copy_bandwidth(int threads) {
    size_t n = (size_t)256 << 20;
    char *src = malloc(n), *dst = malloc(n);
    if (!src || !dst) {
        free(src), free(dst);
        return -1;
    }
    memset(src, 1, n);
    memset(dst, 2, n);
    copy_job jobs[256];
    pthread_t tid[256];
    double t[7];
    for (int run = -1; run < 7; run++) {
        double t0 = now_s();
        for (int k = 0; k < threads; k++) {
            size_t lo = n / (size_t)threads * (size_t)k,
                   hi = k + 1 == threads ? n : n / (size_t)threads * (size_t)(k + 1);
            jobs[k] = (copy_job){dst + lo, src + lo, hi - lo};
            if (k > 0) pthread_create(&tid[k], NULL, copy_worker, &jobs[k]);
        }
        copy_worker(&jobs[0]);
        for (int k = 1; k < threads; k++)
            pthread_join(tid[k], NULL);
        if (run >= 0) t[run] = now_s() - t0;
    }
    free(src), free(dst);
    return 2.0 * (double)n / median(t, 7);
}

typedef struct {
    const options *o;
    const gemm_shape *sh;
    int64_t M;
} ceilings_job;

/* Every ceiling once (in a child: see main). */
static int measure_ceilings(void *arg, void *res) {
    const ceilings_job *j = arg;
    ceilings *ce = res;
    memset(ce, 0, sizeof *ce);
    openblas_set_num_threads(j->o->threads);
    for (int p = 0; p < 2; p++) {
        if (!j->o->prec[p]) continue;
        double fl_l = 0, t_l = 0, fl_a = 0, t_a = 0;
        for (int k = 0; k < NSHAPES; k++) {
            double s = time_gemm(p, j->M, j->sh[k].N, j->sh[k].K);
            if (s <= 0) return 1;
            double fl = 2.0 * (double)j->M * (double)j->sh[k].N * (double)j->sh[k].K,
                   n = (double)j->sh[k].per_forward;
            ce->gflops[p][k] = fl / s * 1e-9;
            fl_a += fl * n, t_a += s * n;
            if (k < 4) fl_l += fl * n, t_l += s * n;
        }
        ce->mix_layers[p] = fl_l / t_l * 1e-9;
        ce->mix_all[p] = fl_a / t_a * 1e-9;
    }
    ce->copy_gbs_1 = copy_bandwidth(1) * 1e-9;
    ce->copy_gbs = copy_bandwidth(j->o->threads) * 1e-9;
    return ce->copy_gbs_1 > 0 && ce->copy_gbs > 0 ? 0 : 1;
}

static json_t *ceilings_json(const ceilings *c) {
    json_t *g = json_object();
    const char *names[NSHAPES] = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj", "lm_head"};
    for (int k = 0; k < NSHAPES; k++)
        json_object_set_new(
            g, names[k],
            json_pack("{s:f, s:f}", "sgemm_gflops", c->gflops[0][k], "dgemm_gflops", c->gflops[1][k]));
    return json_pack("{s:o, s:f, s:f, s:f, s:f, s:f, s:f}", "gemm", g, "sgemm_mix_layers_gflops",
                     c->mix_layers[0], "sgemm_mix_all_gflops", c->mix_all[0], "dgemm_mix_layers_gflops",
                     c->mix_layers[1], "dgemm_mix_all_gflops", c->mix_all[1], "copy_gbs", c->copy_gbs,
                     "copy_gbs_1_thread", c->copy_gbs_1);
}

/* ---- The model's figures (one precision, in a child) ---------------------------------- */

#define MAX_REPEAT 1000
#define MAX_STEPS 10000

typedef struct {
    const options *o;
    const char *dir;
    lr_dtype dt;
} model_job;

typedef struct {
    char err[512];
    double load_s;
    double prefill_s; /* median, logits at the last position only (as vLLM) */
    double prefill_min_s;
    double prefill_all_s; /* median of up to 3, logits at every position */
    double decode_s;      /* median step */
    double decode_min_s;
    lr_profile prof_prefill; /* one profiled prefill (last-position logits) */
    double prof_prefill_wall;
    lr_profile prof_decode; /* the profiled decode steps, summed */
    double prof_decode_wall;
    int prof_decode_steps;
    long rss_start_kib, rss_after_load_kib, maxrss_kib, hwm_kib;
} model_result;

static int fail_job(model_result *r, const char *what) {
    snprintf(r->err, sizeof r->err, "%s: %s", what, lr_last_error());
    return 1;
}

/* ---- Reading the checkpoint (in a child) ----------------------------------------------
 * What every loader does first: each packed tensor of tp 1's plan read from the mapped
 * checkpoint and converted to float32 in chunks of READ_CHUNK elements
 * (lr_packed_read_chunk, the CUDA backend's host half of its load), a warm-up and then
 * the median of 3 reads of the whole checkpoint. Its rate counts the bytes read plus
 * those written, as the memcpy ceiling does; one thread, as the loader reads. */
#define READ_CHUNK ((int64_t)16 << 20) /* the CUDA loader's chunk: 64 MiB of float32 */
typedef struct {
    char err[512];
    double s;     /* median */
    double bytes; /* read + written, one pass */
} read_result;

static int read_checkpoint(void *arg, void *res) {
    const char *dir = arg;
    read_result *r = res;
    memset(r, 0, sizeof *r);
    lr_checkpoint *ck = NULL;
    lr_plan *plan = NULL;
    float *buf = malloc((size_t)READ_CHUNK * sizeof *buf);
    int rc = 1;
    double t[3];
    if (!buf) {
        snprintf(r->err, sizeof r->err, "out of memory");
        goto done;
    }
    if (lr_checkpoint_open(dir, &ck) || lr_plan_create(lr_checkpoint_config(ck), 1, 0, &plan)) {
        snprintf(r->err, sizeof r->err, "reading the checkpoint: %s", lr_last_error());
        goto done;
    }
    for (int run = -1; run < 3; run++) {
        double t0 = now_s();
        for (size_t i = 0; i < lr_plan_count(plan); i++) {
            const lr_packed_desc *d = lr_plan_at(plan, i);
            if (d->tied_to >= 0) continue;
            lr_chunk c = {0};
            while (lr_packed_next_chunk(d, READ_CHUNK, &c)) {
                if (lr_packed_read_chunk(ck, d, &c, LR_F32, buf)) {
                    snprintf(r->err, sizeof r->err, "reading the checkpoint: %s", lr_last_error());
                    goto done;
                }
                if (run < 0) { /* the bytes of a pass, counted in the warm-up, outside the timing */
                    const lr_st_entry *e = lr_checkpoint_peek(ck, d->slices[c.slice].src);
                    r->bytes +=
                        (double)c.count * (double)(lr_dtype_size(e ? e->t.dtype : LR_F32) + sizeof *buf);
                }
            }
        }
        if (run >= 0) t[run] = now_s() - t0;
    }
    r->s = median(t, 3);
    rc = 0;
done:
    lr_plan_free(plan);
    lr_checkpoint_close(ck);
    free(buf);
    return rc;
}

/* forward(batch) then compute_logits of rows [row0, T). */
static int step(lr_model *m, const lr_batch *b, lr_kv_cache *kv, int64_t row0) {
    lr_tensor hidden, logits;
    int rc = lr_model_forward(m, b, kv, NULL, &hidden);
    if (rc) return rc;
    int64_t H = hidden.shape[1];
    size_t es = lr_dtype_size(hidden.dtype);
    lr_tensor rows = hidden;
    rows.shape[0] = hidden.shape[0] - row0;
    rows.data = (const char *)hidden.data + (size_t)(row0 * H) * es;
    return lr_model_compute_logits(m, &rows, NULL, &logits);
}

static int run_model(void *arg, void *res) {
    const model_job *job = arg;
    const options *o = job->o;
    model_result *r = res;
    memset(r, 0, sizeof *r);
    r->rss_start_kib = lr_host_status_kib("VmRSS");
    int64_t T = o->tokens;
    lr_checkpoint *ck = NULL;
    lr_model *m = NULL;
    lr_kv_cache *kv = NULL;
    int64_t *ids = malloc((size_t)(T + o->steps) * sizeof *ids),
            *pos = malloc((size_t)(T + o->steps) * sizeof *pos);
    double *t = malloc((size_t)(o->repeat > o->steps ? o->repeat : o->steps) * sizeof *t);
    if (!ids || !pos || !t) return snprintf(r->err, sizeof r->err, "out of memory"), 1;
    int rc = 1;
    double t0 = now_s();
    if (lr_checkpoint_open(job->dir, &ck)) {
        fail_job(r, "opening the checkpoint");
        goto done;
    }
    lr_options opt;
    lr_options_init(&opt);
    opt.precision = job->dt;
    opt.num_threads = o->threads;
    if (lr_model_create(ck, &opt, &m)) {
        fail_job(r, "creating the model");
        goto done;
    }
    r->load_s = now_s() - t0;
    r->rss_after_load_kib = lr_host_status_kib("VmRSS");
    const lr_config *c = lr_model_config(m);
    uint64_t seed = 42;
    for (int64_t i = 0; i < T + o->steps; i++) {
        ids[i] = (int64_t)(mix64(&seed) % (uint64_t)c->vocab_size);
        pos[i] = i;
    }
    if (lr_kv_cache_create(m, 1, T + o->steps, &kv)) {
        fail_job(r, "creating the KV cache");
        goto done;
    }
    lr_batch prompt = {.input_ids = ids, .positions = pos, .num_tokens = T, .num_seqs = 1};

    /* Prefill: a warm-up, then repeat timed runs, each on an empty cache. */
    for (int k = -1; k < o->repeat; k++) {
        lr_kv_cache_reset(kv);
        double s = now_s();
        if (step(m, &prompt, kv, T - 1)) {
            fail_job(r, "prefill");
            goto done;
        }
        if (k >= 0) t[k] = now_s() - s;
    }
    r->prefill_s = median(t, o->repeat);
    r->prefill_min_s = t[0];
    int nall = o->repeat < 3 ? o->repeat : 3;
    for (int k = 0; k < nall; k++) {
        lr_kv_cache_reset(kv);
        double s = now_s();
        if (step(m, &prompt, kv, 0)) {
            fail_job(r, "prefill with every position's logits");
            goto done;
        }
        t[k] = now_s() - s;
    }
    r->prefill_all_s = median(t, nall);
    lr_kv_cache_reset(kv);
    lr_model_set_profiling(m, true);
    double s = now_s();
    if (step(m, &prompt, kv, T - 1)) {
        fail_job(r, "profiled prefill");
        goto done;
    }
    r->prof_prefill_wall = now_s() - s;
    lr_model_get_profile(m, &r->prof_prefill);
    lr_model_set_profiling(m, false);

    /* Decode: steps one token each after the prompt (context T .. T + steps - 1), timed;
     * then the same steps again with profiling on. */
    for (int pass = 0; pass < 2; pass++) {
        lr_kv_cache_reset(kv);
        if (step(m, &prompt, kv, T - 1)) {
            fail_job(r, "prefill before decode");
            goto done;
        }
        if (pass == 1) lr_model_set_profiling(m, true);
        double w0 = now_s();
        for (int k = 0; k < o->steps; k++) {
            lr_batch one = {
                .input_ids = ids + T + k, .positions = pos + T + k, .num_tokens = 1, .num_seqs = 1};
            s = now_s();
            if (step(m, &one, kv, 0)) {
                fail_job(r, "decode step");
                goto done;
            }
            t[k] = now_s() - s;
        }
        if (pass == 1) {
            r->prof_decode_wall = now_s() - w0;
            r->prof_decode_steps = o->steps;
            lr_model_get_profile(m, &r->prof_decode);
            lr_model_set_profiling(m, false);
        } else {
            r->decode_s = median(t, o->steps);
            r->decode_min_s = t[0];
        }
    }
    rc = 0;
done:
    lr_kv_cache_free(kv);
    lr_model_free(m);
    lr_checkpoint_close(ck);
    free(ids), free(pos), free(t);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->maxrss_kib = ru.ru_maxrss;
    r->hwm_kib = lr_host_status_kib("VmHWM");
    return rc;
}

/* ---- What the figures are measured against ----------------------------------------------- */

/* Bytes the model must hold, in its precision. */
typedef struct {
    double weights;           /* every packed weight once (a tied LM head is the embedding) */
    double read_decode;       /* what one decode step reads: every weight but the embedding
                                 table, unless the LM head is that table */
    double kv;                /* keys and values, T + steps tokens, every layer */
    double act;               /* a forward of T tokens: see docs/performance.md */
    double flops_prefill;     /* linear layers + causal attention + LM head for one row */
    double flops_prefill_all; /* the same, LM head for every row */
} budget;

static budget budget_of(const lr_config *c, const options *o, size_t es) {
    budget b;
    double H = (double)c->hidden_size, Im = (double)c->intermediate_size, L = (double)c->num_hidden_layers;
    double hd = (double)c->head_dim, q = (double)c->num_attention_heads * hd,
           kv = (double)c->num_key_value_heads * hd, T = (double)o->tokens;
    double Vp = (double)((c->vocab_size + LR_VOCAB_PADDING - 1) / LR_VOCAB_PADDING * LR_VOCAB_PADDING);
    double V = (double)c->vocab_size;
    double layer = 2 * H + H * (q + 2 * kv) + q * H + 2 * Im * H + Im * H;
    double embed = Vp * H, head = c->tie_word_embeddings ? 0 : Vp * H;
    b.weights = (double)es * (embed + L * layer + H + head);
    b.read_decode = (double)es * (L * layer + H + Vp * H);
    b.kv = (double)es * 2 * L * (T + o->steps) * kv;
    /* hidden, residual, normed, the o/down partial, the result: 5 (T, H); qkv; ctx;
     * gate_up; act; one head's scores (T, T); logits (T, V). */
    b.act = (double)es * (5 * T * H + T * (q + 2 * kv) + T * q + 3 * T * Im + T * T + T * V);
    double lin = 2 * T * L * (H * (q + 2 * kv) + q * H + 2 * Im * H + Im * H);
    double attn = L * 2 * hd * (double)c->num_attention_heads * T * (T + 1); /* QK^T and PV, causal */
    b.flops_prefill = lin + attn + 2 * H * Vp;
    b.flops_prefill_all = lin + attn + 2 * T * H * Vp;
    return b;
}

/* ---- Report ----------------------------------------------------------------------------- */

typedef struct {
    char name[96];
    double value;
    const char *unit;
    double ceiling;
    const char *ceiling_unit;
    double ratio;
    const char *target; /* "" for ceilings */
    int pass;           /* 1 pass, 0 miss, -1 no target */
} figure;

enum { MAX_FIGURES = 48 };
static figure figs[MAX_FIGURES];
static int nfigs;

static void add_figure(const char *name, double value, const char *unit, double ceiling, const char *cunit,
                       double ratio, const char *target, int pass) {
    if (nfigs == MAX_FIGURES) return;
    figure *f = &figs[nfigs++];
    snprintf(f->name, sizeof f->name, "%s", name);
    *f = (figure){.value = value,
                  .unit = unit,
                  .ceiling = ceiling,
                  .ceiling_unit = cunit,
                  .ratio = ratio,
                  .target = target,
                  .pass = pass};
    snprintf(f->name, sizeof f->name, "%s", name);
}

/* GEMM = the projections and the LM head; attention; the rest = every other op;
 * outside = wall time no op accounts for (validation, cache bookkeeping). */
typedef struct {
    double gemm, attention, rest, outside, wall;
} split;

static split split_of(const lr_profile *p, double wall, int runs) {
    split s = {0};
    for (int k = 0; k < LR_PROF_COUNT; k++) {
        double v = 1e-9 * (double)p->ns[k] / runs;
        if (k == LR_PROF_QKV_PROJ || k == LR_PROF_O_PROJ || k == LR_PROF_GATE_UP_PROJ ||
            k == LR_PROF_DOWN_PROJ || k == LR_PROF_LM_HEAD)
            s.gemm += v;
        else if (k == LR_PROF_ATTENTION)
            s.attention += v;
        else
            s.rest += v;
    }
    s.wall = wall / runs;
    s.outside = s.wall - s.gemm - s.attention - s.rest;
    return s;
}

static json_t *profile_json(const lr_profile *p, double wall, int runs) {
    json_t *ops = json_object();
    for (int k = 0; k < LR_PROF_COUNT; k++)
        json_object_set_new(ops, lr_prof_op_name((lr_prof_op)k),
                            json_pack("{s:f, s:I}", "ms", 1e-6 * (double)p->ns[k] / runs, "calls",
                                      (json_int_t)(p->calls[k] / (uint64_t)runs)));
    split s = split_of(p, wall, runs);
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:o}", "wall_ms", 1e3 * s.wall, "gemm_ms", 1e3 * s.gemm,
                     "attention_ms", 1e3 * s.attention, "rest_ms", 1e3 * s.rest, "outside_ms",
                     1e3 * s.outside, "ops", ops);
}

static void print_split(const char *what, const lr_profile *p, double wall, int runs) {
    split s = split_of(p, wall, runs);
    printf("  %-22s %9.2f ms: GEMM %5.1f%%  attention %5.1f%%  rest %5.1f%%  outside ops %5.1f%%\n", what,
           1e3 * s.wall, 100 * s.gemm / s.wall, 100 * s.attention / s.wall, 100 * s.rest / s.wall,
           100 * s.outside / s.wall);
    printf("  %-22s", "");
    int col = 0;
    for (int k = 0; k < LR_PROF_COUNT; k++) {
        if (!p->calls[k]) continue;
        printf(" %s %.2f", lr_prof_op_name((lr_prof_op)k), 1e-6 * (double)p->ns[k] / runs);
        if (++col % 6 == 0 && k + 1 < LR_PROF_COUNT) printf("\n  %-22s", "");
    }
    printf(" (ms)\n");
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc) return rc;
    if (o.repeat > MAX_REPEAT || o.steps > MAX_STEPS) return bad_option("--repeat or --steps too large");

    /* The machine. */
    char cpu[256], load0[64], load1[64], date[64];
    cpu_model_name(cpu, sizeof cpu);
    loadavg(load0, sizeof load0);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    struct utsname un;
    uname(&un);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    openblas_set_num_threads(o.threads);
    printf("cpu_bench  %s\n", date);
    printf("CPU        %s, %ld logical cores online; %s %s\n", cpu, cores, un.sysname, un.release);
    printf("OpenBLAS   %s (core %s), %d threads\n", openblas_get_config(), openblas_get_corename(),
           openblas_get_num_threads());
    printf("load       %s (1, 5, 15 min) at start\n", load0);

    /* The checkpoint. */
    char tmp[PATH_MAX] = "";
    const char *dir = o.model;
    lr_config cfg;
    if (!dir) {
        if (o.keep_model) {
            if (mkdir(o.keep_model, 0777) && errno != EEXIST) {
                fprintf(stderr, "cpu_bench: --keep-model: cannot create %s: %s\n", o.keep_model,
                        strerror(errno));
                return 1;
            }
            dir = o.keep_model;
        } else {
            const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
            snprintf(tmp, sizeof tmp, "%s/llamaref-bench-XXXXXX", base);
            if (!mkdtemp(tmp)) {
                fprintf(stderr, "cpu_bench: cannot create a directory under %s: %s\n", base, strerror(errno));
                return 1;
            }
            dir = tmp;
        }
        char err[512] = "";
        double t0 = now_s();
        if (in_child(generate_checkpoint, (void *)dir, err, sizeof err)) {
            fprintf(stderr, "cpu_bench: %s\n", err[0] ? err : "generating the checkpoint failed");
            if (tmp[0]) remove_checkpoint(tmp);
            return 1;
        }
        printf("model      SmolLM2-135M shapes, random BF16 weights, written to %s in %.1f s\n", dir,
               now_s() - t0);
    }
    {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (lr_config_load(path, &cfg)) {
            fprintf(stderr, "cpu_bench: %s\n", lr_last_error());
            if (tmp[0]) remove_checkpoint(tmp);
            return 1;
        }
    }
    printf("config     hidden %lld, %lld layers, %lld heads, %lld KV heads, head_dim %lld, intermediate "
           "%lld, vocabulary %lld%s\n",
           (long long)cfg.hidden_size, (long long)cfg.num_hidden_layers, (long long)cfg.num_attention_heads,
           (long long)cfg.num_key_value_heads, (long long)cfg.head_dim, (long long)cfg.intermediate_size,
           (long long)cfg.vocab_size, cfg.tie_word_embeddings ? ", tied" : "");
    printf("run        %lld tokens, %d prefills, %d decode steps per precision\n\n", (long long)o.tokens,
           o.repeat, o.steps);

    /* The ceilings, each measured before and after the model (in children, like the
     * model, so that this process never holds BLAS buffers); the figures use the mean of
     * the two, and the spread shows how much the machine's load moved in between. */
    gemm_shape sh[NSHAPES];
    shapes_of(&cfg, sh);
    int64_t M = o.tokens;
    ceilings_job cj = {.o = &o, .sh = sh, .M = M};
    ceilings cb, ca, ce;
    printf("measuring the ceilings ...\n");
    if (in_child(measure_ceilings, &cj, &cb, sizeof cb)) {
        fprintf(stderr, "cpu_bench: measuring the ceilings failed\n");
        if (tmp[0]) remove_checkpoint(tmp);
        return 1;
    }
    /* The model, one child per precision. */
    model_result res[2];
    for (int p = 0; p < 2; p++) {
        if (!o.prec[p]) continue;
        model_job job = {.o = &o, .dir = dir, .dt = p ? LR_F64 : LR_F32};
        printf("running the model in %s ...\n", p ? "f64" : "f32");
        if (in_child(run_model, &job, &res[p], sizeof res[p])) {
            fprintf(stderr, "cpu_bench: %s: %s\n", p ? "f64" : "f32",
                    res[p].err[0] ? res[p].err : "the child process failed");
            if (tmp[0]) remove_checkpoint(tmp);
            return 1;
        }
    }
    read_result rd;
    printf("reading the checkpoint to f32 ...\n");
    if (in_child(read_checkpoint, (void *)dir, &rd, sizeof rd)) {
        fprintf(stderr, "cpu_bench: %s\n", rd.err[0] ? rd.err : "reading the checkpoint failed");
        if (tmp[0]) remove_checkpoint(tmp);
        return 1;
    }
    printf("\n");

    printf("measuring the ceilings again ...\n");
    if (in_child(measure_ceilings, &cj, &ca, sizeof ca)) {
        fprintf(stderr, "cpu_bench: measuring the ceilings failed\n");
        if (tmp[0]) remove_checkpoint(tmp);
        return 1;
    }
    ce = ca;
    for (int p = 0; p < 2; p++) {
        for (int k = 0; k < NSHAPES; k++)
            ce.gflops[p][k] = 0.5 * (cb.gflops[p][k] + ca.gflops[p][k]);
        ce.mix_layers[p] = 0.5 * (cb.mix_layers[p] + ca.mix_layers[p]);
        ce.mix_all[p] = 0.5 * (cb.mix_all[p] + ca.mix_all[p]);
    }
    ce.copy_gbs = 0.5 * (cb.copy_gbs + ca.copy_gbs);
    ce.copy_gbs_1 = 0.5 * (cb.copy_gbs_1 + ca.copy_gbs_1);
    ce.copy_best = ce.copy_gbs > ce.copy_gbs_1 ? ce.copy_gbs : ce.copy_gbs_1;
    printf("Ceilings: OpenBLAS x (%lld, K) @ W (N, K)^T, %d threads, GFLOP/s before / after the model\n",
           (long long)M, o.threads);
    for (int p = 0; p < 2; p++) {
        if (!o.prec[p]) continue;
        for (int k = 0; k < NSHAPES; k++)
            printf("  %sgemm %-13s N %6lld K %5lld  %7.1f / %7.1f\n", p ? "d" : "s", sh[k].name,
                   (long long)sh[k].N, (long long)sh[k].K, cb.gflops[p][k], ca.gflops[p][k]);
        printf("  %sgemm weighted by FLOPs, layers           %7.1f / %7.1f  (mean %.1f)\n", p ? "d" : "s",
               cb.mix_layers[p], ca.mix_layers[p], ce.mix_layers[p]);
        printf("  %sgemm weighted by FLOPs, layers + lm_head %7.1f / %7.1f  (mean %.1f)\n", p ? "d" : "s",
               cb.mix_all[p], ca.mix_all[p], ce.mix_all[p]);
    }
    printf("  memcpy 256 MiB, GB/s read + written: 1 thread %.2f / %.2f, %d thread%s %.2f / %.2f; best mean "
           "%.2f\n\n",
           cb.copy_gbs_1, ca.copy_gbs_1, o.threads, o.threads == 1 ? "" : "s", cb.copy_gbs, ca.copy_gbs,
           ce.copy_best);

    /* Figures: each against a ceiling of this run. */
    budget bud[2];
    json_t *jmodel = json_object();
    for (int p = 0; p < 2; p++) {
        if (!o.prec[p]) continue;
        const char *pn = p ? "f64" : "f32";
        model_result *r = &res[p];
        budget *b = &bud[p];
        *b = budget_of(&cfg, &o, p ? 8 : 4);
        const char *gemm = p ? "dgemm" : "sgemm";
        char name[96];
        double rate = b->flops_prefill / r->prefill_s * 1e-9,
               rate_all = b->flops_prefill_all / r->prefill_all_s * 1e-9;
        snprintf(name, sizeof name, "prefill %lld %s (GFLOP/s)", (long long)o.tokens, pn);
        add_figure(name, rate, "GFLOP/s", ce.mix_layers[p], gemm, rate / ce.mix_layers[p], ">= 0.60",
                   rate / ce.mix_layers[p] >= 0.60);
        snprintf(name, sizeof name, "prefill %lld %s, all logits", (long long)o.tokens, pn);
        add_figure(name, rate_all, "GFLOP/s", ce.mix_all[p], gemm, rate_all / ce.mix_all[p], ">= 0.60",
                   rate_all / ce.mix_all[p] >= 0.60);
        double floor_s = b->read_decode / (ce.copy_best * 1e9);
        snprintf(name, sizeof name, "decode step ctx %lld %s (ms)", (long long)o.tokens, pn);
        add_figure(name, 1e3 * r->decode_s, "ms", 1e3 * floor_s, "weights/copy", r->decode_s / floor_s,
                   "<= 1.5", r->decode_s / floor_s <= 1.5);
        /* The model's own peak: the process's peak less what it held before opening the
         * checkpoint (code and shared libraries; cuBLAS alone maps ~90 MiB when the
         * library is built with CUDA). */
        double peak = 1024.0 * (double)(r->maxrss_kib - r->rss_start_kib), need = b->weights + b->kv + b->act;
        snprintf(name, sizeof name, "peak RSS %s, model (MiB)", pn);
        add_figure(name, peak / 1048576, "MiB", need / 1048576, "w+kv+act", peak / need, "<= 1.20",
                   peak / need <= 1.20);

        json_object_set_new(
            jmodel, pn,
            json_pack(
                "{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, "
                "s:I, s:o, s:o}",
                "load_s", r->load_s, "prefill_ms", 1e3 * r->prefill_s, "prefill_min_ms",
                1e3 * r->prefill_min_s, "prefill_all_logits_ms", 1e3 * r->prefill_all_s, "prefill_gflops",
                rate, "prefill_all_logits_gflops", rate_all, "decode_ms", 1e3 * r->decode_s, "decode_min_ms",
                1e3 * r->decode_min_s, "decode_floor_ms", 1e3 * floor_s, "weights_bytes", b->weights,
                "decode_read_bytes", b->read_decode, "kv_bytes", b->kv, "activation_bytes", b->act,
                "flops_prefill", b->flops_prefill, "flops_prefill_all_logits", b->flops_prefill_all,
                "rss_start_kib", (json_int_t)r->rss_start_kib, "rss_after_load_kib",
                (json_int_t)r->rss_after_load_kib, "maxrss_kib", (json_int_t)r->maxrss_kib, "vmhwm_kib",
                (json_int_t)r->hwm_kib, "profile_prefill",
                profile_json(&r->prof_prefill, r->prof_prefill_wall, 1), "profile_decode_step",
                profile_json(&r->prof_decode, r->prof_decode_wall, r->prof_decode_steps)));
    }
    double read_gbs = rd.bytes / rd.s * 1e-9;
    add_figure("checkpoint read to f32 (GB/s)", read_gbs, "GB/s", ce.copy_gbs_1, "memcpy 1 thr",
               read_gbs / ce.copy_gbs_1, ">= 0.25", read_gbs / ce.copy_gbs_1 >= 0.25);
    loadavg(load1, sizeof load1);

    /* The table. */
    printf("%-34s %12s %12s %-12s %7s %8s  %s\n", "figure", "value", "ceiling", "(of)", "ratio", "target",
           "");
    for (int i = 0; i < nfigs; i++) {
        const figure *f = &figs[i];
        printf("%-34s %12.2f %12.2f %-12s %7.3f %8s  %s\n", f->name, f->value, f->ceiling, f->ceiling_unit,
               f->ratio, f->target, f->pass ? "pass" : "MISS");
    }
    printf("\nTime split (one profiled run; outside ops = validation, cache bookkeeping)\n");
    for (int p = 0; p < 2; p++) {
        if (!o.prec[p]) continue;
        char what[64];
        snprintf(what, sizeof what, "prefill %s", p ? "f64" : "f32");
        print_split(what, &res[p].prof_prefill, res[p].prof_prefill_wall, 1);
        snprintf(what, sizeof what, "decode step %s", p ? "f64" : "f32");
        print_split(what, &res[p].prof_decode, res[p].prof_decode_wall, res[p].prof_decode_steps);
    }
    printf("\nMemory (MiB): weights, KV cache, activations budget; RSS at start, after load, peak\n");
    for (int p = 0; p < 2; p++) {
        if (!o.prec[p]) continue;
        printf("  %s  weights %.1f  kv %.1f  act %.1f  |  rss start %.1f  after load %.1f  peak %.1f (VmHWM "
               "%.1f)\n",
               p ? "f64" : "f32", bud[p].weights / 1048576, bud[p].kv / 1048576, bud[p].act / 1048576,
               res[p].rss_start_kib / 1024.0, res[p].rss_after_load_kib / 1024.0, res[p].maxrss_kib / 1024.0,
               res[p].hwm_kib / 1024.0);
    }
    printf("\nload       %s (1, 5, 15 min) at end\n", load1);

    if (o.json) {
        json_t *jf = json_array(), *jg = json_array();
        for (int i = 0; i < nfigs; i++) {
            const figure *f = &figs[i];
            json_array_append_new(jf, json_pack("{s:s, s:f, s:s, s:f, s:s, s:f, s:s, s:b}", "figure", f->name,
                                                "value", f->value, "unit", f->unit, "ceiling", f->ceiling,
                                                "ceiling_of", f->ceiling_unit, "ratio", f->ratio, "target",
                                                f->target, "pass", f->pass == 1));
        }
        for (int k = 0; k < NSHAPES; k++)
            json_array_append_new(jg,
                                  json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:f}", "name", sh[k].name, "M",
                                            (json_int_t)M, "N", (json_int_t)sh[k].N, "K", (json_int_t)sh[k].K,
                                            "per_forward", (json_int_t)sh[k].per_forward, "sgemm_gflops",
                                            ce.gflops[0][k], "dgemm_gflops", ce.gflops[1][k]));
        json_error_t jerr;
        json_t *j = json_pack_ex(
            &jerr, 0,
            "{s:s, s:{s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:s}, s:{s:I, s:I, s:I, s:s}, s:{s:o, s:f, s:f, "
            "s:f, "
            "s:f, s:f, s:f, s:f, s:o, s:o}, s:o, s:o}",
            "date", date, "machine", "cpu", cpu, "cores_online", (json_int_t)cores, "kernel", un.release,
            "openblas_config", openblas_get_config(), "openblas_core", openblas_get_corename(), "threads",
            (json_int_t)o.threads, "loadavg_start", load0, "loadavg_end", load1, "run", "tokens",
            (json_int_t)o.tokens, "prefill_repeats", (json_int_t)o.repeat, "decode_steps",
            (json_int_t)o.steps, "model", o.model ? o.model : "SmolLM2-135M shapes, random BF16 weights",
            "ceilings", "gemm", jg, "sgemm_mix_layers_gflops", ce.mix_layers[0], "sgemm_mix_all_gflops",
            ce.mix_all[0], "dgemm_mix_layers_gflops", ce.mix_layers[1], "dgemm_mix_all_gflops", ce.mix_all[1],
            "copy_gbs", ce.copy_gbs, "copy_gbs_1_thread", ce.copy_gbs_1, "copy_gbs_best", ce.copy_best,
            "before", ceilings_json(&cb), "after", ceilings_json(&ca), "results", jmodel, "figures", jf);
        if (!j || json_dump_file(j, o.json, JSON_INDENT(2))) {
            fprintf(stderr, "cpu_bench: cannot write %s: %s\n", o.json, j ? strerror(errno) : jerr.text);
            json_decref(j);
            if (tmp[0]) remove_checkpoint(tmp);
            return 1;
        }
        json_decref(j);
        printf("JSON       %s\n", o.json);
    } else {
        json_decref(jmodel);
    }
    if (tmp[0]) remove_checkpoint(tmp);
    return 0;
}
