/* activation.cu: SiluAndMul, the MLP's activation on the packed gate_up_proj output, and
 * silu alone (observed as mlp.act_fn), the twin of ref/ops/activation.c. silu(g) is
 * common.cuh's silu1: g / (1 + exp(-g)) in float32 with expf, as the reference writes it,
 * rather than a fast-math form. */
#include "common.cuh"

/* Every activation launcher receives an lr_gpu_activation_args (llamaref_kernels.h). */

#define ACT_THREADS 256
#define MAX_BLOCKS 65535

/* One thread per output element, grid-stride over the flattened (T, NI). */
template <typename E>
static __global__ void activation_elementwise_kernel(E *out, const E *gu, int64_t T, int64_t NI, bool mul) {
    int64_t n = T * NI, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < n; k += stride) {
        int64_t t = k / NI, i = k - t * NI;
        const E *row = gu + t * 2 * NI;
        float a = silu1(ld(row + i));
        if (mul) a *= ld(row + NI + i);
        st(out + k, a);
    }
}

template <typename E> static int activation_elementwise(const lr_gpu_activation_args *a, cudaStream_t s) {
    int64_t blocks = (a->T * a->NI + ACT_THREADS - 1) / ACT_THREADS;
    unsigned int grid = (unsigned int)(blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS);
    activation_elementwise_kernel<E>
        <<<grid, ACT_THREADS, 0, s>>>((E *)a->out, (const E *)a->gu, a->T, a->NI, a->mul);
    LAUNCH_CHECK();
    return LR_OK;
}

int lr_gpu_activation_elementwise(const void *args, cudaStream_t s) {
    const lr_gpu_activation_args *a = (const lr_gpu_activation_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, activation_elementwise, a, s);
}

/* "vec": 16-byte loads and stores, VEC elements per thread, one 2-D grid row per token
 * (blockIdx.y, grid-stride) so no division per element. Rows must start 16-byte aligned
 * (NI a multiple of VEC and aligned pointers); otherwise the elementwise kernel runs. */
template <typename E>
static __global__ void activation_vec_kernel(E *out, const E *gu, int64_t T, int64_t NI, bool mul) {
    constexpr int VEC = 16 / sizeof(E);
    int64_t nv = NI / VEC;
    pdl_trigger(); /* launched with programmatic dependent launch (common.cuh) */
    pdl_wait();
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        const uint4 *g4 = (const uint4 *)(gu + t * 2 * NI), *u4 = (const uint4 *)(gu + t * 2 * NI + NI);
        uint4 *o4 = (uint4 *)(out + t * NI);
        for (int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; k < nv; k += (int64_t)gridDim.x * blockDim.x) {
            uint4 gv = g4[k], uv = mul ? u4[k] : make_uint4(0, 0, 0, 0), ov;
            const E *ge = (const E *)&gv, *ue = (const E *)&uv;
            E *oe = (E *)&ov;
#pragma unroll
            for (int j = 0; j < VEC; j++) {
                float a = silu1(elem<E>::load(ge[j]));
                if (mul) a *= elem<E>::load(ue[j]);
                oe[j] = elem<E>::store(a);
            }
            o4[k] = ov;
        }
    }
}

template <typename E> static int activation_vec(const lr_gpu_activation_args *a, cudaStream_t s) {
    constexpr int VEC = 16 / sizeof(E);
    if (a->NI % VEC != 0 || ((uintptr_t)a->out & 15) != 0 || ((uintptr_t)a->gu & 15) != 0)
        return activation_elementwise<E>(a, s);
    int64_t per_row = (a->NI / VEC + ACT_THREADS - 1) / ACT_THREADS;
    unsigned int gx = (unsigned int)(per_row < MAX_BLOCKS ? per_row : MAX_BLOCKS);
    unsigned int gy = (unsigned int)(a->T < MAX_BLOCKS ? a->T : MAX_BLOCKS);
    LR_LAUNCH(activation_vec_kernel<E>, dim3(gx, gy), ACT_THREADS, 0, s, (E *)a->out, (const E *)a->gu, a->T,
              a->NI, a->mul);
    return LR_OK;
}

int lr_gpu_activation_vec(const void *args, cudaStream_t s) {
    const lr_gpu_activation_args *a = (const lr_gpu_activation_args *)args;
    return LR_DISPATCH_DTYPE(a->dt, activation_vec, a, s);
}

static int activation_run(const char *op, const char *variant, void *out, const void *gu, int64_t T,
                          int64_t NI, bool mul, lr_dtype dt, cudaStream_t s) {
    const lr_gpu_kernel *k;
    int rc = lr_gpu_kernel_find("activation", variant, &k);
    if (rc) return rc;
    if (T < 0 || NI < 0)
        return lr_fail(LR_E_INVAL, "gpu %s: negative size (T %lld, NI %lld)", op, (long long)T,
                       (long long)NI);
    if (dt != LR_F32 && dt != LR_F16 && dt != LR_BF16)
        return lr_fail(LR_E_INVAL, "gpu %s: dtype %s is not F32, F16 or BF16", op, lr_dtype_name(dt));
    if (T == 0 || NI == 0) return LR_OK;
    lr_gpu_activation_args a = {out, gu, T, NI, mul, dt};
    return lr_gpu_kernel_run(k, &a, dt, s);
}

extern "C" int lr_gpu_silu_and_mul(const char *variant, void *out, const void *gu, int64_t T, int64_t NI,
                                   lr_dtype dt, cudaStream_t s) {
    return activation_run("silu_and_mul", variant, out, gu, T, NI, true, dt, s);
}

/* silu alone is only observed, never on the hot path: the default variant serves it. */
extern "C" int lr_gpu_silu(void *out, const void *gu, int64_t T, int64_t NI, lr_dtype dt, cudaStream_t s) {
    return activation_run("silu", NULL, out, gu, T, NI, false, dt, s);
}
