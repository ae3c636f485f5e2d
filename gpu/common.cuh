/* common.cuh: what every CUDA file of the backend shares: the checked-call macros that
 * turn CUDA, cuBLAS and NCCL errors into library statuses with a message, dtype traits
 * (load as float, store from float), and launch helpers. */
#ifndef LLAMAREF_GPU_COMMON_CUH
#define LLAMAREF_GPU_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu_ops.h"

extern "C" int lr_fail(int status, const char *fmt, ...);

/* The registry (registry.cu), for the family entry points: the variant of family named
 * name (NULL: the default), found before any argument check (an unknown name is
 * LR_E_INVAL naming the choices); then run with the family's argument struct, which
 * refuses a dtype the variant does not take and names a plugin variant that fails. */
typedef struct lr_gpu_kernel lr_gpu_kernel;
int lr_gpu_kernel_find(const char *family, const char *name, const lr_gpu_kernel **out);
int lr_gpu_kernel_run(const lr_gpu_kernel *k, const void *args, lr_dtype dt, cudaStream_t s);

/* One generic form: evaluate, and on failure record where and why, then return the
 * status from the enclosing function. */
#define LR_GPU_CHECK_(ok_expr, err_str, what)                                              \
    do {                                                                                   \
        if (!(ok_expr))                                                                    \
            return lr_fail(LR_E_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, what, err_str); \
    } while (0)

#define CUDA_CHECK(call)                                                                   \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        LR_GPU_CHECK_(e_ == cudaSuccess, cudaGetErrorString(e_), #call);                   \
    } while (0)

#define CUBLAS_CHECK(call)                                                                 \
    do {                                                                                   \
        cublasStatus_t e_ = (call);                                                        \
        LR_GPU_CHECK_(e_ == CUBLAS_STATUS_SUCCESS, cublasGetStatusString(e_), #call);      \
    } while (0)

#ifdef LR_HAVE_NCCL
#include <nccl.h>
#define NCCL_CHECK(call)                                                                   \
    do {                                                                                   \
        ncclResult_t e_ = (call);                                                          \
        LR_GPU_CHECK_(e_ == ncclSuccess, ncclGetErrorString(e_), #call);                   \
    } while (0)
#endif

/* After every kernel launch. */
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

/* Element types by dtype: load to float, store from float (round to nearest even). */
template <typename T> struct elem;
template <> struct elem<float> {
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(float v) { return v; }
};
template <> struct elem<__half> {
    static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
    static __device__ __forceinline__ __half store(float v) { return __float2half_rn(v); }
};
template <> struct elem<__nv_bfloat16> {
    static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __bfloat162float(v); }
    static __device__ __forceinline__ __nv_bfloat16 store(float v) { return __float2bfloat16_rn(v); }
};

template <typename T> __device__ __forceinline__ float ld(const T *p) { return elem<T>::load(*p); }
template <typename T> __device__ __forceinline__ void st(T *p, float v) { *p = elem<T>::store(v); }

/* silu(g) = g / (1 + exp(-g)) in float32 with expf, as the reference writes it (not a
 * fast-math form). The activation family's kernels and gate_up_proj's GEMV with the
 * activation fused (linear.cu) both call it, so that the two agree bit for bit; the add is
 * __fadd_rn so that no kernel's compilation can fuse it with expf's last multiply (ptxas
 * did, in every kernel alike, but only by making the same choice in each context). */
static __device__ __forceinline__ float silu1(float g) { return g / __fadd_rn(1.0f, expf(-g)); }

/* The rotate-half step of one RoPE pair (x1 at i, x2 at i + hd/2) by the angle's float32
 * cosine c and sine sn: the one expression of it that rotary.cu's heads and fused RoPE +
 * cache kernels and qkv_proj's GEMV with RoPE fused (linear.cu) share, so that they round
 * alike. The contractions are written out (x2 sn, x2 c rounded, each then in one fma with
 * x1), the forms ptxas chose in every one of those kernels, so that no kernel's context can
 * choose another. */
static __device__ __forceinline__ void rot_pair(float x1, float x2, float c, float sn, float &y1, float &y2) {
    y1 = __fmaf_rn(x1, c, -__fmul_rn(x2, sn));
    y2 = __fmaf_rn(x1, sn, __fmul_rn(x2, c));
}

/* Calls F<T>(args...) for the element type of dt; LR_E_INVAL for other dtypes. */
#define LR_DISPATCH_DTYPE(dt, F, ...)                                                      \
    ((dt) == LR_F32    ? F<float>(__VA_ARGS__)                                             \
     : (dt) == LR_F16  ? F<__half>(__VA_ARGS__)                                            \
     : (dt) == LR_BF16 ? F<__nv_bfloat16>(__VA_ARGS__)                                     \
                       : lr_fail(LR_E_INVAL, "gpu: dtype %d is not F32, F16 or BF16", (int)(dt)))

/* Greedy decoding's order on (value, index) pairs (lr_gpu_argmax on the device, the CUDA
 * backend comparing its pairs on the host): whether (vb, ib) beats (va, ia). A NaN beats
 * any number, then the larger value, then the lower index: a total order, so neither the
 * grouping nor the order of comparisons changes the winner (torch.argmax's rule). */
static __host__ __device__ __forceinline__ bool lr_argmax_beats(float va, int64_t ia, float vb, int64_t ib) {
    bool na = isnan(va), nb = isnan(vb);
    if (na != nb) return nb;
    if (!na && vb != va) return vb > va;
    return ib < ia;
}

/* ---- Programmatic dependent launch (compute capability 9.0 on) ------------------------
 * A decode step is about eleven kernels a layer, most of them a few microseconds long: the
 * gap between one kernel's last block and the next kernel's first, and a kernel's ramp to
 * full bandwidth, are a real share of it. A kernel launched by LR_LAUNCH (when lr_gpu_pdl()
 * says so) may be scheduled while the kernel before it in the stream still runs, once every
 * block of that one has called pdl_trigger() or exited: its blocks are resident, and what
 * does not depend on the earlier kernels (a GEMV's first loads of its constant weights)
 * done, by the time the data arrive. What every kernel launched so must do:
 *  - pdl_wait() in every thread before it reads anything an earlier kernel of the stream
 *    wrote, and before it writes anything (an earlier kernel may still read it); before
 *    it, only reads of data no kernel writes (weights);
 *  - no return before pdl_wait(): the grid then completes only after its predecessor has,
 *    so a kernel that waits on it waits on every kernel before it too.
 * A kernel calls pdl_trigger() first thing, so that the next one may be scheduled. Both
 * are no-ops below sm_90 and in a launch without the attribute; neither changes a bit
 * of any result (tests/test_gpu_forward.c: pdl_changes_no_bit). */
static __device__ __forceinline__ void pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* The programmatic-serialization attribute of a launch: set where lr_gpu_pdl() allows it on
 * the current device. A launcher with attributes of its own (a cluster) adds this one. */
static inline cudaLaunchAttribute lr_pdl_attribute(void) {
    cudaLaunchAttribute a;
    a.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    a.val.programmaticStreamSerializationAllowed = lr_gpu_pdl() ? 1 : 0;
    return a;
}

/* kernel<<<grid, block, smem, s>>>(args...), with lr_pdl_attribute(); the kernel keeps
 * the contract above. */
template <typename... P, typename... A>
static inline cudaError_t lr_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                                    A &&...args) {
    cudaLaunchAttribute at[1] = {lr_pdl_attribute()};
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = s;
    cfg.attrs = at, cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kernel, static_cast<A &&>(args)...);
}

/* LR_LAUNCH(kernel, grid, block, smem, stream, args...): lr_launch, checked as
 * LAUNCH_CHECK checks the others (variadic whole, so a kernel's template arguments may
 * hold commas). */
#define LR_LAUNCH(...) CUDA_CHECK(lr_launch(__VA_ARGS__))

static inline unsigned int lr_blocks(int64_t n, int threads) {
    return (unsigned int)((n + threads - 1) / threads);
}

#endif
