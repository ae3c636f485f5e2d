/* util.c: the small things every llama-diff command uses: one-line errors, integer
 * options, precision names, paths. */
#include "diff.h"

#include <ctype.h>
#include <errno.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool is_cmd(const args *a, const char *cmd) { return a->cmd && strcmp(a->cmd, cmd) == 0; }

int bad(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("llama-diff: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_BAD;
}

int lib_fail(int rc) { return bad("%s (%s)", lr_last_error(), lr_status_name(rc)); }

int parse_int(const char *s, const char *opt, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return bad("%s: \"%s\" is not an integer in %d..%d", opt, s, lo, hi);
    *out = (int)v;
    return 0;
}

/* "SIZE": bytes, or with a binary suffix K, M, G or T (KiB .. TiB); at least 1. */
int parse_size(const char *s, const char *opt, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    case 'T':
    case 't':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (*end == 'i' || *end == 'B') end += *end == 'i' && end[1] == 'B' ? 2 : 1;
    if (!isdigit((unsigned char)*s) || *end != '\0' || errno || v > (~0ull >> shift) || v == 0)
        return bad("%s: \"%s\" is not a size (bytes, or with K, M, G or T: 512M, 2G)", opt, s);
    *out = (uint64_t)v << shift;
    return 0;
}

/* The names a precision goes by: the first row of a dtype is how llama-diff writes it,
 * torch how a llama-golden/1 file's compute_dtype does. */
static const struct {
    const char *name;
    lr_dtype dtype;
    const char *torch;
} precisions[] = {
    {"f64", LR_F64, "float64"},  {"f32", LR_F32, "float32"}, {"bf16", LR_BF16, "bfloat16"},
    {"fp16", LR_F16, "float16"}, {"fp32", LR_F32, NULL},     {"f16", LR_F16, NULL},
};
#define N_PRECISIONS (sizeof precisions / sizeof precisions[0])

int parse_precision(const char *s, lr_dtype *out) {
    for (size_t i = 0; i < N_PRECISIONS; i++)
        if (strcmp(s, precisions[i].name) == 0) {
            *out = precisions[i].dtype;
            return 0;
        }
    return -1;
}

const char *precision_name(lr_dtype d) {
    for (size_t i = 0; i < N_PRECISIONS; i++)
        if (precisions[i].dtype == d) return precisions[i].name;
    return lr_dtype_name(d);
}

const char *precision_torch(lr_dtype d) {
    for (size_t i = 0; i < N_PRECISIONS; i++)
        if (precisions[i].dtype == d && precisions[i].torch) return precisions[i].torch;
    return lr_dtype_name(d);
}

int parse_precision_torch(const char *s, lr_dtype *out) {
    for (size_t i = 0; i < N_PRECISIONS; i++)
        if (precisions[i].torch && strcmp(s, precisions[i].torch) == 0) {
            *out = precisions[i].dtype;
            return 0;
        }
    return -1;
}

char *join(const char *a, const char *b) {
    char *p = malloc(strlen(a) + strlen(b) + 2);
    if (p) sprintf(p, "%s/%s", a, b);
    return p;
}

bool is_file(const char *path) {
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *fixtures_root(void) {
    const char *env = getenv("LR_FIXTURES");
    if (env && *env) return env;
    struct stat st;
    if (stat(LR_SRC_FIXTURES, &st) == 0 && S_ISDIR(st.st_mode)) return LR_SRC_FIXTURES;
    return LR_DATA_FIXTURES;
}

int check_out_parent(const char *opt, const char *path) {
    /* The folder an output goes in must exist before any work is done for it. */
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0) return 0; /* the current folder */
    char *dir = strndup(path, n);
    if (!dir) return bad("out of memory");
    struct stat st;
    int status = 0;
    if (stat(dir, &st) != 0)
        status = bad("%s %s: folder %s does not exist", opt, path, dir);
    else if (!S_ISDIR(st.st_mode))
        status = bad("%s %s: %s is not a folder", opt, path, dir);
    free(dir);
    return status;
}

/* Edit distance of two names (the nearest golden name for a stage that matches none). */
size_t edit_distance(const char *x, const char *y) {
    size_t n = strlen(y), row[128], best = (size_t)-1;
    if (n >= sizeof row / sizeof row[0]) return best;
    for (size_t j = 0; j <= n; j++) row[j] = j;
    for (size_t i = 1; x[i - 1]; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= n; j++) {
            size_t up = row[j], v = diag + (x[i - 1] != y[j - 1]);
            if (row[j] + 1 < v) v = row[j] + 1;
            if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
        }
    }
    return row[n];
}

