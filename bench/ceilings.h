/* ceilings.h: what both GPU benchmarks share (header-only; each is one program): the
 * checked-call macro, the median, and the card's two ceilings measured the same way in
 * both, so their ratios are against one definition: device-to-device copy bandwidth
 * (bytes read plus bytes written per second, 2 GiB buffers; the library's, which
 * llama-diff ops --perf measures too) and the cuBLAS bf16 GEMM
 * rate (an 8192^3 product of random data, float32 compute: the backend's setting).
 * Define BENCH_NAME (the program's name, for messages) before including it. */
#ifndef LLAMAREF_BENCH_CEILINGS_H
#define LLAMAREF_BENCH_CEILINGS_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

#include "opsweep.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CK(call)                                                                           \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            fprintf(stderr, BENCH_NAME ": %s: %s\n", #call, cudaGetErrorString(e_));       \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v. */
static double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Seconds of each of 20 runs of fn(user) after 3 warm-ups, timed with events on the
 * default stream; the median. */
static double bench_time_events(void (*fn)(void *), void *user) {
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double t[20];
    for (int i = 0; i < 23; i++) {
        CK(cudaEventRecord(e0, 0));
        fn(user);
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 3) t[i - 3] = ms * 1e-3;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return bench_median(t, 20);
}

typedef struct {
    void *a, *b, *c;
    size_t n;
    cublasHandle_t blas;
} bench_bufs;

/* Device-to-device copy of 2 GiB: bytes read plus bytes written per second; the
 * library's measurement (lr_gpu_copy_bandwidth, gpu/opsweep.c), which `llama-diff ops
 * --perf` takes its ceiling from too: 3 warm-ups, the median of 20. */
static double bench_copy_bandwidth(void) {
    double bw;
    if (lr_gpu_copy_bandwidth((size_t)2 << 30, 3, 20, &bw) != LR_OK) {
        fprintf(stderr, BENCH_NAME ": %s\n", lr_last_error());
        exit(1);
    }
    return bw;
}

static uint16_t bench_bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static void bench_gemm(void *user) {
    bench_bufs *x = (bench_bufs *)user;
    int n = (int)x->n;
    float one = 1, zero = 0;
    if (cublasGemmEx(x->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, x->a, CUDA_R_16BF, n, x->b, CUDA_R_16BF, n,
                     &zero, x->c, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, BENCH_NAME ": cublasGemmEx failed\n");
        exit(1);
    }
}

/* cublasGemmEx on an 8192^3 product of random bf16 data (never zeros: zeros run faster),
 * bf16 output, float32 compute: FLOP/s. *burst: the median of 20 products timed one by
 * one after 3 warm-ups, about 30 ms of work: the rate before the card's power limit
 * lowers its clock. With sustained non-NULL, the products then run back to back for
 * hold_s seconds (the power limit acts within that), and the 20 after that, timed
 * together, give *sustained: the rate a workload of seconds (a benchmark's repeats)
 * can expect from the same card. */
static void bench_gemm_rates(double hold_s, double *burst, double *sustained) {
    const int n = 8192;
    size_t cnt = (size_t)n * n;
    uint16_t *h = (uint16_t *)malloc(cnt * 2);
    if (!h) {
        fprintf(stderr, BENCH_NAME ": out of memory\n");
        exit(1);
    }
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < cnt; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        h[i] = bench_bf16_of((float)((double)(r >> 11) / 9007199254740992.0 - 0.5));
    }
    bench_bufs x = {NULL, NULL, NULL, (size_t)n, NULL};
    CK(cudaMalloc(&x.a, cnt * 2));
    CK(cudaMalloc(&x.b, cnt * 2));
    CK(cudaMalloc(&x.c, cnt * 2));
    CK(cudaMemcpy(x.a, h, cnt * 2, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(x.b, h, cnt * 2, cudaMemcpyHostToDevice));
    free(h);
    if (cublasCreate(&x.blas) != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, BENCH_NAME ": cublasCreate failed\n");
        exit(1);
    }
    double flops = 2.0 * (double)n * n * n;
    *burst = flops / bench_time_events(bench_gemm, &x);
    if (sustained) {
        /* Each product takes over a millisecond, so a batch of 50 queued between two
         * checks of the wall clock keeps the card busy without flooding the queue. */
        cudaEvent_t e0, e1;
        CK(cudaEventCreate(&e0));
        CK(cudaEventCreate(&e1));
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            for (int i = 0; i < 50; i++)
                bench_gemm(&x);
            CK(cudaEventRecord(e0, 0));
            CK(cudaEventSynchronize(e0));
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((double)(t.tv_sec - t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - t0.tv_nsec) < hold_s);
        for (int i = 0; i < 10; i++)
            bench_gemm(&x); /* no gap before the timed ones */
        CK(cudaEventRecord(e0, 0));
        for (int i = 0; i < 20; i++)
            bench_gemm(&x);
        CK(cudaEventRecord(e1, 0));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        *sustained = 20 * flops / (ms * 1e-3);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
    }
    cublasDestroy(x.blas);
    cudaFree(x.a);
    cudaFree(x.b);
    cudaFree(x.c);
}

static double bench_gemm_rate(void) {
    double rate;
    bench_gemm_rates(0, &rate, NULL);
    return rate;
}

#endif
