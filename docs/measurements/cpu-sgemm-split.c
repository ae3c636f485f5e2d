/* cpu-sgemm-split.c: is OpenBLAS's sgemm "split-exact" over blocks of W's rows, called as
 * lr_ref_linear_f32 calls it (RowMajor, x NoTrans, W Trans)?  y (M, N) = x (M, K) W (N, K)^T
 * for random x, W in [-1, 1):
 *   one:  the one call over all N rows against one call per block of c rows (the old
 *         streamed LM head's blocks), element by element, bit for bit;
 *   grid: a call per 256 rows over the held W (the LM head's order since issue 18) against
 *         the same 256-row calls made block by block of c rows, each block copied into a
 *         fresh buffer first, as the streamed LM head reads it (ref/cpu/ops/model.c).
 * Build: cc -O2 cpu-sgemm-split.c -lopenblas   (-DDOUBLE: the same of dgemm, as the f64 path)
 * Usage: a.out N K THREADS M,M,... C,C,...     (docs/measurements/cpu-sgemm-split-*.txt) */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern void openblas_set_num_threads(int);

#define GRID 256

#ifdef DOUBLE
typedef double real;
#define GEMM cblas_dgemm
#else
typedef float real;
#define GEMM cblas_sgemm
#endif

static uint64_t s = 88172645463325252ull;
static real rnd(void) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    return (real)((double)(s >> 11) / 9007199254740992.0 * 2 - 1);
}

static void gemm(int M, int64_t n, int K, const real *x, const real *w, real *y, int64_t ldy) {
    GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, M, (int)n, K, 1, x, K, w, K, 0, y, (int)ldy);
}

/* y[:, 0:n] (ld ldy) by calls of GRID rows */
static void gemm_grid(int M, int64_t n, int K, const real *x, const real *w, real *y, int64_t ldy) {
    for (int64_t j = 0; j < n; j += GRID) gemm(M, n - j < GRID ? n - j : GRID, K, x, w + j * K, y + j, ldy);
}

static int64_t differ(const real *a, const real *b, size_t n, int64_t *first) {
    int64_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(real)) && bad++ == 0) *first = (int64_t)i;
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 6) return fprintf(stderr, "usage: %s N K THREADS M,.. C,..\n", argv[0]), 2;
    int64_t N = atoll(argv[1]);
    int K = atoi(argv[2]), th = atoi(argv[3]), Ms[32], nm = 0, Mmax = 0;
    int64_t Cs[32];
    int nc = 0;
    openblas_set_num_threads(th);
    for (char *p = strtok(argv[4], ","); p && nm < 32; p = strtok(NULL, ",")) Ms[nm++] = atoi(p);
    for (char *p = strtok(argv[5], ","); p && nc < 32; p = strtok(NULL, ",")) Cs[nc++] = atoll(p);
    for (int i = 0; i < nm; i++) Mmax = Ms[i] > Mmax ? Ms[i] : Mmax;
    real *w = malloc(sizeof(real) * N * K), *x = malloc(sizeof(real) * Mmax * K);
    real *y1 = malloc(sizeof(real) * Mmax * N), *y2 = malloc(sizeof(real) * Mmax * N);
    if (!w || !x || !y1 || !y2) return fprintf(stderr, "out of memory\n"), 1;
    for (int64_t i = 0; i < N * K; i++) w[i] = rnd();
    for (int64_t i = 0; i < (int64_t)Mmax * K; i++) x[i] = rnd();
    for (int im = 0; im < nm; im++) {
        int M = Ms[im];
        size_t n = (size_t)M * (size_t)N;
        int64_t first = 0;
        gemm(M, N, K, x, w, y1, N);
        printf("%s N %6lld K %4d threads %d M %3d  one call vs blocks of:", sizeof(real) == 8 ? "dgemm" : "sgemm",
               (long long)N, K, th, M);
        for (int ic = 0; ic < nc; ic++) {
            int64_t c = Cs[ic];
            for (int64_t n0 = 0; n0 < N; n0 += c) gemm(M, N - n0 < c ? N - n0 : c, K, x, w + n0 * K, y2 + n0, N);
            int64_t bad = differ(y1, y2, n, &first);
            printf(" %lld:", (long long)c);
            if (bad) printf("%lld (%.2f%%, 1st n %lld)", (long long)bad, 100.0 * bad / n, (long long)(first % N));
            else printf("same");
        }
        gemm_grid(M, N, K, x, w, y1, N);
        printf("\n%*s  grid %d held vs in blocks of:", 46, "", GRID);
        for (int ic = 0; ic < nc; ic++) {
            int64_t c = Cs[ic];
            if (c % GRID) continue;
            real *blk = malloc(sizeof(real) * c * K);
            for (int64_t n0 = 0; n0 < N; n0 += c) {
                int64_t nb = N - n0 < c ? N - n0 : c;
                memcpy(blk, w + n0 * K, sizeof(real) * nb * K);
                gemm_grid(M, nb, K, x, blk, y2 + n0, N);
            }
            free(blk);
            int64_t bad = differ(y1, y2, n, &first);
            printf(" %lld:%s", (long long)c, bad ? "DIFFER" : "same");
            if (bad) printf("(%lld)", (long long)bad);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
