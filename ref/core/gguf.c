/* gguf.c: a strict reader of GGUF v2/v3 files (llama.cpp's single-file format) over a
 * mapped file; the llama.* metadata as an lr_config; tensor names to Hugging Face names;
 * dequantization of F32, F16, BF16, Q8_0, Q4_0, Q4_1 and the K-quants (Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, Q8_K) to float32 exactly as ggml defines the blocks; and the undo of the
 * q/k row permutation llama.cpp's converter applies. Every count, length and offset is
 * checked against the file's size before anything is allocated from it. See
 * docs/gguf.md. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Products in the dequantizers must be rounded before the add, as ggml's reference and
 * the gguf package's numpy code do; clang honours this, GCC does not contract in ISO C
 * mode (-std=c11), and each product is a separate statement besides. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define GGUF_MAX_KEY 65535    /* the specification's limit on key length */
#define GGUF_MAX_NAME 64      /* ... and on tensor name length */
#define GGUF_MAX_DEPTH 8      /* nesting of arrays in arrays */
#define GGUF_DEFAULT_ALIGN 32 /* general.alignment when absent */
#define GGUF_MAX_ALIGN ((uint64_t)1 << 30)

/* Metadata value types. */
enum {
    V_U8,
    V_I8,
    V_U16,
    V_I16,
    V_U32,
    V_I32,
    V_F32,
    V_BOOL,
    V_STRING,
    V_ARRAY,
    V_U64,
    V_I64,
    V_F64,
    V_COUNT
};
static const char *const vtype_name[V_COUNT] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                                "int32",  "float32", "bool",   "string", "array",
                                                "uint64", "int64",   "float64"};
static const size_t vtype_size[V_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

/* ggml tensor types: block size (elements) and bytes per block. Every type the gguf
 * specification lists is known, so a file of another quantization parses (its spans
 * are checked) and loading it names the type it cannot dequantize. */
static const struct {
    const char *name;
    uint32_t block, size;
} types[] = {
    [LR_GGML_F32] = {"F32", 1, 4},
    [LR_GGML_F16] = {"F16", 1, 2},
    [LR_GGML_Q4_0] = {"Q4_0", 32, 18},
    [LR_GGML_Q4_1] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},
    [7] = {"Q5_1", 32, 24},
    [LR_GGML_Q8_0] = {"Q8_0", 32, 34},
    [9] = {"Q8_1", 32, 40},
    [LR_GGML_Q2_K] = {"Q2_K", 256, 84},
    [LR_GGML_Q3_K] = {"Q3_K", 256, 110},
    [LR_GGML_Q4_K] = {"Q4_K", 256, 144},
    [LR_GGML_Q5_K] = {"Q5_K", 256, 176},
    [LR_GGML_Q6_K] = {"Q6_K", 256, 210},
    [LR_GGML_Q8_K] = {"Q8_K", 256, 292},
    [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98},
    [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},
    [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136},
    [24] = {"I8", 1, 1},
    [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},
    [27] = {"I64", 1, 8},
    [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},
    [LR_GGML_BF16] = {"BF16", 1, 2},
    [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},
    [39] = {"MXFP4", 32, 17},
};
#define N_TYPES (sizeof types / sizeof types[0])

const char *lr_ggml_type_name(uint32_t type) {
    return type < N_TYPES && types[type].name ? types[type].name : NULL;
}

bool lr_ggml_type_supported(uint32_t type) {
    return type == LR_GGML_F32 || type == LR_GGML_F16 || type == LR_GGML_BF16 || type == LR_GGML_Q8_0 ||
           type == LR_GGML_Q4_0 || type == LR_GGML_Q4_1 || (type >= LR_GGML_Q2_K && type <= LR_GGML_Q8_K);
}

/* One metadata entry; strings and arrays stay in the mapped file. */
typedef struct {
    char *key;
    uint32_t type;
    const unsigned char *val; /* the value's bytes (for an array: its first element) */
    uint32_t elem_type;       /* arrays */
    uint64_t count;           /* arrays: elements; strings: length */
} gguf_kv;

struct lr_gguf_file {
    char *path;
    void *map;
    size_t map_len;
    const unsigned char *buf;
    size_t len;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_start; /* file offset of the data section */
    gguf_kv *kv;         /* file order */
    size_t nkv;
    lr_gguf_tensor *tensors; /* file order */
    size_t nt;
    lr_gguf_tensor **by_name;
};

/* ---- reading ---------------------------------------------------------------------- */

typedef struct {
    const lr_gguf_file *f;
    size_t pos;
} cursor;

static size_t left(const cursor *c) { return c->f->len - c->pos; }

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > left(c))
        return lr_fail(LR_E_TRUNCATED, "%s: %s: needs %llu bytes at offset %zu but the file has %zu",
                       c->f->path, what, (unsigned long long)n, c->pos, c->f->len);
    return LR_OK;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int rd_u32(cursor *c, uint32_t *out, const char *what) {
    int rc = need(c, 4, what);
    if (rc) return rc;
    *out = (uint32_t)le(c->f->buf + c->pos, 4);
    c->pos += 4;
    return LR_OK;
}

static int rd_u64(cursor *c, uint64_t *out, const char *what) {
    int rc = need(c, 8, what);
    if (rc) return rc;
    *out = le(c->f->buf + c->pos, 8);
    c->pos += 8;
    return LR_OK;
}

/* A string: its length, then its bytes, which must be in the file. */
static int rd_string(cursor *c, const unsigned char **s, uint64_t *n, const char *what) {
    int rc = rd_u64(c, n, what);
    if (rc) return rc;
    if (*n > left(c))
        return lr_fail(LR_E_TRUNCATED, "%s: %s: string length %llu runs past the end of the file (%zu bytes)",
                       c->f->path, what, (unsigned long long)*n, c->f->len);
    *s = c->f->buf + c->pos;
    c->pos += (size_t)*n;
    return LR_OK;
}

/* Skips one value of type t (already read), checking its bytes are in the file; key
 * labels messages ("metadata \"name\""). */
static int skip_value(cursor *c, uint32_t t, int depth, const char *key) {
    const char *path = c->f->path;
    if (t >= V_COUNT) return lr_fail(LR_E_GGUF, "%s: %s: value type %u is not a GGUF type", path, key, t);
    if (t == V_STRING) {
        const unsigned char *s;
        uint64_t n;
        return rd_string(c, &s, &n, key);
    }
    if (t == V_ARRAY) {
        if (depth >= GGUF_MAX_DEPTH)
            return lr_fail(LR_E_GGUF, "%s: %s: arrays nested deeper than %d", path, key, GGUF_MAX_DEPTH);
        uint32_t et;
        uint64_t n;
        int rc;
        if ((rc = rd_u32(c, &et, key)) || (rc = rd_u64(c, &n, key))) return rc;
        if (et >= V_COUNT)
            return lr_fail(LR_E_GGUF, "%s: %s: array element type %u is not a GGUF type", path, key, et);
        /* Every element takes at least this many bytes: bounds n before the walk. */
        uint64_t least = et == V_STRING ? 8 : et == V_ARRAY ? 12 : vtype_size[et];
        if (n > left(c) / least)
            return lr_fail(LR_E_TRUNCATED, "%s: %s: %llu elements of %s cannot fit in the %zu bytes left",
                           path, key, (unsigned long long)n, vtype_name[et], left(c));
        if (et != V_STRING && et != V_ARRAY && et != V_BOOL) {
            c->pos += (size_t)(n * least);
            return LR_OK;
        }
        for (uint64_t i = 0; i < n; i++)
            if ((rc = skip_value(c, et, depth + 1, key))) return rc;
        return LR_OK;
    }
    int rc = need(c, vtype_size[t], key);
    if (rc) return rc;
    if (t == V_BOOL && c->f->buf[c->pos] > 1)
        return lr_fail(LR_E_GGUF, "%s: %s: bool value %u is not 0 or 1", path, key, c->f->buf[c->pos]);
    c->pos += vtype_size[t];
    return LR_OK;
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const gguf_kv *)a)->key, ((const gguf_kv *)b)->key);
}
static int cmp_tname(const void *a, const void *b) {
    return strcmp((*(lr_gguf_tensor *const *)a)->name, (*(lr_gguf_tensor *const *)b)->name);
}
static int cmp_toffset(const void *a, const void *b) {
    const lr_gguf_tensor *x = *(lr_gguf_tensor *const *)a, *y = *(lr_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* A key or name as a C string: no NUL inside. */
static char *dup_name(const unsigned char *s, uint64_t n) {
    if (memchr(s, 0, (size_t)n)) return NULL;
    char *p = malloc((size_t)n + 1);
    if (p) {
        memcpy(p, s, (size_t)n);
        p[n] = '\0';
    }
    return p;
}

/* A string field that names something (a key, a tensor): length 1..limit, no NUL byte;
 * a fresh copy in *out. kind prefixes the messages ("" or "name "). */
static int rd_name(const lr_gguf_file *f, cursor *c, uint64_t limit, const char *what, const char *kind,
                   char **out) {
    const unsigned char *s;
    uint64_t n;
    int rc = rd_string(c, &s, &n, what);
    if (rc) return rc;
    if (n == 0 || n > limit)
        return lr_fail(LR_E_GGUF, "%s: %s: %slength %llu is outside 1..%llu", f->path, what, kind,
                       (unsigned long long)n, (unsigned long long)limit);
    if (!(*out = dup_name(s, n))) {
        if (memchr(s, 0, (size_t)n)) return lr_fail(LR_E_GGUF, "%s: %s: %scontains a NUL byte", f->path, what, kind);
        return lr_fail(LR_E_NOMEM, "%s: out of memory", f->path);
    }
    return LR_OK;
}

static int read_metadata(lr_gguf_file *f, cursor *c, uint64_t nkv) {
    const char *path = f->path;
    int rc;
    for (uint64_t i = 0; i < nkv; i++) {
        char what[48];
        snprintf(what, sizeof what, "metadata key %llu", (unsigned long long)i);
        gguf_kv *kv = &f->kv[f->nkv];
        memset(kv, 0, sizeof *kv);
        char *key;
        if ((rc = rd_name(f, c, GGUF_MAX_KEY, what, "", &key))) return rc;
        kv->key = key;
        f->nkv++;
        char label[128];
        snprintf(label, sizeof label, "metadata \"%.100s\"", kv->key);
        if ((rc = rd_u32(c, &kv->type, label))) return rc;
        if (kv->type >= V_COUNT)
            return lr_fail(LR_E_GGUF, "%s: %s: value type %u is not a GGUF type", path, label, kv->type);
        size_t start = c->pos;
        if (kv->type == V_STRING) {
            const unsigned char *s;
            if ((rc = rd_string(c, &s, &kv->count, label))) return rc;
            kv->val = s;
        } else if (kv->type == V_ARRAY) {
            if ((rc = need(c, 12, label))) return rc;
            kv->elem_type = (uint32_t)le(f->buf + c->pos, 4);
            kv->count = le(f->buf + c->pos + 4, 8);
            kv->val = f->buf + c->pos + 12;
            if ((rc = skip_value(c, V_ARRAY, 0, label))) return rc;
        } else {
            kv->val = f->buf + start;
            if ((rc = skip_value(c, kv->type, 0, label))) return rc;
        }
    }
    /* Duplicate keys: sort a copy of the order and compare neighbours. */
    gguf_kv *sorted = malloc((f->nkv ? f->nkv : 1) * sizeof *sorted);
    if (!sorted) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    memcpy(sorted, f->kv, f->nkv * sizeof *sorted);
    qsort(sorted, f->nkv, sizeof *sorted, cmp_kv);
    rc = LR_OK;
    for (size_t i = 1; i < f->nkv && !rc; i++)
        if (strcmp(sorted[i].key, sorted[i - 1].key) == 0)
            rc = lr_fail(LR_E_GGUF, "%s: metadata \"%s\": key appears more than once", path, sorted[i].key);
    free(sorted);
    return rc;
}

static const gguf_kv *find_kv(const lr_gguf_file *f, const char *key) {
    for (size_t i = 0; i < f->nkv; i++)
        if (strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

/* An integer of any integer type, as int64 when it fits. */
static bool kv_int(const gguf_kv *kv, int64_t *out) {
    const unsigned char *p = kv->val;
    switch (kv->type) {
    case V_U8:
        *out = p[0];
        return true;
    case V_I8:
        *out = (int8_t)p[0];
        return true;
    case V_U16:
        *out = (int64_t)le(p, 2);
        return true;
    case V_I16:
        *out = (int16_t)le(p, 2);
        return true;
    case V_U32:
        *out = (int64_t)le(p, 4);
        return true;
    case V_I32:
        *out = (int32_t)le(p, 4);
        return true;
    case V_U64: {
        uint64_t v = le(p, 8);
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
        return true;
    }
    case V_I64:
        *out = (int64_t)le(p, 8);
        return true;
    default:
        return false;
    }
}

static int read_alignment(lr_gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGN;
    const gguf_kv *kv = find_kv(f, "general.alignment");
    if (!kv) return LR_OK;
    int64_t a;
    if (!kv_int(kv, &a))
        return lr_fail(LR_E_GGUF, "%s: metadata \"general.alignment\": %s is not an integer type", f->path,
                       vtype_name[kv->type]);
    if (a <= 0 || (uint64_t)a > GGUF_MAX_ALIGN || (a & (a - 1)) != 0)
        return lr_fail(LR_E_GGUF, "%s: metadata \"general.alignment\": %lld is not a power of two in 1..2^30",
                       f->path, (long long)a);
    f->alignment = (uint64_t)a;
    return LR_OK;
}

static int read_tensor_infos(lr_gguf_file *f, cursor *c, uint64_t nt) {
    const char *path = f->path;
    int rc;
    for (uint64_t i = 0; i < nt; i++) {
        char what[48];
        snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
        lr_gguf_tensor *t = &f->tensors[f->nt];
        memset(t, 0, sizeof *t);
        char *name;
        if ((rc = rd_name(f, c, GGUF_MAX_NAME, what, "name ", &name))) return rc;
        t->name = name;
        f->nt++;
        const char *tn = t->name;
        char label[96];
        snprintf(label, sizeof label, "tensor \"%s\"", tn);
        uint32_t nd;
        if ((rc = rd_u32(c, &nd, label))) return rc;
        if (nd < 1 || nd > LR_MAX_DIMS)
            return lr_fail(LR_E_GGUF, "%s: tensor \"%s\": n_dims %u is outside 1..%d", path, tn, nd,
                           LR_MAX_DIMS);
        t->ndim = (int)nd;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne;
            if ((rc = rd_u64(c, &ne, label))) return rc;
            if (ne == 0) return lr_fail(LR_E_SPAN, "%s: tensor \"%s\": ne[%u] is 0", path, tn, d);
            if (lr_mul_overflows(numel, ne, &numel) || numel > (uint64_t)INT64_MAX)
                return lr_fail(LR_E_SPAN, "%s: tensor \"%s\": element count overflows", path, tn);
            t->ne[d] = (int64_t)ne;
        }
        if ((rc = rd_u32(c, &t->type, label)) || (rc = rd_u64(c, &t->offset, label))) return rc;
        const char *tyname = lr_ggml_type_name(t->type);
        if (!tyname)
            return lr_fail(LR_E_DTYPE, "%s: tensor \"%s\": type %u is not a ggml type", path, tn, t->type);
        uint64_t block = types[t->type].block;
        if ((uint64_t)t->ne[0] % block != 0)
            return lr_fail(LR_E_SPAN,
                           "%s: tensor \"%s\": ne[0] %lld is not a multiple of the %s block size %llu", path,
                           tn, (long long)t->ne[0], tyname, (unsigned long long)block);
        if (lr_mul_overflows(numel / block, types[t->type].size, &t->nbytes))
            return lr_fail(LR_E_SPAN, "%s: tensor \"%s\": byte size overflows", path, tn);
        if (t->offset % f->alignment != 0)
            return lr_fail(LR_E_OFFSET,
                           "%s: tensor \"%s\": offset %llu is not a multiple of the alignment %llu", path, tn,
                           (unsigned long long)t->offset, (unsigned long long)f->alignment);
    }
    return LR_OK;
}

/* Once the data section's start is known: every tensor inside the file, none shared. */
static int place_tensors(lr_gguf_file *f) {
    const char *path = f->path;
    uint64_t data_len = f->len - f->data_start;
    for (size_t i = 0; i < f->nt; i++) {
        lr_gguf_tensor *t = &f->tensors[i];
        uint64_t end;
        if (lr_add_overflows(t->offset, t->nbytes, &end) || end > data_len)
            return lr_fail(
                LR_E_OFFSET,
                "%s: tensor \"%s\": bytes [%llu, +%llu) of the data section run past its end (%llu bytes)",
                path, t->name, (unsigned long long)t->offset, (unsigned long long)t->nbytes,
                (unsigned long long)data_len);
        t->data = f->buf + f->data_start + t->offset;
        f->by_name[i] = t;
    }
    qsort(f->by_name, f->nt, sizeof *f->by_name, cmp_toffset);
    for (size_t i = 1; i < f->nt; i++) {
        const lr_gguf_tensor *p = f->by_name[i - 1], *t = f->by_name[i];
        if (t->offset < p->offset + p->nbytes)
            return lr_fail(LR_E_OVERLAP, "%s: tensor \"%s\" overlaps tensor \"%s\"", path, t->name, p->name);
    }
    qsort(f->by_name, f->nt, sizeof *f->by_name, cmp_tname);
    for (size_t i = 1; i < f->nt; i++)
        if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0)
            return lr_fail(LR_E_GGUF, "%s: tensor \"%s\": name appears more than once", path,
                           f->by_name[i]->name);
    return LR_OK;
}

static int parse(lr_gguf_file *f) {
    const char *path = f->path;
    cursor c = {f, 0};
    int rc;
    if (f->len < 4 || memcmp(f->buf, "GGUF", 4) != 0)
        return lr_fail(f->len < 4 ? LR_E_TRUNCATED : LR_E_GGUF,
                       "%s: magic: not a GGUF file (no \"GGUF\" at the start)", path);
    c.pos = 4;
    if ((rc = rd_u32(&c, &f->version, "version"))) return rc;
    if (f->version != 2 && f->version != 3) {
        const char *why = f->version == 1              ? " (GGUF v1, 32-bit counts, is not supported)"
                          : (f->version & 0xffff) == 0 ? " (a big-endian file?)"
                                                       : "";
        return lr_fail(LR_E_GGUF, "%s: version: %u is not 2 or 3%s", path, f->version, why);
    }
    uint64_t nt, nkv;
    if ((rc = rd_u64(&c, &nt, "tensor_count")) || (rc = rd_u64(&c, &nkv, "metadata_kv_count"))) return rc;
    /* A metadata entry takes at least 13 bytes (key length, a 1-byte key, type, a 1-byte
     * value), a tensor info at least 33: counts beyond what the file can hold are refused
     * before anything is allocated for them. */
    if (nkv > left(&c) / 13)
        return lr_fail(LR_E_TRUNCATED, "%s: metadata_kv_count: %llu entries cannot fit in a %zu-byte file",
                       path, (unsigned long long)nkv, f->len);
    if (nt > left(&c) / 33)
        return lr_fail(LR_E_TRUNCATED, "%s: tensor_count: %llu tensors cannot fit in a %zu-byte file", path,
                       (unsigned long long)nt, f->len);
    f->kv = calloc(nkv ? (size_t)nkv : 1, sizeof *f->kv);
    f->tensors = calloc(nt ? (size_t)nt : 1, sizeof *f->tensors);
    f->by_name = calloc(nt ? (size_t)nt : 1, sizeof *f->by_name);
    if (!f->kv || !f->tensors || !f->by_name) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    if ((rc = read_metadata(f, &c, nkv)) || (rc = read_alignment(f)) || (rc = read_tensor_infos(f, &c, nt)))
        return rc;
    uint64_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
    f->data_start = c.pos + pad;
    if (f->nt > 0 && f->data_start > f->len)
        return lr_fail(LR_E_TRUNCATED,
                       "%s: data section: starts at %llu, past the end of the file (%zu bytes)", path,
                       (unsigned long long)f->data_start, f->len);
    if (f->data_start > f->len) f->data_start = f->len;
    return place_tensors(f);
}

static int gguf_new(const char *name, lr_gguf_file **out) {
    lr_gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(name))) {
        free(f);
        return lr_fail(LR_E_NOMEM, "%s: out of memory", name);
    }
    *out = f;
    return LR_OK;
}

int lr_gguf_parse(const void *buf, size_t len, const char *name, lr_gguf_file **out) {
    lr_gguf_file *f;
    int rc = gguf_new(name, &f);
    if (rc) return rc;
    f->buf = buf;
    f->len = len;
    if ((rc = parse(f))) {
        lr_gguf_close(f);
        return rc;
    }
    *out = f;
    return LR_OK;
}

int lr_gguf_open(const char *path, lr_gguf_file **out) {
    void *map;
    size_t len;
    int rc = lr_map_file(path, 1, &map, &len);
    if (rc) return rc;
    lr_gguf_file *f;
    if ((rc = gguf_new(path, &f))) {
        if (map) munmap(map, len);
        return rc;
    }
    f->len = len;
    f->map = map;
    f->map_len = map ? len : 0;
    f->buf = map;
    if ((rc = parse(f))) {
        lr_gguf_close(f);
        return rc;
    }
    *out = f;
    return LR_OK;
}

void lr_gguf_close(lr_gguf_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->nkv; i++)
        free(f->kv[i].key);
    for (size_t i = 0; i < f->nt; i++)
        free((char *)f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    free(f->by_name);
    if (f->map) munmap(f->map, f->map_len);
    free(f->path);
    free(f);
}

const char *lr_gguf_path(const lr_gguf_file *f) { return f->path; }
uint32_t lr_gguf_version(const lr_gguf_file *f) { return f->version; }
uint64_t lr_gguf_alignment(const lr_gguf_file *f) { return f->alignment; }
size_t lr_gguf_kv_count(const lr_gguf_file *f) { return f->nkv; }
const char *lr_gguf_kv_key(const lr_gguf_file *f, size_t i) { return i < f->nkv ? f->kv[i].key : NULL; }
size_t lr_gguf_tensor_count(const lr_gguf_file *f) { return f->nt; }
const lr_gguf_tensor *lr_gguf_tensor_at(const lr_gguf_file *f, size_t i) {
    return i < f->nt ? &f->tensors[i] : NULL;
}

const lr_gguf_tensor *lr_gguf_find_tensor(const lr_gguf_file *f, const char *name) {
    size_t lo = 0, hi = f->nt;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* A string value copied out (short, no NUL inside); status_bad for a wrong type. */
static int get_string(const lr_gguf_file *f, const char *key, char *out, size_t cap, int status_bad) {
    const gguf_kv *kv = find_kv(f, key);
    if (!kv) return lr_fail(LR_E_MISSING, "%s: metadata \"%s\": missing", f->path, key);
    if (kv->type != V_STRING)
        return lr_fail(status_bad, "%s: metadata \"%s\": %s, expected a string", f->path, key,
                       vtype_name[kv->type]);
    if (kv->count >= cap || memchr(kv->val, 0, (size_t)kv->count))
        return lr_fail(status_bad, "%s: metadata \"%s\": not a string of at most %zu bytes without NUL bytes",
                       f->path, key, cap - 1);
    memcpy(out, kv->val, (size_t)kv->count);
    out[kv->count] = '\0';
    return LR_OK;
}

int lr_gguf_string(const lr_gguf_file *f, const char *key, char *out, size_t cap) {
    return get_string(f, key, out, cap, LR_E_GGUF);
}

/* ---- metadata to config ----------------------------------------------------------------- */

/* An optional integer key: *present says whether it was there. */
static int meta_int(const lr_gguf_file *f, const char *key, bool required, int64_t *out, bool *present) {
    const gguf_kv *kv = find_kv(f, key);
    if (present) *present = kv != NULL;
    if (!kv)
        return required ? lr_fail(LR_E_CONFIG, "%s: metadata \"%s\": required key missing", f->path, key)
                        : LR_OK;
    if (!kv_int(kv, out))
        return lr_fail(LR_E_CONFIG, "%s: metadata \"%s\": %s, expected an integer", f->path, key,
                       vtype_name[kv->type]);
    if (*out <= 0 || *out > LR_MAX_DIM)
        return lr_fail(LR_E_CONFIG, "%s: metadata \"%s\": %lld is outside 1..%lld", f->path, key,
                       (long long)*out, (long long)LR_MAX_DIM);
    return LR_OK;
}

static int meta_real(const lr_gguf_file *f, const char *key, double *out, bool *present) {
    const gguf_kv *kv = find_kv(f, key);
    *present = kv != NULL;
    if (!kv) return LR_OK;
    if (kv->type == V_F32) {
        uint32_t u = (uint32_t)le(kv->val, 4);
        float x;
        memcpy(&x, &u, 4);
        *out = x;
    } else if (kv->type == V_F64) {
        uint64_t u = le(kv->val, 8);
        memcpy(out, &u, 8);
    } else {
        return lr_fail(LR_E_CONFIG, "%s: metadata \"%s\": %s, expected a float", f->path, key,
                       vtype_name[kv->type]);
    }
    if (!isfinite(*out) || *out <= 0)
        return lr_fail(LR_E_CONFIG, "%s: metadata \"%s\": %g must be finite and positive", f->path, key,
                       *out);
    return LR_OK;
}

int lr_gguf_config_json(const lr_gguf_file *f, json_t **out) {
    const char *path = f->path;
    char arch[64];
    int rc;
    if ((rc = get_string(f, "general.architecture", arch, sizeof arch, LR_E_CONFIG)))
        return rc == LR_E_MISSING
                   ? lr_fail(LR_E_CONFIG, "%s: metadata \"general.architecture\": required key missing", path)
                   : rc;
    if (strcmp(arch, "llama") != 0)
        return lr_fail(LR_E_CONFIG,
                       "%s: metadata \"general.architecture\": \"%s\" is not supported (expected \"llama\")",
                       path, arch);
    int64_t hidden, inter, layers, heads, kv_heads = 0, ctx = 2048, key_len = 0, val_len = 0, rot = 0,
                                          vocab = 0;
    bool has_kv, has_ctx, has_key, has_val, has_rot, has_vocab;
    if ((rc = meta_int(f, "llama.embedding_length", true, &hidden, NULL)) ||
        (rc = meta_int(f, "llama.feed_forward_length", true, &inter, NULL)) ||
        (rc = meta_int(f, "llama.block_count", true, &layers, NULL)) ||
        (rc = meta_int(f, "llama.attention.head_count", true, &heads, NULL)) ||
        (rc = meta_int(f, "llama.attention.head_count_kv", false, &kv_heads, &has_kv)) ||
        (rc = meta_int(f, "llama.context_length", false, &ctx, &has_ctx)) ||
        (rc = meta_int(f, "llama.attention.key_length", false, &key_len, &has_key)) ||
        (rc = meta_int(f, "llama.attention.value_length", false, &val_len, &has_val)) ||
        (rc = meta_int(f, "llama.rope.dimension_count", false, &rot, &has_rot)) ||
        (rc = meta_int(f, "llama.vocab_size", false, &vocab, &has_vocab)))
        return rc;
    if (!has_vocab) {
        const gguf_kv *tok = find_kv(f, "tokenizer.ggml.tokens");
        if (!tok)
            return lr_fail(
                LR_E_CONFIG,
                "%s: metadata \"llama.vocab_size\": missing, and no tokenizer.ggml.tokens to count", path);
        if (tok->type != V_ARRAY || tok->count == 0 || tok->count > (uint64_t)LR_MAX_DIM)
            return lr_fail(
                LR_E_CONFIG,
                "%s: metadata \"tokenizer.ggml.tokens\": not a non-empty array of at most 2^31 entries",
                path);
        vocab = (int64_t)tok->count;
    }
    /* head_dim: key_length, else the rotary dimension, else hidden / heads. */
    int64_t head_dim = has_key ? key_len : has_rot ? rot : 0;
    if (has_key && has_val && val_len != key_len)
        return lr_fail(LR_E_CONFIG,
                       "%s: metadata \"llama.attention.value_length\": %lld differs from key_length %lld",
                       path, (long long)val_len, (long long)key_len);
    if (has_rot && head_dim && rot != head_dim)
        return lr_fail(
            LR_E_CONFIG,
            "%s: metadata \"llama.rope.dimension_count\": %lld is not the head size %lld (partial rotary "
            "embedding is not supported)",
            path, (long long)rot, (long long)head_dim);
    double eps = 1e-6, theta = 10000.0, factor = 1.0;
    /* float32 values are kept exactly (1e-5 is 9.999999747378752e-06), as transformers'
     * GGUF loader keeps them. */
    bool has_eps, has_theta, has_factor = false;
    if ((rc = meta_real(f, "llama.attention.layer_norm_rms_epsilon", &eps, &has_eps)) ||
        (rc = meta_real(f, "llama.rope.freq_base", &theta, &has_theta)))
        return rc;
    const char *rope_type = NULL;
    char scaling[32] = "";
    if (find_kv(f, "llama.rope.scaling.type")) {
        if ((rc = get_string(f, "llama.rope.scaling.type", scaling, sizeof scaling, LR_E_CONFIG))) return rc;
        if (strcmp(scaling, "linear") == 0) {
            rope_type = "linear";
            if ((rc = meta_real(f, "llama.rope.scaling.factor", &factor, &has_factor))) return rc;
            if (!has_factor)
                return lr_fail(LR_E_CONFIG,
                               "%s: metadata \"llama.rope.scaling.factor\": required for linear scaling",
                               path);
        } else if (strcmp(scaling, "none") != 0) {
            return lr_fail(
                LR_E_CONFIG,
                "%s: metadata \"llama.rope.scaling.type\": \"%s\" is not supported (supported: none, linear)",
                path, scaling);
        }
    } else {
        /* The older spelling: a bare linear factor. */
        if ((rc = meta_real(f, "llama.rope.scale_linear", &factor, &has_factor))) return rc;
        if (has_factor && factor != 1.0) rope_type = "linear";
    }
    if (lr_gguf_find_tensor(f, "rope_freqs.weight"))
        return lr_fail(
            LR_E_CONFIG,
            "%s: tensor \"rope_freqs.weight\": per-frequency RoPE factors (llama3 scaling) are not supported",
            path);
    bool attn_bias = lr_gguf_find_tensor(f, "blk.0.attn_q.bias") != NULL;
    bool mlp_bias = lr_gguf_find_tensor(f, "blk.0.ffn_gate.bias") != NULL;
    bool tied = lr_gguf_find_tensor(f, "output.weight") == NULL;

    json_t *j = json_object();
    if (!j) return lr_fail(LR_E_NOMEM, "%s: out of memory", path);
    json_object_set_new(j, "architectures", json_pack("[s]", "LlamaForCausalLM"));
    json_object_set_new(j, "model_type", json_string("llama"));
    json_object_set_new(j, "hidden_act", json_string("silu"));
    json_object_set_new(j, "vocab_size", json_integer(vocab));
    json_object_set_new(j, "hidden_size", json_integer(hidden));
    json_object_set_new(j, "intermediate_size", json_integer(inter));
    json_object_set_new(j, "num_hidden_layers", json_integer(layers));
    json_object_set_new(j, "num_attention_heads", json_integer(heads));
    json_object_set_new(j, "num_key_value_heads", json_integer(has_kv ? kv_heads : heads));
    if (head_dim) json_object_set_new(j, "head_dim", json_integer(head_dim));
    json_object_set_new(j, "max_position_embeddings", json_integer(ctx));
    json_object_set_new(j, "rms_norm_eps", json_real(eps));
    json_object_set_new(j, "rope_theta", json_real(theta));
    if (rope_type)
        json_object_set_new(j, "rope_scaling",
                            json_pack("{s:s, s:o}", "rope_type", rope_type, "factor", json_real(factor)));
    json_object_set_new(j, "attention_bias", json_boolean(attn_bias));
    json_object_set_new(j, "mlp_bias", json_boolean(mlp_bias));
    json_object_set_new(j, "tie_word_embeddings", json_boolean(tied));
    json_object_set_new(j, "torch_dtype", json_string("float32"));
    *out = j;
    return LR_OK;
}

int lr_gguf_config(const lr_gguf_file *f, lr_config *cfg) {
    json_t *j;
    int rc = lr_gguf_config_json(f, &j);
    if (rc) return rc;
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) return lr_fail(LR_E_NOMEM, "%s: out of memory", f->path);
    /* The same rules config.json gets; messages name the file and the HF field. */
    char *label = malloc(strlen(f->path) + 32);
    if (!label) {
        free(text);
        return lr_fail(LR_E_NOMEM, "%s: out of memory", f->path);
    }
    sprintf(label, "%s: llama.* metadata", f->path);
    rc = lr_config_parse(text, strlen(text), label, cfg);
    free(label);
    free(text);
    return rc;
}

/* ---- names ---------------------------------------------------------------------------- */

int lr_gguf_hf_name(const char *gguf, char *out, size_t cap) {
    static const struct {
        const char *gguf, *hf;
    } global[] =
        {
            {"token_embd.weight", "model.embed_tokens.weight"},
            {"output_norm.weight", "model.norm.weight"},
            {"output.weight", "lm_head.weight"},
        },
      layer[] = {
          {"attn_norm.weight", "input_layernorm.weight"},
          {"ffn_norm.weight", "post_attention_layernorm.weight"},
          {"attn_q.weight", "self_attn.q_proj.weight"},
          {"attn_q.bias", "self_attn.q_proj.bias"},
          {"attn_k.weight", "self_attn.k_proj.weight"},
          {"attn_k.bias", "self_attn.k_proj.bias"},
          {"attn_v.weight", "self_attn.v_proj.weight"},
          {"attn_v.bias", "self_attn.v_proj.bias"},
          {"attn_output.weight", "self_attn.o_proj.weight"},
          {"attn_output.bias", "self_attn.o_proj.bias"},
          {"ffn_gate.weight", "mlp.gate_proj.weight"},
          {"ffn_gate.bias", "mlp.gate_proj.bias"},
          {"ffn_up.weight", "mlp.up_proj.weight"},
          {"ffn_up.bias", "mlp.up_proj.bias"},
          {"ffn_down.weight", "mlp.down_proj.weight"},
          {"ffn_down.bias", "mlp.down_proj.bias"},
      };
    for (size_t i = 0; i < sizeof global / sizeof global[0]; i++)
        if (strcmp(gguf, global[i].gguf) == 0)
            return (size_t)snprintf(out, cap, "%s", global[i].hf) < cap ? LR_OK : LR_E_INVAL;
    /* blk.N.rest with N a plain decimal (no sign, no leading zero). */
    if (strncmp(gguf, "blk.", 4) != 0) return LR_E_UNEXPECTED;
    const char *p = gguf + 4, *q = p;
    while (*q >= '0' && *q <= '9')
        q++;
    if (q == p || q - p > 9 || *q != '.' || (*p == '0' && q - p > 1)) return LR_E_UNEXPECTED;
    for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++)
        if (strcmp(q + 1, layer[i].gguf) == 0)
            return (size_t)snprintf(out, cap, "model.layers.%.*s.%s", (int)(q - p), p, layer[i].hf) < cap
                       ? LR_OK
                       : LR_E_INVAL;
    return LR_E_UNEXPECTED;
}

/* ---- dequantization ------------------------------------------------------------------- */

static float f16_to_f32(const unsigned char *p) {
    uint16_t h = (uint16_t)le(p, 2);
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13); /* inf, NaN (payload kept) */
    } else if (exp == 0) {
        float v = (float)man * 0x1p-24f; /* zero and subnormals: exact */
        return sign ? -v : v;
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    float v;
    memcpy(&v, &u, 4);
    return v;
}

static float bf16_to_f32(const unsigned char *p) {
    uint32_t u = (uint32_t)le(p, 2) << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* Q8_0: a block of 32 is a float16 scale d, then 32 int8 q; x = q * d. */
static void deq_q8_0(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; i++, b += 34, y += 32) {
        float d = f16_to_f32(b);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

/* Q4_0: float16 d, then 16 bytes: element j is the low nibble of byte j, element j+16
 * the high nibble; x = (nibble - 8) * d. */
static void deq_q4_0(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; i++, b += 18, y += 32) {
        float d = f16_to_f32(b);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[2 + j] & 0x0f) - 8) * d;
            y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
        }
    }
}

/* Q4_1: float16 d and m, then 16 bytes of nibbles as in Q4_0; x = nibble * d + m, the
 * product rounded to float before the add. */
static void deq_q4_1(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t i = 0; i < nblocks; i++, b += 20, y += 32) {
        float d = f16_to_f32(b), m = f16_to_f32(b + 2);
        for (int j = 0; j < 16; j++) {
            float lo = (float)(b[4 + j] & 0x0f) * d;
            float hi = (float)(b[4 + j] >> 4) * d;
            y[j] = lo + m;
            y[j + 16] = hi + m;
        }
    }
}

/* ---- K-quants: super-blocks of 256 elements (QK_K), the scales of their 16 or 8
 * sub-blocks themselves quantized against a float16 d (and dmin). Written from the
 * block layouts of ggml-quants.c, element by element; the arithmetic is the gguf
 * package's (gguf-py quants.py, numpy float32): (d * scale) * q, then minus dmin * min
 * where there is a min, each a separate statement. Every product here is exact in
 * float32: an 11-bit float16 significand times at most 12 more bits (Q6_K: a scale of
 * magnitude <= 128 times q - 32 of magnitude <= 32; Q2_K to Q5_K fewer), well inside
 * float32's range, so neither the order of the two multiplies nor a fused multiply-add
 * can change a value: only the subtraction rounds, once. Q8_K's d is a float32, and its
 * x = d * q is one rounding. tests/test_gguf.c checks the exactness and every type
 * against the package's output bit for bit. ---- */

#define QK_K 256

/* Q2_K (84 bytes): scales[16] (low nibble: scale, high nibble: min, per 16 elements),
 * qs[64] (2-bit q), float16 d, float16 dmin. Element i's q is bits 2*((i%128)/32) of
 * byte (i/128)*32 + i%32; x = (d * scale) * q - dmin * min. */
static void deq_q2_k(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t n = 0; n < nblocks; n++, b += 84, y += QK_K) {
        const unsigned char *sc = b, *qs = b + 16;
        float d = f16_to_f32(b + 80), dmin = f16_to_f32(b + 82);
        for (int i = 0; i < QK_K; i++) {
            int j = i / 16;
            float dl = d * (float)(sc[j] & 0x0f), ml = dmin * (float)(sc[j] >> 4);
            int q = (qs[(i / 128) * 32 + i % 32] >> (2 * ((i % 128) / 32))) & 3;
            float p = dl * (float)q;
            y[i] = p - ml;
        }
    }
}

/* Q3_K (110 bytes): hmask[32] (the third bit: bit i/32 of byte i%32), qs[64] (the low
 * two bits, laid out as in Q2_K), scales[12] (sixteen 6-bit scales: the low nibbles in
 * bytes 0..7, scale j in byte j%8, the high pairs in bytes 8..11, scale j at bits
 * 2*(j/4) of byte 8 + j%4), float16 d. q = low - 4 when the high bit is clear, else
 * low; x = (d * (scale - 32)) * q. */
static void deq_q3_k(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t n = 0; n < nblocks; n++, b += 110, y += QK_K) {
        const unsigned char *hm = b, *qs = b + 32, *sc = b + 96;
        float d = f16_to_f32(b + 108);
        for (int i = 0; i < QK_K; i++) {
            int j = i / 16;
            int lo = j < 8 ? sc[j] & 0x0f : sc[j - 8] >> 4, hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
            float dl = d * (float)((lo | hi << 4) - 32);
            int low = (qs[(i / 128) * 32 + i % 32] >> (2 * ((i % 128) / 32))) & 3;
            int q = low - (((hm[i % 32] >> (i / 32)) & 1) ? 0 : 4);
            y[i] = dl * (float)q;
        }
    }
}

/* The 6-bit scale and min of sub-block j (0..7) of Q4_K and Q5_K, packed in 12 bytes:
 * j < 4: the low 6 bits of bytes j (scale) and j+4 (min); j >= 4: the low nibble
 * (scale) and high nibble (min) of byte j+4, topped by the two high bits of bytes j-4
 * (scale) and j (min). */
static void scale_min_k4(const unsigned char *sc, int j, int *s, int *m) {
    if (j < 4) {
        *s = sc[j] & 63;
        *m = sc[j + 4] & 63;
    } else {
        *s = (sc[j + 4] & 0x0f) | (sc[j - 4] >> 6) << 4;
        *m = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
    }
}

/* Q4_K (144 bytes): float16 d, float16 dmin, scales[12], qs[128]. Sub-block j (32
 * elements) takes the low nibbles of bytes 32*(j/2) .. +31 when j is even, the high
 * nibbles when odd; x = (d * scale) * q - dmin * min. */
static void deq_q4_k(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t n = 0; n < nblocks; n++, b += 144, y += QK_K) {
        const unsigned char *sc = b + 4, *qs = b + 16;
        float d = f16_to_f32(b), dmin = f16_to_f32(b + 2);
        for (int j = 0; j < 8; j++) {
            int s, m;
            scale_min_k4(sc, j, &s, &m);
            float dl = d * (float)s, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                float p = dl * (float)((qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f);
                y[32 * j + l] = p - ml;
            }
        }
    }
}

/* Q5_K (176 bytes): float16 d, float16 dmin, scales[12], qh[32], qs[128]. The low four
 * bits as in Q4_K; the fifth bit of element l of sub-block j is bit j of qh[l]. */
static void deq_q5_k(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t n = 0; n < nblocks; n++, b += 176, y += QK_K) {
        const unsigned char *sc = b + 4, *qh = b + 16, *qs = b + 48;
        float d = f16_to_f32(b), dmin = f16_to_f32(b + 2);
        for (int j = 0; j < 8; j++) {
            int s, m;
            scale_min_k4(sc, j, &s, &m);
            float dl = d * (float)s, ml = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                int q = ((qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0x0f) | ((qh[l] >> j) & 1) << 4;
                float p = dl * (float)q;
                y[32 * j + l] = p - ml;
            }
        }
    }
}

/* Q6_K (210 bytes): ql[128] (low nibbles), qh[64] (high pairs), scales[16] (int8, per
 * 16 elements), float16 d. In each half c of 128 elements, element r's low nibble is
 * nibble r/64 of ql[64c + r%64], its high pair bits 2*(r/32) of qh[32c + r%32];
 * x = (d * scale) * (q - 32). */
static void deq_q6_k(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t n = 0; n < nblocks; n++, b += 210, y += QK_K) {
        const unsigned char *ql = b, *qh = b + 128, *sc = b + 192;
        float d = f16_to_f32(b + 208);
        for (int i = 0; i < QK_K; i++) {
            int c = i / 128, r = i % 128;
            int lo = (ql[64 * c + r % 64] >> (4 * (r / 64))) & 0x0f,
                hi = (qh[32 * c + r % 32] >> (2 * (r / 32))) & 3;
            float dl = d * (float)(int8_t)sc[i / 16];
            y[i] = dl * (float)((lo | hi << 4) - 32);
        }
    }
}

/* Q8_K (292 bytes): float32 d, 256 x int8 q, then 16 int16 sums of q that only ggml's
 * dot products read; x = d * q. */
static void deq_q8_k(float *y, const unsigned char *b, int64_t nblocks) {
    for (int64_t n = 0; n < nblocks; n++, b += 292, y += QK_K) {
        uint32_t u = (uint32_t)le(b, 4);
        float d;
        memcpy(&d, &u, 4);
        for (int i = 0; i < QK_K; i++)
            y[i] = d * (float)(int8_t)b[4 + i];
    }
}

int64_t lr_gguf_numel(const lr_gguf_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->ne[d];
    return n;
}

int lr_gguf_dequantize(const lr_gguf_tensor *t, float *y) {
    int64_t n = lr_gguf_numel(t);
    const unsigned char *b = t->data;
    switch (t->type) {
    case LR_GGML_F32:
        memcpy(y, b, (size_t)n * 4);
        break;
    case LR_GGML_F16:
        for (int64_t i = 0; i < n; i++)
            y[i] = f16_to_f32(b + 2 * i);
        break;
    case LR_GGML_BF16:
        for (int64_t i = 0; i < n; i++)
            y[i] = bf16_to_f32(b + 2 * i);
        break;
    case LR_GGML_Q8_0:
        deq_q8_0(y, b, n / 32);
        break;
    case LR_GGML_Q4_0:
        deq_q4_0(y, b, n / 32);
        break;
    case LR_GGML_Q4_1:
        deq_q4_1(y, b, n / 32);
        break;
    case LR_GGML_Q2_K:
        deq_q2_k(y, b, n / QK_K);
        break;
    case LR_GGML_Q3_K:
        deq_q3_k(y, b, n / QK_K);
        break;
    case LR_GGML_Q4_K:
        deq_q4_k(y, b, n / QK_K);
        break;
    case LR_GGML_Q5_K:
        deq_q5_k(y, b, n / QK_K);
        break;
    case LR_GGML_Q6_K:
        deq_q6_k(y, b, n / QK_K);
        break;
    case LR_GGML_Q8_K:
        deq_q8_k(y, b, n / QK_K);
        break;
    default:
        return lr_fail(LR_E_DTYPE,
                       "tensor \"%s\": type %s cannot be dequantized (supported: " LR_GGML_SUPPORTED ")",
                       t->name, lr_ggml_type_name(t->type) ? lr_ggml_type_name(t->type) : "?");
    }
    return LR_OK;
}

/* llama.cpp's converter stores each head's rows of q and k interleaved: HF row
 * h*D + s*(D/2) + i (half s of head h, D rows per head) is GGUF row h*D + 2*i + s.
 * This puts them back, in place, through one head's worth of scratch. */
int lr_gguf_unpermute(float *w, int64_t rows, int64_t cols, int64_t n_head) {
    if (n_head <= 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0)
        return lr_fail(LR_E_SHAPE, "q/k permutation: %lld rows do not split into %lld heads of an even size",
                       (long long)rows, (long long)n_head);
    int64_t D = rows / n_head, half = D / 2;
    float *tmp = malloc((size_t)(D * cols) * sizeof *tmp);
    if (!tmp) return lr_fail(LR_E_NOMEM, "q/k permutation: out of memory");
    for (int64_t h = 0; h < n_head; h++) {
        float *head = w + h * D * cols;
        memcpy(tmp, head, (size_t)(D * cols) * sizeof *tmp);
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < half; i++)
                memcpy(head + (s * half + i) * cols, tmp + (2 * i + s) * cols, (size_t)cols * sizeof *tmp);
    }
    free(tmp);
    return LR_OK;
}
