/* linear.c (template, see ops/real.h): the matrix product every parallel linear layer
 * (QKVParallelLinear, MergedColumnParallelLinear, RowParallelLinear, the LM head) does
 * on one rank: y = x W^T + b, through BLAS. */

/* x (T, K) @ W (N, K)^T + b (N) -> y (T, N); b may be NULL. One token (a decode step) is
 * a matrix-vector product, W (N, K) @ x (K): OpenBLAS 0.3.21's GEMM does not hand M = 1
 * to GEMV itself and runs ~5x slower there (docs/performance.md). */
void R(lr_ref_linear)(real *y, const real *x, const real *w, const real *b, int64_t T, int64_t N,
                      int64_t K) {
    if (T == 1)
        GEMV(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1, w, (int)K, x, 1, 0, y, 1);
    else
        GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)N, (int)K, 1, x, (int)K, w, (int)K,
             0, y, (int)N);
    if (b)
        for (int64_t t = 0; t < T; t++)
            for (int64_t n = 0; n < N; n++) y[t * N + n] += b[n];
}
