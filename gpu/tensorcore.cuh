/* tensorcore.cuh: the PTX wrappers the kernels on shared memory and tensor cores share
 * (fa2's and fd's attention, the linear family's mma): cp.async from global to shared
 * memory, ldmatrix, and mma.sync m16n8k16 on bf16/f16 with float32 accumulators. */
#ifndef LLAMAREF_GPU_TENSORCORE_CUH
#define LLAMAREF_GPU_TENSORCORE_CUH

#include "common.cuh"

/* ---- cp.async ---------------------------------------------------------------------------- */

static __device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros and reads nothing. */
static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N> static __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* ---- ldmatrix and mma.sync ---------------------------------------------------------------- */

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, r[i] gets
 * element (l / 4, 2 (l % 4)..+1) of it (of its transpose with .trans). */
static __device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
/* Two: lanes 0-7 give matrix 0's rows, 8-15 matrix 1's. */
static __device__ __forceinline__ void ldsm_x2(uint32_t &r0, uint32_t &r1, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r0), "=r"(r1)
                 : "r"(addr));
}
static __device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* c (16x8, f32) += a (16x16) b (16x8), and the rounding of two floats into an A/B
 * register (lo in the low half) with the rounded values handed back (each rounded to
 * nearest even on its own, by one paired conversion). */
template <typename E> struct mma16816;
template <> struct mma16816<__nv_bfloat16> {
    static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi, float &rlo, float &rhi) {
        const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi); /* one conversion instruction for both */
        rlo = __low2float(p), rhi = __high2float(p);
        return (uint32_t)__bfloat16_as_ushort(p.x) | ((uint32_t)__bfloat16_as_ushort(p.y) << 16);
    }
};
template <> struct mma16816<__half> {
    static __device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                               uint32_t b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi, float &rlo, float &rhi) {
        const __half2 p = __floats2half2_rn(lo, hi);
        rlo = __low2float(p), rhi = __high2float(p);
        return (uint32_t)__half_as_ushort(p.x) | ((uint32_t)__half_as_ushort(p.y) << 16);
    }
};

#endif
