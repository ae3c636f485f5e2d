/* opsweep.h: the op sweep, in the library (gpu/opsweep.c): every registered kernel
 * variant of every family (gpu_ops.h), at F32, F16 and BF16, over a set of shapes, each
 * case judged as the model-level verdict judges a stage: fresh random inputs rounded to
 * the dtype on the host, outputs poisoned (0xff: NaN in all three dtypes), guard bytes
 * around every buffer, inputs checked unchanged, no NaN/Inf; against the float64
 * reference op with op-level criteria, and at F16/BF16 against the emulated reference at
 * the same precision in ulps (lr_op_budget, llamaref_ops.h). `llama-diff ops` and
 * tests/test_gpu_ops call it; a caller may add kernels of its own (targets), which is
 * how the test sweeps kernels with planted bugs and kernels simulated on the CPU
 * (host mode). Not installed. */
#ifndef LLAMAREF_OPSWEEP_H
#define LLAMAREF_OPSWEEP_H

#include "gpu_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A kernel to sweep: a family's launchers with gpu_ops.h's signatures. A NULL launcher is
 * the library's entry point (called with `name` as the variant). lr_opsweep_run sweeps
 * the registered variants as targets with every launcher NULL. */
typedef struct {
    const char *family, *name;
    int (*embedding)(const char *variant, void *out, const int64_t *ids, int64_t T, const void *w,
                     int64_t start, int64_t shard, int64_t H, lr_dtype dt, cudaStream_t s);
    int (*rms_norm)(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t H,
                    float eps, lr_dtype dt, cudaStream_t s);
    int (*fused_add_rms_norm)(const char *variant, void *y, float *residual, const void *x, const void *w,
                              int64_t T, int64_t H, float eps, lr_dtype dt, cudaStream_t s);
    int (*rotary)(const char *variant, void *x, int64_t ld, int64_t T, int64_t nheads, int64_t hd,
                  const int64_t *positions, const double *inv_freq, lr_dtype dt, cudaStream_t s);
    int (*silu_and_mul)(const char *variant, void *out, const void *gu, int64_t T, int64_t NI, lr_dtype dt,
                        cudaStream_t s);
    int (*silu)(void *out, const void *gu, int64_t T, int64_t NI, lr_dtype dt, cudaStream_t s);
    int (*reshape_and_cache)(const char *variant, void *k_cache, void *v_cache, const void *qkv, int64_t ld,
                             int64_t k_col, int64_t v_col, int64_t T, int64_t nkv, int64_t hd,
                             int64_t block_size, const int64_t *slot_mapping, lr_dtype dt, cudaStream_t s);
    int (*attention)(const char *variant, void *ctx, int64_t ldc, const void *q, int64_t ldq,
                     const void *k_cache, const void *v_cache, const lr_gpu_attn_meta *meta, int64_t T,
                     int64_t nh, int64_t nkv, int64_t hd, float scale, lr_dtype dt, lr_gpu_attn_ws *ws,
                     cudaStream_t s);
    int (*linear)(const char *variant, void *y, const void *x, const void *w, int64_t T, int64_t N, int64_t K,
                  lr_dtype dt, cublasHandle_t blas, cudaStream_t s); /* blas: NULL in host mode */
    /* attention: whose entry of the rounding map (lr_attention_rounds_p) says whether the
     * kernel rounds P; NULL: name */
    const char *rounds_p_like;
    /* the LR_KERNEL_<dtype> bits it takes (lr_gpu_variant.dtypes); 0: all three. A dtype it
     * does not declare is not run (its entry point would refuse it): one SKIPPED case. */
    uint32_t dtypes;
} lr_opsweep_target;

/* The sweep's own family beside the registry's: the small helpers (lr_gpu_sum, add_bias,
 * add_residual, convert), which have no variants; swept as "helpers/builtin". */
#define LR_OPSWEEP_HELPERS "helpers"

/* The most sequences of an attention case: the issue-19 decode batch of 32. */
#define LR_OPSWEEP_MAX_SEQS 32
/* One case's shape; each family reads its own fields (docs/llama-diff.md, "ops", lists
 * them with the --shape syntax). */
typedef struct {
    char label[24];           /* attention: the batch's name; helpers: the op (sum, add_bias, ...) */
    int64_t T, H;             /* tokens; embedding, rmsnorm: hidden; activation: intermediate (NI);
                               * add_bias: N */
    int64_t start, shard;     /* embedding: the rank's vocabulary rows */
    int64_t heads, hd, extra; /* rotary: heads rotated, head_dim, unrotated columns after them;
                               * attention: query heads, head_dim; sum: extra 1 in place */
    int64_t kv, bs, blocks;   /* cache, attention: kv heads, block size; cache: blocks;
                               * convert: kv is the source lr_dtype */
    int nseqs; /* attention: sequences (at most LR_OPSWEEP_MAX_SEQS), each past[s] cached + len[s] new */
    int64_t past[LR_OPSWEEP_MAX_SEQS], len[LR_OPSWEEP_MAX_SEQS];
    int64_t n, parts; /* helpers: elements, sum's parts */
    int64_t N, K;     /* linear: y (T, N) = x (T, K) w (N, K)^T; extra: x and w that many elements
                       * past a 16-byte boundary (a kernel's unaligned path) */
} lr_opsweep_shape;

/* Named shape sets. */
#define LR_OPSWEEP_SHAPE_SETS(X)                                                                             \
    X("fixtures", "the sweep's own: small and odd sizes, GQA/MQA, hd 8-256, the grid cap")                   \
    X("llama3-8b", "Llama-3-8B: H 4096, 32 heads, 8 kv heads, hd 128, I 14336; T 1, 32, 2048; "              \
                   "attention: decode of 1, 8 and 32 sequences; "                                            \
                   "linear: the 5 projections at T 1, 2, 4, 8, 32, 2048 (lm_head T <= 8)")                   \
    X("llama3-70b", "Llama-3-70B: H 8192, 64 heads, 8 kv heads, hd 128, I 28672; T 1, 32, 1024; "            \
                    "attention: decode of 1, 8 and 32 sequences; "                                           \
                    "linear: the 5 projections at T 1, 2, 4, 8, 32 (lm_head T <= 8)")

/* SKIPPED: a dtype the variant does not declare (one case per variant and dtype, its why
 * says so); not a failure. NOT_RUN: a planned case the sweep cannot run (a failure). */
typedef enum { LR_CASE_PASS, LR_CASE_FAIL, LR_CASE_ERROR, LR_CASE_NOT_RUN, LR_CASE_SKIPPED } lr_case_status;
const char *lr_case_status_name(lr_case_status s); /* "PASS", "FAIL", "ERROR", "NOT RUN", "SKIP" */

/* One case's outcome, handed to the callback as it ends. */
typedef struct {
    const char *family, *variant, *op; /* op: rms_norm or fused_add_rms_norm, silu_and_mul or silu, ... */
    lr_dtype dt;
    char shape[160]; /* "T 32 H 4096" */
    lr_case_status status;
    bool hard;      /* failed other than by a verdict: the op's status, CUDA, guards, inputs changed, NaN */
    char why[1024]; /* the first failure (or why not run) */
    int failures;   /* failing verdicts and checks */
    /* the worst of the case's outputs: the share of the float64 criteria used (the largest
     * of relative L2, worst token and worst element over their budgets; 0 for exact ops),
     * and at F16/BF16 the largest difference from the emulated reference in ulps (-1: none) */
    double f64_used, max_ulps;
    /* --perf: median seconds, bytes moved (inputs read once, outputs written once), FLOPs
     * (attention; else 0); 0 when not timed */
    double seconds, bytes, flops;
    /* --perf: the median seconds of a device-to-device copy of the same bytes (bytes / 2
     * read, bytes / 2 written), timed launch by launch as the case is: the ceiling at the
     * case's size, launch and ramp included; 0 when not timed or not measured */
    double copy_seconds;
} lr_opsweep_case;

typedef void (*lr_opsweep_cb)(const lr_opsweep_case *c, void *user);

typedef struct {
    const char *family;  /* NULL: every family */
    const char *variant; /* NULL: every variant (of family, or of every family) */
    int dtype;           /* -1: F32, F16 and BF16; else that lr_dtype */
    const char *shapes;  /* a set of LR_OPSWEEP_SHAPE_SETS (NULL: "fixtures") */
    const char *shape;   /* one custom case instead ("T=32,H=4096"; needs family) */
    uint64_t seed;
    bool registered; /* sweep the registry's variants (and the helpers unless family says otherwise) */
    const lr_opsweep_target *extra; /* and these */
    size_t nextra;
    bool host; /* buffers in host memory, launchers called on the host (extra
                * targets only: kernels simulated on the CPU); no device needed */
    /* skip a shape (returns false; user: lr_opsweep_run's); NULL keeps all */
    bool (*keep)(const char *family, const lr_opsweep_shape *s, void *user);
    bool perf;           /* time each case (cudaEvent; warmup, then the median of repeats) */
    int warmup, repeats; /* 0: 3 and 20 */
} lr_opsweep_opts;

void lr_opsweep_opts_init(lr_opsweep_opts *o); /* registered, every family, dtype -1, "fixtures" */

typedef struct {
    int64_t planned, run, passed, failed, errors, not_run;
    int64_t skipped;       /* dtypes a variant does not declare (not in planned) */
    double copy_bandwidth; /* --perf: bytes read + written per second, device-to-device (the ceiling) */
} lr_opsweep_summary;

/* The families the sweep knows (gpu_ops.h's that have a sweep, and "helpers"). */
bool lr_opsweep_has_sweep(const char *family);

/* Checks family, variant, dtype, shape set and shape spec without a device: LR_OK or
 * LR_E_INVAL naming the choices. */
int lr_opsweep_check(const lr_opsweep_opts *o);

/* Runs the sweep: cb (may be NULL) once per case, planned cases that cannot run included
 * (NOT_RUN: a family without a sweep, a custom shape that does not fit it). LR_OK when it
 * ran (cases may fail: see *sum); LR_E_INVAL on bad options; LR_E_CUDA without a device
 * (not in host mode). One sweep at a time per thread. */
int lr_opsweep_run(const lr_opsweep_opts *o, lr_opsweep_cb cb, void *user, lr_opsweep_summary *sum);

/* Device-to-device copy bandwidth, bytes read plus bytes written per second, of `bytes`
 * bytes: the median of `repeats` copies after `warmup` (the ceiling bench/ and --perf
 * measure against). */
int lr_gpu_copy_bandwidth(size_t bytes, int warmup, int repeats, double *out);

#ifdef __cplusplus
}
#endif
#endif
