/* cpu-sgemm-grid-time.c: time of y (M, N) = x (M, K) W (N, K)^T in one sgemm (RowMajor,
 * NoTrans x Trans, as lr_ref_linear_f32) against one sgemm per C rows of W for each C given
 * (the f32 LM head's grid: C = 256). Two repeats. Results in cpu-sgemm-split-2026-12-02.txt.
 * Build: cc -O2 cpu-sgemm-grid-time.c -lopenblas;  usage: a.out N K M THREADS C...  */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
extern void openblas_set_num_threads(int);
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}
int main(int argc, char **argv) {
    if (argc < 5) return fprintf(stderr, "usage: %s N K M THREADS C...\n", argv[0]), 2;
    int64_t N = atoll(argv[1]), K = atoll(argv[2]), M = atoll(argv[3]);
    openblas_set_num_threads(atoi(argv[4]));
    float *w = malloc(4 * N * K), *x = malloc(4 * M * K), *y = malloc(4 * M * N);
    if (!w || !x || !y) return fprintf(stderr, "out of memory\n"), 1;
    for (int64_t i = 0; i < N * K; i++) w[i] = (float)((i * 2654435761u) % 1000) / 1000 - 0.5f;
    for (int64_t i = 0; i < M * K; i++) x[i] = (float)((i * 40503u) % 1000) / 1000 - 0.5f;
    for (int rep = 0; rep < 2; rep++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, x, K, w, K, 0, y, N);
        printf("N %lld K %lld M %lld one call %.3fs", (long long)N, (long long)K, (long long)M, now() - t0);
        for (int a = 5; a < argc; a++) {
            int64_t c = atoll(argv[a]);
            t0 = now();
            for (int64_t n0 = 0; n0 < N; n0 += c)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N - n0 < c ? N - n0 : c, K, 1, x, K,
                            w + n0 * K, K, 0, y + n0, N);
            printf("  per %lld rows %.3fs", (long long)c, now() - t0);
        }
        printf("\n");
    }
    return 0;
}
