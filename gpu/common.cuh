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

/* Calls F<T>(args...) for the element type of dt; LR_E_INVAL for other dtypes. */
#define LR_DISPATCH_DTYPE(dt, F, ...)                                                      \
    ((dt) == LR_F32    ? F<float>(__VA_ARGS__)                                             \
     : (dt) == LR_F16  ? F<__half>(__VA_ARGS__)                                            \
     : (dt) == LR_BF16 ? F<__nv_bfloat16>(__VA_ARGS__)                                     \
                       : lr_fail(LR_E_INVAL, "gpu: dtype %d is not F32, F16 or BF16", (int)(dt)))

static inline unsigned int lr_blocks(int64_t n, int threads) {
    return (unsigned int)((n + threads - 1) / threads);
}

#endif
