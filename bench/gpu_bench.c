/* gpu_bench.c: the GPU half of the performance record (docs/performance.md, issue 8).
 * Loads a Hugging Face checkpoint (tools/make-bench-model.py writes the Llama-3-8B-shaped
 * random one) through the public API with the CUDA backend in bf16, measures the card's
 * two ceilings in the same process (device-to-device copy bandwidth counting bytes read
 * plus written; the cuBLAS bf16 GEMM rate on a large square product), then times four
 * workloads through lr_model_forward and lr_model_compute_logits:
 *   prefill of one 2048-token prompt, prefill of 8 prompts of 512 (forward into an empty
 *   cache, the final hidden states of each sequence's last token alone to the host by
 *   lr_model_forward_rows, as the peer keeps one token's logits, then their logits);
 *   decode at batch 1 and batch 32 over 1024 tokens of context (one step: forward of one
 *   token per sequence, then each sequence's greedy token on the host, lr_model_greedy:
 *   the logits stay on the GPU, as the peer's do; with --host-logits, the whole (B, vocab)
 *   logits on the host, lr_model_compute_logits, as up to session 16).
 * Each row: median time, its floor (prefill: FLOPs / GEMM rate; decode: (weight bytes +
 * KV bytes read) / copy bandwidth), the ratio, the target, and the GPU memory in use
 * (allocations, CUDA context excluded) against weights + KV cache + 10%. Token ids come
 * from one formula that tools/bench-peer.py repeats, so the peer sees the same inputs.
 * With --tp 1,2 (a list) the rows run once per tp size, each model built in turn from
 * the one checkpoint; speed-up is against the first. Floors divide by the GPUs in use.
 * After the timed runs each row has one profiled pass (lr_model_set_profiling: GPU 0's
 * stream timed between ops), which gives its GEMM, attention and all-reduce shares.
 * Usage: gpu_bench --model DIR [--tp LIST] [--devices N] [--json FILE] [--reps N]
 *                  [--steps N] [--kernels SPEC] [--dump-logits FILE] [--only ROWS]
 *                  [--no-profile] [--graphs] [--no-pdl] [--no-rope-cache] [--no-silu-fuse]
 *                  [--no-qkv-fuse] [--norm-fuse] [--no-rope-wide] [--host-logits] [--sustain SECONDS]
 * --no-pdl (or LLAMAREF_PDL=0) launches without programmatic dependent launch, for a
 * same-run comparison (the JSON's programmatic_dependent_launch says which ran).
 * --no-rope-cache (or LLAMAREF_ROPE_CACHE=0) runs RoPE and the cache write as two kernels
 * instead of one (gpu/gpu_ops.h, lr_gpu_rope_cache), for a same-run comparison (the JSON's
 * rope_cache_fused says which ran).
 * --no-silu-fuse (or LLAMAREF_SILU_FUSE=0) runs a decode step's gate_up_proj and activation
 * as two kernels instead of one, --no-qkv-fuse (or LLAMAREF_QKV_FUSE=0) its qkv_proj apart
 * from RoPE and the cache write (gpu/gpu_ops.h, lr_gpu_silu_fuse, lr_gpu_qkv_fuse: both on
 * by default), for a same-run comparison (the JSON's silu_fused and qkv_fused say which
 * ran); --silu-fuse and --qkv-fuse, the defaults, are still accepted.
 * --norm-fuse (or LLAMAREF_NORM_FUSE=1) also runs the layers' norms inside those two
 * (lr_gpu_norm_fuse; off by default until it is timed; the JSON's norm_fused).
 * --no-rope-wide (or LLAMAREF_ROPE_WIDE=0) runs the fused RoPE + cache write of 64 tokens or
 * more (the prefill rows) in its kernel for few tokens instead of its kernel for many
 * (lr_gpu_rope_wide, on by default since run 31; the JSON's rope_wide); --rope-wide, the
 * default, is still accepted.
 * --host-logits ends each decode step with its (B, vocab) logits on the host
 * (lr_model_compute_logits) instead of its greedy tokens (lr_model_greedy), the rows'
 * definition up to session 16, for a same-run comparison (the JSON's decode_output).
 * --only takes row numbers (0: prefill 1 x 2048, 1: 8 x 512, 2: decode batch 1, 3: batch
 * 32; with --graphs 4 and 5: the decode rows again with CUDA graphs), e.g. --only 2 for a
 * profiler run. --graphs (or LR_BENCH_GRAPHS=1) adds rows 4 and 5, run on a second model
 * built with lr_options.cuda_graphs after the first is freed, and prints how many steps
 * each replayed; their profiled steps run eagerly (profiling is one of the fallbacks).
 * The GEMM ceiling is measured twice (bench/ceilings.h): in short bursts, the floor the
 * prefill rows' ratios and targets use, and again after --sustain seconds (default 2; 0
 * skips it; so does an --only without a prefill row) of back-to-back products, when the card's power limit
 * has lowered its clock as it does through the prefill rows' repeats (run 25); each prefill row also prints
 * its ratio against that sustained floor, which says how much of its gap is the clock. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>

#ifndef LR_HAVE_CUDA
int main(void) {
    puts("gpu_bench: built without CUDA");
    return 77;
}
#else

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_ops.h" /* lr_gpu_pdl */
#include "llamaref.h"

#define BENCH_NAME "gpu_bench"
#include "ceilings.h"

#define LR(call)                                                                           \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) {                                                                         \
            fprintf(stderr, "gpu_bench: %s: %s: %s\n", #call, lr_status_name(rc_), lr_last_error()); \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The shared token formula (tools/bench-peer.py has its twin): prompt token t of
 * sequence s, and decode step k's token of sequence s. */
static int64_t prompt_token(int64_t s, int64_t t, int64_t V) { return (int64_t)(((uint64_t)s * 1000003u + (uint64_t)t * 7919u + 17u) % (uint64_t)V); }
static int64_t step_token(int64_t s, int64_t k, int64_t V) { return (int64_t)(((uint64_t)k * 104729u + (uint64_t)s * 15485863u + 5u) % (uint64_t)V); }

/* ---- ceilings ------------------------------------------------------------------------ */

/* bench_copy_bandwidth and bench_gemm_rate: bench/ceilings.h. */

/* ---- model arithmetic ------------------------------------------------------------------ */

static const lr_config *C;

/* Parameters of the linear layers of all decoder layers (what every token multiplies). */
static double layer_linear_params(void) {
    double H = (double)C->hidden_size, hd = (double)C->head_dim, I = (double)C->intermediate_size;
    double q = (double)C->num_attention_heads * hd, kv = (double)C->num_key_value_heads * hd;
    return (double)C->num_hidden_layers * (H * (q + 2 * kv) + q * H + H * 2 * I + I * H);
}

/* Bytes of the weights as the backend holds them (bf16): layers, norms, embedding, head. */
static double weight_bytes(void) {
    double H = (double)C->hidden_size, V = (double)C->vocab_size;
    double vp = ceil(V / 64) * 64;
    double p = layer_linear_params() + (double)C->num_hidden_layers * 2 * H + H + vp * H;
    if (!C->tie_word_embeddings) p += vp * H;
    return 2 * p;
}

/* Bytes a decode step must read: every layer weight, the final norm, the LM head, one
 * embedding row per token, and the KV of every sequence's context. */
static double decode_bytes(int64_t B, double ctx) {
    double H = (double)C->hidden_size, V = (double)C->vocab_size;
    double w = 2 * (layer_linear_params() + (double)C->num_hidden_layers * 2 * H + H + V * H + (double)B * H);
    double kv = (double)B * ctx * (double)C->num_hidden_layers * 2 * (double)C->num_key_value_heads *
                (double)C->head_dim * 2;
    return w + kv;
}

/* FLOPs of a prefill of B sequences of T tokens: the linear layers for every token,
 * causal attention (QK^T and PV over the visible keys), the LM head for one token each. */
static double prefill_flops(int64_t B, int64_t T) {
    double nh = (double)C->num_attention_heads, hd = (double)C->head_dim;
    double lin = 2 * layer_linear_params() * (double)(B * T);
    double attn = (double)B * (double)C->num_hidden_layers * 4 * nh * hd * (double)T * (double)(T + 1) / 2;
    double head = (double)B * 2 * (double)C->hidden_size * (double)C->vocab_size;
    return lin + attn + head;
}

static double kv_bytes(int64_t seqs, int64_t len) {
    double toks = (double)seqs * ceil((double)len / 16) * 16;
    return toks * (double)C->num_hidden_layers * 2 * (double)C->num_key_value_heads * (double)C->head_dim * 2;
}

/* GPU memory in use on devices 0..ndev-1 together (allocations and contexts). */
static int ndev_used = 1;
static double used_bytes(void) {
    double sum = 0;
    int cur;
    CK(cudaGetDevice(&cur));
    for (int d = 0; d < ndev_used; d++) {
        size_t fr, tot;
        CK(cudaSetDevice(d));
        CK(cudaMemGetInfo(&fr, &tot));
        sum += (double)(tot - fr);
    }
    CK(cudaSetDevice(cur));
    return sum;
}

/* ---- host memory ---------------------------------------------------------------------- */

/* The streaming loader's host budget (docs/performance.md, "Host memory while loading"):
 * its pinned staging, twice one chunk's mapped source pages (a chunk is staging / 2 of
 * float32, read from the checkpoint's dtype; its pages straddle rows, readahead), and
 * 512 MiB for the rest (cuBLAS handles, plans, NCCL); over the resident set before loading. */
static double load_host_budget(const lr_checkpoint *ck, double staging) {
    const lr_st_entry *e = lr_checkpoint_find(ck, "model.embed_tokens.weight");
    double es = e ? (double)lr_dtype_size(e->t.dtype) : 8;
    return staging + 2 * (staging / 2 / 4 * es) + 512.0 * (1 << 20);
}

/* ---- workloads ------------------------------------------------------------------------ */

typedef struct {
    const char *name, *kind; /* kind: "prefill" or "decode" */
    int64_t B, T;            /* sequences; prompt tokens (prefill) or context (decode) */
    double seconds, floor_s, target, flops, bytes, mem, mem_budget;
    double floor_sustained_s; /* prefill: FLOPs at the sustained GEMM rate (--sustain) */
    double kv;
    int n;
    lr_profile prof; /* one profiled pass (prefill) or the profiled steps (decode) */
    bool graphs;       /* decode with lr_options.cuda_graphs */
    lr_graph_stats gs; /* what the row's steps did (graphs rows) */
} row;

static lr_model *M;
static double base_used;
static int profile = 1; /* a profiled pass after the timed ones: all-reduce, GEMM, attention shares */
static int reps = 10, steps = 32, warm = 4;
static bool host_logits; /* --host-logits: decode steps end with the logits on the host */
static double sustain_s = 2; /* --sustain: seconds of GEMMs before the sustained rate; 0: none */
static const char *dump_logits;

static void run_prefill(row *r) {
    int64_t B = r->B, T = r->T, N = B * T, V = C->vocab_size;
    int64_t *ids = malloc((size_t)N * 8), *pos = malloc((size_t)N * 8), *lens = malloc((size_t)B * 8),
            *last = malloc((size_t)B * 8);
    for (int64_t s = 0; s < B; s++) {
        lens[s] = T;
        last[s] = s * T + T - 1;
        for (int64_t t = 0; t < T; t++) {
            ids[s * T + t] = prompt_token(s, t, V);
            pos[s * T + t] = t;
        }
    }
    lr_batch b = {ids, pos, B > 1 ? lens : NULL, NULL, N, B};
    lr_kv_cache *kv;
    LR(lr_kv_cache_create(M, B, T, &kv));
    double *t = malloc((size_t)(reps + 2) * sizeof *t);
    /* 2 warm-ups, reps timed, then one profiled pass */
    for (int i = 0; i < reps + 2 + profile; i++) {
        lr_kv_cache_reset(kv);
        if (i == reps + 2) LR(lr_model_set_profiling(M, true));
        double t0 = now();
        lr_tensor hid, lg;
        LR(lr_model_forward_rows(M, &b, kv, NULL, last, B, &hid)); /* each sequence's last token */
        LR(lr_model_compute_logits(M, &hid, NULL, &lg));
        double dt = now() - t0;
        if (i >= 2 && i < reps + 2) t[i - 2] = dt;
        if (i == 0 && dump_logits && B == 1) {
            FILE *f = fopen(dump_logits, "wb");
            float *x = malloc((size_t)V * sizeof *x);
            lr_convert(x, LR_F32, lg.data, lg.dtype, (size_t)V);
            if (f) fwrite(x, sizeof *x, (size_t)V, f), fclose(f);
            free(x);
        }
    }
    r->mem = used_bytes() - base_used;
    if (profile) {
        LR(lr_model_get_profile(M, &r->prof));
        LR(lr_model_set_profiling(M, false));
    }
    r->kv = kv_bytes(B, T);
    r->seconds = bench_median(t, reps);
    r->n = reps;
    lr_kv_cache_free(kv);
    free(ids), free(pos), free(lens), free(last), free(t);
}

static void run_decode(row *r) {
    int64_t B = r->B, ctx = r->T, V = C->vocab_size;
    int pst = profile ? (steps < 8 ? steps : 8) : 0; /* profiled steps after the timed ones */
    int64_t cap = ctx + warm + steps + pst;
    lr_kv_cache *kv;
    LR(lr_kv_cache_create(M, B, cap, &kv));
    /* The context: one sequence at a time, so the prefill buffers stay (ctx, .) in size. */
    int64_t *ids = malloc((size_t)ctx * 8), *pos = malloc((size_t)ctx * 8);
    for (int64_t s = 0; s < B; s++) {
        for (int64_t t = 0; t < ctx; t++) ids[t] = prompt_token(s, t, V), pos[t] = t;
        int64_t len = ctx, sid = s;
        lr_batch b = {ids, pos, &len, &sid, ctx, 1};
        lr_tensor hid;
        LR(lr_model_forward(M, &b, kv, NULL, &hid));
    }
    free(ids), free(pos);
    int64_t *sid = malloc((size_t)B * 8), *one = malloc((size_t)B * 8), *tok = malloc((size_t)B * 8),
            *ps = malloc((size_t)B * 8), *next = malloc((size_t)B * 8);
    for (int64_t s = 0; s < B; s++) sid[s] = s, one[s] = 1;
    double *t = malloc((size_t)steps * sizeof *t);
    lr_graph_stats g0 = {0};
    if (r->graphs) LR(lr_model_graph_stats(M, &g0));
    for (int k = 0; k < warm + steps + pst; k++) {
        for (int64_t s = 0; s < B; s++) tok[s] = step_token(s, k, V), ps[s] = ctx + k;
        lr_batch b = {tok, ps, one, sid, B, B};
        if (k == warm + steps) LR(lr_model_set_profiling(M, true));
        double t0 = now();
        lr_tensor hid, lg;
        LR(lr_model_forward(M, &b, kv, NULL, &hid));
        if (host_logits)
            LR(lr_model_compute_logits(M, &hid, NULL, &lg));
        else
            LR(lr_model_greedy(M, &hid, NULL, next)); /* chosen, not fed back: the peer's inputs */
        double dt = now() - t0;
        if (k >= warm && k < warm + steps) t[k - warm] = dt;
    }
    if (pst) {
        LR(lr_model_get_profile(M, &r->prof));
        LR(lr_model_set_profiling(M, false));
    }
    if (r->graphs) {
        LR(lr_model_graph_stats(M, &r->gs));
        r->gs.captures -= g0.captures, r->gs.replays -= g0.replays, r->gs.warmups -= g0.warmups;
        r->gs.eager_steps -= g0.eager_steps, r->gs.invalidations -= g0.invalidations;
    }
    r->mem = used_bytes() - base_used;
    r->kv = kv_bytes(B, cap);
    r->seconds = bench_median(t, steps);
    r->n = steps;
    lr_kv_cache_free(kv);
    free(sid), free(one), free(tok), free(ps), free(next), free(t);
}

/* Share of the profiled time spent in the op kinds of mask (bits of lr_prof_op). */
static double prof_share(const lr_profile *p, unsigned mask) {
    double all = 0, part = 0;
    for (int i = 0; i < LR_PROF_COUNT; i++) {
        all += (double)p->ns[i];
        if (mask & (1u << i)) part += (double)p->ns[i];
    }
    return all > 0 ? part / all : 0;
}
#define GEMM_OPS                                                                           \
    ((1u << LR_PROF_QKV_PROJ) | (1u << LR_PROF_O_PROJ) | (1u << LR_PROF_GATE_UP_PROJ) |      \
     (1u << LR_PROF_DOWN_PROJ) | (1u << LR_PROF_LM_HEAD))

/* A non-negative integer argument; -1 (refused by the caller's checks) if it is not one. */
static int count_arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= 0 && v <= 1 << 20 ? (int)v : -1;
}

/* --NAME or --no-NAME: the switch's environment variable set to "1" or "0" (each switch reads
 * it at its first use, after this). */
static bool switch_arg(const char *arg, const char *name, const char *env) {
    const bool off = strncmp(arg, "--no-", 5) == 0;
    if (strncmp(arg, "--", 2) != 0 || strcmp(arg + (off ? 5 : 2), name) != 0) return false;
    setenv(env, off ? "0" : "1", 1);
    return true;
}

static void usage(void) {
    fprintf(stderr,
            "usage: gpu_bench --model DIR [--tp LIST] [--devices N] [--json FILE] [--reps N] [--steps N]\n"
            "                 [--kernels SPEC] [--dump-logits FILE] [--only ROWS] [--no-profile] [--graphs]\n"
            "                 [--no-pdl] [--no-rope-cache] [--no-silu-fuse] [--no-qkv-fuse] [--norm-fuse]\n"
            "                 [--no-rope-wide] [--host-logits] [--sustain SECONDS]\n");
}

int main(int argc, char **argv) {
    const char *model = NULL, *json = NULL, *kernels = NULL, *only = NULL, *tplist = "1";
    int devices = 0;
    bool graphs = getenv("LR_BENCH_GRAPHS") && !strcmp(getenv("LR_BENCH_GRAPHS"), "1");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = count_arg(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = count_arg(argv[++i]);
        else if (!strcmp(argv[i], "--kernels") && i + 1 < argc) kernels = argv[++i];
        else if (!strcmp(argv[i], "--dump-logits") && i + 1 < argc) dump_logits = argv[++i];
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--tp") && i + 1 < argc) tplist = argv[++i];
        else if (!strcmp(argv[i], "--devices") && i + 1 < argc) devices = count_arg(argv[++i]);
        else if (!strcmp(argv[i], "--no-profile")) profile = 0;
        else if (!strcmp(argv[i], "--graphs")) graphs = true;
        else if (!strcmp(argv[i], "--no-pdl"))
            setenv("LLAMAREF_PDL", "0", 1); /* read at the first launch */
        else if (!strcmp(argv[i], "--no-rope-cache"))
            setenv("LLAMAREF_ROPE_CACHE", "0", 1); /* read at the first layer */
        else if (switch_arg(argv[i], "silu-fuse", "LLAMAREF_SILU_FUSE") ||
                 switch_arg(argv[i], "qkv-fuse", "LLAMAREF_QKV_FUSE") ||
                 switch_arg(argv[i], "norm-fuse", "LLAMAREF_NORM_FUSE") ||
                 switch_arg(argv[i], "rope-wide", "LLAMAREF_ROPE_WIDE"))
            continue;
        else if (!strcmp(argv[i], "--host-logits"))
            host_logits = true;
        else if (!strcmp(argv[i], "--sustain") && i + 1 < argc) {
            char *end;
            sustain_s = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(sustain_s >= 0 && sustain_s <= 600)) {
                fprintf(stderr, "gpu_bench: --sustain: \"%s\" is not a number of seconds from 0 to 600\n",
                        argv[i]);
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    int tps[8], ntp = 0;
    for (const char *q = tplist; *q;) {
        char *end;
        long v = strtol(q, &end, 10);
        if (end == q || v < 1 || v > 64 || (*end && *end != ',') || ntp == 8) {
            fprintf(stderr, "gpu_bench: --tp: \"%s\" is not a list of up to 8 tp sizes like 1,2\n", tplist);
            return 2;
        }
        tps[ntp++] = (int)v;
        q = *end ? end + 1 : end;
    }
    if (!model || reps < 1 || steps < 1 || ntp == 0 || devices < 0) {
        if (!model) fprintf(stderr, "gpu_bench: --model DIR is required (tools/make-bench-model.py writes one)\n");
        usage();
        return 2;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int ndev = 0;
    CK(cudaGetDeviceCount(&ndev));
    for (int d = ndev - 1; d >= 0; d--) { /* every context up before the baseline; GPU 0 current */
        CK(cudaSetDevice(d));
        CK(cudaFree(0));
    }
    ndev_used = ndev;
    time_t wall = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&wall));
    printf("card: %s (%d SMs, %.1f GiB) x %d, %s\n", prop.name, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1 << 30), ndev, date);

    if (only && !strchr(only, '0') && !strchr(only, '1')) sustain_s = 0; /* no prefill row to use it */
    double bw = bench_copy_bandwidth(), rate, rate_sustained = 0;
    bench_gemm_rates(sustain_s, &rate, sustain_s > 0 ? &rate_sustained : NULL);
    printf("ceilings (GPU 0): copy %.0f GB/s (read + write), cuBLAS bf16 GEMM 8192^3 %.0f TFLOP/s", bw * 1e-9,
           rate * 1e-12);
    if (sustain_s > 0) printf(" (%.0f after %g s of them)", rate_sustained * 1e-12, sustain_s);
    printf("\n");

    lr_checkpoint *ck;
    LR(lr_checkpoint_open(model, &ck));
    const row proto[] = {
        /* The targets are issue 19's (docs/performance.md), for one GPU. */
        {.name = "prefill 1 x 2048", .kind = "prefill", .B = 1, .T = 2048, .target = 1.25},
        {.name = "prefill 8 x 512", .kind = "prefill", .B = 8, .T = 512, .target = 1.20},
        {.name = "decode batch 1, ctx 1024", .kind = "decode", .B = 1, .T = 1024, .target = 1.15},
        {.name = "decode batch 32, ctx 1024", .kind = "decode", .B = 32, .T = 1024, .target = 1.40},
        {.name = "decode batch 1, graphs",
         .kind = "decode",
         .B = 1,
         .T = 1024,
         .target = 1.15,
         .graphs = true},
        {.name = "decode batch 32, graphs",
         .kind = "decode",
         .B = 32,
         .T = 1024,
         .target = 1.40,
         .graphs = true},
    };
    int nrows = 0;
    row rows[8][6];
    int ndevs[8];
    double load_s[8], wmem[8], host_before[8], host_peak[8], host_budget[8];
    bool host_reset[8];
    for (int i = 0; i < (graphs ? 6 : 4); i++)
        if (!only || strchr(only, '0' + i)) rows[0][nrows++] = proto[i];
    for (int k = 1; k < ntp; k++) memcpy(rows[k], rows[0], sizeof rows[0]);

    for (int k = 0; k < ntp; k++) {
        CK(cudaSetDevice(0));
        base_used = used_bytes();
        host_reset[k] = lr_host_peak_rss_reset();
        host_before[k] = 1024.0 * (double)lr_host_status_kib("VmRSS");
        double t0 = now();
        lr_options opt;
        lr_options_init(&opt);
        opt.backend = "cuda";
        opt.precision = LR_BF16;
        opt.kernels = kernels;
        opt.tp_size = tps[k];
        opt.num_devices = devices;
        LR(lr_model_create(ck, &opt, &M));
        C = lr_model_config(M);
        ndevs[k] = lr_model_num_devices(M);
        load_s[k] = now() - t0;
        wmem[k] = used_bytes() - base_used;
        host_peak[k] = 1024.0 * (double)lr_host_status_kib("VmHWM");
        lr_memory lm;
        LR(lr_model_memory(M, &lm));
        host_budget[k] = host_before[k] + load_host_budget(ck, (double)lm.load_staging);
        printf("\nmodel: %s, hidden %lld, %lld layers, %lld/%lld heads, intermediate %lld, vocab %lld; "
               "tp %d on %d GPU%s%s; load %.1f s; weights %.2f GiB (%.2f GiB on the devices after load)%s\n",
               model, (long long)C->hidden_size, (long long)C->num_hidden_layers,
               (long long)C->num_attention_heads, (long long)C->num_key_value_heads,
               (long long)C->intermediate_size, (long long)C->vocab_size, tps[k], ndevs[k],
               ndevs[k] > 1 ? "s (NCCL)" : "", ndevs[k] == 1 && tps[k] > 1 ? " (ranks in turn)" : "",
               load_s[k], weight_bytes() / (1 << 30), wmem[k] / (1 << 30),
               lr_gpu_pdl() ? "" : "; no programmatic dependent launch");
        /* The decode fusions in force (each switch read here first, so the text says what ran). */
        printf(
            "  fusions at a decode step of 1 or 2 tokens: %s, %s, %s\n",
            lr_gpu_qkv_fuse() ? "qkv_proj with RoPE and the cache write" : "qkv_proj apart (--no-qkv-fuse)",
            lr_gpu_silu_fuse() ? "gate_up_proj with the activation" : "gate_up_proj apart (--no-silu-fuse)",
            lr_gpu_norm_fuse() ? "the layers' norms inside those two (--norm-fuse)" : "the norms apart");
        printf("  RoPE and the cache write of a prefill: %s\n",
               lr_gpu_rope_wide() ? "the kernel for many tokens" : "the kernel for few (--no-rope-wide)");
        printf("  memory: host peak RSS %.2f GiB while loading (%.2f GiB before; budget %.2f GiB%s)%s; "
               "device weights %.2f GiB, GPUs in use after load %.2f GiB\n",
               host_peak[k] / (1 << 30), host_before[k] / (1 << 30), host_budget[k] / (1 << 30),
               host_peak[k] <= host_budget[k] ? ", met" : ", MISSED",
               host_reset[k] ? "" : " (peak not resettable: the process's since it started)",
               (double)lm.device_weights / (1 << 30), (double)lm.device_used / (1 << 30));
        if (k > 0) dump_logits = NULL;
        for (int i = 0; i < nrows; i++) {
            row *r = &rows[k][i];
            if (r->graphs && !opt.cuda_graphs) {
                /* The graphs rows come last: the same model again, with graphs. */
                lr_model_free(M);
                opt.cuda_graphs = true;
                LR(lr_model_create(ck, &opt, &M));
                C = lr_model_config(M);
            }
            /* Floors over the GPUs in use; the targets are for one GPU. */
            if (!strcmp(r->kind, "prefill")) {
                run_prefill(r);
                r->flops = prefill_flops(r->B, r->T);
                r->floor_s = r->flops / (rate * ndevs[k]);
                if (sustain_s > 0) r->floor_sustained_s = r->flops / (rate_sustained * ndevs[k]);
            } else {
                run_decode(r);
                r->bytes = decode_bytes(r->B, (double)r->T + warm + 0.5 * steps);
                r->floor_s = r->bytes / (bw * ndevs[k]);
            }
            if (tps[k] > 1) r->target = 0;
            r->mem_budget = 1.1 * (weight_bytes() + r->kv);
            printf("  %-26s %9.3f ms  floor %8.3f ms  ratio %5.2f%s  mem %.2f GiB / budget %.2f GiB", r->name,
                   r->seconds * 1e3, r->floor_s * 1e3, r->seconds / r->floor_s,
                   r->target > 0 ? (r->seconds / r->floor_s <= r->target ? " (met)" : " (missed)") : "",
                   r->mem / (1 << 30), r->mem_budget / (1 << 30));
            if (r->floor_sustained_s > 0)
                printf("  sustained floor %.3f ms, ratio %.2f", r->floor_sustained_s * 1e3,
                       r->seconds / r->floor_sustained_s);
            if (r->graphs)
                printf("  graphs: %llu captured, %llu steps replayed, %llu warm-up, %llu eager",
                       (unsigned long long)r->gs.captures, (unsigned long long)r->gs.replays,
                       (unsigned long long)r->gs.warmups, (unsigned long long)r->gs.eager_steps);
            if (profile)
                printf("  profiled: GEMM %.0f%%, attention %.0f%%, all-reduce %.1f%%", 100 * prof_share(&r->prof, GEMM_OPS),
                       100 * prof_share(&r->prof, 1u << LR_PROF_ATTENTION),
                       100 * prof_share(&r->prof, 1u << LR_PROF_ALL_REDUCE));
            printf("\n");
            fflush(stdout);
        }
        lr_model_free(M);
        M = NULL;
    }

    printf("\n| tp | GPUs | workload | time | floor | ratio | target | tokens/s | speed-up over tp %d | all-reduce share | GPU memory / budget |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n", tps[0]);
    for (int k = 0; k < ntp; k++)
        for (int i = 0; i < nrows; i++) {
            row *r = &rows[k][i];
            double toks = !strcmp(r->kind, "prefill") ? (double)(r->B * r->T) : (double)r->B;
            char tgt[32], shr[32];
            if (r->target > 0) snprintf(tgt, sizeof tgt, "%.2fx", r->target);
            else snprintf(tgt, sizeof tgt, "-");
            if (profile) snprintf(shr, sizeof shr, "%.1f%%", 100 * prof_share(&r->prof, 1u << LR_PROF_ALL_REDUCE));
            else snprintf(shr, sizeof shr, "-");
            printf("| %d | %d | %s | %.2f ms | %.2f ms | %.2f | %s | %.0f | %.2fx | %s | %.2f / %.2f GiB |\n", tps[k],
                   ndevs[k], r->name, r->seconds * 1e3, r->floor_s * 1e3, r->seconds / r->floor_s, tgt,
                   toks / r->seconds, rows[0][i].seconds / r->seconds, shr, r->mem / (1 << 30),
                   r->mem_budget / (1 << 30));
        }

    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f, "{\n  \"tool\": \"gpu_bench\",\n  \"date\": \"%s\",\n  \"card\": \"%s\",\n  \"sms\": %d,\n  \"gpus\": %d,\n",
                date, prop.name, prop.multiProcessorCount, ndev);
        fprintf(f, "  \"model\": \"%s\",\n  \"precision\": \"bf16\",\n  \"kernels\": \"%s\",\n", model,
                kernels ? kernels : "");
        fprintf(f, "  \"programmatic_dependent_launch\": %s,\n", lr_gpu_pdl() ? "true" : "false");
        fprintf(f, "  \"rope_cache_fused\": %s,\n", lr_gpu_rope_cache() ? "true" : "false");
        fprintf(f, "  \"silu_fused\": %s,\n", lr_gpu_silu_fuse() ? "true" : "false");
        fprintf(f, "  \"qkv_fused\": %s,\n", lr_gpu_qkv_fuse() ? "true" : "false");
        fprintf(f, "  \"norm_fused\": %s,\n", lr_gpu_norm_fuse() ? "true" : "false");
        fprintf(f, "  \"rope_wide\": %s,\n", lr_gpu_rope_wide() ? "true" : "false");
        fprintf(f, "  \"decode_output\": \"%s\",\n", host_logits ? "logits on the host" : "greedy tokens");
        fprintf(f, "  \"copy_bandwidth_Bps\": %.6e,\n  \"gemm_rate_flops\": %.6e,\n  \"load_s\": %.3f,\n", bw, rate,
                load_s[0]);
        if (sustain_s > 0)
            fprintf(f, "  \"gemm_rate_sustained_flops\": %.6e,\n  \"sustain_s\": %g,\n", rate_sustained,
                    sustain_s);
        fprintf(f, "  \"weight_bytes\": %.6e,\n  \"weights_on_device_bytes\": %.6e,\n", weight_bytes(),
                wmem[0]);
        fprintf(f, "  \"memory\": [");
        for (int k = 0; k < ntp; k++)
            fprintf(f,
                    "%s\n    {\"tp\": %d, \"host_rss_before_load_bytes\": %.6e, "
                    "\"host_peak_rss_load_bytes\": %.6e, "
                    "\"host_peak_rss_budget_bytes\": %.6e, \"host_peak_reset\": %s}",
                    k ? "," : "", tps[k], host_before[k], host_peak[k], host_budget[k],
                    host_reset[k] ? "true" : "false");
        fprintf(f, "\n  ],\n  \"host_peak_rss_bytes\": %.6e,\n  \"rows\": [\n", (double)lr_host_peak_rss());
        for (int k = 0; k < ntp; k++)
            for (int i = 0; i < nrows; i++) {
                row *r = &rows[k][i];
                fprintf(f,
                        "    {\"name\": \"%s\", \"kind\": \"%s\", \"tp\": %d, \"devices\": %d, \"batch\": %lld, "
                        "\"tokens\": %lld, \"seconds\": %.6e, \"repeats\": %d, \"floor_s\": %.6e, \"ratio\": %.4f, "
                        "\"target\": %.2f, \"speedup\": %.4f, \"flops\": %.6e, \"bytes\": %.6e, \"kv_cache_bytes\": "
                        "%.6e, \"gpu_mem_bytes\": %.6e, \"gpu_mem_budget_bytes\": %.6e, \"load_s\": %.3f",
                        r->name, r->kind, tps[k], ndevs[k], (long long)r->B, (long long)r->T, r->seconds, r->n,
                        r->floor_s, r->seconds / r->floor_s, r->target, rows[0][i].seconds / r->seconds, r->flops,
                        r->bytes, r->kv, r->mem, r->mem_budget, load_s[k]);
                fprintf(f, ", \"graphs\": %s", r->graphs ? "true" : "false");
                if (r->floor_sustained_s > 0)
                    fprintf(f, ", \"floor_sustained_s\": %.6e, \"ratio_sustained\": %.4f",
                            r->floor_sustained_s, r->seconds / r->floor_sustained_s);
                if (r->graphs)
                    fprintf(f, ", \"graph_captures\": %llu, \"graph_replays\": %llu, \"graph_eager_steps\": %llu",
                            (unsigned long long)r->gs.captures, (unsigned long long)r->gs.replays,
                            (unsigned long long)r->gs.eager_steps);
                if (profile) {
                    fprintf(f, ", \"profile_ns\": {");
                    for (int op = 0; op < LR_PROF_COUNT; op++)
                        fprintf(f, "%s\"%s\": %llu", op ? ", " : "", lr_prof_op_name((lr_prof_op)op),
                                (unsigned long long)r->prof.ns[op]);
                    fprintf(f, "}");
                }
                fprintf(f, "}%s\n", k + 1 < ntp || i + 1 < nrows ? "," : "");
            }
        fprintf(f, "  ]\n}\n");
        fclose(f);
    }
    lr_checkpoint_close(ck);
    return 0;
}
#endif
