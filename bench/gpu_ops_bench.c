/* gpu_ops_bench.c: every registered kernel variant (gpu/registry.cu) timed at
 * Llama-3-8B sizes in bf16, one line each, against the card's ceilings measured in the
 * same process, as test-backend-ops' perf mode does: memory-bound ops in GB/s (bytes
 * each input read once plus each output written once) against the device-to-device copy
 * bandwidth, attention at prefill in TFLOP/s against the cuBLAS bf16 GEMM rate, and the
 * model's cuBLAS GEMMs at the same shapes for scale. A kernel developer registers a
 * variant and sees here at once whether it is faster. Timing: CUDA events around 20
 * launches after 3 warm-ups, median; inputs are random (never zeros).
 * Usage: gpu_ops_bench [--json FILE] */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdio.h>

#ifndef LR_HAVE_CUDA
int main(void) {
    puts("gpu_ops_bench: built without CUDA");
    return 77;
}
#else

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_ops.h"

#define BENCH_NAME "gpu_ops_bench"
#include "ceilings.h"

/* Llama-3-8B on one rank. */
enum { H = 4096, NH = 32, NKV = 8, HD = 128, NI = 14336, V = 128256, BS = 16 };
#define QKVW ((NH + 2 * NKV) * HD)

static double copy_bw, gemm_flops;
static FILE *js;
static int js_first = 1;

/* Random bf16 in [-1, 1) (xorshift), written from the host. */
static void *rand_dev(size_t n) {
    uint16_t *h = malloc(n * 2);
    static uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        float f = (float)((double)(x >> 11) / 4503599627370496.0 - 1.0);
        uint32_t u;
        memcpy(&u, &f, 4);
        h[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    void *d;
    CK(cudaMalloc(&d, n * 2 + 16));
    CK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

static void *dev_copy(const void *h, size_t bytes) {
    void *d;
    CK(cudaMalloc(&d, bytes ? bytes : 1));
    CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
}

typedef int (*op_fn)(void *ctx, const char *variant);

typedef struct {
    op_fn fn;
    void *ctx;
    const char *variant;
} op_call;

static void run_op(void *user) {
    op_call *c = (op_call *)user;
    int rc = c->fn(c->ctx, c->variant);
    if (rc) {
        fprintf(stderr, "gpu_ops_bench: %s: %s\n", lr_status_name(rc), lr_last_error());
        exit(1);
    }
}

/* Median seconds of one call of fn (bench/ceilings.h times it). */
static double time_op(op_fn fn, void *ctx, const char *variant) {
    op_call c = {fn, ctx, variant};
    return bench_time_events(run_op, &c);
}

static void report(const char *family, const char *variant, const char *shape, double s, double bytes,
                   double flops) {
    if (flops > 0)
        printf("%-10s %-12s %-34s %9.1f us %8.1f TFLOP/s  %5.1f%% of GEMM rate\n", family, variant, shape, s * 1e6,
               flops / s * 1e-12, 100 * flops / s / gemm_flops);
    else
        printf("%-10s %-12s %-34s %9.1f us %8.0f GB/s     %5.1f%% of copy bandwidth\n", family, variant, shape,
               s * 1e6, bytes / s * 1e-9, 100 * bytes / s / copy_bw);
    if (js) {
        fprintf(js, "%s    {\"family\": \"%s\", \"variant\": \"%s\", \"shape\": \"%s\", \"seconds\": %.6e, \"bytes\": %.6e, \"flops\": %.6e}",
                js_first ? "" : ",\n", family, variant, shape, s, bytes, flops);
        js_first = 0;
    }
}

/* ---- op contexts ---------------------------------------------------------------------- */

static void *x_bf, *y_bf, *w_bf, *qkv, *gu, *act, *ctxo, *kc, *vc;
static float *resid;
static int64_t *ids, *pos, *slots;
static double *inv_freq;
static int64_t T_cur;
static lr_gpu_attn_meta meta_cur;
static lr_gpu_attn_ws *attn_ws;

static int op_embedding(void *c, const char *v) {
    (void)c;
    return lr_gpu_embedding(v, y_bf, ids, T_cur, w_bf, 0, V, H, LR_BF16, 0);
}
static int op_rmsnorm(void *c, const char *v) {
    (void)c;
    return lr_gpu_rms_norm(v, y_bf, x_bf, w_bf, T_cur, H, 1e-5f, LR_BF16, 0);
}
static int op_fused(void *c, const char *v) {
    (void)c;
    return lr_gpu_fused_add_rms_norm(v, y_bf, resid, x_bf, w_bf, T_cur, H, 1e-5f, LR_BF16, 0);
}
static int op_rotary(void *c, const char *v) {
    (void)c;
    return lr_gpu_rotary(v, qkv, QKVW, T_cur, NH + NKV, HD, pos, inv_freq, LR_BF16, 0);
}
static int op_act(void *c, const char *v) {
    (void)c;
    return lr_gpu_silu_and_mul(v, act, gu, T_cur, NI, LR_BF16, 0);
}
static int op_cache(void *c, const char *v) {
    (void)c;
    return lr_gpu_reshape_and_cache(v, kc, vc, qkv, QKVW, NH * HD, (NH + NKV) * HD, T_cur, NKV, HD, BS, slots,
                                     LR_BF16, 0);
}
static int op_attn(void *c, const char *v) {
    (void)c;
    return lr_gpu_attention(v, ctxo, NH * HD, qkv, QKVW, kc, vc, &meta_cur, T_cur, NH, NKV, HD, 0.08838834764f,
                            LR_BF16, attn_ws, 0);
}

/* Attention metadata for B sequences with `past` cached tokens and `len` new ones each,
 * blocks of each sequence scattered over the pool. */
static lr_gpu_attn_meta make_meta(int64_t B, int64_t past, int64_t len, int64_t pool_blocks) {
    int64_t T = B * len, mb = (past + len + BS - 1) / BS;
    int32_t *tab = malloc((size_t)(B * mb) * 4), *tseq = malloc((size_t)T * 4), *tkeys = malloc((size_t)T * 4);
    int32_t *sst = malloc((size_t)B * 4), *sl = malloc((size_t)B * 4), *sp = malloc((size_t)B * 4);
    for (int64_t i = 0; i < B * mb; i++) tab[i] = (int32_t)((i * 7919) % pool_blocks);
    for (int64_t s = 0; s < B; s++) {
        sst[s] = (int32_t)(s * len), sl[s] = (int32_t)len, sp[s] = (int32_t)past;
        for (int64_t j = 0; j < len; j++) tseq[s * len + j] = (int32_t)s, tkeys[s * len + j] = (int32_t)(past + j + 1);
    }
    lr_gpu_attn_meta m = {dev_copy(tab, (size_t)(B * mb) * 4), dev_copy(tseq, (size_t)T * 4),
                          dev_copy(tkeys, (size_t)T * 4), dev_copy(sst, (size_t)B * 4),
                          dev_copy(sl, (size_t)B * 4), dev_copy(sp, (size_t)B * 4),
                          B, mb, BS, len, past + len};
    free(tab), free(tseq), free(tkeys), free(sst), free(sl), free(sp);
    return m;
}

static void free_meta(lr_gpu_attn_meta *m) {
    cudaFree((void *)m->block_tables), cudaFree((void *)m->token_seq), cudaFree((void *)m->token_keys);
    cudaFree((void *)m->seq_start), cudaFree((void *)m->seq_len), cudaFree((void *)m->seq_past);
}

/* ---- GEMMs ------------------------------------------------------------------------------ */

static cublasHandle_t blas;
static int64_t g_n, g_k;
static void *g_w;
static int op_gemm(void *c, const char *v) {
    (void)c, (void)v;
    float one = 1, zero = 0;
    return cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)g_n, (int)T_cur, (int)g_k, &one, g_w, CUDA_R_16BF,
                        (int)g_k, x_bf, CUDA_R_16BF, (int)g_k, &zero, y_bf, CUDA_R_16BF, (int)g_n,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS
               ? LR_OK
               : LR_E_DEVICE;
}

/* The linear family's variants on the model's projections (g_n, g_k) over w_bf, which is
 * as large as the largest of them (the LM head). */
static int op_linear(void *c, const char *v) {
    (void)c;
    return lr_gpu_linear(v, y_bf, x_bf, w_bf, T_cur, g_n, g_k, LR_BF16, blas, 0);
}

int main(int argc, char **argv) {
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else {
            fprintf(stderr, "usage: gpu_ops_bench [--json FILE]\n");
            return 2;
        }
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    /* The ceilings, measured as gpu_bench measures them (bench/ceilings.h). */
    copy_bw = bench_copy_bandwidth();
    gemm_flops = bench_gemm_rate();
    if (lr_gpu_blas_create(&blas) != LR_OK) return 1;
    if (lr_gpu_attn_ws_create(&attn_ws) != LR_OK) return 1;
    printf("card: %s; copy %.0f GB/s (read + write), cuBLAS bf16 GEMM %.0f TFLOP/s\n", prop.name, copy_bw * 1e-9,
           gemm_flops * 1e-12);
    if (json) {
        js = fopen(json, "w");
        if (!js) return 1;
        fprintf(js, "{\n  \"tool\": \"gpu_ops_bench\",\n  \"card\": \"%s\",\n  \"copy_bandwidth_Bps\": %.6e,\n  \"gemm_rate_flops\": %.6e,\n  \"ops\": [\n",
                prop.name, copy_bw, gemm_flops);
    }

    const int64_t TMAX = 4096, POOL = 32 * 1088 / BS + 64; /* blocks: 32 sequences of 1088 tokens */
    x_bf = rand_dev((size_t)(TMAX * NI));
    y_bf = rand_dev((size_t)2048 * V); /* the widest output: lm_head at T 2048 */
    w_bf = rand_dev((size_t)V * H);
    qkv = rand_dev((size_t)(TMAX * QKVW));
    gu = rand_dev((size_t)(TMAX * 2 * NI));
    act = rand_dev((size_t)(TMAX * NI));
    ctxo = rand_dev((size_t)(TMAX * NH * HD));
    kc = rand_dev((size_t)(POOL * BS * NKV * HD));
    vc = rand_dev((size_t)(POOL * BS * NKV * HD));
    CK(cudaMalloc((void **)&resid, (size_t)(TMAX * H) * 4));
    CK(cudaMemset(resid, 0, (size_t)(TMAX * H) * 4));
    {
        int64_t *h = malloc((size_t)TMAX * 8);
        for (int64_t i = 0; i < TMAX; i++) h[i] = (i * 7919) % V;
        ids = dev_copy(h, (size_t)TMAX * 8);
        for (int64_t i = 0; i < TMAX; i++) h[i] = i;
        pos = dev_copy(h, (size_t)TMAX * 8);
        for (int64_t i = 0; i < TMAX; i++) h[i] = (i * 13) % (POOL * BS);
        slots = dev_copy(h, (size_t)TMAX * 8);
        free(h);
        double f[HD / 2];
        for (int i = 0; i < HD / 2; i++) f[i] = 1.0 / __builtin_pow(500000.0, 2.0 * i / HD);
        inv_freq = dev_copy(f, sizeof f);
    }

    char shape[64];
    for (size_t vi = 0; vi < lr_gpu_variant_count(); vi++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(vi);
        const int64_t Ts[] = {1, 32, 2048};
        for (size_t ti = 0; ti < 3; ti++) {
            T_cur = Ts[ti];
            double t = (double)T_cur;
            switch ((lr_gpu_family)lr_gpu_family_find(v->family)) {
            case LR_GPU_FAM_EMBEDDING:
                snprintf(shape, sizeof shape, "T %lld, H %d", (long long)T_cur, H);
                report(v->family, v->name, shape, time_op(op_embedding, NULL, v->name), t * H * 4 + t * 8, 0);
                break;
            case LR_GPU_FAM_RMSNORM:
                snprintf(shape, sizeof shape, "T %lld, H %d", (long long)T_cur, H);
                report(v->family, v->name, shape, time_op(op_rmsnorm, NULL, v->name), t * H * 4 + H * 2, 0);
                snprintf(shape, sizeof shape, "fused +res, T %lld, H %d", (long long)T_cur, H);
                report(v->family, v->name, shape, time_op(op_fused, NULL, v->name), t * H * 12 + H * 2, 0);
                break;
            case LR_GPU_FAM_ROTARY:
                snprintf(shape, sizeof shape, "T %lld, %d heads of %d", (long long)T_cur, NH + NKV, HD);
                report(v->family, v->name, shape, time_op(op_rotary, NULL, v->name), t * (NH + NKV) * HD * 4 + t * 8, 0);
                break;
            case LR_GPU_FAM_ACTIVATION:
                snprintf(shape, sizeof shape, "T %lld, NI %d", (long long)T_cur, NI);
                report(v->family, v->name, shape, time_op(op_act, NULL, v->name), t * NI * 6, 0);
                break;
            case LR_GPU_FAM_CACHE:
                snprintf(shape, sizeof shape, "T %lld, %d kv heads of %d", (long long)T_cur, NKV, HD);
                report(v->family, v->name, shape, time_op(op_cache, NULL, v->name), t * NKV * HD * 8 + t * 8, 0);
                break;
            case LR_GPU_FAM_ATTENTION:
                if (T_cur == 2048) {
                    /* Prefill: one sequence of 2048 with no past; TFLOP/s. */
                    meta_cur = make_meta(1, 0, 2048, POOL);
                    snprintf(shape, sizeof shape, "prefill 1 x 2048, 32/8 heads");
                    double fl = 4.0 * NH * HD * 2048.0 * 2049.0 / 2;
                    report(v->family, v->name, shape, time_op(op_attn, NULL, v->name), 0, fl);
                    free_meta(&meta_cur);
                    meta_cur = make_meta(8, 0, 512, POOL);
                    T_cur = 4096;
                    snprintf(shape, sizeof shape, "prefill 8 x 512, 32/8 heads");
                    fl = 8 * 4.0 * NH * HD * 512.0 * 513.0 / 2;
                    report(v->family, v->name, shape, time_op(op_attn, NULL, v->name), 0, fl);
                    free_meta(&meta_cur);
                } else {
                    /* Decode: T sequences of one new token after 1024 cached; GB/s of K and V. */
                    meta_cur = make_meta(T_cur, 1024, 1, POOL);
                    snprintf(shape, sizeof shape, "decode B %lld, ctx 1025", (long long)T_cur);
                    double by = t * 1025 * NKV * HD * 4 + t * (NH * HD * 4);
                    report(v->family, v->name, shape, time_op(op_attn, NULL, v->name), by, 0);
                    free_meta(&meta_cur);
                }
                break;
            case LR_GPU_FAM_LINEAR: {
                /* As the cuBLAS GEMMs below: weight bytes at T < 2048, FLOPs at 2048. */
                const struct {
                    const char *name;
                    int64_t n, k;
                } lm[] = {{"qkv_proj", QKVW, H}, {"o_proj", H, NH * HD}, {"gate_up_proj", 2 * NI, H},
                          {"down_proj", H, NI}, {"lm_head", V, H}};
                for (size_t i = 0; i < sizeof lm / sizeof lm[0]; i++) {
                    g_n = lm[i].n, g_k = lm[i].k;
                    snprintf(shape, sizeof shape, "%s T %lld (%lld x %lld)", lm[i].name, (long long)T_cur,
                             (long long)g_n, (long long)g_k);
                    double s = time_op(op_linear, NULL, v->name);
                    if (T_cur == 2048) report(v->family, v->name, shape, s, 0, 2 * t * (double)(g_n * g_k));
                    else report(v->family, v->name, shape, s, 2.0 * (double)(g_n * g_k) + t * (double)(g_k + g_n) * 2, 0);
                }
                break;
            }
            case LR_GPU_NUM_FAMILIES: /* no case for a family: -Wswitch says so */
                break;
            }
        }
    }
    /* The model's GEMMs (cuBLAS), for scale: weight bytes at T = 1, FLOPs at 2048. */
    struct {
        const char *name;
        int64_t n, k;
    } gm[] = {{"qkv_proj", QKVW, H}, {"o_proj", H, NH * HD}, {"gate_up_proj", 2 * NI, H},
              {"down_proj", H, NI}, {"lm_head", V, H}};
    for (size_t i = 0; i < sizeof gm / sizeof gm[0]; i++) {
        g_n = gm[i].n, g_k = gm[i].k;
        g_w = rand_dev((size_t)(g_n * g_k));
        const int64_t Ts[] = {1, 32, 2048};
        for (size_t ti = 0; ti < 3; ti++) {
            T_cur = Ts[ti];
            double s = time_op(op_gemm, NULL, NULL), t = (double)T_cur;
            snprintf(shape, sizeof shape, "%s T %lld (%lld x %lld)", gm[i].name, (long long)T_cur, (long long)g_n,
                     (long long)g_k);
            if (T_cur == 2048) report("gemm", "cublas", shape, s, 0, 2 * t * (double)(g_n * g_k));
            else report("gemm", "cublas", shape, s, 2.0 * (double)(g_n * g_k) + t * (double)(g_k + g_n) * 2, 0);
        }
        cudaFree(g_w);
    }
    if (js) {
        fprintf(js, "\n  ]\n}\n");
        fclose(js);
    }
    return 0;
}
#endif
