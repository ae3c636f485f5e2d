/* cuda_backend.cu: the CUDA backend. The same packed, sharded weights as the CPU
 * reference (lr_plan per rank), converted once to the compute dtype (BF16, F16 or F32)
 * on the device; every op, the GEMMs included (the linear family: cuBLAS with float32
 * accumulation by default), from the kernel families of gpu_ops.h; a paged KV cache with
 * block tables as vLLM keeps it.
 *
 * Tensor parallelism runs in one of two modes:
 *  - NCCL: rank r on GPU r, one communicator over the host's GPUs (ncclCommInitAll),
 *    all-reduce after the embedding, o_proj and down_proj, all-gather of the logits.
 *    Across hosts the same code would start from ncclGetUniqueId on rank 0, broadcast
 *    out of band, and ncclCommInitRank on every process (docs/architecture.md).
 *  - single-GPU: every rank on GPU 0 in turn, the reductions done on the device by
 *    lr_gpu_sum, so the sharded code runs at any tp on one card.
 * tp = 1 makes no NCCL call. The residual stream is kept in float32 (fused into the
 * norms), which is where this path beats a bf16 residual. Stages are copied to the host
 * only when an observer is set.
 *
 * CUDA graphs (lr_options.cuda_graphs, off by default): a decode step (every sequence one
 * new token) is captured once per batch shape and replayed ("CUDA graphs" below). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.cuh"
#include "layer.h"
#include "rounding.h"

#define BLOCK_SIZE 16 /* tokens per KV-cache block */
#define MAX_TP 64     /* ranks per model */
/* The loader's staging buffers, two on the host (pinned) and two on each GPU (float32). */
#define LOAD_STAGE_BYTES ((size_t)64 << 20)
#define LOAD_STAGE_ELEMS ((int64_t)(LOAD_STAGE_BYTES / sizeof(float)))
#define MAX_GRAPHS 8 /* decode batch shapes held captured at once, per model */

/* Per-forward scratch of one rank, grown as batches grow. */
struct gpu_act {
    int64_t cap;        /* tokens */
    int64_t logits_cap; /* rows of logits (sized by compute_logits, not by the forward) */
    int64_t amax_cap;   /* entries (row, chunk) of amax */
    void *qkv, *ctx, *part, *gu, *act, *logits;
    void *amax; /* greedy: each (row, chunk)'s largest logit of the shard (float32), then its column */
};

struct gpu_rank {
    lr_tp_layout L;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;      /* cuBLAS's workspace (cublasSetWorkspace): no allocation inside a capture */
    lr_gpu_attn_ws *ws; /* attention's scratch: one per rank (the single-GPU mode's share a stream) */
    void *weights;   /* one allocation */
    lr_plan *plan;   /* this rank's packing plan: the shapes of its tensors */
    const void **w;  /* (plan count): the device tensor at each plan index */
    gpu_act a;
#ifdef LR_HAVE_NCCL
    ncclComm_t comm;
#endif
};

/* Buffers replicated on every device in use (one set in the single-GPU mode). */
struct gpu_replica {
    int64_t cap;
    void *hidden, *normed; /* (T, H) dt */
    float *residual;       /* (T, H) */
    float *residual_alt;   /* (LR_GPU_LINEAR_FUSED_MAX_T, H): the stream's other buffer, where a
                            * held norm's one kernel writes it (gpu_pass.res_alt); allocated
                            * once, with the norm fusion on */
    float *scratch;        /* (T, max width) float32, for observers; allocated only for them */
    float *sum;            /* (T, H) float32, hidden + residual for observers; with scratch */
    int64_t scratch_cap;
    int64_t *ids, *pos, *slots; /* (T) */
    int32_t *meta;         /* token_seq, token_keys (T); seq_start, len, past (B); block tables (B, max_blocks) */
    int64_t meta_cap;
    double *inv_freq; /* (hd / 2) */
    /* Structural faults only (lr_op_mods), allocated on first use: a theta fault's
     * frequencies (hd / 2), a mask fault's keys per token (fault_keys_cap). */
    double *fault_inv_freq;
    int32_t *fault_keys;
    int64_t fault_keys_cap;
};

/* Profiling (lr_model_set_profiling): a timeline of events on GPU 0's stream. Each mark
 * records an event that closes the interval since the previous one and charges it to an
 * op kind (PROF_UNTIMED: observer copies, charged to nothing). The forward and
 * compute_logits end synchronised, so prof_flush adds the intervals up then. In the NCCL
 * mode GPU 0's timeline is what is measured: its all-reduce includes waiting for the
 * other GPUs to reach it. */
#define PROF_UNTIMED (-1)
struct gpu_prof {
    bool on;
    cudaEvent_t *ev;
    int *op;
    int n, cap, created;
    lr_profile acc;
};

/* One decode batch shape's graphs, captured over one KV cache: one per stream in use
 * (nrep) and segment. One GPU: one segment. Over NCCL the step is cut at its all-reduces,
 * which run eagerly between the segments (the CUDA graphs section says why). An entry
 * that is not captured yet has had its eager warm-up step. */
struct gpu_graph {
    int64_t B;      /* sequences (= tokens) of the step; 0: a free entry */
    uint64_t kv_id; /* gpu_kv.id of the cache the graphs were captured over */
    bool captured;
    int nseg, maxseg;
    cudaGraph_t *g;     /* (maxseg, nrep): segment k of stream i at k * nrep + i */
    cudaGraphExec_t *x; /* (maxseg, nrep) */
};

struct gpu_model {
    lr_config cfg;
    lr_dtype dt;
    int tp, nrep; /* nrep: 1 (single-GPU mode) or tp (NCCL) */
    gpu_rank *ranks;
    lr_tp_layout *layouts; /* (tp): each rank's, for the composer */
    gpu_replica *reps;
    const char *variant[LR_GPU_NUM_FAMILIES]; /* by lr_gpu_family; NULL: the default */
    char *kernels; /* owns the strings variant[] points into */
    /* host results */
    void *hidden_host, *logits_host;
    int64_t hidden_cap, logits_cap;
    void *amax_host;  /* greedy: each rank's amax, rank after rank */
    int64_t amax_cap; /* entries (rank, row, chunk) */
    float *obs_host; /* (T, vocab): the logits in float32 for an observer */
    int64_t obs_cap;
    int64_t last_T; /* tokens of the last forward, whose final hidden is in reps[*].normed */
    size_t weight_bytes;    /* every rank's weights allocation, summed */
    size_t used_after_load; /* the GPUs' total - free at the end of create, summed */
    const lr_fault *faults; /* (num_faults): lr_model_set_faults, owned by the front */
    size_t num_faults;
    gpu_prof prof;
    /* CUDA graphs */
    bool graphs_opt; /* lr_options.cuda_graphs */
    bool graphs;     /* and every variant selected is in-tree (a plugin's launcher may
                      * allocate or synchronise, which a capture cannot hold) */
    gpu_graph graph[MAX_GRAPHS];
    lr_graph_stats gstats;
    uint64_t kv_serial; /* ids of the model's KV caches, never reused */
    /* The batch's metadata staged in pinned memory for its asynchronous upload:
     * ids, positions, slots (T int64 each), then the attention metadata (int32). */
    void *stage;
    size_t stage_cap;
};

struct gpu_kv {
    gpu_model *m; /* its model, which outlives it (lr_kv_cache_free comes first) */
    uint64_t id;  /* unique in the model: the graphs captured over it carry it */
    int64_t max_seqs, max_len, max_blocks, layers, tp;
    int32_t *block_table; /* host (max_seqs, max_blocks): physical block of each logical block */
    void **k, **v;        /* (layers * tp) device pools (num_blocks, BLOCK_SIZE, nkv_r, hd) */
};

static int rep_of(const gpu_model *m, int r) { return m->nrep == 1 ? 0 : r; }

/* ---- profiling --------------------------------------------------------------------------- */

/* Marks the end of an op that rank rk just enqueued (nothing unless profiling, and only
 * on GPU 0's stream; it then makes GPU 0 current). */
static void prof_mark(gpu_model *m, const gpu_rank *rk, int op) {
    gpu_prof *p = &m->prof;
    if (!p->on || rk->stream != m->ranks[0].stream) return;
    cudaSetDevice(m->ranks[0].device);
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 512;
        cudaEvent_t *ev = (cudaEvent_t *)realloc(p->ev, (size_t)cap * sizeof *ev);
        if (ev) p->ev = ev;
        int *ops = ev ? (int *)realloc(p->op, (size_t)cap * sizeof *ops) : NULL;
        if (ops) p->op = ops;
        if (!ev || !ops) return; /* out of memory: the rest of this pass goes untimed */
        p->cap = cap;
    }
    if (p->n == p->created) {
        if (cudaEventCreate(&p->ev[p->n]) != cudaSuccess) return;
        p->created++;
    }
    p->op[p->n] = op;
    if (cudaEventRecord(p->ev[p->n], rk->stream) == cudaSuccess) p->n++;
}

/* Starts a timeline (the first mark closes no interval). */
static void prof_begin(gpu_model *m) {
    if (!m->prof.on) return;
    m->prof.n = 0;
    prof_mark(m, &m->ranks[0], PROF_UNTIMED);
}

/* After GPU 0's stream is synchronised: adds the timeline's intervals to the counters. */
static void prof_flush(gpu_model *m) {
    gpu_prof *p = &m->prof;
    if (!p->on) return;
    cudaSetDevice(m->ranks[0].device);
    for (int i = 1; i < p->n; i++) {
        float ms = 0;
        if (p->op[i] == PROF_UNTIMED || cudaEventElapsedTime(&ms, p->ev[i - 1], p->ev[i]) != cudaSuccess) continue;
        p->acc.ns[p->op[i]] += (uint64_t)((double)ms * 1e6);
        p->acc.calls[p->op[i]]++;
    }
    p->n = 0;
}

static void cuda_set_profiling(void *impl, bool on) {
    gpu_model *m = (gpu_model *)impl;
    m->prof.on = on;
    m->prof.n = 0;
    if (on) memset(&m->prof.acc, 0, sizeof m->prof.acc);
}

static void cuda_get_profile(const void *impl, lr_profile *out) { *out = ((const gpu_model *)impl)->prof.acc; }

static int cuda_num_devices(const void *impl) { return ((const gpu_model *)impl)->nrep; }

static void cuda_memory(const void *impl, lr_memory *out) {
    const gpu_model *m = (const gpu_model *)impl;
    out->device_weights = m->weight_bytes;
    out->device_used = m->used_after_load;
    out->load_staging = 2 * LOAD_STAGE_BYTES;
}

static void cuda_set_faults(void *impl, const lr_fault *faults, size_t n) {
    gpu_model *m = (gpu_model *)impl;
    m->faults = faults;
    m->num_faults = n;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static void free_act(gpu_act *a) {
    void *p[] = {a->qkv, a->ctx, a->part, a->gu, a->act, a->logits, a->amax};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cudaFree(p[i]);
    memset(a, 0, sizeof *a);
}

static void free_rep(gpu_replica *r) {
    void *p[] = {r->hidden, r->normed, r->residual, r->residual_alt, r->scratch,        r->sum,       r->ids,
                 r->pos,    r->slots,  r->meta,     r->inv_freq,     r->fault_inv_freq, r->fault_keys};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) cudaFree(p[i]);
}

static void graphs_drop_all(gpu_model *m);

static void cuda_destroy(void *impl) {
    gpu_model *m = (gpu_model *)impl;
    if (!m) return;
    if (m->ranks) graphs_drop_all(m);
    /* In reverse: in the single-GPU mode rank 0 owns the stream the others borrow. */
    for (int r = m->ranks ? m->tp - 1 : -1; r >= 0; r--) {
        gpu_rank *rk = &m->ranks[r];
        cudaSetDevice(rk->device);
        if (rk->stream) cudaStreamSynchronize(rk->stream);
        free_act(&rk->a);
        cudaFree(rk->weights);
        if (rk->blas) cublasDestroy(rk->blas);
        cudaFree(rk->blas_ws);
        lr_gpu_attn_ws_free(rk->ws);
        if (rk->stream && (m->nrep > 1 || r == 0)) cudaStreamDestroy(rk->stream);
#ifdef LR_HAVE_NCCL
        if (rk->comm) ncclCommDestroy(rk->comm);
#endif
        free(rk->w);
        lr_plan_free(rk->plan);
    }
    for (int i = 0; m->reps && i < m->nrep; i++) {
        cudaSetDevice(m->nrep > 1 ? i : 0);
        free_rep(&m->reps[i]);
    }
    if (m->ranks && m->prof.created) {
        cudaSetDevice(m->ranks[0].device);
        for (int i = 0; i < m->prof.created; i++) cudaEventDestroy(m->prof.ev[i]);
    }
    free(m->prof.ev);
    free(m->prof.op);
    free(m->ranks);
    free(m->layouts);
    free(m->reps);
    free(m->kernels);
    cudaFreeHost(m->hidden_host);
    cudaFreeHost(m->logits_host);
    cudaFreeHost(m->amax_host);
    cudaFreeHost(m->stage);
    free(m->obs_host);
    free(m);
}

/* "rmsnorm=warp,attention=simple" -> variant[] (validated). */
static int parse_kernels(gpu_model *m, const char *spec) {
    if (!spec || !*spec) return LR_OK;
    if (!(m->kernels = strdup(spec))) return lr_fail(LR_E_NOMEM, "cuda: out of memory");
    char *save = NULL;
    for (char *item = strtok_r(m->kernels, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) return lr_fail(LR_E_INVAL, "kernels: \"%s\" is not family=name", item);
        *eq = '\0';
        /* An unknown family or variant: LR_E_INVAL listing the families (from gpu_ops.h's
         * table) or the family's variants. Past it, the family is in the table. */
        int rc = lr_gpu_variant_check(item, eq + 1);
        if (rc) return rc;
        m->variant[lr_gpu_family_find(item)] = eq + 1;
    }
    return LR_OK;
}

/* ---- loading ----------------------------------------------------------------------------- */

/* The loader streams: each packed tensor goes from the mapped checkpoint, in chunks of at
 * most LOAD_STAGE_BYTES of float32, through one of two pinned host buffers (converted
 * there to float32 exactly as lr_weights_build converts: a float64 file rounds once on
 * the host, then once more to the compute dtype on the device, as before) to one of two
 * float32 buffers on the rank's GPU, and is converted into its place in the rank's one
 * allocation. While the GPU copies and converts one buffer, the host fills the other.
 * The host holds the two staging buffers and the mapped pages of the chunk being read
 * (released after it), never a converted rank (docs/architecture.md, "Loading"). */

/* Each untied packed tensor's offset in the rank's one allocation (256-byte aligned, when
 * off is not NULL) and the allocation's size. */
static size_t rank_layout(const lr_plan *plan, size_t es, size_t *off) {
    size_t total = 0;
    for (size_t i = 0; i < lr_plan_count(plan); i++) {
        const lr_packed_desc *d = lr_plan_at(plan, i);
        if (d->tied_to >= 0) continue;
        if (off) off[i] = total;
        total += ((size_t)d->shape[0] * (size_t)d->shape[1] * es + 255) / 256 * 256;
    }
    return total;
}

/* Before any tensor is read: every rank's plan, and the device memory each GPU in use
 * needs for its ranks' weights and the load's staging against what it has free. A model
 * larger than the card fails here, naming the sizes, before the host reads a byte of it. */
static int preflight(gpu_model *m) {
    size_t need[MAX_TP] = {0}, es = lr_dtype_size(m->dt);
    for (int r = 0; r < m->tp; r++) {
        gpu_rank *rk = &m->ranks[r];
        rk->device = m->nrep > 1 ? r : 0;
        int rc = lr_plan_create(&m->cfg, m->tp, r, &rk->plan);
        if (rc) return rc;
        rk->L = *lr_plan_layout(rk->plan);
        m->layouts[r] = rk->L;
        need[rk->device] += rank_layout(rk->plan, es, NULL);
    }
    for (int d = 0; d < m->nrep; d++) {
        size_t free_b = 0, total_b = 0, want = need[d] + 2 * LOAD_STAGE_BYTES;
        cudaError_t e = cudaSetDevice(d);
        if (e == cudaSuccess) e = cudaMemGetInfo(&free_b, &total_b);
        if (e != cudaSuccess) return lr_fail(LR_E_DEVICE, "cuda: GPU %d: %s", d, cudaGetErrorString(e));
        int ranks = m->nrep > 1 ? 1 : m->tp;
        if (want > free_b)
            return lr_fail(
                LR_E_DEVICE,
                "cuda: the model's weights need %.2f GiB in %s on GPU %d (%d rank%s of tp %d) and %.0f MiB "
                "to load them, %.2f GiB in all; the GPU has %.2f GiB free of %.2f GiB: use a lower "
                "precision or a larger tp (nothing was read)",
                (double)need[d] / (1 << 30), lr_dtype_name(m->dt), d, ranks, ranks == 1 ? "" : "s", m->tp,
                (double)(2 * LOAD_STAGE_BYTES) / (1 << 20), (double)want / (1 << 30),
                (double)free_b / (1 << 30), (double)total_b / (1 << 30));
    }
    return LR_OK;
}

/* Streams one rank's packed weights into a single device allocation, in dt, through the
 * pinned host buffers host[0], host[1] (LOAD_STAGE_BYTES each). */
static int upload_rank(gpu_model *m, gpu_rank *rk, const lr_checkpoint *ck, int r, float *const host[2]) {
    const lr_plan *plan = rk->plan;
    size_t n = lr_plan_count(plan), es = lr_dtype_size(m->dt), total = 0;
    size_t *off = (size_t *)calloc(n ? n : 1, sizeof *off);
    const void **dev = rk->w = (const void **)calloc(n ? n : 1, sizeof *dev);
    float *stage[2] = {NULL, NULL};
    cudaEvent_t done[2] = {NULL, NULL};
    int rc = LR_OK;
    if (!off || !dev) rc = lr_fail(LR_E_NOMEM, "cuda: out of memory");
    if (rc == LR_OK) {
        total = rank_layout(plan, es, off);
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        cudaError_t e = cudaMalloc(&rk->weights, total ? total : 1);
        for (int b = 0; e == cudaSuccess && b < 2; b++)
            e = cudaMalloc((void **)&stage[b], LOAD_STAGE_BYTES);
        if (e != cudaSuccess) {
            cudaGetLastError(); /* an allocation failure is not sticky: clear it */
            rc = lr_fail(LR_E_DEVICE,
                         "cuda: rank %d: the model's weights need %.2f GiB in %s on GPU %d, which has %.2f GiB "
                         "free of %.2f GiB (%s): use a lower precision or a larger tp",
                         r, (double)total / (1 << 30), lr_dtype_name(m->dt), rk->device,
                         (double)free_b / (1 << 30), (double)total_b / (1 << 30), cudaGetErrorString(e));
        }
    }
    /* The vocabulary's padding rows are in no slice: zero, as lr_weights_build leaves them. */
    if (rc == LR_OK && cudaMemsetAsync(rk->weights, 0, total ? total : 1, rk->stream) != cudaSuccess)
        rc = lr_fail(LR_E_DEVICE, "cuda: rank %d: clearing the weights failed", r);
    for (int b = 0; rc == LR_OK && b < 2; b++)
        if (cudaEventCreateWithFlags(&done[b], cudaEventDisableTiming) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: rank %d: cannot create the loader's events", r);
    int64_t k = 0; /* chunks so far: chunk k goes through buffer k % 2 */
    for (size_t i = 0; rc == LR_OK && i < n; i++) {
        const lr_packed_desc *d = lr_plan_at(plan, i);
        if (d->tied_to >= 0) {
            dev[i] = dev[d->tied_to];
            continue;
        }
        dev[i] = (char *)rk->weights + off[i];
        lr_chunk c = {0};
        while (rc == LR_OK && lr_packed_next_chunk(d, LOAD_STAGE_ELEMS, &c)) {
            int b = (int)(k++ % 2);
            /* buffer b's previous chunk has been copied and converted (an event never
             * recorded is complete) */
            cudaError_t e = cudaEventSynchronize(done[b]);
            if (e == cudaSuccess) {
                rc = lr_packed_read_chunk(ck, d, &c, LR_F32, host[b]);
                if (rc) break;
                /* Read: its source's mapped pages need not stay resident (the file stays
                 * mapped; what a later chunk reads faults in again), so the host holds
                 * one chunk's pages at a time, not a tensor's. */
                lr_checkpoint_release(ck, d->slices[c.slice].src);
                e = cudaMemcpyAsync(stage[b], host[b], (size_t)c.count * sizeof(float),
                                    cudaMemcpyHostToDevice, rk->stream);
            }
            if (e != cudaSuccess) {
                rc = lr_fail(LR_E_DEVICE, "cuda: uploading %s: %s", d->name, cudaGetErrorString(e));
                break;
            }
            rc = lr_gpu_convert((char *)rk->weights + off[i] + (size_t)c.dst0 * es, m->dt, stage[b], LR_F32,
                                c.count, rk->stream);
            if (rc == LR_OK && cudaEventRecord(done[b], rk->stream) != cudaSuccess)
                rc = lr_fail(LR_E_DEVICE, "cuda: uploading %s: cannot record an event", d->name);
        }
    }
    /* Whatever happened, nothing may still read the host buffers when this returns. */
    cudaError_t e = rk->stream ? cudaStreamSynchronize(rk->stream) : cudaSuccess;
    if (e != cudaSuccess && rc == LR_OK)
        rc = lr_fail(LR_E_DEVICE, "cuda: rank %d: uploading the weights failed: %s", r,
                     cudaGetErrorString(e));
    for (int b = 0; b < 2; b++) {
        if (done[b]) cudaEventDestroy(done[b]);
        cudaFree(stage[b]);
    }
    if (rc == LR_OK) m->weight_bytes += total;
    free(off);
    return rc;
}

/* cuBLAS's workspace, set on the handle (after cublasSetStream, which resets it): a
 * captured GEMM may not allocate one. Every model sets it, with graphs or without, so
 * that cuBLAS sees the same workspace either way and picks the same algorithms; the size
 * is what cuBLAS documents for its own default (32 MiB from Hopper on, 4 MiB before). */
static int blas_workspace(gpu_rank *rk) {
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, rk->device));
    size_t bytes = major >= 9 ? (size_t)32 << 20 : (size_t)4 << 20;
    cudaError_t e = cudaMalloc(&rk->blas_ws, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lr_fail(LR_E_DEVICE, "cuda: GPU %d: cannot allocate %zu MiB for cuBLAS's workspace: %s", rk->device,
                       bytes >> 20, cudaGetErrorString(e));
    }
    CUBLAS_CHECK(cublasSetWorkspace(rk->blas, rk->blas_ws, bytes));
    return LR_OK;
}

/* Whether the variant picked for family f (NULL: the in-tree default) is a plugin's. */
static bool is_plugin_variant(int f, const char *name) {
    if (!name) return false;
    const char *fam = lr_gpu_family_name((lr_gpu_family)f);
    for (size_t i = 0; fam && i < lr_gpu_variant_count(); i++) {
        const lr_gpu_variant *v = lr_gpu_variant_at(i);
        if (strcmp(v->family, fam) == 0 && strcmp(v->name, name) == 0) return v->plugin != NULL;
    }
    return false;
}

static int cuda_create(const lr_checkpoint *ck, const lr_options *opt, void **impl) {
    if (opt->precision != LR_BF16 && opt->precision != LR_F16 && opt->precision != LR_F32)
        return lr_fail(LR_E_INVAL, "cuda backend: precision %s is not supported (bf16, fp16 or fp32)",
                       lr_dtype_name(opt->precision));
    int ndev = 0;
    cudaError_t e = cudaGetDeviceCount(&ndev);
    if (e != cudaSuccess || ndev == 0)
        return lr_fail(LR_E_DEVICE, "cuda backend: no CUDA device (%s)",
                       e == cudaSuccess ? "none found" : cudaGetErrorString(e));
    if (opt->tp_size > MAX_TP) return lr_fail(LR_E_TP, "cuda backend: tp %d is more than %d", opt->tp_size, MAX_TP);
    gpu_model *m = (gpu_model *)calloc(1, sizeof *m);
    if (!m) return lr_fail(LR_E_NOMEM, "cuda: out of memory");
    m->cfg = *lr_checkpoint_config(ck);
    m->dt = opt->precision;
    m->tp = opt->tp_size;
    m->nrep = 1;
#ifdef LR_HAVE_NCCL
    if (m->tp > 1 && opt->num_devices != 1 && ndev >= m->tp) m->nrep = m->tp;
#endif
    if (opt->num_devices > 1 && m->nrep != opt->num_devices) {
        cuda_destroy(m);
        return lr_fail(LR_E_DEVICE, "cuda backend: %d GPUs asked for tp %d, %d present%s", opt->num_devices,
                       m->tp, ndev,
#ifdef LR_HAVE_NCCL
                       ""
#else
                       " (built without NCCL)"
#endif
        );
    }
    int rc = parse_kernels(m, opt->kernels);
    m->graphs_opt = opt->cuda_graphs;
    m->graphs = opt->cuda_graphs;
    for (int f = 0; f < LR_GPU_NUM_FAMILIES; f++)
        if (is_plugin_variant(f, m->variant[f])) m->graphs = false;
    m->ranks = (gpu_rank *)calloc((size_t)m->tp, sizeof *m->ranks);
    m->reps = (gpu_replica *)calloc((size_t)m->nrep, sizeof *m->reps);
    m->layouts = (lr_tp_layout *)calloc((size_t)m->tp, sizeof *m->layouts);
    if (rc == LR_OK && (!m->ranks || !m->reps || !m->layouts)) rc = lr_fail(LR_E_NOMEM, "cuda: out of memory");
    if (rc == LR_OK) rc = preflight(m);
    /* The loader's pinned host buffers, shared by every rank (portable: any GPU's). */
    float *host[2] = {NULL, NULL};
    for (int b = 0; rc == LR_OK && b < 2; b++)
        if ((e = cudaHostAlloc((void **)&host[b], LOAD_STAGE_BYTES, cudaHostAllocPortable)) != cudaSuccess) {
            cudaGetLastError();
            rc = lr_fail(LR_E_NOMEM, "cuda: cannot pin %.0f MiB of host memory to load the weights: %s",
                         (double)LOAD_STAGE_BYTES / (1 << 20), cudaGetErrorString(e));
        }
    for (int r = 0; rc == LR_OK && r < m->tp; r++) {
        gpu_rank *rk = &m->ranks[r];
        if ((e = cudaSetDevice(rk->device)) != cudaSuccess) {
            rc = lr_fail(LR_E_DEVICE, "cuda: GPU %d: %s", rk->device, cudaGetErrorString(e));
            break;
        }
        /* One stream per GPU: in the single-GPU mode the ranks share GPU 0's. */
        if (m->nrep > 1 || r == 0)
            e = cudaStreamCreateWithFlags(&rk->stream, cudaStreamNonBlocking);
        else
            rk->stream = m->ranks[0].stream;
        if (e != cudaSuccess || lr_gpu_blas_create(&rk->blas) != LR_OK ||
            cublasSetStream(rk->blas, rk->stream) != CUBLAS_STATUS_SUCCESS) {
            rc = lr_fail(LR_E_DEVICE, "cuda: GPU %d: cannot create a stream and a cuBLAS handle", rk->device);
            break;
        }
        if ((rc = blas_workspace(rk)) != LR_OK) break;
        if ((rc = lr_gpu_attn_ws_create(&rk->ws)) != LR_OK) break;
        rc = upload_rank(m, rk, ck, r, host);
    }
    for (int b = 0; b < 2; b++)
        cudaFreeHost(host[b]);
    for (int i = 0; rc == LR_OK && i < m->nrep; i++) {
        cudaSetDevice(m->nrep > 1 ? i : 0);
        int64_t half = m->cfg.head_dim / 2;
        double *inv = (double *)malloc((size_t)half * sizeof *inv);
        if (!inv) {
            rc = lr_fail(LR_E_NOMEM, "cuda: out of memory");
            break;
        }
        lr_rope_inv_freq(&m->cfg, inv);
        e = cudaMalloc((void **)&m->reps[i].inv_freq, (size_t)half * sizeof *inv);
        if (e == cudaSuccess) e = cudaMemcpy(m->reps[i].inv_freq, inv, (size_t)half * sizeof *inv, cudaMemcpyHostToDevice);
        free(inv);
        if (e != cudaSuccess) rc = lr_fail(LR_E_DEVICE, "cuda: %s", cudaGetErrorString(e));
    }
#ifdef LR_HAVE_NCCL
    if (rc == LR_OK && m->nrep > 1) {
        ncclComm_t *comms = (ncclComm_t *)calloc((size_t)m->tp, sizeof *comms);
        int *devs = (int *)calloc((size_t)m->tp, sizeof *devs);
        for (int r = 0; comms && devs && r < m->tp; r++) devs[r] = r;
        /* NCCL's environment (NCCL_NVLS_ENABLE=0 where NVLink SHARP multicast must stay
         * off) is the caller's: the library sets none of it (docs/architecture.md). */
        ncclResult_t ne = comms && devs ? ncclCommInitAll(comms, m->tp, devs) : ncclSystemError;
        if (ne != ncclSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: ncclCommInitAll over %d GPUs: %s", m->tp, ncclGetErrorString(ne));
        for (int r = 0; ne == ncclSuccess && r < m->tp; r++) m->ranks[r].comm = comms[r];
        free(comms);
        free(devs);
    }
#endif
    for (int d = 0; rc == LR_OK && d < m->nrep; d++) {
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(d) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            m->used_after_load += total_b - free_b;
    }
    if (rc) {
        cuda_destroy(m);
        return rc;
    }
    *impl = m;
    return LR_OK;
}

/* ---- KV cache ------------------------------------------------------------------------------ */

static void graphs_drop_kv(gpu_model *m, uint64_t kv_id);

static void cuda_kv_free(void *p) {
    gpu_kv *c = (gpu_kv *)p;
    if (!c) return;
    if (c->m) graphs_drop_kv(c->m, c->id);
    for (int64_t i = 0; c->k && i < c->layers * c->tp; i++) {
        cudaFree(c->k[i]);
        cudaFree(c->v[i]);
    }
    free(c->k);
    free(c->v);
    free(c->block_table);
    free(c);
}

static int64_t gcd(int64_t a, int64_t b) { return b ? gcd(b, a % b) : a; }

static int cuda_kv_create(void *impl, int64_t max_seqs, int64_t max_len, void **out) {
    gpu_model *m = (gpu_model *)impl;
    gpu_kv *c = (gpu_kv *)calloc(1, sizeof *c);
    if (!c) return lr_fail(LR_E_NOMEM, "kv cache: out of memory");
    c->max_seqs = max_seqs;
    c->max_len = max_len;
    c->max_blocks = (max_len + BLOCK_SIZE - 1) / BLOCK_SIZE;
    c->layers = m->cfg.num_hidden_layers;
    c->tp = m->tp;
    int64_t nblocks = max_seqs * c->max_blocks;
    c->block_table = (int32_t *)malloc((size_t)nblocks * sizeof *c->block_table);
    c->k = (void **)calloc((size_t)(c->layers * c->tp), sizeof *c->k);
    c->v = (void **)calloc((size_t)(c->layers * c->tp), sizeof *c->v);
    if (nblocks > INT32_MAX) {
        cuda_kv_free(c);
        return lr_fail(LR_E_CAPACITY, "kv cache: %lld slots x %lld tokens need more than 2^31 blocks",
                       (long long)max_seqs, (long long)max_len);
    }
    if (!c->block_table || !c->k || !c->v) {
        cuda_kv_free(c);
        return lr_fail(LR_E_NOMEM, "kv cache: out of memory");
    }
    /* Logical blocks map to physical blocks through a fixed scramble (a stride coprime
     * with the pool size), so that block tables are exercised, not bypassed. */
    int64_t stride = 7;
    while (gcd(stride, nblocks) != 1) stride += 2;
    for (int64_t i = 0; i < nblocks; i++) c->block_table[i] = (int32_t)((i * stride) % nblocks);
    size_t per = (size_t)nblocks * BLOCK_SIZE * (size_t)(m->ranks[0].L.kv_size) * lr_dtype_size(m->dt);
    for (int64_t l = 0; l < c->layers; l++) {
        for (int r = 0; r < m->tp; r++) {
            cudaSetDevice(m->ranks[r].device);
            size_t i = (size_t)(l * m->tp + r);
            cudaError_t e = cudaMalloc(&c->k[i], per);
            if (e == cudaSuccess) e = cudaMalloc(&c->v[i], per);
            if (e != cudaSuccess) {
                cudaGetLastError(); /* clear the sticky-free allocation error */
                cuda_kv_free(c);
                return lr_fail(LR_E_DEVICE, "kv cache: cannot allocate 2 x %.1f GiB for %lld slots x %lld tokens on GPU %d: %s",
                               (double)per / (1 << 30), (long long)max_seqs, (long long)max_len, m->ranks[r].device,
                               cudaGetErrorString(e));
            }
        }
    }
    c->m = m;
    c->id = ++m->kv_serial;
    *out = c;
    return LR_OK;
}

/* lr_kv_cache_reset: nothing a graph holds depends on what the cache holds (every step's
 * lengths, slots and tables are uploaded before it runs), but a reset starts a new run,
 * and its graphs are captured afresh rather than trusted across it. */
static void cuda_kv_reset(void *p) {
    gpu_kv *c = (gpu_kv *)p;
    if (c && c->m) graphs_drop_kv(c->m, c->id);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static int grow(void **p, size_t bytes) {
    cudaFree(*p);
    *p = NULL;
    CUDA_CHECK(cudaMalloc(p, bytes ? bytes : 1));
    return LR_OK;
}

/* Columns of the float32 scratch that observers, isolation and faults go through: the
 * widest buffer a stage is read from or written to. */
static int64_t widest(const gpu_model *m) {
    const lr_config *c = &m->cfg;
    int64_t w = c->hidden_size;
    int64_t d[] = {c->intermediate_size, c->num_attention_heads * c->head_dim,
                   m->ranks[0].L.q_size + 2 * m->ranks[0].L.kv_size, 2 * m->ranks[0].L.intermediate};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) w = d[i] > w ? d[i] : w;
    return w;
}

/* observe: the forward has an observer or an injector (the float32 scratch, host rows). */
static int ensure_buffers(gpu_model *m, int64_t T, int64_t nseq, int64_t max_blocks, bool observe) {
    size_t es = lr_dtype_size(m->dt);
    const lr_tp_layout *L = &m->ranks[0].L;
    int64_t H = m->cfg.hidden_size, W = widest(m);
    int rc;
    /* Growing frees buffers a captured graph points into: drop the graphs first. */
    bool grows = false;
    for (int r = 0; r < m->tp; r++)
        grows |= m->ranks[r].a.cap < T;
    for (int i = 0; i < m->nrep; i++)
        grows |= m->reps[i].cap < T || m->reps[i].meta_cap < 2 * T + 3 * nseq + nseq * max_blocks;
    if (grows) graphs_drop_all(m);
    for (int r = 0; r < m->tp; r++) {
        gpu_rank *rk = &m->ranks[r];
        if (rk->a.cap >= T) continue;
        cudaSetDevice(rk->device);
        int64_t qkvw = L->q_size + 2 * L->kv_size;
        if ((rc = grow(&rk->a.qkv, (size_t)(T * qkvw) * es)) || (rc = grow(&rk->a.ctx, (size_t)(T * L->q_size) * es)) ||
            (rc = grow(&rk->a.part, (size_t)(m->tp > 1 ? T * H : 1) * es)) ||
            (rc = grow(&rk->a.gu, (size_t)(T * 2 * L->intermediate) * es)) ||
            (rc = grow(&rk->a.act, (size_t)(T * L->intermediate) * es)))
            return rc;
        rk->a.cap = T;
    }
    int64_t meta = 2 * T + 3 * nseq + nseq * max_blocks;
    for (int i = 0; i < m->nrep; i++) {
        gpu_replica *p = &m->reps[i];
        cudaSetDevice(m->nrep > 1 ? i : 0);
        if (p->cap < T) {
            if ((rc = grow(&p->hidden, (size_t)(T * H) * es)) || (rc = grow(&p->normed, (size_t)(T * H) * es)) ||
                (rc = grow((void **)&p->residual, (size_t)(T * H) * sizeof(float))) ||
                (rc = grow((void **)&p->ids, (size_t)T * 8)) || (rc = grow((void **)&p->pos, (size_t)T * 8)) ||
                (rc = grow((void **)&p->slots, (size_t)T * 8)))
                return rc;
            p->cap = T;
        }
        if (!p->residual_alt && lr_gpu_norm_fuse() &&
            (rc = grow((void **)&p->residual_alt, (size_t)(LR_GPU_LINEAR_FUSED_MAX_T * H) * sizeof(float))))
            return rc;
        if (observe && p->scratch_cap < T) {
            if ((rc = grow((void **)&p->scratch, (size_t)(T * W) * sizeof(float))) ||
                (rc = grow((void **)&p->sum, (size_t)(T * H) * sizeof(float))))
                return rc;
            p->scratch_cap = T;
        }
        if (p->meta_cap < meta) {
            if ((rc = grow((void **)&p->meta, (size_t)meta * sizeof(int32_t)))) return rc;
            p->meta_cap = meta;
        }
    }
    return LR_OK;
}

/* y (T, N) = x (T, K) @ w (N, K)^T + b, every tensor dense (the rank's packed weight
 * and its own activation buffers), through the linear family's selected variant (the
 * default: cuBLAS) on the rank's handle and stream; the bias is added after. */
static int linear(gpu_model *m, gpu_rank *rk, void *y, const void *x, const void *w, const void *b, int64_t T,
                  int64_t N, int64_t K) {
    int rc = lr_gpu_linear(m->variant[LR_GPU_FAM_LINEAR], y, x, w, T, N, K, m->dt, rk->blas, rk->stream);
    if (rc) return rc;
    return b ? lr_gpu_add_bias(y, b, T, N, m->dt, rk->stream) : LR_OK;
}

/* Sums the ranks' partial results (T, H) into every replica's hidden (tp > 1). */
static int all_reduce(gpu_model *m, int64_t T) {
    int64_t n = T * m->cfg.hidden_size;
    if (m->nrep == 1) {
        const void *parts[MAX_TP] = {NULL};
        for (int r = 0; r < m->tp; r++) parts[r] = m->ranks[r].a.part;
        return lr_gpu_sum(m->reps[0].hidden, parts, m->tp, n, m->dt, m->ranks[0].stream);
    }
#ifdef LR_HAVE_NCCL
    ncclDataType_t t = m->dt == LR_BF16 ? ncclBfloat16 : m->dt == LR_F16 ? ncclFloat16 : ncclFloat32;
    NCCL_CHECK(ncclGroupStart());
    for (int r = 0; r < m->tp; r++)
        NCCL_CHECK(ncclAllReduce(m->ranks[r].a.part, m->reps[r].hidden, (size_t)n, t, ncclSum, m->ranks[r].comm,
                                 m->ranks[r].stream));
    NCCL_CHECK(ncclGroupEnd());
    return LR_OK;
#else
    return lr_fail(LR_E_DEVICE, "cuda: multi-GPU without NCCL");
#endif
}

/* ---- forward ------------------------------------------------------------------------------- */

/* Builds and uploads token metadata: ids, positions, slot mapping, attention meta, from
 * pinned staging into the replicas' buffers, which stay at their addresses while their
 * capacity does (a captured graph reads them there). graph: max_keys is the cache's
 * capacity, not this step's most (lr_gpu_attn_meta), so that the kernel arguments of a
 * decode step do not change from step to step. */
static int upload_batch(gpu_model *m, const lr_batch *b, const lr_seq_span *spans, const gpu_kv *kv,
                        lr_gpu_attn_meta *meta, bool graph) {
    int64_t T = b->num_tokens, B = b->num_seqs, MB = kv->max_blocks;
    int64_t nmeta = 2 * T + 3 * B + B * MB;
    size_t need = (size_t)(3 * T) * sizeof(int64_t) + (size_t)nmeta * sizeof(int32_t);
    if (m->stage_cap < need) {
        cudaFreeHost(m->stage);
        m->stage = NULL;
        m->stage_cap = 0;
        cudaError_t e = cudaMallocHost(&m->stage, need);
        if (e != cudaSuccess) {
            cudaGetLastError();
            return lr_fail(LR_E_NOMEM, "cuda: cannot pin %zu bytes for the batch's metadata: %s", need,
                           cudaGetErrorString(e));
        }
        m->stage_cap = need;
    }
    /* Each call waits for its copies (below), so no copy still reads the staging. */
    int64_t *ids = (int64_t *)m->stage, *pos = ids + T, *slots = pos + T;
    int32_t *h = (int32_t *)(slots + T);
    memcpy(ids, b->input_ids, (size_t)T * sizeof *ids);
    memcpy(pos, b->positions, (size_t)T * sizeof *pos);
    int32_t *tseq = h, *tkeys = h + T, *sstart = h + 2 * T, *slen = sstart + B, *spast = slen + B, *bt = spast + B;
    int64_t max_len = 0, max_keys = 0;
    for (int64_t s = 0; s < B; s++) {
        const lr_seq_span *sp = &spans[s];
        sstart[s] = (int32_t)sp->start;
        slen[s] = (int32_t)sp->len;
        spast[s] = (int32_t)sp->past;
        memcpy(bt + s * MB, kv->block_table + sp->slot * MB, (size_t)MB * sizeof *bt);
        max_len = sp->len > max_len ? sp->len : max_len;
        for (int64_t j = 0; j < sp->len; j++) {
            int64_t t = sp->start + j, key = sp->past + j;
            tseq[t] = (int32_t)s;
            tkeys[t] = (int32_t)(key + 1);
            slots[t] = (int64_t)kv->block_table[sp->slot * MB + key / BLOCK_SIZE] * BLOCK_SIZE + key % BLOCK_SIZE;
            max_keys = key + 1 > max_keys ? key + 1 : max_keys;
        }
    }
    int rc = LR_OK;
    for (int i = 0; i < m->nrep && rc == LR_OK; i++) {
        gpu_replica *p = &m->reps[i];
        cudaStream_t s = m->ranks[m->nrep > 1 ? i : 0].stream;
        cudaSetDevice(m->nrep > 1 ? i : 0);
        if (cudaMemcpyAsync(p->ids, ids, (size_t)T * 8, cudaMemcpyHostToDevice, s) != cudaSuccess ||
            cudaMemcpyAsync(p->pos, pos, (size_t)T * 8, cudaMemcpyHostToDevice, s) != cudaSuccess ||
            cudaMemcpyAsync(p->slots, slots, (size_t)T * 8, cudaMemcpyHostToDevice, s) != cudaSuccess ||
            cudaMemcpyAsync(p->meta, h, (size_t)nmeta * sizeof *h, cudaMemcpyHostToDevice, s) != cudaSuccess ||
            cudaStreamSynchronize(s) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: uploading the batch failed");
    }
    /* The meta pointers are the same offsets in every replica; set for replica 0 here and
     * rebased per replica by the caller. */
    int32_t *d = m->reps[0].meta;
    *meta = lr_gpu_attn_meta{d + 2 * T + 3 * B, d, d + T, d + 2 * T, d + 2 * T + B, d + 2 * T + 2 * B,
                             B, MB, BLOCK_SIZE, max_len, graph ? kv->max_len : max_keys};
    return rc;
}

static lr_gpu_attn_meta rebase(const gpu_model *m, const lr_gpu_attn_meta *meta, int rep) {
    lr_gpu_attn_meta x = *meta;
    const int32_t *base0 = m->reps[0].meta, *base = m->reps[rep].meta;
    x.block_tables = base + (meta->block_tables - base0);
    x.token_seq = base + (meta->token_seq - base0);
    x.token_keys = base + (meta->token_keys - base0);
    x.seq_start = base + (meta->seq_start - base0);
    x.seq_len = base + (meta->seq_len - base0);
    x.seq_past = base + (meta->seq_past - base0);
    return x;
}

#define TRY(call)                                                                          \
    do {                                                                                   \
        int rc_ = (call);                                                                  \
        if (rc_) return rc_;                                                               \
    } while (0)

/* ---- the ops of the layer composer (ref/core/layer.h) ------------------------------------ */

/* One forward in progress: what the ops see through the composer's void *be. */
struct gpu_pass {
    gpu_model *m;
    gpu_graph *cap; /* the graph being captured (NULL: eager); cap_open: its streams capture */
    bool cap_open;
    gpu_kv *kv;
    const lr_gpu_attn_meta *meta; /* replica 0's; rebase() for the others */
    int64_t T;
    const lr_batch *b;
    const lr_seq_span *spans; /* (b->num_seqs) */
    bool res_alt;             /* the stream is in residual_alt (a held norm's one kernel moved it there) */
};

/* The buffer the residual stream is in now. Each held norm's kernel reads it from one of
 * the two and writes it to the other (every block reads it while block 0 writes it); a pass
 * starts in residual, and a captured graph replays the buffers its capture chose. */
static float *stream_now(const gpu_pass *p, const gpu_replica *rep) {
    return p->res_alt ? rep->residual_alt : rep->residual;
}

/* The device that holds replica i, and the rank whose stream and weights serve it. */
static gpu_rank *rank_of_replica(gpu_model *m, int i) { return &m->ranks[m->nrep > 1 ? i : 0]; }

/* A composer buffer as rank r sees it (replicated buffers: r's replica). */
static void *buf(gpu_pass *p, lr_buf b, int r) {
    gpu_model *m = p->m;
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    gpu_act *a = &m->ranks[r].a;
    switch (b) {
    case LR_BUF_HIDDEN: return rep->hidden;
    case LR_BUF_RESIDUAL:
        return stream_now(p, rep);
    case LR_BUF_NORMED: return rep->normed;
    case LR_BUF_SUM: return rep->sum;
    case LR_BUF_QKV: return a->qkv;
    case LR_BUF_CTX: return a->ctx;
    case LR_BUF_PART: return a->part;
    case LR_BUF_GATE_UP: return a->gu;
    case LR_BUF_ACT: return a->act;
    default: return NULL;
    }
}

/* The dtype each buffer is kept in: the rounding map's (ref/core/rounding.h), which the
 * CPU reference's emulated bf16/fp16 path follows too. */
static lr_dtype buf_dtype(const gpu_model *m, lr_buf b) { return lr_buf_dtype(b, m->dt); }

static const void *weight(const gpu_rank *rk, int index) { return index < 0 ? NULL : rk->w[index]; }

static int op_embedding(void *be, int r, lr_buf out, int w) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    cudaSetDevice(rk->device);
    return lr_gpu_embedding(m->variant[LR_GPU_FAM_EMBEDDING], buf(p, out, r), m->reps[rep_of(m, r)].ids, p->T, weight(rk, w),
                            rk->L.vocab_start, rk->L.vocab_shard, m->cfg.hidden_size, m->dt, rk->stream);
}

/* On every replica; the float32 residual stream starts as 0 + hidden. */
static int op_rms_norm(void *be, int w, bool add, const lr_op_mods *mods) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    int64_t T = p->T, H = m->cfg.hidden_size;
    for (int i = 0; i < m->nrep; i++) {
        gpu_replica *rep = &m->reps[i];
        gpu_rank *rk = rank_of_replica(m, i);
        cudaSetDevice(rk->device);
        float *stream = stream_now(p, rep);
        if (!add) CUDA_CHECK(cudaMemsetAsync(stream, 0, (size_t)(T * H) * sizeof(float), rk->stream));
        TRY(lr_gpu_fused_add_rms_norm(m->variant[LR_GPU_FAM_RMSNORM], rep->normed, stream, rep->hidden,
                                      weight(rk, w), T, H, (float)mods->rms_eps, m->dt, rk->stream));
    }
    return LR_OK;
}

static int op_linear(void *be, int r, lr_buf out, lr_buf in, int w, int b) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_rank *rk = &p->m->ranks[r];
    const lr_packed_desc *d = lr_plan_at(rk->plan, (size_t)w); /* (N, K) */
    cudaSetDevice(rk->device);
    return linear(p->m, rk, buf(p, out, r), buf(p, in, r), weight(rk, w), weight(rk, b), p->T, d->shape[0],
                  d->shape[1]);
}

/* Host data a structural fault needs on rank rk's device: into *dev (grown to bytes when
 * *cap is smaller; cap NULL: a fixed size already allocated once), on the rank's stream,
 * done before the host buffer can go. */
static int fault_upload(gpu_rank *rk, void **dev, int64_t *cap, const void *src, size_t bytes) {
    if (!*dev || (cap && *cap < (int64_t)bytes)) {
        TRY(grow(dev, bytes));
        if (cap) *cap = (int64_t)bytes;
    }
    CUDA_CHECK(cudaMemcpyAsync(*dev, src, bytes, cudaMemcpyHostToDevice, rk->stream));
    CUDA_CHECK(cudaStreamSynchronize(rk->stream));
    return LR_OK;
}

/* The frequencies RoPE takes on rank r: the model's, or a theta fault's (uploaded for it). */
static int rope_frequencies(gpu_model *m, gpu_rank *rk, gpu_replica *rep, const lr_op_mods *mods,
                            const double **inv) {
    *inv = rep->inv_freq;
    if (mods->inv_freq) {
        TRY(fault_upload(rk, (void **)&rep->fault_inv_freq, NULL, mods->inv_freq,
                         (size_t)(m->cfg.head_dim / 2) * sizeof(double)));
        *inv = rep->fault_inv_freq;
    }
    return LR_OK;
}

/* q heads and k heads are contiguous in the packed row: one rotary call. */
static int op_rotary(void *be, int r, const lr_op_mods *mods) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    cudaSetDevice(rk->device);
    const double *inv;
    TRY(rope_frequencies(m, rk, rep, mods, &inv));
    return lr_gpu_rotary(m->variant[LR_GPU_FAM_ROTARY], rk->a.qkv, rk->L.q_size + 2 * rk->L.kv_size, p->T,
                         rk->L.num_heads + rk->L.num_kv_heads, m->cfg.head_dim, rep->pos, inv, m->dt, rk->stream);
}

/* stale_kv: each new token's cache entry (keys and values of the rank's kv heads, one
 * contiguous row per slot) overwritten, in token order, by the entry lr_stale_kv_source
 * names. */
static int stale_entries(gpu_pass *p, gpu_rank *rk, void *kc, void *vc, int64_t back) {
    const gpu_kv *kv = p->kv;
    size_t row = (size_t)rk->L.kv_size * lr_dtype_size(p->m->dt);
    for (int64_t s = 0; s < p->b->num_seqs; s++) {
        const lr_seq_span *sp = &p->spans[s];
        const int32_t *table = kv->block_table + sp->slot * kv->max_blocks;
        for (int64_t j = 0; j < sp->len; j++) {
            int64_t from = lr_stale_kv_source(sp->past, j, back), to = sp->past + j;
            if (from < 0) continue;
            size_t d = (size_t)((int64_t)table[to / BLOCK_SIZE] * BLOCK_SIZE + to % BLOCK_SIZE) * row;
            size_t f = (size_t)((int64_t)table[from / BLOCK_SIZE] * BLOCK_SIZE + from % BLOCK_SIZE) * row;
            CUDA_CHECK(cudaMemcpyAsync((char *)kc + d, (char *)kc + f, row, cudaMemcpyDeviceToDevice, rk->stream));
            CUDA_CHECK(cudaMemcpyAsync((char *)vc + d, (char *)vc + f, row, cudaMemcpyDeviceToDevice, rk->stream));
        }
    }
    return LR_OK;
}

/* A mask fault: the keys each token sees (lr_causal_keys), uploaded in place of the
 * batch's token_keys. */
static int shifted_keys(gpu_pass *p, gpu_rank *rk, gpu_replica *rep, int shift, lr_gpu_attn_meta *mt) {
    int32_t *keys = (int32_t *)malloc((size_t)p->T * sizeof *keys);
    if (!keys) return lr_fail(LR_E_NOMEM, "cuda: out of memory");
    for (int64_t s = 0; s < p->b->num_seqs; s++) {
        const lr_seq_span *sp = &p->spans[s];
        for (int64_t j = 0; j < sp->len; j++) keys[sp->start + j] = (int32_t)lr_causal_keys(sp->past, j, sp->len, shift);
    }
    int rc = fault_upload(rk, (void **)&rep->fault_keys, &rep->fault_keys_cap, keys, (size_t)p->T * sizeof *keys);
    free(keys);
    mt->token_keys = rep->fault_keys;
    return rc;
}

/* Layer l's paged key and value caches on rank r. */
static void *layer_k(const gpu_pass *p, int64_t l, int r) { return p->kv->k[l * p->m->tp + r]; }
static void *layer_v(const gpu_pass *p, int64_t l, int r) { return p->kv->v[l * p->m->tp + r]; }

/* Attention through layer l's paged cache on rank r, which holds the batch's keys and
 * values by now (a stale-cache or mask fault applied first). */
static int attend(gpu_pass *p, int r, int64_t l, const lr_op_mods *mods) {
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    lr_gpu_attn_meta mt = rebase(m, p->meta, rep_of(m, r));
    int64_t hd = m->cfg.head_dim, qkvw = rk->L.q_size + 2 * rk->L.kv_size;
    void *kc = layer_k(p, l, r), *vc = layer_v(p, l, r);
    if (mods->stale_back) TRY(stale_entries(p, rk, kc, vc, mods->stale_back));
    if (mods->mask_shift) TRY(shifted_keys(p, rk, rep, mods->mask_shift, &mt));
    return lr_gpu_attention(m->variant[LR_GPU_FAM_ATTENTION], rk->a.ctx, rk->L.q_size, rk->a.qkv, qkvw, kc, vc, &mt, p->T,
                            rk->L.num_heads, rk->L.num_kv_heads, hd, (float)(1.0 / sqrt((double)hd)), m->dt,
                            rk->ws, rk->stream);
}

/* The batch's keys and values into layer l's paged cache on rank r, as the cache variant does it. */
static int cache_write(gpu_pass *p, int r, int64_t l) {
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    return lr_gpu_reshape_and_cache(m->variant[LR_GPU_FAM_CACHE], layer_k(p, l, r), layer_v(p, l, r),
                                    rk->a.qkv, rk->L.q_size + 2 * rk->L.kv_size, rk->L.q_size,
                                    rk->L.q_size + rk->L.kv_size, p->T, rk->L.num_kv_heads, m->cfg.head_dim,
                                    BLOCK_SIZE, m->reps[rep_of(m, r)].slots, m->dt, rk->stream);
}

/* The batch's keys and values into the paged cache, then attention through it. */
static int op_attention(void *be, int r, int64_t l, const lr_op_mods *mods) {
    gpu_pass *p = (gpu_pass *)be;
    cudaSetDevice(p->m->ranks[r].device);
    TRY(cache_write(p, r, l));
    return attend(p, r, l, mods);
}

/* The composer's rotary_attention slot, in the ops of a pass where RoPE fuses with
 * the cache write (rope_cache_fuses; RoPE and the attention after it are observed
 * together, at o_proj.input): the two in one kernel, then attention. Rank 0's fused
 * kernel is charged to the profile's rotary, the rest to attention. */
static int op_rotary_attention(void *be, int r, int64_t l, const lr_op_mods *mods) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    cudaSetDevice(rk->device);
    const double *inv;
    TRY(rope_frequencies(m, rk, rep, mods, &inv));
    TRY(lr_gpu_rotary_cache(rk->a.qkv, rk->L.q_size + 2 * rk->L.kv_size, p->T, rk->L.num_heads,
                            rk->L.num_kv_heads, m->cfg.head_dim, rep->pos, inv, layer_k(p, l, r),
                            layer_v(p, l, r), rep->slots, m->dt, rk->stream));
    if (r == 0) prof_mark(m, rk, LR_PROF_ROTARY);
    return attend(p, r, l, mods);
}

/* Whether the model's rotary and cache variants are the defaults (heads, scatter), whose
 * arithmetic and bits the fused RoPE + cache kernels have. */
static bool default_rope_and_cache(const gpu_model *m) {
    const char *rv = m->variant[LR_GPU_FAM_ROTARY], *cv = m->variant[LR_GPU_FAM_CACHE];
    return (!rv || strcmp(rv, "heads") == 0) && (!cv || strcmp(cv, "scatter") == 0);
}

/* Whether a pass fuses RoPE with the cache write: lr_gpu_rope_cache() on, the default
 * variants. */
static bool rope_cache_fuses(const gpu_model *m) { return lr_gpu_rope_cache() && default_rope_and_cache(m); }

/* Whether the model's linear variant is the default (auto), whose bits (gemv's at the fused
 * GEMVs' T) lr_gpu_linear_silu and lr_gpu_linear_rope_cache have. */
static bool default_linear(const gpu_model *m) {
    const char *lv = m->variant[LR_GPU_FAM_LINEAR];
    return !lv || strcmp(lv, "auto") == 0;
}

/* A held norm (lr_layer_ops.hold_norm, where norm_fuses: one replica) as the fused GEMVs
 * take it: the stream from the buffer it is in to the other, the norm's weight and eps,
 * NORMED where it runs apart. The caller then flips gpu_pass.res_alt. */
static lr_gpu_norm_in held_norm_in(gpu_pass *p, int r, const lr_held_norm *n) {
    gpu_model *m = p->m;
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    float *now = stream_now(p, rep);
    lr_gpu_norm_in in = {rep->hidden,
                         n->add ? now : NULL,
                         now == rep->residual ? rep->residual_alt : rep->residual,
                         weight(&m->ranks[r], n->weight),
                         (float)n->mods.rms_eps,
                         rep->normed};
    return in;
}

/* The composer's linear_rotary_attention slot, in the ops of a pass where qkv_fuses:
 * qkv_proj, RoPE and the cache write as lr_gpu_linear_rope_cache's one kernel (its two
 * where it has none for the shape), charged to the profile's qkv_proj on rank 0, then
 * attention. With a bias, which qkv_fuses leaves out, the projection and its bias, then
 * the rotary_attention slot's work. */
static int op_linear_rotary_attention(void *be, int r, int64_t l, lr_buf in, int w, int b,
                                      const lr_op_mods *mods, const lr_held_norm *norm) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    if (norm && b != LR_NO_WEIGHT) { /* not held where norm_fuses: the norm, then as without one */
        TRY(op_rms_norm(be, norm->weight, norm->add, &norm->mods));
        norm = NULL;
    }
    if (b != LR_NO_WEIGHT) {
        TRY(op_linear(be, r, LR_BUF_QKV, in, w, b));
        if (r == 0) prof_mark(m, rk, LR_PROF_QKV_PROJ);
        return op_rotary_attention(be, r, l, mods);
    }
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    const lr_packed_desc *d = lr_plan_at(rk->plan, (size_t)w); /* (q_r + 2 kv_r, K) */
    if (d->shape[0] != (rk->L.num_heads + 2 * rk->L.num_kv_heads) * m->cfg.head_dim)
        return lr_fail(LR_E_SHAPE, "%s: %lld rows, the rank's heads (%lld + 2 x %lld of %lld) another",
                       d->name, (long long)d->shape[0], (long long)rk->L.num_heads,
                       (long long)rk->L.num_kv_heads, (long long)m->cfg.head_dim);
    cudaSetDevice(rk->device);
    const double *inv;
    TRY(rope_frequencies(m, rk, rep, mods, &inv));
    if (norm) {
        const lr_gpu_norm_in n = held_norm_in(p, r, norm);
        TRY(lr_gpu_norm_linear_rope_cache(rk->a.qkv, &n, weight(rk, w), p->T, rk->L.num_heads,
                                          rk->L.num_kv_heads, m->cfg.head_dim, d->shape[1], rep->pos, inv,
                                          layer_k(p, l, r), layer_v(p, l, r), rep->slots, m->dt, rk->blas,
                                          rk->stream));
        p->res_alt = !p->res_alt;
    } else {
        TRY(lr_gpu_linear_rope_cache(rk->a.qkv, buf(p, in, r), weight(rk, w), p->T, rk->L.num_heads,
                                     rk->L.num_kv_heads, m->cfg.head_dim, d->shape[1], rep->pos, inv,
                                     layer_k(p, l, r), layer_v(p, l, r), rep->slots, m->dt, rk->blas,
                                     rk->stream));
    }
    if (r == 0) prof_mark(m, rk, LR_PROF_QKV_PROJ);
    return attend(p, r, l, mods);
}

/* Whether a pass of T tokens runs qkv_proj, RoPE and the cache write as one kernel:
 * lr_gpu_qkv_fuse() on, T within the fused kernel's tokens, no attention bias, the default
 * linear, rotary and cache variants. */
static bool qkv_fuses(const gpu_model *m, int64_t T) {
    return lr_gpu_qkv_fuse() && T <= LR_GPU_LINEAR_FUSED_MAX_T && !m->cfg.attention_bias &&
           default_linear(m) && default_rope_and_cache(m);
}

static int op_activation(void *be, int r, bool gated) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    cudaSetDevice(rk->device);
    if (gated)
        return lr_gpu_silu_and_mul(m->variant[LR_GPU_FAM_ACTIVATION], rk->a.act, rk->a.gu, p->T, rk->L.intermediate, m->dt,
                                   rk->stream);
    return lr_gpu_silu(rk->a.act, rk->a.gu, p->T, rk->L.intermediate, m->dt, rk->stream);
}

/* The composer's linear_activation slot, in the ops of a pass where silu_fuses: gate_up_proj
 * and the activation as lr_gpu_linear_silu's one kernel (its two where it has none for the
 * shape; with a bias, which silu_fuses leaves out, the two ops). */
static int op_linear_activation(void *be, int r, lr_buf in, int w, int b, const lr_held_norm *norm) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    if (norm && b != LR_NO_WEIGHT) { /* not held where norm_fuses: the norm, then as without one */
        TRY(op_rms_norm(be, norm->weight, norm->add, &norm->mods));
        norm = NULL;
    }
    if (b != LR_NO_WEIGHT) {
        TRY(op_linear(be, r, LR_BUF_GATE_UP, in, w, b));
        return op_activation(be, r, true);
    }
    const lr_packed_desc *d = lr_plan_at(rk->plan, (size_t)w); /* (2 I_r, K) */
    if (d->shape[0] != 2 * rk->L.intermediate)
        return lr_fail(LR_E_SHAPE, "%s: %lld rows, the rank's intermediate 2 x %lld", d->name,
                       (long long)d->shape[0], (long long)rk->L.intermediate);
    cudaSetDevice(rk->device);
    if (norm) {
        const lr_gpu_norm_in n = held_norm_in(p, r, norm);
        TRY(lr_gpu_norm_linear_silu(rk->a.act, rk->a.gu, &n, weight(rk, w), p->T, rk->L.intermediate,
                                    d->shape[1], m->dt, rk->blas, rk->stream));
        p->res_alt = !p->res_alt;
        return LR_OK;
    }
    return lr_gpu_linear_silu(rk->a.act, rk->a.gu, buf(p, in, r), weight(rk, w), p->T, rk->L.intermediate,
                              d->shape[1], m->dt, rk->blas, rk->stream);
}

/* Whether a pass of T tokens holds the layers' norms for the fused GEMVs (lr_layer_ops.
 * hold_norm): lr_gpu_norm_fuse() on, one replica (the stream's two buffers are one GPU's),
 * T within the fused kernels' tokens and the default rmsnorm variant (vec), whose bits
 * their norm has; the slots then get the norm before them where they are filled. */
static bool norm_fuses(const gpu_model *m, int64_t T) {
    const char *nv = m->variant[LR_GPU_FAM_RMSNORM];
    return lr_gpu_norm_fuse() && m->nrep == 1 && m->tp == 1 && T <= LR_GPU_LINEAR_FUSED_MAX_T &&
           (!nv || strcmp(nv, "vec") == 0) && m->reps[0].residual_alt;
}

/* Whether a pass of T tokens runs gate_up_proj and the activation as one kernel:
 * lr_gpu_silu_fuse() on, T within the fused kernel's tokens, no MLP bias (it is added
 * between the two), and the model's linear and activation variants the defaults (auto,
 * vec), whose bits it has. */
static bool silu_fuses(const gpu_model *m, int64_t T) {
    const char *av = m->variant[LR_GPU_FAM_ACTIVATION];
    return lr_gpu_silu_fuse() && T <= LR_GPU_LINEAR_FUSED_MAX_T && !m->cfg.mlp_bias && default_linear(m) &&
           (!av || strcmp(av, "vec") == 0);
}

static int seg_end(gpu_pass *p);
static int seg_begin(gpu_pass *p);

/* While a step is captured over NCCL, an all-reduce ends a graph segment and begins the
 * next: the all-reduce itself runs eagerly between them at each replay. */
static int op_all_reduce(void *be) {
    gpu_pass *p = (gpu_pass *)be;
    if (p->cap && p->m->nrep > 1) {
        TRY(seg_end(p));
        return seg_begin(p);
    }
    return all_reduce(p->m, p->T);
}

static int op_residual_sum(void *be) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_replica *rep = &p->m->reps[0];
    cudaSetDevice(p->m->ranks[0].device);
    return lr_gpu_add_residual(rep->sum, rep->hidden, stream_now(p, rep), p->T * p->m->cfg.hidden_size,
                               p->m->dt, p->m->ranks[0].stream);
}

/* Observers: the buffer goes to float32 on its device, and its block of columns to the
 * host rows. */
static int op_read(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, void *dst, int64_t dst_ld) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    gpu_rank *rk = &m->ranks[r];
    gpu_replica *rep = &m->reps[rep_of(m, r)];
    int64_t T = p->T;
    cudaSetDevice(rk->device);
    TRY(lr_gpu_convert(rep->scratch, LR_F32, buf(p, b, r), buf_dtype(m, b), T * ld, rk->stream));
    CUDA_CHECK(cudaMemcpy2DAsync(dst, (size_t)dst_ld * sizeof(float), rep->scratch + col, (size_t)ld * sizeof(float),
                                 (size_t)cols * sizeof(float), (size_t)T, cudaMemcpyDeviceToHost, rk->stream));
    CUDA_CHECK(cudaStreamSynchronize(rk->stream));
    return LR_OK;
}

/* Layer isolation: the supplied stream as the embedding (into hidden, in dt), or as the
 * float32 residual with a zero hidden, on every replica. */
static int op_load_stream(void *be, bool embedding, const lr_tensor *t) {
    gpu_pass *p = (gpu_pass *)be;
    gpu_model *m = p->m;
    int64_t n = p->T * m->cfg.hidden_size;
    float *host = (float *)malloc((size_t)n * sizeof(float));
    if (!host) return lr_fail(LR_E_NOMEM, "cuda: out of memory");
    lr_convert(host, LR_F32, t->data, t->dtype, (size_t)n);
    int rc = LR_OK;
    for (int i = 0; i < m->nrep && rc == LR_OK; i++) {
        gpu_replica *rep = &m->reps[i];
        gpu_rank *rk = rank_of_replica(m, i);
        cudaSetDevice(rk->device);
        float *dst = embedding ? rep->scratch : stream_now(p, rep);
        if (cudaMemcpyAsync(dst, host, (size_t)n * sizeof(float), cudaMemcpyHostToDevice, rk->stream) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: uploading the injected residual stream failed");
        else if (embedding)
            rc = lr_gpu_convert(rep->hidden, m->dt, rep->scratch, LR_F32, n, rk->stream);
        else if (cudaMemsetAsync(rep->hidden, 0, (size_t)n * lr_dtype_size(m->dt), rk->stream) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: clearing the hidden states failed");
        if (rc == LR_OK && cudaStreamSynchronize(rk->stream) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: injecting the residual stream failed");
    }
    free(host);
    return rc;
}

/* Rewrites the (T, cols) block at column col of rank r's buffer b (T, ld) through float32
 * on the host: edit(ctx, rows (T, ld), ...) changes the block in place, and the buffer
 * is stored back in its dtype; replicated buffers on every device. Slow, and only for
 * isolation and faults, which tests use. */
typedef void (*host_edit)(const void *ctx, float *rows, int64_t T, int64_t ld, int64_t col, int64_t cols);

static int edit_block(gpu_pass *p, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, host_edit edit,
                      const void *ctx) {
    gpu_model *m = p->m;
    int64_t T = p->T, n = T * ld;
    bool replicated = b == LR_BUF_HIDDEN || b == LR_BUF_RESIDUAL || b == LR_BUF_NORMED || b == LR_BUF_SUM;
    float *host = (float *)malloc((size_t)n * sizeof(float));
    if (!host) return lr_fail(LR_E_NOMEM, "cuda: out of memory");
    int rc = LR_OK;
    for (int i = 0; rc == LR_OK && i < (replicated ? m->nrep : 1); i++) {
        int rank = replicated ? (m->nrep > 1 ? i : 0) : r;
        gpu_rank *rk = &m->ranks[rank];
        gpu_replica *rep = &m->reps[rep_of(m, rank)];
        void *x = buf(p, b, rank);
        cudaSetDevice(rk->device);
        rc = lr_gpu_convert(rep->scratch, LR_F32, x, buf_dtype(m, b), n, rk->stream);
        if (rc == LR_OK && (cudaMemcpyAsync(host, rep->scratch, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost,
                                            rk->stream) != cudaSuccess ||
                            cudaStreamSynchronize(rk->stream) != cudaSuccess))
            rc = lr_fail(LR_E_DEVICE, "cuda: reading a stage back failed");
        if (rc == LR_OK) edit(ctx, host, T, ld, col, cols);
        if (rc == LR_OK && cudaMemcpyAsync(rep->scratch, host, (size_t)n * sizeof(float), cudaMemcpyHostToDevice,
                                           rk->stream) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: writing a stage back failed");
        if (rc == LR_OK) rc = lr_gpu_convert(x, buf_dtype(m, b), rep->scratch, LR_F32, n, rk->stream);
        if (rc == LR_OK && cudaStreamSynchronize(rk->stream) != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda: writing a stage back failed");
    }
    free(host);
    return rc;
}

struct fault_edit {
    const lr_fault *f;
    int64_t dst_col, width;
    lr_dtype storage;
};

static void apply_fault(const void *ctx, float *rows, int64_t T, int64_t ld, int64_t col, int64_t cols) {
    const fault_edit *e = (const fault_edit *)ctx;
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < cols; c++) {
            float *v = &rows[t * ld + col + c];
            *v = (float)lr_fault_apply(e->f, *v, t, e->dst_col + c, e->width, e->storage);
        }
}

static int op_perturb(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, int64_t dst_col,
                      int64_t width, const lr_fault *f) {
    fault_edit e = {f, dst_col, width, buf_dtype(((gpu_pass *)be)->m, b)};
    return edit_block((gpu_pass *)be, b, r, ld, col, cols, apply_fault, &e);
}

struct write_edit {
    const lr_tensor *t;
    int64_t src_col;
};

static void copy_block(const void *ctx, float *rows, int64_t T, int64_t ld, int64_t col, int64_t cols) {
    const write_edit *e = (const write_edit *)ctx;
    size_t es = lr_dtype_size(e->t->dtype);
    for (int64_t t = 0; t < T; t++)
        lr_convert(rows + t * ld + col, LR_F32, (const char *)e->t->data + (size_t)(t * e->t->shape[1] + e->src_col) * es,
                   e->t->dtype, (size_t)cols);
}

static int op_write(void *be, lr_buf b, int r, int64_t ld, int64_t col, int64_t cols, const lr_tensor *t,
                    int64_t src_col) {
    write_edit e = {t, src_col};
    return edit_block((gpu_pass *)be, b, r, ld, col, cols, copy_block, &e);
}

static void op_prof_mark(void *be, int prof) {
    gpu_pass *p = (gpu_pass *)be;
    prof_mark(p->m, &p->m->ranks[0], prof);
}

/* The layer's ops: the composer calls qkv_proj, RoPE, then the cache write and attention,
 * and gate_up_proj, then the activation. A pass fills the fused slots in its own copy
 * (cuda_forward): rotary_attention where rope_cache_fuses (RoPE with the cache write),
 * linear_rotary_attention where qkv_fuses (qkv_proj with those), linear_activation where
 * silu_fuses; chosen per pass, so a captured graph holds the kernels it ran. */
static const lr_layer_ops cuda_layer_ops = {
    LR_F32,         op_embedding,  op_rms_norm,   op_linear,       op_rotary,
    op_attention,   op_activation, op_all_reduce, op_residual_sum, op_read,
    op_load_stream, op_write,      op_perturb,    op_prof_mark,    NULL,
    NULL,           NULL,
};

/* ---- CUDA graphs --------------------------------------------------------------------------
 *
 * With lr_options.cuda_graphs a decode step (every sequence one new token: T = B) is
 * replayed as CUDA graphs, so the step's few hundred small launches cost one graph
 * launch. In the single-GPU mode (any tp: lr_gpu_sum's all-reduce is captured with the
 * rest) that is one graph. Over NCCL each GPU's stream is captured into its own graphs,
 * cut at the all-reduces, which run eagerly (grouped, as without graphs) between the
 * segments: 2L + 2 graph launches per GPU and step. NCCL can be captured (>= 2.9), but
 * its documentation warns that with several GPUs driven from one thread, as here
 * (ncclCommInitAll), cudaGraphLaunch of graphs holding NCCL kernels may block and
 * deadlock; with one process per GPU the whole step could be one graph. A batch shape
 * (B, over one KV cache) runs its first step eagerly, which reaches every allocation and
 * one-time setup of that shape (scratch, the attention workspace, kernel loading,
 * cuBLAS's heuristics), is captured at its second step and replayed from then on.
 *
 * What changes from step to step is in device buffers at fixed addresses, uploaded from
 * pinned memory before the launch (upload_batch): token ids, positions, the slot mapping,
 * and the attention metadata (each token's sequence and visible keys, each sequence's
 * start, length, cached length and block table). No kernel takes a per-step host scalar:
 * the sizes are the shape's (T, B, the cache's block count), and attention's max_keys is
 * the cache's capacity, an upper bound from which tc's split decode sizes its grid; its
 * kernels plan their chunks from the keys in device memory (attention_tc.cu).
 *
 * Graphs are not used (the step runs eagerly and counts in eager_steps) when a step must
 * do host work between its ops: an observer (stage copies to the host, synchronous), an
 * injector (layer isolation), faults (read back and edited on the host), profiling
 * (events between ops), or a kernel plugin's variant (a launcher that may allocate or
 * synchronise). Graphs are dropped when their buffers could move (device scratch or the
 * attention workspace regrown by a larger batch), when their KV cache is reset or freed,
 * and with the model. Only the forward is captured; compute_logits runs eagerly. */

static void graph_drop(gpu_model *m, gpu_graph *g) {
    if (!g->B) return;
    for (int k = 0; k < g->nseg; k++)
        for (int i = 0; i < m->nrep; i++) {
            cudaSetDevice(rank_of_replica(m, i)->device);
            if (g->x && g->x[k * m->nrep + i]) cudaGraphExecDestroy(g->x[k * m->nrep + i]);
            if (g->g && g->g[k * m->nrep + i]) cudaGraphDestroy(g->g[k * m->nrep + i]);
        }
    free(g->g);
    free(g->x);
    if (g->captured) m->gstats.invalidations++;
    memset(g, 0, sizeof *g);
}

static void graphs_drop_all(gpu_model *m) {
    for (int k = 0; k < MAX_GRAPHS; k++) graph_drop(m, &m->graph[k]);
}

static void graphs_drop_kv(gpu_model *m, uint64_t kv_id) {
    for (int k = 0; k < MAX_GRAPHS; k++)
        if (m->graph[k].kv_id == kv_id) graph_drop(m, &m->graph[k]);
}

static void cuda_graph_stats(const void *impl, lr_graph_stats *out) { *out = ((const gpu_model *)impl)->gstats; }

/* Begins capturing every stream in use; on failure none is left capturing. */
static int seg_begin(gpu_pass *p) {
    gpu_model *m = p->m;
    for (int i = 0; i < m->nrep; i++) {
        gpu_rank *rk = rank_of_replica(m, i);
        cudaError_t e = cudaSetDevice(rk->device);
        if (e == cudaSuccess) e = cudaStreamBeginCapture(rk->stream, cudaStreamCaptureModeThreadLocal);
        if (e != cudaSuccess) {
            for (int j = 0; j < i; j++) { /* the streams begun: ended, their graphs discarded */
                cudaGraph_t g = NULL;
                cudaSetDevice(rank_of_replica(m, j)->device);
                if (cudaStreamEndCapture(rank_of_replica(m, j)->stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
            }
            cudaGetLastError();
            return lr_fail(LR_E_DEVICE, "cuda graphs: beginning a capture on GPU %d: %s", rk->device,
                           cudaGetErrorString(e));
        }
    }
    p->cap_open = true;
    return LR_OK;
}

/* Ends the capture of every stream in use into segment cap->nseg. */
static int seg_end(gpu_pass *p) {
    gpu_model *m = p->m;
    gpu_graph *g = p->cap;
    int rc = LR_OK;
    bool room = g->nseg < g->maxseg;
    for (int i = 0; i < m->nrep; i++) {
        gpu_rank *rk = rank_of_replica(m, i);
        cudaGraph_t out = NULL;
        cudaSetDevice(rk->device);
        cudaError_t e = cudaStreamEndCapture(rk->stream, &out);
        if (e != cudaSuccess && rc == LR_OK)
            rc = lr_fail(LR_E_DEVICE, "cuda graphs: capturing the decode step of %lld sequences on GPU %d: %s",
                         (long long)g->B, rk->device, cudaGetErrorString(e));
        if (room)
            g->g[g->nseg * m->nrep + i] = out;
        else if (out)
            cudaGraphDestroy(out);
    }
    p->cap_open = false;
    if (room) g->nseg++;
    else if (rc == LR_OK)
        rc = lr_fail(LR_E_DEVICE, "cuda graphs: the decode step has more than %d segments", g->maxseg);
    return rc;
}

/* The composer's whole forward captured: one graph per stream in use and segment (one
 * segment, but over NCCL one more than its all-reduces: 2L + 2). On failure no capture
 * is left open and nothing is kept. */
static int graph_capture(gpu_model *m, const lr_composer *c, gpu_pass *p, gpu_graph *g) {
    g->maxseg = m->nrep > 1 ? 2 * (int)m->cfg.num_hidden_layers + 2 : 1;
    size_t n = (size_t)g->maxseg * (size_t)m->nrep;
    g->g = (cudaGraph_t *)calloc(n, sizeof *g->g);
    g->x = (cudaGraphExec_t *)calloc(n, sizeof *g->x);
    g->nseg = 0;
    int rc = g->g && g->x ? LR_OK : lr_fail(LR_E_NOMEM, "cuda graphs: out of memory");
    p->cap = g;
    if (rc == LR_OK) rc = seg_begin(p);
    if (rc == LR_OK) rc = lr_compose_forward(c, p, p->T, NULL);
    if (p->cap_open) {
        int rc2 = seg_end(p);
        if (rc == LR_OK) rc = rc2;
    }
    p->cap = NULL;
    for (int k = 0; rc == LR_OK && k < g->nseg * m->nrep; k++) {
        gpu_rank *rk = rank_of_replica(m, k % m->nrep);
        cudaSetDevice(rk->device);
        cudaError_t e = cudaGraphInstantiate(&g->x[k], g->g[k], 0);
        if (e != cudaSuccess)
            rc = lr_fail(LR_E_DEVICE, "cuda graphs: instantiating the decode step of %lld sequences on GPU %d: %s",
                         (long long)g->B, rk->device, cudaGetErrorString(e));
    }
    if (rc) {
        cudaGetLastError(); /* a failed capture leaves its error behind */
        graph_drop(m, g);   /* not captured: not counted as an invalidation */
        return rc;
    }
    g->captured = true;
    m->gstats.captures++;
    return LR_OK;
}

/* The segments in order on every stream in use, the all-reduces (over NCCL) between. */
static int graph_launch(gpu_model *m, const gpu_graph *g, int64_t T) {
    for (int k = 0; k < g->nseg; k++) {
        if (k > 0) TRY(all_reduce(m, T));
        for (int i = 0; i < m->nrep; i++) {
            gpu_rank *rk = rank_of_replica(m, i);
            CUDA_CHECK(cudaSetDevice(rk->device));
            CUDA_CHECK(cudaGraphLaunch(g->x[k * m->nrep + i], rk->stream));
        }
    }
    m->gstats.replays++;
    return LR_OK;
}

/* An eager forward. The attention workspace may grow in it (a larger decode batch): the
 * graphs pointing into the old one are dropped. */
static int eager_forward(gpu_model *m, const lr_composer *c, gpu_pass *p, const lr_observer *obs) {
    size_t ws[MAX_TP];
    for (int r = 0; r < m->tp; r++) ws[r] = lr_gpu_attn_ws_bytes(m->ranks[r].ws);
    int rc = lr_compose_forward(c, p, p->T, obs);
    for (int r = 0; r < m->tp; r++)
        if (lr_gpu_attn_ws_bytes(m->ranks[r].ws) != ws[r]) {
            graphs_drop_all(m);
            break;
        }
    return rc;
}

/* A decode step of B sequences over kv: replayed, captured then replayed, or (the shape's
 * first step) run eagerly as its warm-up. */
static int graph_step(gpu_model *m, const lr_composer *c, gpu_pass *p, const gpu_kv *kv) {
    int64_t B = p->b->num_seqs;
    gpu_graph *g = NULL, *free_g = NULL;
    for (int k = 0; k < MAX_GRAPHS && !g; k++) {
        gpu_graph *e = &m->graph[k];
        if (e->B == B && e->kv_id == kv->id) g = e;
        else if (!e->B && !free_g) free_g = e;
    }
    if (g && !g->captured) TRY(graph_capture(m, c, p, g));
    if (g) return graph_launch(m, g, p->T);
    TRY(eager_forward(m, c, p, NULL));
    m->gstats.warmups++;
    if (!free_g) /* eager_forward may have dropped them all */
        for (int k = 0; k < MAX_GRAPHS && !free_g; k++)
            if (!m->graph[k].B) free_g = &m->graph[k];
    if (!free_g) { /* full: the oldest entry goes (a table of MAX_GRAPHS shapes) */
        graph_drop(m, &m->graph[0]);
        memmove(&m->graph[0], &m->graph[1], (MAX_GRAPHS - 1) * sizeof m->graph[0]);
        memset(&m->graph[MAX_GRAPHS - 1], 0, sizeof m->graph[0]);
        free_g = &m->graph[MAX_GRAPHS - 1];
    }
    free_g->B = B;
    free_g->kv_id = kv->id;
    return LR_OK;
}

/* Columns of rank rk's vocabulary shard below the vocabulary's end (the rest is padding;
 * none on a rank of padding alone). */
static int64_t shard_cols(const gpu_model *m, const gpu_rank *rk) {
    int64_t left = m->cfg.vocab_size - rk->L.vocab_start, shard = rk->L.vocab_shard;
    return left < shard ? left : shard;
}

/* Grows pinned host buffer *p to hold need entries of es bytes (*cap: entries it holds). */
static int grow_host(void **p, int64_t *cap, int64_t need, size_t es) {
    if (*cap >= need) return LR_OK;
    cudaFreeHost(*p);
    *p = NULL;
    *cap = 0;
    CUDA_CHECK(cudaMallocHost(p, (size_t)need * es));
    *cap = need;
    return LR_OK;
}

static int cuda_forward(void *impl, const lr_batch *b, const lr_seq_span *spans, void *kvp,
                        const lr_observer *obs, const int64_t *rows, int64_t n, lr_tensor *hidden) {
    gpu_model *m = (gpu_model *)impl;
    gpu_kv *kv = (gpu_kv *)kvp;
    int64_t T = b->num_tokens, H = m->cfg.hidden_size;
    bool observe = (obs && (obs->on_stage || obs->inject)) || m->num_faults;
    /* The rule (above, "CUDA graphs"): a decode step, and nothing that needs the host
     * between ops. T == num_seqs: every sequence has one token. */
    bool decode = m->graphs_opt && T == b->num_seqs;
    bool graph = decode && m->graphs && !observe && !m->prof.on;
    if (decode && !graph) m->gstats.eager_steps++;
    prof_begin(m);
    TRY(ensure_buffers(m, T, b->num_seqs, kv->max_blocks, observe));
    lr_gpu_attn_meta meta;
    TRY(upload_batch(m, b, spans, kv, &meta, graph));
    prof_mark(m, &m->ranks[0], LR_PROF_SETUP);

    gpu_pass p = {m, NULL, false, kv, &meta, T, b, spans};
    lr_layer_ops ops = cuda_layer_ops;
    if (rope_cache_fuses(m)) ops.rotary_attention = op_rotary_attention;
    if (silu_fuses(m, T)) ops.linear_activation = op_linear_activation;
    if (qkv_fuses(m, T)) ops.linear_rotary_attention = op_linear_rotary_attention;
    ops.hold_norm = norm_fuses(m, T);
    lr_composer c = {&ops, &m->cfg, m->layouts, m->tp, m->ranks[0].plan, m->faults, m->num_faults};
    if (graph)
        TRY(graph_step(m, &c, &p, kv));
    else
        TRY(m->graphs_opt ? eager_forward(m, &c, &p, obs) : lr_compose_forward(&c, &p, T, obs));

    /* The hidden states to the host: all T rows, or (lr_model_forward_rows) the n asked
     * for alone, one copy per run of equally spaced rows (each sequence's last token of a
     * prefill of equal lengths is one). */
    const int64_t R = rows ? n : T;
    const size_t w = (size_t)H * lr_dtype_size(m->dt);
    TRY(grow_host(&m->hidden_host, &m->hidden_cap, R * H, lr_dtype_size(m->dt)));
    cudaSetDevice(m->ranks[0].device);
    cudaStream_t s0 = m->ranks[0].stream;
    const char *normed = (const char *)m->reps[0].normed;
    if (!rows) {
        CUDA_CHECK(cudaMemcpyAsync(m->hidden_host, normed, (size_t)T * w, cudaMemcpyDeviceToHost, s0));
    } else {
        for (int64_t i = 0, c; i < n; i += c) {
            int64_t d = i + 1 < n ? rows[i + 1] - rows[i] : 1;
            c = 1;
            if (d >= 1)
                while (i + c < n && rows[i + c] - rows[i + c - 1] == d)
                    c++;
            else
                d = 1; /* a repeat or a step back: a run of one */
            CUDA_CHECK(cudaMemcpy2DAsync((char *)m->hidden_host + (size_t)i * w, w,
                                         normed + (size_t)rows[i] * w, (size_t)d * w, w, (size_t)c,
                                         cudaMemcpyDeviceToHost, s0));
        }
    }
    CUDA_CHECK(cudaStreamSynchronize(s0));
    prof_flush(m);
    /* compute_logits takes the device's copy only when hidden is all of it */
    m->last_T = rows ? -1 : T;
    *hidden = lr_tensor{m->dt, 2, {R, H}, m->hidden_host};
    return LR_OK;
}

/* ParallelLMHead on every rank: each rank's (T, shard) logits into its a.logits, from the
 * last forward's final hidden states where hidden is them (still on the devices), else
 * from hidden uploaded. Profiled as setup, then lm_head. */
static int lm_head(gpu_model *m, const lr_tensor *hidden) {
    int64_t T = hidden->shape[0], H = m->cfg.hidden_size, shard = m->ranks[0].L.vocab_shard;
    size_t es = lr_dtype_size(m->dt);
    if (!(hidden->data == m->hidden_host && T == m->last_T)) {
        TRY(ensure_buffers(m, T, 1, 1, false));
        for (int i = 0; i < m->nrep; i++) {
            cudaSetDevice(m->nrep > 1 ? i : 0);
            CUDA_CHECK(cudaMemcpy(m->reps[i].normed, hidden->data, (size_t)(T * H) * es, cudaMemcpyHostToDevice));
        }
    }
    prof_mark(m, &m->ranks[0], LR_PROF_SETUP);
    for (int r = 0; r < m->tp; r++) {
        gpu_rank *rk = &m->ranks[r];
        cudaSetDevice(rk->device);
        if (rk->a.logits_cap < T) {
            TRY(grow(&rk->a.logits, (size_t)(T * shard) * es));
            rk->a.logits_cap = T;
        }
        TRY(linear(m, rk, rk->a.logits, m->reps[rep_of(m, r)].normed, weight(rk, lr_plan_model(rk->plan, LR_MW_LM_HEAD)),
                   NULL, T, shard, H));
        prof_mark(m, rk, LR_PROF_LM_HEAD);
    }
    return LR_OK;
}

/* ParallelLMHead on every rank, the all-gather, the padding cut: (T, vocab) in dt. */
static int cuda_compute_logits(void *impl, const lr_tensor *hidden, const lr_observer *obs,
                               lr_tensor *logits) {
    gpu_model *m = (gpu_model *)impl;
    if (obs && !obs->on_stage) obs = NULL;
    int64_t T = hidden->shape[0], V = m->cfg.vocab_size, shard = m->ranks[0].L.vocab_shard;
    size_t es = lr_dtype_size(m->dt);
    prof_begin(m);
    TRY(grow_host(&m->logits_host, &m->logits_cap, T * V, es));
    TRY(lm_head(m, hidden));
    /* The gather: each rank's columns land at its vocabulary offset; padding is cut. In
     * the NCCL mode the shards come straight from each GPU (a gather to the host). */
    for (int r = 0; r < m->tp; r++) {
        gpu_rank *rk = &m->ranks[r];
        int64_t cols = shard_cols(m, rk);
        if (cols <= 0) continue;
        cudaSetDevice(rk->device);
        CUDA_CHECK(cudaMemcpy2DAsync((char *)m->logits_host + (size_t)rk->L.vocab_start * es, (size_t)V * es,
                                     rk->a.logits, (size_t)shard * es, (size_t)cols * es, (size_t)T,
                                     cudaMemcpyDeviceToHost, rk->stream));
    }
    for (int r = 0; r < m->tp; r++) {
        cudaSetDevice(m->ranks[r].device);
        CUDA_CHECK(cudaStreamSynchronize(m->ranks[r].stream));
    }
    prof_flush(m);
    *logits = lr_tensor{m->dt, 2, {T, V}, m->logits_host};
    if (obs) {
        if (m->obs_cap < T * V) {
            free(m->obs_host);
            m->obs_cap = 0;
            if (!(m->obs_host = (float *)malloc((size_t)(T * V) * sizeof(float))))
                return lr_fail(LR_E_NOMEM, "cuda: out of memory");
            m->obs_cap = T * V;
        }
        lr_convert(m->obs_host, LR_F32, m->logits_host, m->dt, (size_t)(T * V));
        lr_tensor t = {LR_F32, 2, {T, V}, m->obs_host};
        obs->on_stage(obs->user, lr_model_stage_name(LR_MS_LM_HEAD), &t);
    }
    return LR_OK;
}

/* lr_model_greedy without an observer: the LM head as compute_logits runs it, then on each
 * rank the argmax of each GREEDY_CHUNK columns of its shard below the vocabulary's end
 * (lr_gpu_argmax: a block per chunk and row, so that a decode step's few rows still fill
 * the card), whose (value, column) pairs alone come to the host (32 a row of Llama-3's
 * vocabulary at tp 1); they are compared there by the same rule, lr_argmax_beats (the
 * vocabulary's order is the ranks' order). */
#define GREEDY_CHUNK 4096

static int cuda_greedy(void *impl, const lr_tensor *hidden, int64_t *tokens) {
    gpu_model *m = (gpu_model *)impl;
    int64_t T = hidden->shape[0], shard = m->ranks[0].L.vocab_shard;
    /* A rank's amax: values (T, nmax) then columns (T, nmax), its rows nch chunks apart. */
    const int64_t nmax = (shard + GREEDY_CHUNK - 1) / GREEDY_CHUNK, per = T * nmax;
    const size_t bytes = (size_t)per * (sizeof(float) + sizeof(int32_t));
    prof_begin(m);
    TRY(grow_host(&m->amax_host, &m->amax_cap, m->tp * per, sizeof(float) + sizeof(int32_t)));
    TRY(lm_head(m, hidden));
    for (int r = 0; r < m->tp; r++) {
        gpu_rank *rk = &m->ranks[r];
        int64_t cols = shard_cols(m, rk);
        if (cols <= 0) continue;
        cudaSetDevice(rk->device);
        if (rk->a.amax_cap < per) {
            TRY(grow(&rk->a.amax, bytes));
            rk->a.amax_cap = per;
        }
        float *val = (float *)rk->a.amax;
        TRY(lr_gpu_argmax(val, (int32_t *)(val + per), rk->a.logits, shard, T, cols, GREEDY_CHUNK, m->dt,
                          rk->stream));
        CUDA_CHECK(cudaMemcpyAsync((char *)m->amax_host + (size_t)r * bytes, rk->a.amax, bytes,
                                   cudaMemcpyDeviceToHost, rk->stream));
        prof_mark(m, rk, LR_PROF_LM_HEAD);
    }
    for (int r = 0; r < m->tp; r++) {
        cudaSetDevice(m->ranks[r].device);
        CUDA_CHECK(cudaStreamSynchronize(m->ranks[r].stream));
    }
    prof_flush(m);
    for (int64_t t = 0; t < T; t++) {
        float best = 0.0f;
        int64_t at = -1;
        for (int r = 0; r < m->tp; r++) {
            const gpu_rank *rk = &m->ranks[r];
            int64_t cols = shard_cols(m, rk);
            if (cols <= 0) continue;
            const int64_t nch = (cols + GREEDY_CHUNK - 1) / GREEDY_CHUNK;
            const float *val = (const float *)((const char *)m->amax_host + (size_t)r * bytes);
            const int32_t *col = (const int32_t *)(val + per);
            for (int64_t c = 0; c < nch; c++) {
                int64_t i = rk->L.vocab_start + col[t * nch + c];
                if (at < 0 || lr_argmax_beats(best, at, val[t * nch + c], i)) best = val[t * nch + c], at = i;
            }
        }
        tokens[t] = at;
    }
    return LR_OK;
}

extern "C" const lr_backend_ops lr_cuda_backend = {
    "cuda",          cuda_create,         cuda_destroy,       cuda_kv_create,   cuda_kv_free,
    cuda_forward,    cuda_compute_logits, cuda_set_profiling, cuda_get_profile, cuda_num_devices,
    cuda_set_faults, cuda_memory,         cuda_kv_reset,      cuda_graph_stats, cuda_greedy,
};
