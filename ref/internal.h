/* internal.h: helpers shared by the library's own files; not installed. */
#ifndef LLAMAREF_INTERNAL_H
#define LLAMAREF_INTERNAL_H

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "llamaref.h"

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LR_PRINTF(a, b)
#endif

/* Records "file: field: detail" for lr_last_error() and returns status. */
int lr_fail(int status, const char *fmt, ...) LR_PRINTF(2, 3);

/* Overflow-checked size arithmetic: return false on overflow. */
static inline bool lr_mul_overflows(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool lr_add_overflows(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* Reads a whole small file (config.json, index.json) into a NUL-terminated buffer,
 * refusing files larger than limit. */
int lr_read_file(const char *path, size_t limit, char **out, size_t *len);

/* Joins dir and name into a fresh string. */
char *lr_path_join(const char *dir, const char *name);

/* Largest dimension accepted anywhere: keeps every product of two dims in int64. */
#define LR_MAX_DIM ((int64_t)1 << 31)

#ifdef __cplusplus
}
#endif
#endif
